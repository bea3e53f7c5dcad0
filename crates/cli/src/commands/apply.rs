//! `flotilla apply -f FILE…`: create or replace documents of any kind, one by one, reporting
//! each; the only admin command that works on untyped documents (a file may mix kinds).
//!
//! `--dry-run=server` sends each document to `POST /api/v1/apply?dryRun=All`: the server
//! validates and plans it through its write service and stores nothing; `--dry-run=client`
//! only parses and validates locally, with the same document rules (`flotilla_core::documents`)
//! but without what only the server knows (existing objects, GitRepo ownership).

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use flotilla_api::{
    API_VERSION, Bundle, Cluster, ClusterGroup, GitRepo, Kind, RegistrationToken, Secret,
};
use flotilla_core::documents as rules;
use serde_json::Value;

use crate::{args::Connection, documents, output};

/// kubectl's `--dry-run` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// Apply for real.
    None,
    /// Parse and validate locally; send nothing.
    Client,
    /// The server validates and plans the write, and stores nothing.
    Server,
}

#[derive(Args)]
pub struct ApplyArgs {
    /// Files, folders (.yaml, .yml, .json, recursively) or standard input (-).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Only show what would be done: `server` (validated and planned by the server, nothing
    /// stored) or `client` (validated locally, nothing sent).
    #[arg(long = "dry-run", value_enum, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    dry_run: DryRun,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let ApplyArgs {
        files,
        dry_run,
        connection,
    } = args;
    let mut documents = Vec::new();
    for file in &files {
        documents.extend(documents::read(file)?);
    }
    let client = match dry_run {
        DryRun::Client => None,
        DryRun::None | DryRun::Server => Some(connection.admin()?),
    };
    let mut failures = 0;
    for document in documents {
        let label = document.kind_and_name();
        let done = match (&client, dry_run) {
            (None, _) => {
                validate_locally(&document.value).map(|()| "valid (client dry run)".into())
            }
            (Some(client), DryRun::Server) => client
                .apply_dry_run(&document.value)
                .await
                .map(|dry_run| format!("{} (server dry run)", dry_run.verb))
                .map_err(anyhow::Error::from),
            (Some(client), _) => client
                .apply(&document.value)
                .await
                .map(|(created, _)| if created { "created" } else { "configured" }.into())
                .map_err(anyhow::Error::from),
        };
        match done {
            Ok(verb) => output::out(&format!("{label} {verb}\n"))?,
            Err(error) => {
                failures += 1;
                // `:#` shows the causes (why the server was unreachable).
                eprintln!("error: {}: {label}: {error:#}", document.source);
            }
        }
    }
    if failures > 0 {
        let what = if dry_run == DryRun::None {
            "were not applied"
        } else {
            "would not be applied"
        };
        bail!("{failures} document(s) {what}");
    }
    Ok(())
}

/// The checks a client can make alone: a flotilla document of a known kind that parses as that
/// kind and keeps its kind's rules.
pub fn validate_locally(document: &Value) -> anyhow::Result<()> {
    let api_version = document
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if api_version != API_VERSION {
        bail!("apiVersion {api_version:?} is not served; use apiVersion: {API_VERSION}");
    }
    let kind_text = document.get("kind").and_then(Value::as_str).unwrap_or("");
    let kind = Kind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == kind_text)
        .with_context(|| format!("unknown kind {kind_text:?}"))?;
    fn typed<T: serde::de::DeserializeOwned>(document: &Value) -> anyhow::Result<T> {
        serde_path_to_error::deserialize(document.clone())
            .map_err(|error| anyhow::anyhow!("{}: {}", error.path(), error.inner()))
    }
    match kind {
        Kind::Bundle => rules::bundle(&typed::<Bundle>(document)?).map(drop)?,
        Kind::ClusterGroup => rules::cluster_group(&typed::<ClusterGroup>(document)?).map(drop)?,
        Kind::Cluster => rules::cluster(&typed::<Cluster>(document)?)?,
        Kind::RegistrationToken => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            rules::registration_token(&typed::<RegistrationToken>(document)?, now).map(drop)?
        }
        Kind::GitRepo => rules::git_repo(&typed::<GitRepo>(document)?)?,
        Kind::Secret => rules::secret(&typed::<Secret>(document)?)?,
    }
    Ok(())
}
