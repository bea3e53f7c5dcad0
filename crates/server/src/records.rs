//! The formats the server writes to the store, and the bulk load that rebuilds the fleet from
//! them at start-up.

use std::{collections::BTreeMap, sync::Arc};

use flotilla_api::{
    BundleSpec, BundleTarget, ClusterFacts, ClusterGroupSpec, ClusterState, ObjectMeta,
    RegistrationTokenSpec, agent::BundleReport,
};
use flotilla_core::selector::Selector;
use flotilla_store::{Op, Snapshot, Store};
use serde::{Deserialize, Serialize};

use crate::fleet::{BundleEntry, Fleet, TokenEntry, clusters::NewCluster, live_revision};

pub const CLUSTER: &str = "Cluster";
pub const CREDENTIAL: &str = "ClusterCredential";
pub const REPORT: &str = "ClusterReport";
pub const GROUP: &str = "ClusterGroup";
pub const BUNDLE: &str = "Bundle";
pub const TOKEN: &str = "RegistrationToken";
pub const GITREPO: &str = "GitRepo";
pub const GITREPO_STATUS: &str = "GitRepoStatus";
pub const SECRET: &str = "Secret";
pub const META: &str = "Meta";
pub const ADMIN_TOKEN: &str = "admin-token";

pub fn token_uses_counter(token: &str) -> String {
    format!("token-uses/{token}")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub labels: BTreeMap<String, String>,
    pub generation: u64,
    pub created: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub client_id: String,
    pub hash: String,
}

/// Soft state: written in batches, re-sent by agents if lost.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReportRecord {
    pub state: ClusterState,
    pub last_seen: u64,
    pub facts: ClusterFacts,
    pub report_digest: Option<String>,
    pub reports: Vec<BundleReport>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GroupRecord {
    pub metadata: ObjectMeta,
    pub spec: ClusterGroupSpec,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BundleRecord {
    pub metadata: ObjectMeta,
    /// The spec without `resources`, which live in the content table under `spec_digest`.
    pub spec: BundleSpec,
    pub spec_digest: String,
    /// Digests of the spec targets' own `resources` (stripped from `spec`), by target index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spec_target_digests: Vec<Option<String>>,
    pub live: Option<LiveRecord>,
    /// The GitRepo that renders this bundle; admins cannot change or delete it directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveRecord {
    pub generation: u64,
    pub digest: String,
    pub targets: Vec<BundleTarget>,
    pub keep_resources: bool,
    #[serde(default, skip_serializing_if = "flotilla_api::DriftPolicy::is_default")]
    pub drift: flotilla_api::DriftPolicy,
    /// Digests of the targets' own `resources`, by target index. In memory `targets` carry their
    /// resources and this is empty; the stored form moves them to the content table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_digests: Vec<Option<String>>,
}

impl LiveRecord {
    /// The stored form: targets' resources moved to content ops.
    pub fn stored(&self, ops: &mut Vec<Op>) -> LiveRecord {
        let (targets, target_digests) = strip_targets(&self.targets, ops);
        LiveRecord {
            targets,
            target_digests,
            ..self.clone()
        }
    }
}

/// Moves the targets' own `resources` out into content ops (stored once by digest) and returns
/// the stripped targets with their digests by index (empty when no target has resources).
pub fn strip_targets(
    targets: &[BundleTarget],
    ops: &mut Vec<Op>,
) -> (Vec<BundleTarget>, Vec<Option<String>>) {
    if targets.iter().all(|t| t.resources.is_none()) {
        return (targets.to_vec(), Vec::new());
    }
    let mut digests = Vec::with_capacity(targets.len());
    let stripped = targets
        .iter()
        .map(|target| {
            let mut target = target.clone();
            let digest = target.resources.take().map(|resources| {
                let body = flotilla_core::digest::canonical_content(&resources);
                let digest = flotilla_core::digest::content_digest(&body);
                ops.push(Op::PutContent {
                    digest: digest.clone(),
                    body,
                });
                digest
            });
            digests.push(digest);
            target
        })
        .collect();
    (stripped, digests)
}

/// Puts the targets' resources back from the content table.
pub fn join_targets(
    mut targets: Vec<BundleTarget>,
    digests: &[Option<String>],
    content: &mut dyn FnMut(&str) -> anyhow::Result<Arc<Vec<u8>>>,
) -> anyhow::Result<Vec<BundleTarget>> {
    for (target, digest) in targets.iter_mut().zip(digests) {
        if let Some(digest) = digest {
            target.resources = Some(serde_json::from_slice(&content(digest)?)?);
        }
    }
    Ok(targets)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GitRepoRecord {
    pub metadata: ObjectMeta,
    pub spec: flotilla_api::GitRepoSpec,
}

/// Written by the git source worker after each fetch, so a restart knows the last commit.
#[derive(Debug, Serialize, Deserialize)]
pub struct GitRepoStatusRecord {
    pub status: flotilla_api::GitRepoStatus,
}

/// Secret values are stored as given (the server must use them); the data dir is the boundary.
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretRecord {
    pub metadata: ObjectMeta,
    pub spec: flotilla_api::SecretSpec,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    pub metadata: ObjectMeta,
    pub spec: RegistrationTokenSpec,
    pub secret_hash: String,
    pub expires_at: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AdminTokenRecord {
    pub hash: String,
}

pub fn put<T: Serialize>(kind: &str, name: &str, record: &T) -> Op {
    Op::Put {
        kind: kind.to_string(),
        name: name.to_string(),
        doc: serde_json::to_vec(record).unwrap_or_default(),
    }
}

pub fn delete(kind: &str, name: &str) -> Op {
    Op::Delete {
        kind: kind.to_string(),
        name: name.to_string(),
    }
}

pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// What the bulk load found besides the fleet.
pub struct Loaded {
    pub fleet: Fleet,
    pub admin_token_hash: Option<[u8; 32]>,
    /// Clusters that were Online: they get a fresh deadline instead of their stale last-seen.
    pub online: Vec<u32>,
}

fn decode<T: for<'de> Deserialize<'de>>(kind: &str, name: &str, doc: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(doc)
        .map_err(|error| anyhow::anyhow!("decode stored {kind} {name:?}: {error}"))
}

/// Rebuilds the fleet from a snapshot in one pass (content is read once per live digest).
pub fn load(snapshot: Snapshot, store: &dyn Store) -> anyhow::Result<Loaded> {
    let mut fleet = Fleet::default();
    let mut admin_token_hash = None;
    let mut by_kind: BTreeMap<&str, Vec<&flotilla_store::Record>> = BTreeMap::new();
    for record in &snapshot.records {
        by_kind
            .entry(record.kind.as_str())
            .or_default()
            .push(record);
    }
    let counters: BTreeMap<&str, i64> = snapshot
        .counters
        .iter()
        .map(|(name, value)| (name.as_str(), *value))
        .collect();
    for record in by_kind.get(META).into_iter().flatten() {
        if record.name == ADMIN_TOKEN {
            let admin: AdminTokenRecord = decode(META, &record.name, &record.doc)?;
            admin_token_hash = parse_hash(&admin.hash);
        }
    }
    for record in by_kind.get(TOKEN).into_iter().flatten() {
        let token: TokenRecord = decode(TOKEN, &record.name, &record.doc)?;
        let uses = counters
            .get(token_uses_counter(&record.name).as_str())
            .copied()
            .unwrap_or(0)
            .max(0) as u64;
        let mut metadata = token.metadata;
        metadata.resource_version = Some(record.revision.to_string());
        fleet.tokens.insert(
            record.name.clone(),
            TokenEntry {
                metadata,
                spec: token.spec,
                secret_hash: parse_hash(&token.secret_hash).unwrap_or_default(),
                expires_at: token.expires_at,
                uses,
                reserved: 0,
            },
        );
    }
    for record in by_kind.get(GROUP).into_iter().flatten() {
        let group: GroupRecord = decode(GROUP, &record.name, &record.doc)?;
        let selector = Selector::from_api(&group.spec.selector)
            .map_err(|error| anyhow::anyhow!("stored group {:?}: {error}", record.name))?;
        let mut metadata = group.metadata;
        metadata.resource_version = Some(record.revision.to_string());
        fleet.upsert_group(&record.name, metadata, selector);
    }
    for record in by_kind.get(SECRET).into_iter().flatten() {
        let secret: SecretRecord = decode(SECRET, &record.name, &record.doc)?;
        let mut metadata = secret.metadata;
        metadata.resource_version = Some(record.revision.to_string());
        fleet.secrets.insert(
            record.name.clone(),
            crate::fleet::SecretEntry {
                metadata,
                spec: secret.spec,
            },
        );
    }
    let statuses: BTreeMap<&str, GitRepoStatusRecord> = by_kind
        .get(GITREPO_STATUS)
        .into_iter()
        .flatten()
        .map(|record| {
            Ok((
                record.name.as_str(),
                decode(GITREPO_STATUS, &record.name, &record.doc)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    for record in by_kind.get(GITREPO).into_iter().flatten() {
        let repo: GitRepoRecord = decode(GITREPO, &record.name, &record.doc)?;
        let mut metadata = repo.metadata;
        metadata.resource_version = Some(record.revision.to_string());
        let status = statuses
            .get(record.name.as_str())
            .map(|s| s.status.clone())
            .unwrap_or_default();
        fleet.gitrepos.insert(
            record.name.clone(),
            crate::fleet::GitRepoEntry {
                metadata,
                spec: repo.spec,
                status,
            },
        );
    }
    for record in by_kind.get(BUNDLE).into_iter().flatten() {
        let stored: BundleRecord = decode(BUNDLE, &record.name, &record.doc)?;
        let entry = bundle_entry(&mut fleet, stored, record.revision, store)?;
        fleet.upsert_bundle(entry);
    }
    let credentials: BTreeMap<&str, CredentialRecord> = by_kind
        .get(CREDENTIAL)
        .into_iter()
        .flatten()
        .map(|record| {
            Ok((
                record.name.as_str(),
                decode(CREDENTIAL, &record.name, &record.doc)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    for record in by_kind.get(CLUSTER).into_iter().flatten() {
        let cluster: ClusterRecord = decode(CLUSTER, &record.name, &record.doc)?;
        let (client_id, hash) = credentials
            .get(record.name.as_str())
            .map(|c| (c.client_id.clone(), parse_hash(&c.hash).unwrap_or_default()))
            .unwrap_or_default();
        fleet.insert_cluster(NewCluster {
            name: record.name.clone(),
            labels: cluster.labels,
            credential_hash: hash,
            client_id,
            generation: cluster.generation,
            revision: record.revision,
            created: cluster.created,
        });
    }
    let mut online = Vec::new();
    for record in by_kind.get(REPORT).into_iter().flatten() {
        let Some((ordinal, _)) = fleet.cluster_by_name(&record.name) else {
            continue;
        };
        let report: ReportRecord = decode(REPORT, &record.name, &record.doc)?;
        if let Some(cluster) = fleet.cluster_mut(ordinal) {
            cluster.facts = report.facts;
            cluster.report_digest = report.report_digest;
            cluster
                .last_seen
                .store(report.last_seen, std::sync::atomic::Ordering::Relaxed);
        }
        fleet.set_cluster_state(ordinal, report.state);
        if report.state == ClusterState::Online {
            online.push(ordinal);
        }
        for bundle_report in &report.reports {
            if let Some(&bundle) = fleet.bundle_names.get(&bundle_report.bundle) {
                fleet.record_report(ordinal, bundle, Some(bundle_report));
            }
        }
        if let Some(cluster) = fleet.cluster(ordinal) {
            cluster
                .dirty
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(Loaded {
        fleet,
        admin_token_hash,
        online,
    })
}

/// Turns a stored bundle into its in-memory entry, reading its content.
fn bundle_entry(
    fleet: &mut Fleet,
    stored: BundleRecord,
    revision: u64,
    store: &dyn Store,
) -> anyhow::Result<BundleEntry> {
    let mut content = |digest: &str| -> anyhow::Result<Arc<Vec<u8>>> {
        if let Some(bytes) = fleet.contents.get(digest) {
            return Ok(bytes.clone());
        }
        let bytes = store
            .content(digest)?
            .ok_or_else(|| anyhow::anyhow!("content {digest} of a stored bundle is missing"))?;
        let bytes = Arc::new(bytes);
        fleet.contents.insert(digest.to_string(), bytes.clone());
        Ok(bytes)
    };
    let spec_bytes = content(&stored.spec_digest)?;
    let mut spec = stored.spec;
    spec.resources = serde_json::from_slice(&spec_bytes)?;
    spec.targets = join_targets(spec.targets, &stored.spec_target_digests, &mut content)?;
    let spec_target_digests: Vec<String> = stored
        .spec_target_digests
        .iter()
        .flatten()
        .cloned()
        .collect();
    let stored_live = match stored.live {
        Some(mut live) => {
            live.targets = join_targets(live.targets, &live.target_digests, &mut content)?;
            live.target_digests.clear();
            Some(live)
        }
        None => None,
    };
    let live_targets = stored_live
        .as_ref()
        .map(|l| l.targets.clone())
        .unwrap_or_default();
    let live = match stored_live {
        Some(live) => {
            let live_bytes = content(&live.digest)?;
            let resources: Vec<serde_json::Value> = serde_json::from_slice(&live_bytes)?;
            Some(
                live_revision(
                    live.generation,
                    live.digest,
                    &resources,
                    &live.targets,
                    live.keep_resources,
                    &live.drift,
                )
                .map_err(anyhow::Error::msg)?,
            )
        }
        None => None,
    };
    let dependencies =
        crate::fleet::compile_dependencies(&spec.depends_on).map_err(anyhow::Error::msg)?;
    let mut metadata = stored.metadata;
    metadata.resource_version = Some(revision.to_string());
    Ok(BundleEntry {
        name: metadata.name.clone(),
        metadata,
        spec,
        spec_digest: stored.spec_digest,
        spec_target_digests,
        live,
        live_targets,
        owner: stored.owner,
        dependencies,
        targeted: Default::default(),
        counts: [0; 5],
        problems: Default::default(),
    })
}
