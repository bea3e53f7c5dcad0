//! The formats the server writes to the store, and the bulk load that rebuilds the fleet from
//! them at start-up.

use std::collections::BTreeMap;

use flotilla_api::{
    BundleSpec, BundleTarget, ClusterFacts, ClusterGroupSpec, ClusterState, ObjectMeta,
    RegistrationTokenSpec, agent::BundleReport,
};
use flotilla_core::selector::Selector;
use flotilla_store::{Op, Store};
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
    content: &mut dyn FnMut(&str) -> anyhow::Result<axum::body::Bytes>,
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

pub fn put_if_absent<T: Serialize>(kind: &str, name: &str, record: &T) -> Op {
    Op::PutIfAbsent {
        kind: kind.to_string(),
        name: name.to_string(),
        doc: serde_json::to_vec(record).unwrap_or_default(),
    }
}

/// Reads the stored admin token's hash.
pub fn load_admin_token(store: &dyn Store) -> anyhow::Result<Option<[u8; 32]>> {
    let mut hash = None;
    store.load_kinds(&[META], &mut |record| {
        if record.name == ADMIN_TOKEN {
            let admin: AdminTokenRecord = decode(record.kind, record.name, record.doc)?;
            hash = parse_hash(&admin.hash);
        }
        Ok(())
    })?;
    Ok(hash)
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
    /// The revision of the first read: a follower of a shared store reads the change feed from
    /// here (changes after it that the later read already saw are applied again, harmlessly).
    pub revision: u64,
}

fn decode<T: for<'de> Deserialize<'de>>(kind: &str, name: &str, doc: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(doc)
        .map_err(|error| anyhow::anyhow!("decode stored {kind} {name:?}: {error}"))
}

/// Kinds loaded before clusters: few records each, decoded into memory first.
const SMALL_KINDS: [&str; 7] = [META, TOKEN, GROUP, SECRET, GITREPO_STATUS, GITREPO, BUNDLE];
/// The per-cluster kinds, streamed from the store in this order.
const CLUSTER_KINDS: [&str; 3] = [CLUSTER, CREDENTIAL, REPORT];

/// Rebuilds the fleet from the store in one streaming pass per kind, without holding the stored
/// documents in memory (content is read once per live digest). On the embedded store it runs
/// before the server serves, while nothing writes, so the two reads (small kinds, then the
/// per-cluster kinds) agree; on a shared store other replicas may write between them, and the
/// change feed from [`Loaded::revision`] brings the model up to date.
pub fn load(store: &dyn Store) -> anyhow::Result<Loaded> {
    let mut fleet = Fleet::default();
    let mut admin_token_hash = None;
    let mut tokens = Vec::new();
    let mut statuses: BTreeMap<String, GitRepoStatusRecord> = BTreeMap::new();
    let mut bundles = Vec::new();
    let snapshot = store.load_kinds(&SMALL_KINDS, &mut |record| {
        let (kind, name) = (record.kind, record.name);
        let metadata = |mut metadata: ObjectMeta| {
            metadata.resource_version = Some(record.revision.to_string());
            metadata
        };
        match kind {
            META if name == ADMIN_TOKEN => {
                let admin: AdminTokenRecord = decode(kind, name, record.doc)?;
                admin_token_hash = parse_hash(&admin.hash);
            }
            TOKEN => tokens.push((name.to_string(), record.revision, record.doc.to_vec())),
            GROUP => {
                let group: GroupRecord = decode(kind, name, record.doc)?;
                let selector = Selector::from_api(&group.spec.selector)
                    .map_err(|error| anyhow::anyhow!("stored group {name:?}: {error}"))?;
                fleet.upsert_group(name, metadata(group.metadata), selector);
            }
            SECRET => {
                let secret: SecretRecord = decode(kind, name, record.doc)?;
                fleet.secrets.insert(
                    name.to_string(),
                    crate::fleet::SecretEntry {
                        metadata: metadata(secret.metadata),
                        spec: secret.spec,
                    },
                );
            }
            GITREPO_STATUS => {
                statuses.insert(name.to_string(), decode(kind, name, record.doc)?);
            }
            GITREPO => {
                let repo: GitRepoRecord = decode(kind, name, record.doc)?;
                let status = statuses.remove(name).map(|s| s.status).unwrap_or_default();
                fleet.gitrepos.insert(
                    name.to_string(),
                    crate::fleet::GitRepoEntry {
                        metadata: metadata(repo.metadata),
                        spec: repo.spec,
                        status,
                    },
                );
            }
            BUNDLE => {
                let stored: BundleRecord = decode(kind, name, record.doc)?;
                bundles.push((stored, record.revision));
            }
            _ => {}
        }
        Ok(())
    })?;
    let counters: BTreeMap<&str, i64> = snapshot
        .counters
        .iter()
        .map(|(name, value)| (name.as_str(), *value))
        .collect();
    for (name, revision, doc) in tokens {
        let token: TokenRecord = decode(TOKEN, &name, &doc)?;
        let uses = counters
            .get(token_uses_counter(&name).as_str())
            .copied()
            .unwrap_or(0)
            .max(0) as u64;
        let mut metadata = token.metadata;
        metadata.resource_version = Some(revision.to_string());
        fleet.tokens.insert(
            name,
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
    // Bundles read their content from the store, so they are built after the first read.
    for (stored, revision) in bundles {
        let entry = bundle_entry(&mut fleet, stored, revision, store)?;
        fleet.upsert_bundle(entry);
    }
    let online = load_clusters(store, &mut fleet)?;
    Ok(Loaded {
        fleet,
        admin_token_hash,
        online,
        revision: snapshot.revision,
    })
}

/// A per-cluster record, decoded.
enum ClusterPart {
    Cluster(String, u64, ClusterRecord),
    Credential(String, CredentialRecord),
    Report(String, ReportRecord),
}

/// Records per message between the decoding thread and the one building the fleet.
const LOAD_BATCH: usize = 1024;

/// Streams the per-cluster kinds into the fleet: one thread reads and decodes (SQLite and JSON),
/// this one builds the model, so the two halves of the work overlap. Returns the clusters that
/// were Online.
fn load_clusters(store: &dyn Store, fleet: &mut Fleet) -> anyhow::Result<Vec<u32>> {
    let mut online = Vec::new();
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<ClusterPart>>(16);
        let reader = std::thread::Builder::new()
            .name("load-decode".into())
            .spawn_scoped(scope, move || -> anyhow::Result<()> {
                let mut batch = Vec::with_capacity(LOAD_BATCH);
                store.load_kinds(&CLUSTER_KINDS, &mut |record| {
                    let (kind, name) = (record.kind, record.name);
                    let part = match kind {
                        CLUSTER => ClusterPart::Cluster(
                            name.to_string(),
                            record.revision,
                            decode(kind, name, record.doc)?,
                        ),
                        CREDENTIAL => ClusterPart::Credential(
                            name.to_string(),
                            decode(kind, name, record.doc)?,
                        ),
                        REPORT => {
                            ClusterPart::Report(name.to_string(), decode(kind, name, record.doc)?)
                        }
                        _ => return Ok(()),
                    };
                    batch.push(part);
                    if batch.len() == LOAD_BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(LOAD_BATCH));
                        // The builder only hangs up after an error of its own.
                        sender.send(full).map_err(|_| "the fleet builder stopped")?;
                    }
                    Ok(())
                })?;
                if !batch.is_empty() {
                    let _ = sender.send(batch);
                }
                Ok(())
            })?;
        for batch in receiver {
            for part in batch {
                match part {
                    ClusterPart::Cluster(name, revision, cluster) => {
                        fleet.load_cluster(NewCluster {
                            name,
                            labels: cluster.labels,
                            credential_hash: [0; 32],
                            client_id: String::new(),
                            generation: cluster.generation,
                            revision,
                            created: cluster.created,
                        });
                    }
                    ClusterPart::Credential(name, credential) => {
                        if let Some((ordinal, _)) = fleet.cluster_by_name(&name)
                            && let Some(cluster) = fleet.cluster_mut(ordinal)
                        {
                            cluster.client_id = credential.client_id.into();
                            cluster.credential_hash =
                                parse_hash(&credential.hash).unwrap_or_default();
                        }
                    }
                    ClusterPart::Report(name, report) => {
                        if let Some((ordinal, _)) = fleet.cluster_by_name(&name) {
                            restore_report(fleet, ordinal, report, &mut online);
                        }
                    }
                }
            }
        }
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("the store reading thread panicked"))?
    })?;
    fleet.rebuild_group_members();
    Ok(online)
}

/// Puts a cluster's stored soft state back (its reports are taken, not copied).
fn restore_report(fleet: &mut Fleet, ordinal: u32, report: ReportRecord, online: &mut Vec<u32>) {
    if let Some(cluster) = fleet.cluster_mut(ordinal) {
        cluster.facts = report.facts;
        cluster.report_digest = report.report_digest;
        cluster
            .last_seen
            .store(report.last_seen, std::sync::atomic::Ordering::Relaxed);
        cluster
            .seen_written
            .store(report.last_seen, std::sync::atomic::Ordering::Relaxed);
    }
    fleet.set_cluster_state(ordinal, report.state);
    if report.state == ClusterState::Online {
        online.push(ordinal);
    }
    for bundle_report in report.reports {
        if let Some(&bundle) = fleet.bundle_names.get(&bundle_report.bundle) {
            fleet.record_report(ordinal, bundle, Some(Box::new(bundle_report)));
        }
    }
    if let Some(cluster) = fleet.cluster(ordinal) {
        cluster
            .dirty
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Turns a stored bundle into its in-memory entry, reading its content (from memory when it
/// holds it).
pub(crate) fn bundle_entry(
    fleet: &mut Fleet,
    stored: BundleRecord,
    revision: u64,
    store: &dyn Store,
) -> anyhow::Result<BundleEntry> {
    let mut content = |digest: &str| -> anyhow::Result<axum::body::Bytes> {
        if let Some(bytes) = fleet.contents.get(digest) {
            return Ok(bytes.clone());
        }
        let bytes = store
            .content(digest)?
            .ok_or_else(|| anyhow::anyhow!("content {digest} of a stored bundle is missing"))?;
        let bytes = axum::body::Bytes::from(bytes);
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
