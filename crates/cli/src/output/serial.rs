//! JSON and YAML as the server's documents (keys sorted), and the one writer to standard output.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

/// A document as JSON with its keys sorted, as the CLI has always printed it.
pub(super) fn to_json<T: Serialize + ?Sized>(document: &T) -> anyhow::Result<Value> {
    serde_json::to_value(document).context("render the document as JSON")
}

/// Writes to standard output; a closed pipe (`| head`) surfaces as an `io::Error` the caller
/// treats as a quiet end.
pub fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

pub fn print_yaml(value: &Value) -> anyhow::Result<()> {
    out(&serde_saphyr::to_string(value).context("render YAML")?)
}
