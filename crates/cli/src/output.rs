//! Printing objects: kubectl-style tables, JSON (`{"items": [...]}` for lists) and YAML, and the
//! `describe` view.

use std::io::Write;

use anyhow::Context;
use flotilla_api::Kind;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

fn s(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Bool(flag)) => flag.to_string(),
        _ => String::new(),
    }
}

fn labels(value: &Value) -> String {
    value
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// "3m ago"-style age of an RFC 3339 time.
fn age(text: &str) -> String {
    let Ok(time) = humantime::parse_rfc3339_weak(text) else {
        return String::new();
    };
    let Ok(elapsed) = std::time::SystemTime::now().duration_since(time) else {
        return "0s".into();
    };
    let seconds = elapsed.as_secs();
    match seconds {
        0..=119 => format!("{seconds}s"),
        120..=7_199 => format!("{}m", seconds / 60),
        7_200..=172_799 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

fn row(kind: Kind, item: &Value) -> Vec<String> {
    match kind {
        Kind::Cluster => {
            let bundles = item
                .pointer("/status/bundles")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = bundles.iter().filter(|b| b["state"] == "Ready").count();
            let nodes = match (
                item.pointer("/status/nodes/ready"),
                item.pointer("/status/nodes/total"),
            ) {
                (Some(ready), Some(total)) => format!("{ready}/{total}"),
                _ => String::new(),
            };
            vec![
                s(item, "/metadata/name"),
                s(item, "/status/state"),
                format!("{ready}/{}", bundles.len()),
                nodes,
                s(item, "/status/kubernetesVersion"),
                age(&s(item, "/status/lastSeen")),
                labels(item),
            ]
        }
        Kind::Bundle => vec![
            s(item, "/metadata/name"),
            bundle_state(item),
            s(item, "/status/summary/desired"),
            s(item, "/status/summary/ready"),
            s(item, "/status/summary/notReady"),
            s(item, "/status/summary/modified"),
            s(item, "/status/summary/error"),
            s(item, "/status/summary/pending"),
            age(&s(item, "/metadata/creationTimestamp")),
        ],
        Kind::ClusterGroup => vec![
            s(item, "/metadata/name"),
            s(item, "/status/clusterCount"),
            s(item, "/status/onlineCount"),
            selector_text(item.pointer("/spec/selector")),
        ],
        Kind::RegistrationToken => vec![
            s(item, "/metadata/name"),
            s(item, "/status/state"),
            s(item, "/status/uses"),
            match s(item, "/spec/maxUses") {
                text if text.is_empty() => "unlimited".into(),
                text => text,
            },
            match s(item, "/spec/expiresAt") {
                text if text.is_empty() => "never".into(),
                text => text,
            },
            age(&s(item, "/metadata/creationTimestamp")),
        ],
        Kind::GitRepo => {
            let commit = s(item, "/status/commit");
            let bundles = item
                .pointer("/status/bundles")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let wanted = match (s(item, "/spec/revision"), s(item, "/spec/branch")) {
                (revision, _) if !revision.is_empty() => revision,
                (_, branch) if !branch.is_empty() => branch,
                _ => "main".into(),
            };
            vec![
                s(item, "/metadata/name"),
                s(item, "/spec/repo"),
                wanted,
                commit.chars().take(12).collect(),
                bundles.to_string(),
                age(&s(item, "/status/lastFetched")),
                s(item, "/status/error"),
            ]
        }
        Kind::Secret => vec![
            s(item, "/metadata/name"),
            s(item, "/spec/type"),
            item.pointer("/status/keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            age(&s(item, "/metadata/creationTimestamp")),
        ],
    }
}

fn headers(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Cluster => &[
            "NAME",
            "STATE",
            "BUNDLES-READY",
            "NODES",
            "KUBERNETES",
            "LAST-SEEN",
            "LABELS",
        ],
        Kind::Bundle => &[
            "NAME",
            "STATE",
            "DESIRED",
            "READY",
            "NOT-READY",
            "MODIFIED",
            "ERROR",
            "PENDING",
            "AGE",
        ],
        Kind::ClusterGroup => &["NAME", "CLUSTERS", "ONLINE", "SELECTOR"],
        Kind::RegistrationToken => &["NAME", "STATE", "USES", "MAX-USES", "EXPIRES", "AGE"],
        Kind::GitRepo => &[
            "NAME", "REPO", "REF", "COMMIT", "BUNDLES", "FETCHED", "ERROR",
        ],
        Kind::Secret => &["NAME", "TYPE", "KEYS", "AGE"],
    }
}

/// The state column of a bundle: the server's `status.state`, or (from an older server) derived
/// from its summary the way the server filters by it.
fn bundle_state(item: &Value) -> String {
    if let Some(state) = item.pointer("/status/state").and_then(Value::as_str)
        && !state.is_empty()
    {
        return state.to_string();
    }
    let count = |field: &str| {
        item.pointer(&format!("/status/summary/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    if item
        .pointer("/status/digest")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        "Paused".into()
    } else if count("error") > 0 {
        "Error".into()
    } else if count("modified") > 0 {
        "Modified".into()
    } else if count("notReady") > 0 {
        "NotReady".into()
    } else if count("pending") > 0 {
        "Pending".into()
    } else {
        "Ready".into()
    }
}

/// A selector in its string form, e.g. `env=prod,tier in (a,b)`.
fn selector_text(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    match serde_json::from_value::<flotilla_api::LabelSelector>(selector.clone())
        .ok()
        .and_then(|s| flotilla_core::selector::Selector::from_api(&s).ok())
    {
        Some(selector) if selector.is_everything() => "<all>".into(),
        Some(selector) => selector.to_string(),
        None => selector.to_string(),
    }
}

pub fn print_list(kind: Kind, items: &[Value], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&json!({ "items": items })),
        Format::Yaml => print_yaml(&json!({ "items": items })),
        Format::Table => {
            if items.is_empty() {
                eprintln!("No {} found.", kind.plural());
                return Ok(());
            }
            let mut writer = tabwriter::TabWriter::new(std::io::stdout()).padding(3);
            writeln!(writer, "{}", headers(kind).join("\t"))?;
            for item in items {
                writeln!(writer, "{}", row(kind, item).join("\t"))?;
            }
            writer.flush().context("write table")
        }
    }
}

pub fn print_one(kind: Kind, item: &Value, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(item),
        Format::Yaml => print_yaml(item),
        Format::Table => print_list(kind, std::slice::from_ref(item), Format::Table),
    }
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

/// A human-readable description: identity, labels, the kind's key facts, then spec and status.
pub fn describe(kind: Kind, item: &Value) -> anyhow::Result<()> {
    let mut text = String::new();
    let mut line = |key: &str, value: String| {
        if !value.is_empty() {
            text.push_str(&format!("{:<22}{value}\n", format!("{key}:")));
        }
    };
    line("Name", s(item, "/metadata/name"));
    line("Kind", kind.to_string());
    line("Labels", labels(item));
    line("Created", s(item, "/metadata/creationTimestamp"));
    line("Generation", s(item, "/metadata/generation"));
    match kind {
        Kind::Cluster => {
            line("State", s(item, "/status/state"));
            line("Last seen", s(item, "/status/lastSeen"));
            line("Agent", s(item, "/status/agentVersion"));
            line("Kubernetes", s(item, "/status/kubernetesVersion"));
            line("Nodes ready", row(kind, item)[3].clone());
        }
        Kind::Bundle => {
            line("State", bundle_state(item));
            line("Digest", s(item, "/status/digest"));
            line("Observed generation", s(item, "/status/observedGeneration"));
            line("Paused", s(item, "/spec/paused"));
        }
        Kind::ClusterGroup => {
            line("Selector", selector_text(item.pointer("/spec/selector")));
            line("Clusters", s(item, "/status/clusterCount"));
            line("Online", s(item, "/status/onlineCount"));
        }
        Kind::RegistrationToken => {
            line("State", s(item, "/status/state"));
            line("Uses", s(item, "/status/uses"));
            line("Expires", s(item, "/spec/expiresAt"));
        }
        Kind::GitRepo => {
            line("Repo", s(item, "/spec/repo"));
            line("Commit", s(item, "/status/commit"));
            line("Last fetched", s(item, "/status/lastFetched"));
            line("Next fetch", s(item, "/status/nextFetch"));
            line("Error", s(item, "/status/error"));
        }
        Kind::Secret => {
            line("Type", s(item, "/spec/type"));
        }
    }
    let mut section = |title: &str, value: &Value| -> anyhow::Result<()> {
        text.push_str(title);
        text.push_str(":\n");
        for line in serde_saphyr::to_string(value)?.lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
        Ok(())
    };
    if let Some(status) = item.get("status") {
        section("Status", status)?;
    }
    if kind != Kind::Cluster
        && let Some(spec) = item.get("spec")
    {
        section("Spec", spec)?;
    }
    out(&text)
}
