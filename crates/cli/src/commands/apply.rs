//! `flotilla apply -f FILE…`: create or replace documents of any kind, one by one, reporting
//! each; the only admin command that works on untyped documents (a file may mix kinds).

use anyhow::bail;
use clap::Args;

use crate::{args::Connection, documents, output};

#[derive(Args)]
pub struct ApplyArgs {
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let ApplyArgs { files, connection } = args;
    let client = connection.admin()?;
    let mut documents = Vec::new();
    for file in &files {
        documents.extend(documents::read(file)?);
    }
    let mut failures = 0;
    for document in documents {
        let label = document.kind_and_name();
        match client.apply(&document.value).await {
            Ok((true, _)) => output::out(&format!("{label} created\n"))?,
            Ok((false, _)) => output::out(&format!("{label} configured\n"))?,
            Err(error) => {
                failures += 1;
                // Through anyhow, so `:#` shows the causes (why the server was unreachable).
                let error = anyhow::Error::from(error);
                eprintln!("error: {}: {label}: {error:#}", document.source);
            }
        }
    }
    if failures > 0 {
        bail!("{failures} document(s) were not applied");
    }
    Ok(())
}
