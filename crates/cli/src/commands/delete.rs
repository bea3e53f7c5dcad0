//! `flotilla delete KIND NAME`.

use clap::Args;
use flotilla_client::with_resource;

use crate::{
    args::{Connection, parse_kind},
    output,
};

#[derive(Args)]
pub struct DeleteArgs {
    kind: String,
    name: String,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: DeleteArgs) -> anyhow::Result<()> {
    let DeleteArgs {
        kind,
        name,
        connection,
    } = args;
    let kind = parse_kind(&kind)?;
    let client = connection.admin()?;
    with_resource!(kind, K => client.api::<K>().delete(&name).await)?;
    output::out(&format!(
        "{}/{name} deleted\n",
        kind.as_str().to_ascii_lowercase()
    ))
}
