//! `flotilla token create|list|revoke`: registration tokens. A token's secret is printed once,
//! by `create` (the server keeps only a hash); `list` shows everything else; `revoke` deletes
//! the token, so no cluster can register with it any more (clusters that did keep their
//! credentials).

use std::{collections::BTreeMap, io::Write};

use anyhow::Context;
use clap::Subcommand;
use flotilla_api::{RegistrationToken, RegistrationTokenSpec};
use flotilla_client::{ListParams, Resource};

use crate::{
    args::{Connection, parse_labels},
    output::{self, Format},
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
    /// List registration tokens: labels, uses, expiry and creation (never the secret).
    List {
        /// Label selector on the tokens' own labels, e.g. `team=edge`.
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
        /// Output format: a table, or the list as JSON or YAML.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
        #[command(flatten)]
        connection: Connection,
    },
    /// Revoke (delete) a registration token: clusters can no longer register with it.
    Revoke {
        /// The token's name (`flotilla token list`; the part of the token before the dot).
        name: String,
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
        TokenCommand::List {
            selector,
            output,
            connection,
        } => {
            let params = ListParams {
                label_selector: selector,
                ..ListParams::default()
            };
            let tokens = connection
                .admin()?
                .api::<RegistrationToken>()
                .list_all(&params)
                .await?;
            match output {
                Format::Table => print_table(&tokens),
                Format::Json => output::print_json(&serde_json::json!({ "items": tokens })),
                Format::Yaml => output::print_yaml(&serde_json::json!({ "items": tokens })),
            }
        }
        TokenCommand::Revoke { name, connection } => {
            // A whole token pasted by mistake names the same token; its secret is not sent.
            let name = name.split_once('.').map_or(name.as_str(), |(name, _)| name);
            connection
                .admin()?
                .api::<RegistrationToken>()
                .delete(name)
                .await?;
            output::out(&format!("registrationtoken/{name} revoked\n"))
        }
    }
}

/// The token table: what an operator checks before handing a token out or revoking it.
fn print_table(tokens: &[RegistrationToken]) -> anyhow::Result<()> {
    if tokens.is_empty() {
        eprintln!("No registration tokens found.");
        return Ok(());
    }
    let mut writer = tabwriter::TabWriter::new(std::io::stdout()).padding(3);
    writeln!(writer, "NAME\tSTATE\tUSES\tLABELS\tEXPIRES\tCREATED")?;
    for token in tokens {
        let status = token.status.as_ref();
        let uses = status.map_or(0, |status| status.uses);
        let max_uses = token
            .spec
            .max_uses
            .map_or_else(|| "unlimited".to_string(), |max| max.to_string());
        let labels = token
            .spec
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        writeln!(
            writer,
            "{}\t{}\t{uses}/{max_uses}\t{}\t{}\t{}",
            token.metadata.name,
            status.map_or("", |status| status.state.as_str()),
            if labels.is_empty() { "<none>" } else { &labels },
            token.spec.expires_at.as_deref().unwrap_or("never"),
            token
                .metadata
                .creation_timestamp
                .as_deref()
                .unwrap_or_default(),
        )?;
    }
    writer.flush().context("write table")
}
