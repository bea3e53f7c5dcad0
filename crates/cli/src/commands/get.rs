//! `flotilla get KIND [NAME…]`: a table (or wide table, JSON, YAML, `kind/name` lines, a
//! JSONPath template) of the matching objects, of the ones named, or of one.

use anyhow::bail;
use clap::Args;
use flotilla_client::{AdminClient, ListParams, with_resource};

use crate::{
    args::{Connection, SortOrder, kind_help, parse_kind},
    output::{self, Output, Printable, object_ref},
};

#[derive(Args)]
pub struct GetArgs {
    #[arg(help = kind_help())]
    kind: String,
    /// Objects to show, by name (none: every object that matches the filters).
    names: Vec<String>,
    /// Label selector, e.g. `env=prod,tier in (a,b),!canary`.
    #[arg(short = 'l', long = "selector", conflicts_with = "names")]
    selector: Option<String>,
    /// Only objects in this state (clusters: Online, Offline, Pending; bundles: Ready, …).
    #[arg(long, conflicts_with = "names")]
    state: Option<String>,
    /// Order of the list.
    #[arg(long, value_enum, allow_hyphen_values = true, conflicts_with = "names")]
    sort: Option<SortOrder>,
    #[arg(
        short = 'o',
        long = "output",
        default_value = "table",
        value_parser = Output::parse,
        help = Output::help()
    )]
    output: Output,
    /// After printing, watch for changes and print each (as kubectl get -w); with no name,
    /// honours -l. Soft state (a cluster going Online or Offline, bundle readiness) is not a
    /// change here: only written objects are.
    #[arg(short = 'w', long = "watch", conflicts_with_all = ["state", "sort"])]
    watch: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: GetArgs) -> anyhow::Result<()> {
    let GetArgs {
        kind,
        names,
        selector,
        state,
        sort,
        output,
        watch,
        connection,
    } = args;
    let kind = parse_kind(&kind)?;
    let client = connection.admin()?;
    if watch {
        if names.len() > 1 {
            bail!("--watch follows every object of a kind, or one by name; not several");
        }
        let name = names.first().map(String::as_str);
        return with_resource!(kind, K => super::watch::watch::<K>(&client, name, selector, &output).await);
    }
    let params = ListParams {
        label_selector: selector,
        state,
        sort: sort.map(SortOrder::query),
        ..ListParams::default()
    };
    with_resource!(kind, K => get::<K>(&client, &names, &params, &output).await)
}

async fn get<K: Printable>(
    client: &AdminClient,
    names: &[String],
    params: &ListParams,
    output: &Output,
) -> anyhow::Result<()> {
    let api = client.api::<K>();
    match names {
        [] => output::print_list(&api.list_all(params).await?, output),
        [name] => output::print_one(&api.get(name).await?, output),
        names => get_named::<K>(client, names, output).await,
    }
}

/// Several objects by name, printed together as a list; one that cannot be read is reported
/// and the rest still printed (as kubectl does), and the command then fails.
async fn get_named<K: Printable>(
    client: &AdminClient,
    names: &[String],
    output: &Output,
) -> anyhow::Result<()> {
    let api = client.api::<K>();
    let mut found = Vec::with_capacity(names.len());
    let mut failed = 0;
    for name in names {
        match api.get(name).await {
            Ok(object) => found.push(object),
            Err(error) => {
                failed += 1;
                let error = anyhow::Error::from(error);
                eprintln!("error: {}: {error:#}", object_ref(K::KIND, name));
            }
        }
    }
    if !found.is_empty() {
        output::print_list(&found, output)?;
    }
    if failed > 0 {
        bail!(
            "{failed} of {} {} could not be read",
            names.len(),
            K::KIND.plural()
        );
    }
    Ok(())
}
