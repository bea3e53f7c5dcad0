//! `flotilla token create`: a registration token, printed once (the server keeps only a hash).

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Subcommand;
use flotilla_api::{RegistrationToken, RegistrationTokenSpec};
use flotilla_client::Resource;

use crate::{
    args::{Connection, parse_labels},
    output,
};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a registration token and print it (only the token, on standard output).
    Create {
        /// Labels stamped on clusters that register with it: k=v,k2=v2.
        #[arg(long, value_parser = parse_labels, default_value = "")]
        labels: BTreeMap<String, String>,
        /// Lifetime, e.g. 1h or 7d; never expires when unset.
        #[arg(long)]
        ttl: Option<String>,
        /// How many clusters may register with it (1 or more); unlimited when unset.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_uses: Option<u64>,
        /// Token name (default: generated).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            labels,
            ttl,
            max_uses,
            name,
            connection,
        } => {
            let document = RegistrationToken::new(
                name.as_deref().unwrap_or_default(),
                RegistrationTokenSpec {
                    labels,
                    ttl,
                    max_uses,
                    expires_at: None,
                },
            );
            let created = connection
                .admin()?
                .api::<RegistrationToken>()
                .create(&document)
                .await?;
            let token = created
                .status
                .and_then(|status| status.token)
                .context("server did not return the token")?;
            output::out(&format!("{token}\n"))
        }
    }
}
