//! Arguments several commands share: the admin connection (`--server`, `--token`), kinds and
//! `k=v` label lists.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use flotilla_api::Kind;
use flotilla_client::AdminClient;

#[derive(Args, Clone)]
pub struct Connection {
    /// URL of the flotilla server.
    #[arg(
        long,
        env = "FLOTILLA_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Admin API token (default: the contents of ./flotilla-data/admin-token, if present).
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

impl Connection {
    /// A client for the admin API, with the token given or the one a local server wrote.
    pub fn admin(&self) -> anyhow::Result<AdminClient> {
        let Connection { server, token } = self;
        let token = match token {
            Some(token) => token.clone(),
            None => std::fs::read_to_string("flotilla-data/admin-token")
                .map(|t| t.trim().to_string())
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no admin token: pass --token or set FLOTILLA_TOKEN (the server wrote one to <data-dir>/admin-token)"
                    )
                })?,
        };
        Ok(AdminClient::new(server, &token)?)
    }
}

/// A kind as a user types it (`clusters`, `bundle`, `cg`, …).
pub fn parse_kind(text: &str) -> anyhow::Result<Kind> {
    Kind::parse(text).with_context(|| {
        format!("unknown kind {text:?}; use clusters, bundles, clustergroups or tokens")
    })
}

/// Labels written `k=v,k2=v2`, each key and value checked as the server checks them.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?} has no '='; write key=value"))?;
        labels.insert(key.to_string(), value.to_string());
    }
    // The server's rule and message for the labels of a registration (count and syntax).
    flotilla_core::documents::labels("labels", &labels).map_err(|error| error.message)?;
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_label_is_refused_with_the_message_registration_answers() {
        let request = flotilla_api::agent::RegisterRequest {
            token: "t.s".into(),
            name: "store-1".into(),
            client_id: "c".into(),
            labels: BTreeMap::from([("bad key".to_string(), "v".to_string())]),
            facts: Default::default(),
        };
        let server = flotilla_core::documents::registration(&request).unwrap_err();
        assert_eq!(parse_labels("env=prod,bad key=v"), Err(server.message));
        let too_many: Vec<String> = (0..=64).map(|i| format!("k{i}=v")).collect();
        let error = parse_labels(&too_many.join(",")).unwrap_err();
        assert!(error.contains("at most 64"), "{error}");
        assert_eq!(
            parse_labels("env=prod, tier=web"),
            Ok(BTreeMap::from([
                ("env".to_string(), "prod".to_string()),
                ("tier".to_string(), "web".to_string())
            ]))
        );
    }
}
