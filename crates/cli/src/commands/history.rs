//! `flotilla history bundle NAME`: a bundle's revisions, newest first, as a table (or JSON, YAML).

use anyhow::{Context, bail};
use clap::Args;
use flotilla_api::{Bundle, Kind};

use crate::{
    args::{Connection, parse_kind},
    output::{self, Format},
};

#[derive(Args)]
pub struct HistoryArgs {
    /// `bundle` (or `bundles`): only bundles keep revisions.
    kind: String,
    /// The bundle's name.
    name: String,
    /// Output format: a table of revisions, or the list as JSON or YAML.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let HistoryArgs {
        kind,
        name,
        output,
        connection,
    } = args;
    let kind = parse_kind(&kind)?;
    if kind != Kind::Bundle {
        bail!("only bundles keep revisions; write `flotilla history bundle {name}`");
    }
    let revisions = connection
        .admin()?
        .api::<Bundle>()
        .revisions(&name)
        .await
        .with_context(|| format!("read the revisions of bundle/{name}"))?;
    output::print_revisions(&revisions.items, output)
}
