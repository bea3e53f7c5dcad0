//! `flotilla edit KIND NAME`: the object as YAML in `$EDITOR` (else `$VISUAL`, else `vi`), sent
//! back on save with the `resourceVersion` it was read at, as kubectl edit: a change someone
//! made meanwhile is refused (409) rather than overwritten. A file saved unchanged (or empty)
//! cancels; an edit the server or the parser refuses reopens the editor with the reason in a
//! comment at the top, until it is accepted or saved again unchanged (off a terminal, at most
//! [`ATTEMPTS_OFF_TERMINAL`] times, so a script's editor cannot loop for ever).

use std::{io::IsTerminal, path::Path, process::Command};

use anyhow::{Context, bail};
use clap::Args;
use flotilla_api::Kind;
use flotilla_client::AdminClient;
use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    args::{Connection, kind_help, parse_kind},
    documents, output,
};

#[derive(Args)]
pub struct EditArgs {
    #[arg(help = kind_help())]
    kind: String,
    /// The object's name.
    name: String,
    #[command(flatten)]
    connection: Connection,
}

/// Editor sessions allowed when standard input is not a terminal: a scripted editor that
/// keeps producing refused edits stops after this many (a person at a terminal stops by
/// saving the file unchanged).
const ATTEMPTS_OFF_TERMINAL: usize = 3;

/// The comment at the top of the file; comment lines at the top are dropped before parsing.
const HEADER: &str = "\
# Edit the object below and save to send it; lines beginning with '#' at the top are ignored.
# Saving it unchanged (or empty) cancels the edit. It is sent with the resourceVersion it was
# read at: if someone changed the object meanwhile, the server refuses rather than overwrites.
#
";

pub async fn run(args: EditArgs) -> anyhow::Result<()> {
    let EditArgs {
        kind,
        name,
        connection,
    } = args;
    let kind = parse_kind(&kind)?;
    if kind == Kind::Secret {
        // Its values are write-only: what an editor could show has none, and saving it would
        // drop them.
        bail!(
            "a Secret's values are never returned, so it cannot be edited in place; write the whole Secret again with `flotilla apply -f FILE`"
        );
    }
    let client = connection.admin()?;
    let original = client.get(kind, &name).await?;
    let yaml = serde_saphyr::to_string(&original).context("render the object as YAML")?;
    let file = tempfile::Builder::new()
        .prefix(&format!(
            "flotilla-edit-{}-",
            kind.as_str().to_ascii_lowercase()
        ))
        .suffix(".yaml")
        .tempfile()
        .context("create a temporary file to edit")?;
    let editor = editor_command();
    let attempts = if std::io::stdin().is_terminal() {
        usize::MAX
    } else {
        ATTEMPTS_OFF_TERMINAL
    };
    let mut text = format!("{HEADER}{yaml}");
    let mut last_refused: Option<String> = None;
    for _ in 0..attempts {
        std::fs::write(file.path(), &text)
            .with_context(|| format!("write {}", file.path().display()))?;
        run_editor(&editor, file.path())?;
        let edited = std::fs::read_to_string(file.path())
            .with_context(|| format!("read {}", file.path().display()))?;
        let body = without_leading_comments(&edited).to_string();
        if last_refused.as_deref() == Some(body.as_str()) {
            return Err(keep(file, "the refused edit was saved again unchanged"));
        }
        let refusal = match review(&original, &body) {
            Review::Unchanged => {
                eprintln!("Edit cancelled, no changes made.");
                return Ok(());
            }
            Review::Empty => {
                eprintln!("Edit cancelled, saved file was empty.");
                return Ok(());
            }
            Review::Invalid(reason) => reason,
            Review::Changed(document) => match send(&client, kind, &name, &document).await {
                Ok(()) => {
                    return output::out(&format!(
                        "{}/{name} edited\n",
                        kind.as_str().to_ascii_lowercase()
                    ));
                }
                Err(Refusal::Fix(reason)) => reason,
                Err(Refusal::Stop(error)) => return Err(keep(file, &format!("{error:#}"))),
            },
        };
        eprintln!("error: {refusal}; reopening the editor");
        text = format!("{}{HEADER}{body}", error_comment(&refusal));
        last_refused = Some(body);
    }
    Err(keep(
        file,
        &format!("the edit was refused {ATTEMPTS_OFF_TERMINAL} times"),
    ))
}

/// What the saved file says, compared with the object as read.
#[derive(Debug, PartialEq)]
enum Review {
    Unchanged,
    Empty,
    /// Not one document: the reason, for the comment at the top of the reopened file.
    Invalid(String),
    /// The document to send, carrying the `resourceVersion` the object was read at.
    Changed(Value),
}

/// Compares the edited text (its leading comments dropped) with the object as read.
fn review(original: &Value, body: &str) -> Review {
    if body.trim().is_empty() {
        return Review::Empty;
    }
    let mut documents = match documents::parse("the edited file", body) {
        Ok(documents) => documents,
        Err(error) => return Review::Invalid(format!("{error:#}")),
    };
    let mut document = match documents.len() {
        0 => return Review::Empty,
        1 => documents.remove(0).value,
        count => {
            return Review::Invalid(format!(
                "the file holds {count} documents; edit the one object only"
            ));
        }
    };
    if &document == original {
        return Review::Unchanged;
    }
    let Some(metadata) = document.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Review::Invalid("the document has no metadata mapping; keep metadata".into());
    };
    // The version read, whatever the file says: the precondition is what makes the edit safe.
    match original.pointer("/metadata/resourceVersion") {
        Some(version) => metadata.insert("resourceVersion".into(), version.clone()),
        None => metadata.remove("resourceVersion"),
    };
    Review::Changed(document)
}

/// Why the server did not take the edit.
enum Refusal {
    /// The document breaks a rule (400, 422): the user can fix it in the editor.
    Fix(String),
    /// Anything else (409 changed meanwhile, 404 deleted, the server unreachable): editing
    /// again would not help.
    Stop(anyhow::Error),
}

async fn send(
    client: &AdminClient,
    kind: Kind,
    name: &str,
    document: &Value,
) -> Result<(), Refusal> {
    match client.replace(kind, name, document).await {
        Ok(_) => Ok(()),
        Err(error)
            if matches!(
                error.status(),
                Some(StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY)
            ) =>
        {
            Err(Refusal::Fix(error.to_string()))
        }
        Err(error) if error.status() == Some(StatusCode::CONFLICT) => {
            Err(Refusal::Stop(anyhow::Error::new(error).context(format!(
                "{kind} {name:?} was not saved: it changed since it was read (conflict); \
                 run `flotilla edit` again to edit the current version"
            ))))
        }
        Err(error) => Err(Refusal::Stop(error.into())),
    }
}

/// Keeps the edited file (it holds the user's work) and names it in the error.
fn keep(file: tempfile::NamedTempFile, why: &str) -> anyhow::Error {
    match file.keep() {
        Ok((_, path)) => anyhow::anyhow!("{why}; your edit is saved in {}", path.display()),
        Err(error) => anyhow::anyhow!("{why} (and the edited file could not be kept: {error})"),
    }
}

/// The text before the first line that is not a `#` comment: the header, and any error
/// comment a previous attempt added.
fn without_leading_comments(text: &str) -> &str {
    let mut rest = text;
    while rest.starts_with('#') {
        rest = rest.split_once('\n').map_or("", |(_, after)| after);
    }
    rest
}

fn error_comment(reason: &str) -> String {
    let mut comment = String::from("# The edit was not saved:\n");
    for line in reason.lines() {
        comment.push_str(&format!("#   {line}\n"));
    }
    comment.push_str("#\n");
    comment
}

/// `$KUBE_EDITOR` (a kubectl user's), else `$VISUAL`, else `$EDITOR`, else `vi`, as kubectl and
/// git choose; run through `sh` so it may carry arguments (`code --wait`).
fn editor_command() -> String {
    ["KUBE_EDITOR", "VISUAL", "EDITOR"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|editor| !editor.trim().is_empty())
        .unwrap_or_else(|| "vi".into())
}

fn run_editor(editor: &str, path: &Path) -> anyhow::Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("flotilla-edit")
        .arg(path)
        .status()
        .with_context(|| format!("start the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status}); nothing was sent");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bundle() -> Value {
        json!({
            "apiVersion": "flotilla.dev/v1alpha1",
            "kind": "Bundle",
            "metadata": {"name": "web", "resourceVersion": "7"},
            "spec": {"paused": false},
        })
    }

    #[test]
    fn a_file_saved_as_read_or_with_only_new_comments_is_unchanged() {
        let yaml = serde_saphyr::to_string(&bundle()).unwrap();
        assert_eq!(review(&bundle(), &yaml), Review::Unchanged);
        let commented = format!("# a note\n{yaml}");
        assert_eq!(
            review(&bundle(), without_leading_comments(&commented)),
            Review::Unchanged
        );
        assert_eq!(review(&bundle(), "\n  \n"), Review::Empty);
    }

    #[test]
    fn a_changed_document_carries_the_resource_version_it_was_read_at() {
        let edited = "apiVersion: flotilla.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: web\n  \
                      resourceVersion: '99'\n  labels: {env: prod}\nspec: {paused: true}\n";
        let Review::Changed(document) = review(&bundle(), edited) else {
            panic!("a change");
        };
        assert_eq!(document["metadata"]["resourceVersion"], "7");
        assert_eq!(document["metadata"]["labels"]["env"], "prod");
    }

    #[test]
    fn malformed_yaml_and_several_documents_are_refused_for_another_edit() {
        assert!(matches!(
            review(&bundle(), "metadata: [unclosed"),
            Review::Invalid(_)
        ));
        assert!(matches!(
            review(&bundle(), "a: 1\n---\nb: 2\n"),
            Review::Invalid(reason) if reason.contains("2 documents")
        ));
    }

    #[test]
    fn the_leading_comments_go_and_the_rest_stays() {
        let text = format!(
            "{}{HEADER}a: 1\n# kept\nb: 2\n",
            error_comment("bad\nworse")
        );
        assert_eq!(without_leading_comments(&text), "a: 1\n# kept\nb: 2\n");
    }
}
