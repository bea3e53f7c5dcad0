//! Renders in-memory entries as API documents (what reads return and what writes answer with).

pub mod rollout;

use flotilla_api::{
    API_VERSION, Bundle, BundleRevision, BundleState, BundleStatus, Cluster, ClusterBundleStatus,
    ClusterGroup, ClusterGroupSpec, ClusterGroupStatus, ClusterSpec, ClusterStatus, GitRepo, Kind,
    ObjectMeta, ProblemCluster, RegistrationToken, RegistrationTokenStatus, Secret, SecretSpec,
    SecretStatus, TargetDigest,
};

use crate::{
    fleet::{BundleEntry, Fleet, GroupEntry, TokenEntry},
    state::rfc3339,
};

/// How many problem clusters a bundle's status lists; the summary counts the rest.
pub const PROBLEM_CLUSTERS_SHOWN: usize = 10;

pub fn cluster(fleet: &Fleet, ordinal: u32) -> Option<Cluster> {
    let entry = fleet.cluster(ordinal)?;
    let last_seen = entry.last_seen.load(std::sync::atomic::Ordering::Relaxed);
    let bundles = entry
        .deployments
        .iter()
        .filter_map(|deployment| {
            let bundle = fleet.bundle(deployment.bundle)?;
            let current = bundle
                .live
                .as_ref()
                .is_some_and(|live| live.epoch == deployment.counted_epoch);
            let state = if current {
                deployment.counted
            } else {
                BundleState::Pending
            };
            let message = deployment
                .report
                .as_ref()
                .filter(|_| state != BundleState::Pending)
                .and_then(|report| report.message.clone());
            Some(ClusterBundleStatus {
                bundle: bundle.name.clone(),
                state,
                message,
            })
        })
        .collect();
    Some(Cluster {
        api_version: API_VERSION.into(),
        kind: "Cluster".into(),
        metadata: ObjectMeta {
            name: entry.name.to_string(),
            labels: fleet.labels_map(&entry.labels),
            generation: entry.generation,
            resource_version: Some(entry.revision.to_string()),
            creation_timestamp: Some(rfc3339(entry.created)),
            ..ObjectMeta::default()
        },
        spec: ClusterSpec {},
        status: Some(ClusterStatus {
            state: entry.state,
            last_seen: (last_seen > 0).then(|| rfc3339(last_seen)),
            registered_at: Some(rfc3339(entry.created)),
            facts: entry.facts.clone(),
            bundles,
        }),
    })
}

pub fn bundle(fleet: &Fleet, entry: &BundleEntry) -> Bundle {
    let problem_clusters = entry
        .problems
        .iter()
        .take(PROBLEM_CLUSTERS_SHOWN)
        .filter_map(|ordinal| {
            let cluster = fleet.cluster(ordinal)?;
            let deployment = cluster
                .deployments
                .iter()
                .find(|d| fleet.bundle(d.bundle).is_some_and(|b| b.name == entry.name))?;
            Some(ProblemCluster {
                name: cluster.name.to_string(),
                state: deployment.counted,
                message: deployment.report.as_ref().and_then(|r| r.message.clone()),
            })
        })
        .collect();
    Bundle {
        api_version: API_VERSION.into(),
        kind: "Bundle".into(),
        metadata: entry.metadata.clone(),
        spec: entry.spec.clone(),
        status: Some(BundleStatus {
            observed_generation: entry.live.as_ref().map_or(0, |live| live.generation),
            digest: entry
                .live
                .as_ref()
                .map(|live| live.digest.clone())
                .unwrap_or_default(),
            summary: fleet.summary(entry),
            problem_clusters,
            state: bundle_state(fleet, entry).to_string(),
            conditions: bundle_conditions(fleet, entry),
        }),
    }
}

/// A bundle's retained revisions as `flotilla history bundle` lists them: newest first, the live
/// one `Stable`.
pub fn bundle_revisions(entry: &BundleEntry) -> Vec<BundleRevision> {
    let live = entry.live.as_ref().map(|live| live.revision);
    let candidate = entry.candidate.as_ref().map(|c| c.revision);
    // A revision an automatic rollback sent back is held until a person promotes it again.
    let failed = entry
        .rollout
        .as_ref()
        .filter(|r| r.phase() == Some(flotilla_core::rollout::planner::Phase::RolledBack))
        .map(|r| r.to);
    entry
        .revisions
        .iter()
        .rev()
        .map(|(&number, revision)| BundleRevision {
            revision: number,
            generation: revision.live.generation,
            digest: revision.live.digest.clone(),
            target_digests: revision
                .live
                .targets
                .iter()
                .zip(&revision.live.target_digests)
                .enumerate()
                .filter_map(|(index, (target, digest))| {
                    Some(TargetDigest {
                        target: target.name.clone().unwrap_or_else(|| index.to_string()),
                        digest: digest.clone()?,
                    })
                })
                .collect(),
            commit: revision.commit.clone(),
            author: revision.author.clone(),
            created: rfc3339(revision.created),
            phase: if live == Some(number) {
                "Stable"
            } else if candidate == Some(number) {
                "Candidate"
            } else if failed == Some(number) {
                "Failed"
            } else {
                ""
            }
            .to_string(),
        })
        .collect()
}

/// The conditions a bundle does not meet: references in its spec that name nothing.
fn bundle_conditions(fleet: &Fleet, entry: &BundleEntry) -> Vec<flotilla_api::Condition> {
    use crate::fleet::dependencies::Unresolved;
    fleet
        .unresolved_references(entry)
        .into_iter()
        .map(|unresolved| flotilla_api::Condition {
            type_: "ReferencesResolved".into(),
            status: "False".into(),
            reason: match unresolved {
                Unresolved::ClusterGroup { .. } => "ClusterGroupNotFound",
                Unresolved::Dependency { .. } => "DependencyNotFound",
            }
            .into(),
            message: unresolved.to_string(),
        })
        .collect()
}

/// A bundle's overall state, for listing and filtering. A target naming a cluster group that
/// does not exist is an Error: it silently matches no cluster, and the counts alone would show
/// Ready.
pub fn bundle_state(fleet: &Fleet, entry: &BundleEntry) -> &'static str {
    let summary = fleet.summary(entry);
    if entry.live.is_none() {
        "Paused"
    } else if fleet.names_missing_group(entry) {
        "Error"
    } else {
        summary.worst_state()
    }
}

pub fn group(fleet: &Fleet, name: &str, entry: &GroupEntry) -> ClusterGroup {
    let mut metadata = entry.metadata.clone();
    metadata.name = name.to_string();
    ClusterGroup {
        api_version: API_VERSION.into(),
        kind: "ClusterGroup".into(),
        metadata,
        spec: ClusterGroupSpec {
            selector: entry.selector.to_api(),
        },
        status: Some(ClusterGroupStatus {
            cluster_count: entry.members.len(),
            online_count: entry.members.intersection_len(fleet.online()),
        }),
    }
}

pub fn token_state(entry: &TokenEntry, now: u64) -> &'static str {
    if entry.expires_at.is_some_and(|at| at <= now) {
        "Expired"
    } else if entry.spec.max_uses.is_some_and(|max| entry.uses >= max) {
        "UsedUp"
    } else {
        "Active"
    }
}

pub fn token(entry: &TokenEntry, now: u64, secret: Option<String>) -> RegistrationToken {
    let mut spec = entry.spec.clone();
    spec.expires_at = entry.expires_at.map(rfc3339);
    RegistrationToken {
        api_version: API_VERSION.into(),
        kind: "RegistrationToken".into(),
        metadata: entry.metadata.clone(),
        spec,
        status: Some(RegistrationTokenStatus {
            uses: entry.uses,
            state: token_state(entry, now).into(),
            token: secret,
        }),
    }
}

/// A GitRepo with its status.
pub fn gitrepo(fleet: &Fleet, name: &str) -> Option<GitRepo> {
    let entry = fleet.gitrepos().get(name)?;
    Some(GitRepo {
        api_version: API_VERSION.into(),
        kind: Kind::GitRepo.as_str().into(),
        metadata: entry.metadata.clone(),
        spec: entry.spec.clone(),
        status: Some(entry.status.clone()),
    })
}

/// A secret as the API shows it: its keys, never its values.
pub fn secret(fleet: &Fleet, name: &str) -> Option<Secret> {
    let entry = fleet.secrets().get(name)?;
    Some(Secret {
        api_version: API_VERSION.into(),
        kind: Kind::Secret.as_str().into(),
        metadata: entry.metadata.clone(),
        spec: SecretSpec {
            secret_type: entry.spec.secret_type.clone(),
            string_data: Default::default(),
        },
        status: Some(SecretStatus {
            keys: entry.spec.string_data.keys().cloned().collect(),
        }),
    })
}
