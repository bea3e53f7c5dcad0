//! `flotilla describe KIND NAME`: one object's key facts, then its status and spec.

use clap::Args;
use flotilla_client::{AdminClient, with_resource};

use crate::{
    args::{Connection, kind_help, parse_kind},
    output::{self, Printable},
};

#[derive(Args)]
pub struct DescribeArgs {
    #[arg(help = kind_help())]
    kind: String,
    /// The object's name.
    name: String,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: DescribeArgs) -> anyhow::Result<()> {
    let DescribeArgs {
        kind,
        name,
        connection,
    } = args;
    let kind = parse_kind(&kind)?;
    let client = connection.admin()?;
    with_resource!(kind, K => describe::<K>(&client, &name).await)
}

async fn describe<K: Printable>(client: &AdminClient, name: &str) -> anyhow::Result<()> {
    output::describe(&client.api::<K>().get(name).await?)
}
