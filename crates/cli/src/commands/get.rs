//! `flotilla get KIND [NAME]`: a table (or JSON, YAML) of the matching objects, or of one.

use clap::Args;
use flotilla_client::{AdminClient, ListParams, with_resource};

use crate::{
    args::{Connection, parse_kind},
    output::{self, Format, Printable},
};

#[derive(Args)]
pub struct GetArgs {
    /// clusters, bundles, clustergroups or tokens.
    kind: String,
    name: Option<String>,
    /// Label selector, e.g. `env=prod,tier in (a,b),!canary`.
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
    /// Only objects in this state (clusters: Online, Offline, Pending; bundles: Ready, …).
    #[arg(long)]
    state: Option<String>,
    /// name or -name.
    #[arg(long)]
    sort: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: GetArgs) -> anyhow::Result<()> {
    let GetArgs {
        kind,
        name,
        selector,
        state,
        sort,
        output,
        connection,
    } = args;
    let kind = parse_kind(&kind)?;
    let client = connection.admin()?;
    let params = ListParams {
        label_selector: selector,
        state,
        sort,
        ..ListParams::default()
    };
    with_resource!(kind, K => get::<K>(&client, name.as_deref(), &params, output).await)
}

async fn get<K: Printable>(
    client: &AdminClient,
    name: Option<&str>,
    params: &ListParams,
    format: Format,
) -> anyhow::Result<()> {
    let api = client.api::<K>();
    match name {
        Some(name) => output::print_one(&api.get(name).await?, format),
        None => output::print_list(&api.list_all(params).await?, format),
    }
}
