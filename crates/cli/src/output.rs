//! Printing objects: kubectl-style tables, JSON (`{"items": [...]}` for lists) and YAML, and the
//! `describe` view, each kind's columns and facts read from its typed document; and a bundle's
//! rollout status and revision history.

use std::{collections::BTreeMap, io::Write};

use anyhow::Context;
use flotilla_api::{
    Bundle, BundleRevision, BundleState, Cluster, ClusterGroup, GitRepo, LabelSelector,
    RegistrationToken, RolloutStatus, Secret, WaveStatus,
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

// -- rollouts and revisions -------------------------------------------------------------------

/// Width of the keys in the rollout status' facts (`Revisions:  `).
const ROLLOUT_KEY_WIDTH: usize = 12;

/// A duration in seconds as a table cell: `45s`, `1m30s`, `2h5m`.
pub fn seconds_text(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3_599 if seconds.is_multiple_of(60) => format!("{}m", seconds / 60),
        60..=3_599 => format!("{}m{}s", seconds / 60, seconds % 60),
        _ if seconds % 3_600 / 60 == 0 => format!("{}h", seconds / 3_600),
        _ => format!("{}h{}m", seconds / 3_600, seconds % 3_600 / 60),
    }
}

/// A digest or commit cut to its first 12 characters (after `sha256:`), as the tables show
/// commits.
fn short(text: &str) -> String {
    let text = text.strip_prefix("sha256:").unwrap_or(text);
    text.chars().take(12).collect()
}

/// One line of text: an agent's messages can span several.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The wave a run is in, with its place: `canary (1/3)`.
fn current_wave(status: &RolloutStatus) -> Option<(String, &WaveStatus)> {
    let index = usize::try_from(status.current_wave?).ok()?;
    let wave = status.waves.get(index)?;
    Some((
        format!("{} ({}/{})", wave.name, index + 1, status.waves.len()),
        wave,
    ))
}

/// `stable 3, candidate 4, held 2`.
fn revisions_text(status: &RolloutStatus) -> String {
    let mut parts = vec![format!("stable {}", status.stable_revision)];
    if let Some(candidate) = status.candidate_revision {
        parts.push(format!("candidate {candidate}"));
    }
    if let Some(held) = status.held_revision {
        parts.push(format!("held {held}"));
    }
    parts.join(", ")
}

/// A time with its age: `2026-12-07T10:00:00Z (5m ago)`.
fn time_with_age(time: Option<&str>) -> String {
    match time {
        Some(time) if !age(Some(time)).is_empty() => format!("{time} ({} ago)", age(Some(time))),
        Some(time) => time.to_string(),
        None => String::new(),
    }
}

/// A `Key:  value` line of the rollout status; nothing when the value is empty.
fn rollout_fact(text: &mut String, key: &str, value: String) {
    if !value.is_empty() {
        text.push_str(&format!(
            "{:<width$}{value}\n",
            format!("{key}:"),
            width = ROLLOUT_KEY_WIDTH
        ));
    }
}

/// Rows aligned in columns (kubectl's padding), without the spaces an empty last cell leaves.
fn aligned(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<String> {
    let mut writer = tabwriter::TabWriter::new(Vec::new()).padding(3);
    writeln!(writer, "{}", header.join("\t"))?;
    for row in rows {
        writeln!(writer, "{}", row.join("\t"))?;
    }
    let table = writer.into_inner().context("write the table")?;
    let table = String::from_utf8(table).context("the table as text")?;
    Ok(table
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect())
}

/// `rollout status` as text: the run's facts, a row per wave, then why it stopped.
pub fn rollout_status_text(bundle: &str, status: &RolloutStatus) -> anyhow::Result<String> {
    let mut text = String::new();
    rollout_fact(&mut text, "Bundle", bundle.to_string());
    let phase = if status.phase.is_empty() {
        "None (no rollout has run)".to_string()
    } else {
        status.phase.clone()
    };
    rollout_fact(&mut text, "Phase", phase);
    rollout_fact(&mut text, "Revisions", revisions_text(status));
    let wave = current_wave(status).map(|(wave, _)| wave);
    rollout_fact(&mut text, "Wave", self::text(wave));
    rollout_fact(
        &mut text,
        "Started",
        time_with_age(status.started.as_deref()),
    );
    rollout_fact(
        &mut text,
        "Updated",
        time_with_age(status.updated.as_deref()),
    );
    if !status.waves.is_empty() {
        let rows: Vec<Vec<String>> = status
            .waves
            .iter()
            .map(|wave| {
                vec![
                    wave.name.clone(),
                    wave.phase.clone(),
                    wave.clusters.to_string(),
                    wave.updated.to_string(),
                    wave.ready.to_string(),
                    wave.done.to_string(),
                    wave.failed.to_string(),
                    self::text(wave.soak_remaining_seconds.map(seconds_text)),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&aligned(
            &[
                "NAME",
                "PHASE",
                "CLUSTERS",
                "UPDATED",
                "READY",
                "DONE",
                "FAILED",
                "SOAK-REMAINING",
            ],
            &rows,
        )?);
    }
    if let Some(reason) = &status.reason {
        text.push('\n');
        rollout_fact(&mut text, "Reason", reason.reason.clone());
        rollout_fact(&mut text, "Message", one_line(&reason.message));
        rollout_fact(&mut text, "Wave", self::text(reason.wave.as_deref()));
        if !reason.failed_clusters.is_empty() {
            text.push_str("Failed clusters:\n");
        }
        for failed in &reason.failed_clusters {
            text.push_str(&format!("  {} ({})", failed.cluster, failed.reason));
            if !failed.message.is_empty() {
                text.push_str(&format!(": {}", one_line(&failed.message)));
            }
            text.push('\n');
            if !failed.objects.is_empty() {
                text.push_str(&format!("    objects: {}\n", failed.objects.join(", ")));
            }
        }
    }
    Ok(text)
}

/// `rollout status --watch` as one line per change: the phase, the wave in progress and its
/// counts, and why the run stopped.
pub fn rollout_progress_line(bundle: &str, status: &RolloutStatus) -> String {
    if status.phase.is_empty() {
        return format!(
            "bundle/{bundle} has no rollout (stable revision {})",
            status.stable_revision
        );
    }
    let mut line = format!("bundle/{bundle} {}", status.phase);
    if let Some(candidate) = status.candidate_revision {
        line.push_str(&format!(" revision {candidate}"));
    }
    if let Some((name, wave)) = current_wave(status) {
        line.push_str(&format!(
            ", wave {name}: {}/{} done, {} ready, {} failed",
            wave.done, wave.clusters, wave.ready, wave.failed
        ));
        if let Some(seconds) = wave.soak_remaining_seconds {
            line.push_str(&format!(", soak {} left", seconds_text(seconds)));
        }
    }
    if let Some(reason) = &status.reason {
        line.push_str(&format!(": {}", one_line(&reason.message)));
    }
    line
}

pub fn print_rollout_status(
    bundle: &str,
    status: &RolloutStatus,
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&to_json(status)?),
        Format::Yaml => print_yaml(&to_json(status)?),
        Format::Table => out(&rollout_status_text(bundle, status)?),
    }
}

/// `history bundle NAME` as a table, newest revision first as the server sent them.
pub fn revisions_table(revisions: &[BundleRevision]) -> anyhow::Result<String> {
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|revision| {
            vec![
                revision.revision.to_string(),
                revision.generation.to_string(),
                short(&revision.digest),
                text(revision.commit.as_deref().map(short)),
                revision.author.clone(),
                age(Some(&revision.created)),
                revision.phase.clone(),
            ]
        })
        .collect();
    aligned(
        &[
            "REVISION",
            "GENERATION",
            "DIGEST",
            "COMMIT",
            "AUTHOR",
            "CREATED",
            "PHASE",
        ],
        &rows,
    )
}

pub fn print_revisions(revisions: &[BundleRevision], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&json!({ "items": to_json(revisions)? })),
        Format::Yaml => print_yaml(&json!({ "items": to_json(revisions)? })),
        Format::Table if revisions.is_empty() => {
            eprintln!("No revisions found.");
            Ok(())
        }
        Format::Table => out(&revisions_table(revisions)?),
    }
}

#[cfg(test)]
mod tests {
    use flotilla_api::{
        BundleSpec, BundleStatus, BundleSummary, ClusterGroupSpec, FailedCluster, NodeCounts,
        RegistrationTokenSpec, RolloutReason,
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

    fn wave(name: &str, phase: &str, counts: [u64; 5]) -> WaveStatus {
        let [clusters, updated, ready, done, failed] = counts;
        WaveStatus {
            name: name.into(),
            phase: phase.into(),
            clusters,
            updated,
            ready,
            done,
            failed,
            ..WaveStatus::default()
        }
    }

    fn rolled_back() -> RolloutStatus {
        RolloutStatus {
            phase: "RolledBack".into(),
            stable_revision: 3,
            candidate_revision: Some(4),
            held_revision: Some(4),
            waves: vec![
                wave("canary", "Failed", [2, 2, 1, 1, 1]),
                wave("rest", "Waiting", [10, 0, 0, 0, 0]),
            ],
            reason: Some(RolloutReason {
                reason: "WaveFailed".into(),
                message: "wave canary: 1 of 2 clusters failed, at most 0 may".into(),
                wave: Some("canary".into()),
                failed_clusters: vec![
                    FailedCluster {
                        cluster: "store-3".into(),
                        reason: "Error".into(),
                        message: "ConfigMap apps/web: forbidden\n  retrying\n".into(),
                        objects: vec!["ConfigMap/apps/web".into()],
                    },
                    FailedCluster {
                        cluster: "store-9".into(),
                        reason: "Offline".into(),
                        ..FailedCluster::default()
                    },
                ],
            }),
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn rollout_status_shows_revisions_a_row_per_wave_and_the_failed_clusters() {
        assert_eq!(
            rollout_status_text("web", &rolled_back()).unwrap(),
            "\
Bundle:     web
Phase:      RolledBack
Revisions:  stable 3, candidate 4, held 4

NAME     PHASE     CLUSTERS   UPDATED   READY   DONE   FAILED   SOAK-REMAINING
canary   Failed    2          2         1       1      1
rest     Waiting   10         0         0       0      0

Reason:     WaveFailed
Message:    wave canary: 1 of 2 clusters failed, at most 0 may
Wave:       canary
Failed clusters:
  store-3 (Error): ConfigMap apps/web: forbidden; retrying
    objects: ConfigMap/apps/web
  store-9 (Offline)
"
        );
    }

    #[test]
    fn a_running_wave_shows_its_place_and_soak_and_a_bundle_without_a_run_says_so() {
        let mut status = rolled_back();
        status.phase = "Progressing".into();
        status.held_revision = None;
        status.reason = None;
        status.current_wave = Some(1);
        status.waves[0] = wave("canary", "Done", [2, 2, 2, 2, 0]);
        status.waves[1] = WaveStatus {
            soak_remaining_seconds: Some(90),
            ..wave("rest", "Soaking", [10, 4, 3, 1, 0])
        };
        let text = rollout_status_text("web", &status).unwrap();
        assert!(text.contains("Wave:       rest (2/2)\n"), "{text}");
        assert!(
            text.contains(
                "rest     Soaking   10         4         3       1      0        1m30s\n"
            ),
            "{text}"
        );
        assert!(!text.contains("Reason:"), "{text}");
        assert_eq!(
            rollout_progress_line("web", &status),
            "bundle/web Progressing revision 4, wave rest (2/2): 1/10 done, 3 ready, 0 failed, soak 1m30s left"
        );

        let never = RolloutStatus {
            stable_revision: 1,
            ..RolloutStatus::default()
        };
        assert_eq!(
            rollout_status_text("web", &never).unwrap(),
            "Bundle:     web\nPhase:      None (no rollout has run)\nRevisions:  stable 1\n"
        );
        assert_eq!(
            rollout_progress_line("web", &never),
            "bundle/web has no rollout (stable revision 1)"
        );
    }

    #[test]
    fn a_stopped_runs_line_carries_its_reason_on_one_line() {
        let mut status = rolled_back();
        status.reason.as_mut().unwrap().message = "wave canary failed:\n1 of 2".into();
        assert_eq!(
            rollout_progress_line("web", &status),
            "bundle/web RolledBack revision 4: wave canary failed:; 1 of 2"
        );
    }

    #[test]
    fn history_rows_cut_digests_and_commits_and_show_the_age() {
        let three_hours_ago = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3_600 + 60),
        )
        .to_string();
        let revisions = [
            BundleRevision {
                revision: 2,
                generation: 5,
                digest: "sha256:0123456789abcdef0123".into(),
                commit: Some("fedcba9876543210fedcba98".into()),
                author: "gitrepo/apps".into(),
                created: three_hours_ago.clone(),
                phase: "Candidate".into(),
                ..BundleRevision::default()
            },
            BundleRevision {
                revision: 1,
                generation: 4,
                digest: "sha256:aaaaaaaaaaaaaaaaaaaa".into(),
                author: "admin".into(),
                created: three_hours_ago,
                ..BundleRevision::default()
            },
        ];
        assert_eq!(
            revisions_table(&revisions).unwrap(),
            "\
REVISION   GENERATION   DIGEST         COMMIT         AUTHOR         CREATED   PHASE
2          5            0123456789ab   fedcba987654   gitrepo/apps   3h        Candidate
1          4            aaaaaaaaaaaa                  admin          3h
"
        );
    }

    #[test]
    fn durations_read_as_the_largest_units_that_fit() {
        assert_eq!(seconds_text(0), "0s");
        assert_eq!(seconds_text(59), "59s");
        assert_eq!(seconds_text(60), "1m");
        assert_eq!(seconds_text(90), "1m30s");
        assert_eq!(seconds_text(3_600), "1h");
        assert_eq!(seconds_text(3_600 * 2 + 5 * 60 + 7), "2h5m");
    }
}
