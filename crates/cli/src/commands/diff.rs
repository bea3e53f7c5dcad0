//! `flotilla diff -f FILE…`: what `apply` would change, as `kubectl diff` shows it: for each
//! document, the live object against the server's dry-run result (`POST /api/v1/apply?dryRun=All`,
//! validated and planned by the server, nothing stored), as a unified diff of YAML.
//!
//! Both sides leave out what the server sets (`status`, `metadata.resourceVersion`,
//! `generation`, `creationTimestamp`), so only what the document changes shows. An object that
//! does not exist yet is diffed against nothing. Exit status as kubectl's: 0 no differences,
//! 1 differences, 2 an error (a document the server refuses, a server it cannot reach).

use anyhow::Context;
use clap::Args;
use flotilla_api::{
    Kind,
    dry_run::{masked_secret_view, without_server_fields},
};
use flotilla_client::AdminClient;
use serde_json::Value;
use similar::TextDiff;

use crate::{args::Connection, documents, output};

#[derive(Args)]
pub struct DiffArgs {
    /// Files, folders (.yaml, .yml, .json, recursively) or standard input (-).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Exit status with differences.
const DIFFERENT: i32 = 1;
/// Exit status when something failed (kubectl: greater than 1).
const FAILED: i32 = 2;

/// Runs the diff and exits with its status (0, 1 or 2), which `main`'s error path cannot give.
pub async fn run(args: DiffArgs) -> anyhow::Result<()> {
    let code = match diff(args).await {
        Ok(false) => return Ok(()),
        Ok(true) => DIFFERENT,
        Err(error) => {
            eprintln!("error: {error:#}");
            FAILED
        }
    };
    std::process::exit(code);
}

/// Prints the diff of every document; whether any differs. Every document is diffed even when
/// one fails, and a failure wins.
async fn diff(args: DiffArgs) -> anyhow::Result<bool> {
    let DiffArgs { files, connection } = args;
    let client = connection.admin()?;
    let mut documents = Vec::new();
    for file in &files {
        documents.extend(documents::read(file)?);
    }
    let mut different = false;
    let mut failures = 0;
    for document in documents {
        let label = document.kind_and_name();
        match diff_one(&client, &document.value, &label).await {
            Ok(Some(text)) => {
                different = true;
                output::out(&text)?;
            }
            Ok(None) => {}
            Err(error) => {
                failures += 1;
                eprintln!("error: {}: {label}: {error:#}", document.source);
            }
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} document(s) could not be diffed");
    }
    Ok(different)
}

/// The unified diff of one document, or None when applying it would change nothing.
async fn diff_one(
    client: &AdminClient,
    document: &Value,
    label: &str,
) -> anyhow::Result<Option<String>> {
    let planned = client.apply_dry_run(document).await?;
    let kind_text = planned
        .object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = Kind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == kind_text)
        .with_context(|| format!("the server answered an unknown kind {kind_text:?}"))?;
    let name = planned
        .object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let live = match client.get(kind, name).await {
        Ok(live) => Some(live),
        Err(error) if error.status() == Some(reqwest::StatusCode::NOT_FOUND) => None,
        Err(error) => return Err(error.into()),
    };
    let live_text = match live {
        Some(live) if kind == Kind::Secret => {
            yaml(without_server_fields(masked_secret_view(live)))?
        }
        Some(live) => yaml(without_server_fields(live))?,
        None => String::new(),
    };
    let planned_text = yaml(without_server_fields(planned.object))?;
    Ok(unified(&live_text, &planned_text, label))
}

/// `diff -u` of the live YAML against the planned one, or None when they are equal.
pub fn unified(live: &str, planned: &str, label: &str) -> Option<String> {
    if live == planned {
        return None;
    }
    let diff = TextDiff::from_lines(live, planned);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("live/{label}"), &format!("merged/{label}"))
            .to_string(),
    )
}

fn yaml(document: Value) -> anyhow::Result<String> {
    serde_saphyr::to_string(&document).context("render YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_documents_have_no_diff_and_a_changed_field_is_one_hunk() {
        assert_eq!(unified("a: 1\n", "a: 1\n", "bundle/web"), None);
        let text = unified("a: 1\nb: 2\n", "a: 1\nb: 3\n", "bundle/web").expect("a diff");
        assert!(
            text.starts_with("--- live/bundle/web\n+++ merged/bundle/web\n"),
            "{text}"
        );
        assert!(text.contains("-b: 2\n+b: 3\n"), "{text}");
    }
}
