//! Each kind's table columns (`-o wide` adds some) and `describe` facts, read from its typed
//! document.

use flotilla_api::{
    Bundle, BundleState, Cluster, ClusterGroup, GitRepo, RegistrationToken, Secret,
};
use flotilla_client::Resource;

use super::cells::{age, labels, selector_text, short, text};

/// How one kind shows in a table and in `describe`.
pub trait Printable: Resource {
    /// The table's column headers; a `STATE` column is coloured and counted in the summary.
    const HEADERS: &'static [&'static str];
    /// The headers `-o wide` adds after `HEADERS`.
    const WIDE_HEADERS: &'static [&'static str];
    /// Whether `describe` shows the spec (a cluster's spec is empty: its labels are the spec).
    const DESCRIBE_SPEC: bool = true;

    /// The table row, a cell per header.
    fn row(&self) -> Vec<String>;
    /// The cells `-o wide` adds, one per `WIDE_HEADERS`.
    fn wide_row(&self) -> Vec<String>;
    /// The kind's key facts in `describe`, after name, kind, labels, creation and generation;
    /// empty values are left out.
    fn facts(&self) -> Vec<(&'static str, String)>;
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
    const WIDE_HEADERS: &'static [&'static str] = &["AGENT", "REGISTERED", "NOT-READY-BUNDLES"];
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

    fn wide_row(&self) -> Vec<String> {
        let status = self.status.as_ref();
        let not_ready: Vec<&str> = status
            .map_or(&[][..], |status| &status.bundles)
            .iter()
            .filter(|bundle| bundle.state != BundleState::Ready)
            .map(|bundle| bundle.bundle.as_str())
            .collect();
        vec![
            text(status.and_then(|status| status.facts.agent_version.as_deref())),
            age(status.and_then(|status| status.registered_at.as_deref())),
            not_ready.join(","),
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
pub(super) fn bundle_state(bundle: &Bundle) -> String {
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
    const WIDE_HEADERS: &'static [&'static str] = &["DIGEST", "GENERATION", "PAUSED", "LABELS"];

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

    fn wide_row(&self) -> Vec<String> {
        let status = self.status.as_ref();
        vec![
            text(status.map(|status| short(&status.digest))),
            self.metadata.generation.to_string(),
            self.spec.paused.to_string(),
            labels(&self.metadata.labels),
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
    const WIDE_HEADERS: &'static [&'static str] = &["AGE", "LABELS"];

    fn row(&self) -> Vec<String> {
        let status = self.status.as_ref();
        vec![
            self.metadata.name.clone(),
            text(status.map(|status| status.cluster_count)),
            text(status.map(|status| status.online_count)),
            selector_text(&self.spec.selector),
        ]
    }

    fn wide_row(&self) -> Vec<String> {
        vec![
            age(self.metadata.creation_timestamp.as_deref()),
            labels(&self.metadata.labels),
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
    const WIDE_HEADERS: &'static [&'static str] = &["CLUSTER-LABELS", "LABELS"];

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

    fn wide_row(&self) -> Vec<String> {
        vec![labels(&self.spec.labels), labels(&self.metadata.labels)]
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
    const WIDE_HEADERS: &'static [&'static str] = &["PATHS", "FAILURES", "NEXT-FETCH", "LABELS"];

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

    fn wide_row(&self) -> Vec<String> {
        let status = self.status.as_ref();
        vec![
            self.spec.paths.join(","),
            text(status.map(|status| status.failures)),
            text(status.and_then(|status| status.next_fetch.as_deref())),
            labels(&self.metadata.labels),
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
    const WIDE_HEADERS: &'static [&'static str] = &["LABELS"];

    fn row(&self) -> Vec<String> {
        vec![
            self.metadata.name.clone(),
            self.spec.secret_type.clone(),
            text(self.status.as_ref().map(|status| status.keys.join(","))),
            age(self.metadata.creation_timestamp.as_deref()),
        ]
    }

    fn wide_row(&self) -> Vec<String> {
        vec![labels(&self.metadata.labels)]
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        vec![("Type", self.spec.secret_type.clone())]
    }
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

    fn cells_per_header<K: Printable>() {
        let item = K::new("x", Default::default());
        assert_eq!(item.row().len(), K::HEADERS.len(), "{}", K::KIND);
        assert_eq!(item.wide_row().len(), K::WIDE_HEADERS.len(), "{}", K::KIND);
    }

    #[test]
    fn every_kind_has_a_cell_per_header_in_both_widths() {
        for kind in flotilla_api::Kind::ALL {
            flotilla_client::with_resource!(kind, K => cells_per_header::<K>());
        }
    }
}
