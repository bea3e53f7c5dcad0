//! `flotilla delete KIND NAME…`, `delete KIND -l SELECTOR`, `delete KIND --all` and
//! `delete -f FILE…`: each object deleted on its own with a `kind/name deleted` line; one that
//! fails is reported and the rest still deleted, and the command then fails.

use anyhow::bail;
use clap::Args;
use flotilla_api::Kind;
use flotilla_client::{AdminClient, ListParams, Resource, with_resource};

use crate::{
    args::{Connection, kind_help, parse_kind},
    documents,
    output::{self, object_ref},
};

#[derive(Args)]
pub struct DeleteArgs {
    #[arg(help = kind_help(), required_unless_present = "files")]
    kind: Option<String>,
    /// Objects to delete, by name.
    names: Vec<String>,
    /// Delete every object of the kind that matches this label selector, e.g. `env=dev`.
    #[arg(short = 'l', long = "selector", conflicts_with_all = ["names", "all"], value_parser = non_blank_selector)]
    selector: Option<String>,
    /// Delete every object of the kind.
    #[arg(long, conflicts_with = "names")]
    all: bool,
    /// Delete the objects these files, folders or standard input (-) hold, read as `apply -f`
    /// reads them.
    #[arg(short = 'f', long = "filename", conflicts_with_all = ["kind", "names", "selector", "all"])]
    files: Vec<String>,
    /// An object that does not exist is not an error (nothing is printed for it).
    #[arg(long)]
    ignore_not_found: bool,
    #[command(flatten)]
    connection: Connection,
}

/// One object to delete, or why a document names none.
type Target = Result<(Kind, String), String>;

/// What a missing object means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotFound {
    Fail,
    Ignore,
}

pub async fn run(args: DeleteArgs) -> anyhow::Result<()> {
    let DeleteArgs {
        kind,
        names,
        selector,
        all,
        files,
        ignore_not_found,
        connection,
    } = args;
    let not_found = if ignore_not_found {
        NotFound::Ignore
    } else {
        NotFound::Fail
    };
    let client = connection.admin()?;
    let targets: Vec<Target> = match kind {
        None => from_files(&files)?,
        Some(kind) => {
            let kind = parse_kind(&kind)?;
            if !names.is_empty() {
                names.into_iter().map(|name| Ok((kind, name))).collect()
            } else if selector.is_some() || all {
                let params = ListParams {
                    label_selector: selector,
                    ..ListParams::default()
                };
                let names = with_resource!(kind, K => names_matching::<K>(&client, &params).await)?;
                if names.is_empty() {
                    eprintln!("No {} found.", kind.plural());
                }
                names.into_iter().map(|name| Ok((kind, name))).collect()
            } else {
                bail!(
                    "name the {} to delete, or pass -l SELECTOR or --all",
                    kind.plural()
                );
            }
        }
    };
    delete_each(&client, targets, not_found).await
}

/// The names of the objects of kind `K` that `params` select.
async fn names_matching<K: Resource>(
    client: &AdminClient,
    params: &ListParams,
) -> anyhow::Result<Vec<String>> {
    let objects = client.api::<K>().list_all(params).await?;
    Ok(objects
        .iter()
        .map(|object| object.name().to_string())
        .collect())
}

/// The kind and name of each document in `files`.
fn from_files(files: &[String]) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    for file in files {
        for document in documents::read(file)? {
            let name = document
                .value
                .pointer("/metadata/name")
                .and_then(|name| name.as_str())
                .filter(|name| !name.is_empty());
            let kind = document.value.get("kind").and_then(|kind| kind.as_str());
            targets.push(match (kind, name) {
                (Some(kind), Some(name)) => parse_kind(kind)
                    .map(|kind| (kind, name.to_string()))
                    .map_err(|error| format!("{}: {error}", document.source)),
                _ => Err(format!(
                    "{}: {}: a document to delete needs a kind and metadata.name",
                    document.source,
                    document.kind_and_name()
                )),
            });
        }
    }
    Ok(targets)
}

async fn delete_each(
    client: &AdminClient,
    targets: Vec<Target>,
    not_found: NotFound,
) -> anyhow::Result<()> {
    let total = targets.len();
    let mut failed = 0;
    for target in targets {
        let (kind, name) = match target {
            Ok(target) => target,
            Err(error) => {
                failed += 1;
                eprintln!("error: {error}");
                continue;
            }
        };
        let reference = object_ref(kind, &name);
        match client.delete(kind, &name).await {
            Ok(()) => output::out(&format!("{reference} deleted\n"))?,
            Err(error) if error.is_not_found() && not_found == NotFound::Ignore => {}
            Err(error) => {
                failed += 1;
                // Through anyhow, so `:#` shows the causes (why the server was unreachable).
                let error = anyhow::Error::from(error);
                eprintln!("error: {reference}: {error:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {total} object(s) were not deleted");
    }
    Ok(())
}

/// A blank `-l` would select every object (a script with an unset `$SELECTOR` must not delete
/// the whole kind): refused; `--all` says that on purpose.
fn non_blank_selector(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "an empty selector would delete every object of the kind; use --all for that".into(),
        );
    }
    Ok(text.to_string())
}
