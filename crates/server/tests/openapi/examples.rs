//! Fully populated examples of the wire types: every optional field set, every list and map
//! non-empty, every flag away from its default, so each field is serialized. Struct literals
//! without `..`, so a new field does not compile until it has an example here.

use std::collections::BTreeMap;

use flotilla_api::{
    API_VERSION, BundleDependency, BundleSpec, BundleState, BundleStatus, BundleSummary,
    BundleTarget, ClusterBundleStatus, ClusterFacts, ClusterGroupSpec, ClusterGroupStatus,
    ClusterSpec, ClusterState, ClusterStatus, Condition, Customization, DriftIgnore, DriftMode,
    DriftPolicy, ErrorBody, GitRepoBundle, GitRepoSpec, GitRepoStatus, IntOrPercent, Kind,
    LabelSelector, LabelSelectorRequirement, LateJoiners, NodeCounts, Object, ObjectMeta,
    OfflinePolicy, OnFailure, Patch, ProblemCluster, RegistrationTokenSpec,
    RegistrationTokenStatus, RolloutStrategy, RolloutWave, SecretSpec, SecretStatus,
    agent::{
        BundleReport, DeployOptions, DesiredBundle, InlineContent, ObjectProblem, RegisterRequest,
        RegisterResponse, SyncRequest, SyncResponse,
    },
};
use serde::Serialize;
use serde_json::{Value, json};

pub fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("serialize")
}

pub fn full_example(kind: Kind) -> Value {
    match kind {
        Kind::Cluster => to_json(&document(kind, ClusterSpec {}, full_cluster_status())),
        Kind::ClusterGroup => to_json(&document(
            kind,
            ClusterGroupSpec {
                selector: full_selector(),
            },
            ClusterGroupStatus {
                cluster_count: 3,
                online_count: 2,
            },
        )),
        Kind::Bundle => to_json(&document(kind, full_bundle_spec(), full_bundle_status())),
        Kind::RegistrationToken => to_json(&document(
            kind,
            RegistrationTokenSpec {
                expires_at: Some("2026-12-31T00:00:00Z".into()),
                ttl: Some("1h".into()),
                max_uses: Some(10),
                labels: labels(),
            },
            RegistrationTokenStatus {
                uses: 1,
                state: "Active".into(),
                token: Some("shops.secret".into()),
            },
        )),
        Kind::GitRepo => to_json(&document(kind, full_gitrepo_spec(), full_gitrepo_status())),
        Kind::Secret => to_json(&document(
            kind,
            SecretSpec {
                secret_type: "basic-auth".into(),
                string_data: [("username".into(), "flotilla".into())].into(),
            },
            SecretStatus {
                keys: vec!["username".into()],
            },
        )),
    }
}

fn document<Spec, Status>(kind: Kind, spec: Spec, status: Status) -> Object<Spec, Status> {
    Object {
        api_version: API_VERSION.into(),
        kind: kind.as_str().into(),
        metadata: ObjectMeta {
            name: "example".into(),
            labels: labels(),
            annotations: [("note".into(), "example".into())].into(),
            generation: 2,
            resource_version: Some("17".into()),
            creation_timestamp: Some("2026-12-07T16:00:00Z".into()),
        },
        spec,
        status: Some(status),
    }
}

fn labels() -> BTreeMap<String, String> {
    [("env".into(), "prod".into())].into()
}

fn full_selector() -> LabelSelector {
    LabelSelector {
        match_labels: labels(),
        match_expressions: vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: vec!["a".into(), "b".into()],
        }],
    }
}

fn config_map() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"k": "v"}})
}

fn full_patch() -> Patch {
    Patch {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some("web".into()),
        patch: json!({"data": {"k": "patched"}}),
    }
}

fn full_drift() -> DriftPolicy {
    DriftPolicy {
        mode: DriftMode::Report,
        ignore: vec![DriftIgnore {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: Some("web".into()),
            paths: vec!["/spec/replicas".into()],
        }],
    }
}

fn full_target() -> BundleTarget {
    BundleTarget {
        name: Some("prod".into()),
        cluster_selector: Some(full_selector()),
        cluster_group: Some("shops".into()),
        cluster_groups: vec!["eu".into()],
        cluster_name: Some("store-1".into()),
        customization: Customization {
            namespace: Some("apps".into()),
            labels: labels(),
            patches: vec![full_patch()],
            values: [("replicas".into(), "2".into())].into(),
        },
        do_not_deploy: true,
        resources: Some(vec![config_map()]),
    }
}

fn full_bundle_spec() -> BundleSpec {
    BundleSpec {
        resources: vec![config_map()],
        targets: vec![full_target()],
        paused: true,
        keep_resources: true,
        drift: full_drift(),
        depends_on: vec![BundleDependency {
            name: Some("base".into()),
            selector: Some(full_selector()),
        }],
        rollout: Some(full_rollout()),
        revision_history_limit: Some(5),
    }
}

fn full_rollout() -> RolloutStrategy {
    RolloutStrategy {
        waves: vec![
            RolloutWave {
                name: "canary".into(),
                clusters: Some(IntOrPercent::Percent("10%".into())),
                selector: None,
                sort_by: Some("store".into()),
                mandatory: true,
                max_concurrency: Some(IntOrPercent::Int(5)),
                min_soak: Some("30s".into()),
                progress_deadline: Some("5m".into()),
                max_failures: Some(IntOrPercent::Int(0)),
                pause_after: true,
            },
            RolloutWave {
                name: "europe".into(),
                clusters: None,
                selector: Some(full_selector()),
                sort_by: None,
                mandatory: false,
                max_concurrency: Some(IntOrPercent::Percent("25%".into())),
                min_soak: None,
                progress_deadline: None,
                max_failures: Some(IntOrPercent::Percent("1%".into())),
                pause_after: false,
            },
        ],
        min_soak: Some("10s".into()),
        progress_deadline: Some("5m".into()),
        max_concurrency: Some(IntOrPercent::Percent("50%".into())),
        max_failures: Some(IntOrPercent::Percent("1%".into())),
        on_failure: OnFailure::Freeze,
        late_joiners: LateJoiners::LastWave,
        offline: OfflinePolicy::Wait,
        seed: Some(7),
    }
}

fn full_bundle_status() -> BundleStatus {
    BundleStatus {
        observed_generation: 1,
        digest: "sha256:00".into(),
        summary: BundleSummary {
            desired: 6,
            ready: 1,
            not_ready: 1,
            modified: 1,
            error: 1,
            pending: 2,
        },
        problem_clusters: vec![ProblemCluster {
            name: "store-2".into(),
            state: BundleState::Error,
            message: Some("apply failed".into()),
        }],
        state: "Error".into(),
        conditions: vec![Condition {
            type_: "TargetsResolved".into(),
            status: "False".into(),
            reason: "ClusterGroupNotFound".into(),
            message: "cluster group \"eu\" does not exist".into(),
        }],
    }
}

fn full_facts() -> ClusterFacts {
    ClusterFacts {
        agent_version: Some("0.1.0".into()),
        kubernetes_version: Some("v1.31.0".into()),
        nodes: Some(NodeCounts { total: 3, ready: 2 }),
        capacity: [("cpu".into(), "12".into())].into(),
        sync_interval_seconds: Some(30),
    }
}

fn full_cluster_status() -> ClusterStatus {
    ClusterStatus {
        state: ClusterState::Online,
        last_seen: Some("2026-12-07T16:05:00Z".into()),
        registered_at: Some("2026-12-07T16:00:00Z".into()),
        facts: full_facts(),
        bundles: vec![ClusterBundleStatus {
            bundle: "web".into(),
            state: BundleState::Modified,
            message: Some("drifted".into()),
        }],
    }
}

fn full_gitrepo_spec() -> GitRepoSpec {
    GitRepoSpec {
        repo: "https://git.example/fleet.git".into(),
        branch: Some("main".into()),
        revision: Some("v1".into()),
        paths: vec!["apps".into()],
        poll_interval: Some("60s".into()),
        targets: vec![full_target()],
        paused: true,
        client_secret_name: Some("git-auth".into()),
        keep_resources: true,
    }
}

fn full_gitrepo_status() -> GitRepoStatus {
    GitRepoStatus {
        observed_generation: 1,
        commit: Some("0123abcd".into()),
        last_fetched: Some("2026-12-07T16:05:00Z".into()),
        error: Some("fetch failed".into()),
        failures: 2,
        next_fetch: Some("2026-12-07T16:06:00Z".into()),
        bundles: vec![GitRepoBundle {
            name: "fleet-apps-web".into(),
            path: "apps/web".into(),
            digest: "sha256:00".into(),
            error: Some("render failed".into()),
        }],
    }
}

pub fn full_bundle_revision() -> flotilla_api::BundleRevision {
    flotilla_api::BundleRevision {
        revision: 3,
        generation: 7,
        digest: "sha256:00".into(),
        target_digests: vec![flotilla_api::TargetDigest {
            target: "edge".into(),
            digest: "sha256:01".into(),
        }],
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        author: "gitrepo/fleet".into(),
        created: "2026-01-02T03:04:05Z".into(),
        phase: "Stable".into(),
    }
}

pub fn full_error() -> ErrorBody {
    ErrorBody {
        code: 422,
        reason: "Invalid".into(),
        message: "metadata.labels bad key=v: use letters, digits, '-', '_' and '.'".into(),
        details: Some(flotilla_api::ErrorDetails {
            causes: vec![flotilla_api::ErrorCause {
                field: "metadata.labels".into(),
                message: "metadata.labels bad key=v: use letters, digits, '-', '_' and '.'".into(),
            }],
        }),
    }
}

pub fn full_register_request() -> RegisterRequest {
    RegisterRequest {
        token: "shops.secret".into(),
        name: "store-1".into(),
        client_id: "install-1".into(),
        labels: labels(),
        facts: full_facts(),
    }
}

pub fn full_register_response() -> RegisterResponse {
    RegisterResponse {
        name: "store-1".into(),
        credential: "credential".into(),
    }
}

pub fn full_sync_request() -> SyncRequest {
    SyncRequest {
        etag: Some("etag-1".into()),
        report_digest: "report-2".into(),
        base_digest: Some("report-1".into()),
        full: true,
        facts: Some(full_facts()),
        bundles: vec![BundleReport {
            bundle: "web".into(),
            deployment: "deployment-1".into(),
            state: BundleState::NotReady,
            message: Some("1 object not ready".into()),
            problems: vec![ObjectProblem {
                kind: "Deployment".into(),
                namespace: Some("apps".into()),
                name: "web".into(),
                message: "0/2 replicas".into(),
            }],
            more_problems: 3,
        }],
        removed: vec!["old".into()],
    }
}

pub fn full_sync_response() -> SyncResponse {
    let content = serde_json::to_vec(&vec![config_map()]).expect("serialize");
    SyncResponse {
        etag: "etag-2".into(),
        bundles: Some(vec![DesiredBundle {
            name: "web".into(),
            deployment: "deployment-2".into(),
            digest: "sha256:00".into(),
            options: DeployOptions {
                namespace: Some("apps".into()),
                labels: labels(),
                patches: vec![full_patch()],
                vars: [("cluster.name".into(), "store-1".into())].into(),
                keep_resources: true,
                drift: full_drift(),
            },
        }]),
        resync: true,
        contents: [(
            "sha256:00".into(),
            InlineContent::from_bytes(&content).expect("JSON content"),
        )]
        .into(),
    }
}
