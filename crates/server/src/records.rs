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

pub use crate::fleet::LiveRecord;
use crate::fleet::{
    BundleEntry, Fleet, NewToken, Revision, SoftState, clusters::NewCluster, live_revision,
};

pub const CLUSTER: &str = "Cluster";
pub const CREDENTIAL: &str = "ClusterCredential";
pub const REPORT: &str = "ClusterReport";
pub const GROUP: &str = "ClusterGroup";
pub const BUNDLE: &str = "Bundle";
/// One immutable revision of a bundle, named [`revision_name`]: written in the commit that made
/// it, deleted in the one that prunes it or deletes its bundle.
pub const BUNDLE_REVISION: &str = "BundleRevision";
pub const TOKEN: &str = "RegistrationToken";
pub const GITREPO: &str = "GitRepo";
pub const GITREPO_STATUS: &str = "GitRepoStatus";
pub const SECRET: &str = "Secret";
/// A bundle's rollout run (`fleet::rollouts::RolloutRecord`), named by the bundle.
pub const ROLLOUT: &str = "BundleRollout";
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
    /// The highest revision number given to the bundle (its `BundleRevision` records may be
    /// pruned; the number is not reused). 0 in records written before revisions existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_revision: u64,
    /// The revision a run rolls out (the stored form, as `live`), while the bundle has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<LiveRecord>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A `BundleRevision` record: one revision of a bundle's rolled-out content, immutable once
/// written. `live` is the live revision in the stored form (as the bundle record's `live`): its
/// number, the generation that made it, the content digest, the targets as written with their
/// own resources in the content table (`target_digests`), `keepResources` and `drift`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub live: LiveRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub author: String,
    /// Unix seconds.
    pub created: u64,
}

impl RevisionRecord {
    /// The revision as memory holds it, written at store revision `written`.
    pub fn into_revision(self, written: u64) -> Revision {
        Revision {
            live: self.live,
            commit: self.commit,
            author: self.author,
            created: self.created,
            written,
        }
    }

    pub fn of(revision: &Revision) -> RevisionRecord {
        RevisionRecord {
            live: revision.live.clone(),
            commit: revision.commit.clone(),
            author: revision.author.clone(),
            created: revision.created,
        }
    }
}

/// The record name of a bundle's revision: `{bundle}/{number}`, the number zero-padded so the
/// store's name order is number order (bundle names cannot contain `/`).
pub fn revision_name(bundle: &str, number: u64) -> String {
    format!("{bundle}/{number:010}")
}

/// The bundle and number a revision record's name stands for.
pub fn parse_revision_name(name: &str) -> Option<(&str, u64)> {
    let (bundle, number) = name.rsplit_once('/')?;
    Some((bundle, number.parse().ok()?))
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
    content: &mut ContentSource<'_>,
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

/// Kinds loaded before clusters: few records each, decoded into memory first. Revisions come
/// after their bundles.
const SMALL_KINDS: [&str; 9] = [
    META,
    TOKEN,
    GROUP,
    SECRET,
    GITREPO_STATUS,
    GITREPO,
    BUNDLE,
    BUNDLE_REVISION,
    ROLLOUT,
];
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
    let mut revisions = Vec::new();
    let mut rollouts = Vec::new();
    let snapshot = store.load_kinds(&SMALL_KINDS, &mut |record| {
        let (kind, name) = (record.kind, record.name);
        match kind {
            META if name == ADMIN_TOKEN => {
                let admin: AdminTokenRecord = decode(kind, name, record.doc)?;
                admin_token_hash = parse_hash(&admin.hash);
            }
            TOKEN => tokens.push((name.to_string(), record.revision, record.doc.to_vec())),
            GROUP => apply_group(
                &mut fleet,
                name,
                decode(kind, name, record.doc)?,
                record.revision,
            )?,
            SECRET => apply_secret(
                &mut fleet,
                name,
                decode(kind, name, record.doc)?,
                record.revision,
            ),
            GITREPO_STATUS => {
                statuses.insert(name.to_string(), decode(kind, name, record.doc)?);
            }
            GITREPO => {
                apply_gitrepo(
                    &mut fleet,
                    name,
                    decode(kind, name, record.doc)?,
                    record.revision,
                );
                if let Some(status) = statuses.remove(name) {
                    fleet.set_gitrepo_status(name, status.status);
                }
            }
            BUNDLE => {
                let stored: BundleRecord = decode(kind, name, record.doc)?;
                bundles.push((stored, record.revision));
            }
            BUNDLE_REVISION => {
                let stored: RevisionRecord = decode(kind, name, record.doc)?;
                revisions.push((name.to_string(), stored, record.revision));
            }
            ROLLOUT => {
                let stored: crate::fleet::rollouts::RolloutRecord = decode(kind, name, record.doc)?;
                rollouts.push((name.to_string(), stored));
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
        let uses = counters
            .get(token_uses_counter(&name).as_str())
            .copied()
            .unwrap_or(0)
            .max(0) as u64;
        apply_token(
            &mut fleet,
            &name,
            decode(TOKEN, &name, &doc)?,
            revision,
            uses,
        );
    }
    // Bundles read their content from the store, so they are built after the first read.
    let mut content = |digest: &str| {
        store
            .content(digest)?
            .ok_or_else(|| anyhow::anyhow!("content {digest} of a stored bundle is missing"))
            .map(axum::body::Bytes::from)
    };
    for (stored, revision) in bundles {
        apply_bundle(&mut fleet, stored, revision, &mut content)?;
    }
    for (name, stored, revision) in revisions {
        if !apply_revision(&mut fleet, &name, stored, revision, &mut content)? {
            tracing::warn!(record = %name, "a stored bundle revision has no bundle; ignored");
        }
    }
    let online = load_clusters(store, &mut fleet)?;
    // Runs last: they place and pin the clusters just loaded.
    for (name, stored) in rollouts {
        if !apply_rollout(&mut fleet, &name, stored) {
            tracing::warn!(bundle = %name, "a stored rollout does not match its bundle; ignored");
        }
    }
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
                        if let Some((ordinal, _)) = fleet.cluster_by_name(&name) {
                            apply_credential(fleet, ordinal, &credential);
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
    let went_online = fleet
        .put_soft_state(ordinal, report.into())
        .is_some_and(|applied| applied.went_online);
    if went_online {
        online.push(ordinal);
    }
    if let Some(cluster) = fleet.cluster(ordinal) {
        cluster
            .dirty
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl From<ReportRecord> for SoftState {
    fn from(report: ReportRecord) -> SoftState {
        SoftState {
            state: report.state,
            last_seen: report.last_seen,
            facts: report.facts,
            report_digest: report.report_digest,
            reports: report.reports,
        }
    }
}

/// Stored content by digest, for records that reference it.
pub type ContentSource<'a> = dyn FnMut(&str) -> anyhow::Result<axum::body::Bytes> + 'a;

// One apply per kind, from the record the store holds: the start-up load and the replica
// follower both call these, and they call the same `Fleet` methods a local write does.

/// Puts a stored cluster group into memory (its selector compiled).
pub fn apply_group(
    fleet: &mut Fleet,
    name: &str,
    group: GroupRecord,
    revision: u64,
) -> anyhow::Result<()> {
    let selector = Selector::from_api(&group.spec.selector)
        .map_err(|error| anyhow::anyhow!("stored group {name:?}: {error}"))?;
    fleet.put_group(name, with_revision(group.metadata, revision), selector);
    Ok(())
}

/// Puts a stored token into memory; a new one starts at `uses` (the store's counter).
pub fn apply_token(fleet: &mut Fleet, name: &str, token: TokenRecord, revision: u64, uses: u64) {
    fleet.put_token(
        name,
        NewToken {
            metadata: with_revision(token.metadata, revision),
            spec: token.spec,
            secret_hash: parse_hash(&token.secret_hash).unwrap_or_default(),
            expires_at: token.expires_at,
        },
        uses,
    );
}

pub fn apply_secret(fleet: &mut Fleet, name: &str, secret: SecretRecord, revision: u64) {
    fleet.put_secret(
        name,
        crate::fleet::SecretEntry {
            metadata: with_revision(secret.metadata, revision),
            spec: secret.spec,
        },
    );
}

pub fn apply_gitrepo(fleet: &mut Fleet, name: &str, repo: GitRepoRecord, revision: u64) {
    fleet.put_gitrepo(name, with_revision(repo.metadata, revision), repo.spec);
}

pub fn apply_credential(fleet: &mut Fleet, ordinal: u32, credential: &CredentialRecord) {
    fleet.set_credential(
        ordinal,
        Some(&credential.client_id),
        parse_hash(&credential.hash).unwrap_or_default(),
    );
}

/// Puts a stored bundle into memory, reading the content it references from memory when held,
/// else from `content`.
pub fn apply_bundle(
    fleet: &mut Fleet,
    stored: BundleRecord,
    revision: u64,
    content: &mut ContentSource<'_>,
) -> anyhow::Result<u32> {
    let mut fetched: Vec<(String, axum::body::Bytes)> = Vec::new();
    let entry = {
        let held = fleet.contents();
        let mut content = |digest: &str| -> anyhow::Result<axum::body::Bytes> {
            if let Some(bytes) = held.get(digest) {
                return Ok(bytes.clone());
            }
            if let Some((_, bytes)) = fetched.iter().find(|(d, _)| d == digest) {
                return Ok(bytes.clone());
            }
            let bytes = content(digest)?;
            fetched.push((digest.to_string(), bytes.clone()));
            Ok(bytes)
        };
        bundle_entry(stored, revision, &mut content)?
    };
    Ok(fleet.put_bundle(entry, fetched))
}

/// Puts a stored rollout run into memory (see `Fleet::apply_rollout_record`).
pub fn apply_rollout(
    fleet: &mut Fleet,
    bundle: &str,
    stored: crate::fleet::rollouts::RolloutRecord,
) -> bool {
    fleet.apply_rollout_record(bundle, stored, |written| {
        // Valid when written; a strategy that no longer compiles ends the run where it is.
        flotilla_core::rollout::strategy::compile(bundle, written).ok()
    })
}

/// Puts a stored bundle revision into memory, its content read from memory when held, else
/// from `content`. False when its bundle is not held (a follower parks it until it is).
pub fn apply_revision(
    fleet: &mut Fleet,
    name: &str,
    stored: RevisionRecord,
    revision: u64,
    content: &mut ContentSource<'_>,
) -> anyhow::Result<bool> {
    let (bundle, number) = parse_revision_name(name).ok_or_else(|| {
        anyhow::anyhow!("bundle revision record name {name:?} is not BUNDLE/NUMBER")
    })?;
    if fleet.bundle_by_name(bundle).is_none() {
        return Ok(false);
    }
    if stored.live.revision != number {
        anyhow::bail!(
            "bundle revision record {name:?} holds revision {}",
            stored.live.revision
        );
    }
    let mut fetched = Vec::new();
    for digest in stored.live.digests() {
        if !fleet.contents().contains_key(digest) && !fetched.iter().any(|(d, _)| d == digest) {
            fetched.push((digest.to_string(), content(digest)?));
        }
    }
    Ok(fleet.put_revision(bundle, stored.into_revision(revision), fetched))
}

fn with_revision(mut metadata: ObjectMeta, revision: u64) -> ObjectMeta {
    metadata.resource_version = Some(revision.to_string());
    metadata
}

/// Turns a stored bundle into its in-memory entry, reading its content from `content`.
fn bundle_entry(
    stored: BundleRecord,
    revision: u64,
    content: &mut ContentSource<'_>,
) -> anyhow::Result<BundleEntry> {
    let spec_bytes = content(&stored.spec_digest)?;
    let mut spec = stored.spec;
    spec.resources = serde_json::from_slice(&spec_bytes)?;
    spec.targets = join_targets(spec.targets, &stored.spec_target_digests, content)?;
    let spec_target_digests: Vec<String> = stored
        .spec_target_digests
        .iter()
        .flatten()
        .cloned()
        .collect();
    let stored_live = match stored.live {
        Some(mut live) => {
            live.targets = join_targets(live.targets, &live.target_digests, content)?;
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
            // The spec's content is parsed above; a paused bundle's live content may differ.
            let resources: Vec<serde_json::Value> = if live.digest == stored.spec_digest {
                spec.resources.clone()
            } else {
                serde_json::from_slice(&content(&live.digest)?)?
            };
            let mut compiled = live_revision(
                live.generation,
                live.digest,
                &resources,
                &live.targets,
                live.keep_resources,
                &live.drift,
            )?;
            compiled.revision = live.revision;
            Some(compiled)
        }
        None => None,
    };
    let (candidate, candidate_targets) = match stored.candidate {
        Some(candidate) => {
            let mut read = |digest: &str| content(digest);
            let (compiled, targets) = candidate.compile(&mut read)?;
            (Some(compiled), targets)
        }
        None => (None, Vec::new()),
    };
    let dependencies = flotilla_core::documents::dependencies(&spec.depends_on)?;
    Ok(BundleEntry {
        name: stored.metadata.name.clone(),
        metadata: with_revision(stored.metadata, revision),
        spec,
        spec_digest: stored.spec_digest,
        spec_target_digests,
        live,
        live_targets,
        last_revision: stored.last_revision,
        revisions: Default::default(),
        candidate,
        candidate_targets,
        rollout: None,
        pinned: Default::default(),
        owner: stored.owner,
        dependencies,
        targeted: Default::default(),
        counts: [0; 5],
        problems: Default::default(),
    })
}
