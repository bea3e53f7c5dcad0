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
        flotilla_core::selector::validate_label_key(key).map_err(|e| e.to_string())?;
        flotilla_core::selector::validate_label_value(value).map_err(|e| e.to_string())?;
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}
