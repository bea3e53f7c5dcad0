//! `flotilla get KIND [NAME] --watch`: the current objects, then a line per change, as
//! `kubectl get -w` prints them, from the server's watch stream (`GET …?watch=true`).
//!
//! Tables: the current objects as a table, then one row per change (a deleted object as
//! `kind/name deleted`, since the server no longer holds it). JSON: one compact line per event,
//! `{"type":"ADDED"|"MODIFIED"|"DELETED","object":…}` as Kubernetes' watch events (so `| jq`
//! works); YAML: one `---` document per event. `-o name` and JSONPath: one line per event.
//! The command ends with an error when the server ends the watch (it stopped, or this watch
//! fell too far behind): a script can tell it apart from Ctrl-C.

use anyhow::{Context, bail};
use flotilla_client::{AdminClient, WatchEvent, WatchParams};
use serde_json::{Value, json};

use crate::output::{self, Output, Printable, object_ref};

/// The BOOKMARK annotation that marks the end of the initial ADDED events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Prints the watch on `K` until it ends.
pub async fn watch<K: Printable>(
    client: &AdminClient,
    name: Option<&str>,
    selector: Option<String>,
    output: &Output,
) -> anyhow::Result<()> {
    let params = WatchParams {
        label_selector: selector,
        name: name.map(str::to_string),
    };
    let mut watch = client.watch(K::KIND, &params).await?;
    let table = matches!(output, Output::Table | Output::Wide);
    let mut initial: Option<Vec<K>> = table.then(Vec::new);
    loop {
        let Some(event) = watch.next().await? else {
            bail!(
                "the server ended the watch (it is stopping, or the connection closed); watch again"
            );
        };
        match event.event_type.as_str() {
            "BOOKMARK" => {
                if is_initial_end(&event.object)
                    && let Some(items) = initial.take()
                {
                    output::print_list(&items, output)?;
                }
            }
            "ERROR" => {
                let message = event
                    .object
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the server ended the watch with an error");
                bail!("{message}");
            }
            _ => match &mut initial {
                Some(items) => items.push(decode::<K>(&event)?),
                None => print_event::<K>(&event, output)?,
            },
        }
    }
}

fn is_initial_end(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(INITIAL_EVENTS_END))
        .and_then(Value::as_str)
        == Some("true")
}

fn decode<K: Printable>(event: &WatchEvent) -> anyhow::Result<K> {
    serde_json::from_value(event.object.clone())
        .with_context(|| format!("decode a {} from the watch", K::KIND))
}

/// One change as `output` prints it.
fn print_event<K: Printable>(event: &WatchEvent, output: &Output) -> anyhow::Result<()> {
    let name = event
        .object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match output {
        Output::Json => output::out(&format!(
            "{}\n",
            json!({"type": event.event_type, "object": event.object})
        )),
        Output::Yaml => {
            output::out("---\n")?;
            output::print_yaml(&json!({"type": event.event_type, "object": event.object}))
        }
        Output::Name => output::out(&format!("{}\n", object_ref(K::KIND, name))),
        Output::JsonPath(template) => {
            output::out(&format!("{}\n", template.render(&event.object)?))
        }
        Output::Table | Output::Wide => {
            if event.event_type == "DELETED" {
                return output::out(&format!("{} deleted\n", object_ref(K::KIND, name)));
            }
            let item = decode::<K>(event)?;
            output::out(&output::table_rows(std::slice::from_ref(&item), output)?)
        }
    }
}
