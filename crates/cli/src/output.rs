//! Printing objects: kubectl-style tables, JSON (`{"items": [...]}` for lists) and YAML, and the
//! `describe` view, each kind's columns and facts read from its typed document.

use std::{collections::BTreeMap, io::Write};

use anyhow::Context;
use flotilla_api::{
    Bundle, BundleState, Cluster, ClusterGroup, GitRepo, LabelSelector, RegistrationToken, Secret,
};
use flotilla_client::Resource;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// How one kind shows in a table and in `describe`.
pub trait Printable: Resource {
    /// The table's column headers.
    const HEADERS: &'static [&'static str];
    /// Whether `describe` shows the spec (a cluster's spec is empty: its labels are the spec).
    const DESCRIBE_SPEC: bool = true;

    /// The table row, a cell per header.
    fn row(&self) -> Vec<String>;
    /// The kind's key facts in `describe`, after name, kind, labels, creation and generation;
    /// empty values are left out.
    fn facts(&self) -> Vec<(&'static str, String)>;
}

/// Text of an optional value; empty when absent.
fn text<T: ToString>(value: Option<T>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

fn labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// "3m ago"-style age of an RFC 3339 time.
fn age(text: Option<&str>) -> String {
    let Some(Ok(time)) = text.map(humantime::parse_rfc3339_weak) else {
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

/// A selector in its string form, e.g. `env=prod,tier in (a,b)`; `<all>` when it matches
/// everything.
fn selector_text(selector: &LabelSelector) -> String {
    match flotilla_core::selector::Selector::from_api(selector) {
        Ok(selector) if selector.is_everything() => "<all>".into(),
        Ok(selector) => selector.to_string(),
        Err(_) => to_json(selector)
            .map(|json| json.to_string())
            .unwrap_or_default(),
    }
}

fn cluster_nodes(cluster: &Cluster) -> String {
    match cluster
        .status
        .as_ref()
        .and_then(|status| status.facts.nodes)
    {
        Some(nodes) => format!("{}/{}", nodes.ready, nodes.total),
        None => String::new(),
    }
}

impl Printable for Cluster {
    const HEADERS: &'static [&'static str] = &[
        "NAME",
        "STATE",
        "BUNDLES-READY",
        "NODES",
        "KUBERNETES",
        "LAST-SEEN",
        "LABELS",
    ];
    const DESCRIBE_SPEC: bool = false;

    fn row(&self) -> Vec<String> {
        let status = self.status.as_ref();
        let bundles = status.map_or(&[][..], |status| &status.bundles);
        let ready = bundles
            .iter()
            .filter(|bundle| bundle.state == BundleState::Ready)
            .count();
        vec![
            self.metadata.name.clone(),
            text(status.map(|status| status.state.as_str())),
            format!("{ready}/{}", bundles.len()),
            cluster_nodes(self),
            text(status.and_then(|status| status.facts.kubernetes_version.as_deref())),
            age(status.and_then(|status| status.last_seen.as_deref())),
            labels(&self.metadata.labels),
        ]
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let status = self.status.as_ref();
        vec![
            ("State", text(status.map(|status| status.state.as_str()))),
            (
                "Last seen",
                text(status.and_then(|status| status.last_seen.as_deref())),
            ),
            (
                "Agent",
                text(status.and_then(|status| status.facts.agent_version.as_deref())),
            ),
            (
                "Kubernetes",
                text(status.and_then(|status| status.facts.kubernetes_version.as_deref())),
            ),
            ("Nodes ready", cluster_nodes(self)),
        ]
    }
}

/// The state column of a bundle: the server's `status.state`, or (from an older server) derived
/// from its summary the way the server filters by it.
fn bundle_state(bundle: &Bundle) -> String {
    let Some(status) = &bundle.status else {
        return "Paused".into();
    };
    if !status.state.is_empty() {
        return status.state.clone();
    }
    if status.digest.is_empty() {
        "Paused".into()
    } else {
        status.summary.worst_state().into()
    }
}

impl Printable for Bundle {
    const HEADERS: &'static [&'static str] = &[
        "NAME",
        "STATE",
        "DESIRED",
        "READY",
        "NOT-READY",
        "MODIFIED",
        "ERROR",
        "PENDING",
        "AGE",
    ];

    fn row(&self) -> Vec<String> {
        let summary = self.status.as_ref().map(|status| status.summary);
        vec![
            self.metadata.name.clone(),
            bundle_state(self),
            text(summary.map(|summary| summary.desired)),
            text(summary.map(|summary| summary.ready)),
            text(summary.map(|summary| summary.not_ready)),
            text(summary.map(|summary| summary.modified)),
            text(summary.map(|summary| summary.error)),
            text(summary.map(|summary| summary.pending)),
            age(self.metadata.creation_timestamp.as_deref()),
        ]
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let status = self.status.as_ref();
        vec![
            ("State", bundle_state(self)),
            ("Digest", text(status.map(|status| &status.digest))),
            (
                "Observed generation",
                text(status.map(|status| status.observed_generation)),
            ),
            ("Paused", text(self.spec.paused.then_some(true))),
        ]
    }
}

impl Printable for ClusterGroup {
    const HEADERS: &'static [&'static str] = &["NAME", "CLUSTERS", "ONLINE", "SELECTOR"];

    fn row(&self) -> Vec<String> {
        let status = self.status.as_ref();
        vec![
            self.metadata.name.clone(),
            text(status.map(|status| status.cluster_count)),
            text(status.map(|status| status.online_count)),
            selector_text(&self.spec.selector),
        ]
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let status = self.status.as_ref();
        vec![
            ("Selector", selector_text(&self.spec.selector)),
            ("Clusters", text(status.map(|status| status.cluster_count))),
            ("Online", text(status.map(|status| status.online_count))),
        ]
    }
}

impl Printable for RegistrationToken {
    const HEADERS: &'static [&'static str] =
        &["NAME", "STATE", "USES", "MAX-USES", "EXPIRES", "AGE"];

    fn row(&self) -> Vec<String> {
        let status = self.status.as_ref();
        vec![
            self.metadata.name.clone(),
            text(status.map(|status| &status.state)),
            text(status.map(|status| status.uses)),
            self.spec
                .max_uses
                .map_or_else(|| "unlimited".into(), |uses| uses.to_string()),
            self.spec
                .expires_at
                .clone()
                .unwrap_or_else(|| "never".into()),
            age(self.metadata.creation_timestamp.as_deref()),
        ]
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let status = self.status.as_ref();
        vec![
            ("State", text(status.map(|status| &status.state))),
            ("Uses", text(status.map(|status| status.uses))),
            ("Expires", text(self.spec.expires_at.as_deref())),
        ]
    }
}

impl Printable for GitRepo {
    const HEADERS: &'static [&'static str] = &[
        "NAME", "REPO", "REF", "COMMIT", "BUNDLES", "FETCHED", "ERROR",
    ];

    fn row(&self) -> Vec<String> {
        let status = self.status.as_ref();
        let wanted = [&self.spec.revision, &self.spec.branch]
            .into_iter()
            .flatten()
            .find(|wanted| !wanted.is_empty())
            .map_or_else(|| "main".to_string(), String::clone);
        vec![
            self.metadata.name.clone(),
            self.spec.repo.clone(),
            wanted,
            text(status.and_then(|status| status.commit.as_deref()))
                .chars()
                .take(12)
                .collect(),
            status.map_or(0, |status| status.bundles.len()).to_string(),
            age(status.and_then(|status| status.last_fetched.as_deref())),
            text(status.and_then(|status| status.error.as_deref())),
        ]
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let status = self.status.as_ref();
        vec![
            ("Repo", self.spec.repo.clone()),
            (
                "Commit",
                text(status.and_then(|status| status.commit.as_deref())),
            ),
            (
                "Last fetched",
                text(status.and_then(|status| status.last_fetched.as_deref())),
            ),
            (
                "Next fetch",
                text(status.and_then(|status| status.next_fetch.as_deref())),
            ),
            (
                "Error",
                text(status.and_then(|status| status.error.as_deref())),
            ),
        ]
    }
}

impl Printable for Secret {
    const HEADERS: &'static [&'static str] = &["NAME", "TYPE", "KEYS", "AGE"];

    fn row(&self) -> Vec<String> {
        vec![
            self.metadata.name.clone(),
            self.spec.secret_type.clone(),
            text(self.status.as_ref().map(|status| status.keys.join(","))),
            age(self.metadata.creation_timestamp.as_deref()),
        ]
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        vec![("Type", self.spec.secret_type.clone())]
    }
}

/// A document as JSON with its keys sorted, as the CLI has always printed it.
fn to_json<T: Serialize + ?Sized>(document: &T) -> anyhow::Result<Value> {
    serde_json::to_value(document).context("render the document as JSON")
}

pub fn print_list<K: Printable>(items: &[K], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&json!({ "items": to_json(items)? })),
        Format::Yaml => print_yaml(&json!({ "items": to_json(items)? })),
        Format::Table => {
            if items.is_empty() {
                eprintln!("No {} found.", K::KIND.plural());
                return Ok(());
            }
            let mut writer = tabwriter::TabWriter::new(std::io::stdout()).padding(3);
            writeln!(writer, "{}", K::HEADERS.join("\t"))?;
            for item in items {
                writeln!(writer, "{}", item.row().join("\t"))?;
            }
            writer.flush().context("write table")
        }
    }
}

pub fn print_one<K: Printable>(item: &K, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&to_json(item)?),
        Format::Yaml => print_yaml(&to_json(item)?),
        Format::Table => print_list(std::slice::from_ref(item), Format::Table),
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
pub fn describe<K: Printable>(item: &K) -> anyhow::Result<()> {
    let metadata = item.metadata();
    let mut text = String::new();
    let mut line = |key: &str, value: String| {
        if !value.is_empty() {
            text.push_str(&format!("{:<22}{value}\n", format!("{key}:")));
        }
    };
    line("Name", metadata.name.clone());
    line("Kind", K::KIND.to_string());
    line("Labels", labels(&metadata.labels));
    line(
        "Created",
        self::text(metadata.creation_timestamp.as_deref()),
    );
    // Generation 0 (never written) is not on the wire: nothing to show.
    line(
        "Generation",
        self::text(Some(metadata.generation).filter(|generation| *generation != 0)),
    );
    for (key, value) in item.facts() {
        line(key, value);
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
    if let Some(status) = item.status() {
        section("Status", &to_json(status)?)?;
    }
    if K::DESCRIBE_SPEC {
        section("Spec", &to_json(item.spec())?)?;
    }
    out(&text)
}

#[cfg(test)]
mod tests {
    use flotilla_api::{
        BundleSpec, BundleStatus, BundleSummary, ClusterGroupSpec, NodeCounts,
        RegistrationTokenSpec,
    };

    use super::*;

    #[test]
    fn a_bundle_without_a_server_state_takes_the_worst_count_as_its_state() {
        let mut bundle = Bundle::new("web", BundleSpec::default());
        assert_eq!(bundle_state(&bundle), "Paused");
        bundle.status = Some(BundleStatus {
            digest: "sha256:1".into(),
            summary: BundleSummary {
                desired: 3,
                ready: 1,
                not_ready: 1,
                pending: 1,
                ..BundleSummary::default()
            },
            ..BundleStatus::default()
        });
        assert_eq!(bundle_state(&bundle), "NotReady");
        assert_eq!(
            bundle.row()[1..8],
            ["NotReady", "3", "1", "1", "0", "0", "1"]
        );
        bundle.status.as_mut().unwrap().state = "Error".into();
        assert_eq!(bundle_state(&bundle), "Error");
    }

    #[test]
    fn missing_status_fields_print_as_empty_cells_and_defaults_as_words() {
        let token = RegistrationToken::new("t", RegistrationTokenSpec::default());
        assert_eq!(token.row()[1..5], ["", "", "unlimited", "never"]);
        let group = ClusterGroup::new("all", ClusterGroupSpec::default());
        assert_eq!(group.row(), ["all", "", "", "<all>"]);
        let mut cluster = Cluster::new("c", Default::default());
        assert_eq!(cluster.row()[1..4], ["", "0/0", ""]);
        cluster.status = Some(Default::default());
        cluster.status.as_mut().unwrap().facts.nodes = Some(NodeCounts { total: 3, ready: 2 });
        assert_eq!(cluster.row()[1..4], ["Pending", "0/0", "2/3"]);
    }
}
