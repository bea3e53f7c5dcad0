//! Printing what the admin API returns: kubectl-style tables (`-o wide` adds columns), JSON,
//! YAML, `-o name` and `-o jsonpath=…`, the `describe` view, and a bundle's rollout status and
//! revision history. One file per noun; this one holds the entry points `get` calls.

mod cells;
mod colour;
mod describe;
mod format;
mod jsonpath;
mod kinds;
mod rollout;
mod serial;
mod summary;
mod table;

use flotilla_api::Kind;
use serde_json::json;

use self::serial::to_json;
pub use self::{
    cells::seconds_text,
    describe::describe,
    format::{Format, Output},
    kinds::Printable,
    rollout::{print_revisions, print_rollout_status, rollout_progress_line},
    serial::{out, print_json, print_yaml},
};

/// `kind/name` as kubectl names an object (`bundle/web`): in `-o name` and in what `delete` and
/// `label` report.
pub fn object_ref(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.as_str().to_ascii_lowercase())
}

/// A list as `get` prints it: a table (with a count under long ones), `{"items": [...]}` in
/// JSON or YAML, a `kind/name` line per object, or a JSONPath template over that list.
pub fn print_list<K: Printable>(items: &[K], output: &Output) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&json!({ "items": to_json(items)? })),
        Output::Yaml => print_yaml(&json!({ "items": to_json(items)? })),
        Output::Name => out(&names(items)),
        Output::JsonPath(template) => out(&template.render(&json!({ "items": to_json(items)? }))?),
        Output::Table | Output::Wide => {
            if items.is_empty() {
                eprintln!("No {} found.", K::KIND.plural());
                return Ok(());
            }
            let columns = table::Columns::from_output(output);
            out(&table::render(
                items,
                columns,
                colour::Colouring::for_stdout(),
            )?)?;
            if let Some(line) = summary::line(items) {
                eprintln!("{line}");
            }
            Ok(())
        }
    }
}

/// One object as `get KIND NAME` prints it: the document itself in JSON, YAML and JSONPath
/// (as kubectl does), a one-row table otherwise.
pub fn print_one<K: Printable>(item: &K, output: &Output) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&to_json(item)?),
        Output::Yaml => print_yaml(&to_json(item)?),
        Output::JsonPath(template) => out(&template.render(&to_json(item)?)?),
        Output::Name | Output::Table | Output::Wide => {
            print_list(std::slice::from_ref(item), output)
        }
    }
}

/// The table rows of `items` without the header: what `get --watch` prints for each change.
pub fn table_rows<K: Printable>(items: &[K], output: &Output) -> anyhow::Result<String> {
    let columns = table::Columns::from_output(output);
    let text = table::render(items, columns, colour::Colouring::for_stdout())?;
    Ok(text
        .split_once('\n')
        .map(|(_, rows)| rows.to_string())
        .unwrap_or_default())
}

fn names<K: Printable>(items: &[K]) -> String {
    items
        .iter()
        .map(|item| format!("{}\n", object_ref(K::KIND, item.name())))
        .collect()
}
