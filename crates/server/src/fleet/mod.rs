//! The in-memory fleet: the server's read model. Agent syncs and admin reads are answered from
//! here; every mutation reaches it only after the store has made it durable.
//!
//! Invariant: no operation here walks the whole fleet per event. Selectors are evaluated with the
//! label index, a label change re-targets only its cluster, bundle summaries are counters kept up
//! to date incrementally, and a content-only bundle change touches no cluster at all.

pub mod apply;
#[cfg(test)]
mod bench;
mod bundles;
pub mod clusters;
pub mod contents;
pub mod dependencies;
pub mod labels;
pub mod rollouts;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    hash::BuildHasher,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use flotilla_api::{
    BundleSpec, BundleState, BundleTarget, ClusterFacts, ClusterState, ObjectMeta,
    RegistrationTokenSpec, agent::BundleReport,
};
use flotilla_core::{selector::Selector, targeting::Target};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

pub use flotilla_core::documents::Dependency;

pub use self::{
    apply::{NewToken, SoftState, SoftStateApplied},
    bundles::live_revision,
    labels::{Interner, LabelIndex, Labels},
};

/// One registered cluster.
#[derive(Debug)]
pub struct ClusterEntry {
    pub name: Box<str>,
    pub labels: Labels,
    pub credential_hash: [u8; 32],
    pub client_id: Box<str>,
    pub generation: u64,
    pub revision: u64,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds of the last sync; updated under the read lock.
    pub last_seen: AtomicU64,
    /// The last-seen time the store holds (the last soft-state write), so that on a shared store
    /// heartbeats are written often enough for other replicas' offline checks.
    pub seen_written: AtomicU64,
    /// Set when soft state changed and must be written by the next flush.
    pub dirty: AtomicBool,
    pub state: ClusterState,
    pub facts: ClusterFacts,
    /// Digest of the agent report the server holds (see `SyncRequest::report_digest`).
    pub report_digest: Option<String>,
    /// Deployments on this cluster, sorted by bundle name.
    pub deployments: Vec<Deployment>,
}

/// One bundle targeted at one cluster, and what the cluster last said about it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub bundle: u32,
    /// Index of the bundle target whose customization applies.
    pub target: u16,
    pub options_hash: u64,
    /// The bundle's live content epoch when `counted` was last set; when it is older the
    /// deployment counts as Pending.
    pub counted_epoch: u64,
    pub counted: BundleState,
    /// Which revision of the bundle the cluster is sent: the stable one, or its run's candidate.
    pub slot: rollouts::Slot,
    pub report: Option<Box<BundleReport>>,
}

/// What a deployment contributes to its bundle's counters: its state, which counts only while
/// `epoch` is the bundle's live epoch (otherwise it counts as Pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub bundle: u32,
    /// The revision the epoch is of.
    pub slot: rollouts::Slot,
    pub epoch: u64,
    pub state: BundleState,
}

impl Deployment {
    pub fn tally(&self) -> Tally {
        Tally {
            bundle: self.bundle,
            slot: self.slot,
            epoch: self.counted_epoch,
            state: self.counted,
        }
    }

    pub fn set_tally(&mut self, tally: Tally) {
        self.counted_epoch = tally.epoch;
        self.counted = tally.state;
    }
}

/// The revision of a bundle that is rolled out (differs from the spec while paused).
#[derive(Debug, Clone)]
pub struct LiveRevision {
    /// Its number among the bundle's revisions (`BundleEntry::revisions`); 0 for one rolled out
    /// before revisions were recorded.
    pub revision: u64,
    /// The spec generation rolled out.
    pub generation: u64,
    /// Bumped whenever `digest` changes: every deployment id changes with it, so reports counted
    /// in an older epoch count as Pending.
    pub epoch: u64,
    pub digest: String,
    pub targets: Vec<Target>,
    pub keep_resources: bool,
    pub drift: flotilla_api::DriftPolicy,
    /// Placeholders the content and patches use, resolved per cluster.
    pub vars: BTreeSet<String>,
}

impl LiveRevision {
    /// The content a cluster matched by `target` receives: the target's own, or the bundle's.
    pub fn digest_for(&self, target: usize) -> &str {
        self.targets
            .get(target)
            .and_then(|t| t.digest.as_deref())
            .unwrap_or(&self.digest)
    }

    /// Whether two revisions deploy the same content everywhere (same epoch).
    pub fn same_content(&self, other: &LiveRevision) -> bool {
        self.digest == other.digest
            && self.targets.len() == other.targets.len()
            && self
                .targets
                .iter()
                .zip(&other.targets)
                .all(|(a, b)| a.digest == b.digest)
    }

    /// Every digest this revision deploys.
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.digest.as_str())
            .chain(self.targets.iter().filter_map(|t| t.digest.as_deref()))
    }

    /// Whether two revisions send every cluster the same thing: the same content, targets
    /// (selectors, customizations, `doNotDeploy`), options and placeholders. A write whose new
    /// live revision is not the same delivery as the old one creates a bundle revision.
    pub fn same_delivery(&self, other: &LiveRevision) -> bool {
        self.same_content(other)
            && self.targets == other.targets
            && self.keep_resources == other.keep_resources
            && self.drift == other.drift
            && self.vars == other.vars
    }
}

/// A live revision as written: the stored form of [`LiveRevision`], with its targets as the spec
/// wrote them (not compiled). In the store (`records`), and in [`Revision`], the targets' own
/// `resources` are moved to the content table and named by `target_digests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveRecord {
    /// Its number among the bundle's revisions (0: rolled out before revisions were recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u64,
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

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl LiveRecord {
    /// Whether two stored revisions deliver the same thing: content, targets as written, the
    /// targets' own resources (by digest) and options. Number and generation aside.
    pub fn same_stored_delivery(&self, other: &LiveRecord) -> bool {
        self.digest == other.digest
            && self.targets == other.targets
            && self.target_digests == other.target_digests
            && self.keep_resources == other.keep_resources
            && self.drift == other.drift
    }

    /// Every digest the stored form names (its resources' and its targets' own).
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.digest.as_str())
            .chain(self.target_digests.iter().flatten().map(String::as_str))
    }

    /// Compiles the stored form back into the live revision it was, and its targets as written
    /// (resources put back), reading content by digest. The epoch is the caller's to set.
    pub fn compile(
        &self,
        content: &mut dyn FnMut(&str) -> anyhow::Result<axum::body::Bytes>,
    ) -> anyhow::Result<(LiveRevision, Vec<BundleTarget>)> {
        let resources: Vec<serde_json::Value> = serde_json::from_slice(&content(&self.digest)?)?;
        let mut targets = self.targets.clone();
        for (target, digest) in targets.iter_mut().zip(&self.target_digests) {
            if let Some(digest) = digest {
                target.resources = Some(serde_json::from_slice(&content(digest)?)?);
            }
        }
        let mut live = live_revision(
            self.generation,
            self.digest.clone(),
            &resources,
            &targets,
            self.keep_resources,
            &self.drift,
        )?;
        live.revision = self.revision;
        Ok((live, targets))
    }
}

/// One retained revision of a bundle (a `BundleRevision` record, as memory holds it): what
/// `flotilla history bundle` shows, and everything needed to roll it out again from memory
/// ([`Fleet::revision_live`]): its live revision in the stored form, whose content memory holds
/// (and the store keeps) while the revision is retained.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// `live.revision` is its number, `live.generation` the spec generation that made it.
    pub live: LiveRecord,
    /// The git commit it was rendered from (bundles a GitRepo renders).
    pub commit: Option<String>,
    /// `admin` or `gitrepo/NAME`.
    pub author: String,
    /// Unix seconds.
    pub created: u64,
    /// The store revision that wrote its record (a followed record replaces it only when newer).
    pub written: u64,
}

/// One bundle with its targeting and incremental summary.
#[derive(Debug)]
pub struct BundleEntry {
    pub name: String,
    pub metadata: ObjectMeta,
    /// The latest spec, `resources` included (what GET returns).
    pub spec: BundleSpec,
    pub spec_digest: String,
    /// Digests of the spec targets' own resources (kept so content bookkeeping never rehashes).
    pub spec_target_digests: Vec<String>,
    pub live: Option<LiveRevision>,
    /// The live revision's targets as written (kept to persist them again while paused).
    pub live_targets: Vec<flotilla_api::BundleTarget>,
    /// The highest revision number given to this bundle (0: none yet). The next revision is
    /// one more: numbers are never reused, also after their revisions are pruned.
    pub last_revision: u64,
    /// Retained revisions by number. They enter and leave only through `Fleet::put_revision` and
    /// `Fleet::remove_revision` (one per `BundleRevision` record), and a put of the bundle keeps
    /// them, so memory holds exactly the records the store holds.
    pub revisions: BTreeMap<u64, Revision>,
    /// The GitRepo that renders this bundle, if any.
    pub owner: Option<String>,
    /// Bundles that must be Ready on a cluster before this one is first deployed there.
    pub dependencies: Vec<Dependency>,
    /// The revision a run rolls out (see `rollouts`), with its targets as written.
    pub candidate: Option<LiveRevision>,
    pub candidate_targets: Vec<BundleTarget>,
    /// The bundle's run in progress, or its last one.
    pub rollout: Option<Box<rollouts::Rollout>>,
    /// Clusters pinned to the candidate.
    pub pinned: RoaringBitmap,
    pub targeted: RoaringBitmap,
    /// Counts of targeted clusters by state, indexed by `state_index`.
    pub counts: [u64; 5],
    /// Clusters whose current deployment is in a problem state.
    pub problems: RoaringBitmap,
}

impl BundleEntry {
    /// Every digest this entry references, once per occurrence (the content references it
    /// holds: see `contents`): its own and its retained revisions'.
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        self.own_digests()
            .chain(self.revisions.values().flat_map(|r| r.live.digests()))
    }

    /// The digests of the spec and the live revision: the references a put of the entry takes
    /// (retained revisions hold their own, see `Fleet::put_revision`).
    fn own_digests(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.spec_digest.as_str())
            .chain(self.spec_target_digests.iter().map(String::as_str))
            .chain(self.live.iter().flat_map(LiveRevision::digests))
            .chain(self.candidate.iter().flat_map(LiveRevision::digests))
    }

    /// Revisions that clusters may be sent now, which pruning never removes: the live (stable)
    /// one and a run's candidate.
    pub fn revisions_in_use(&self) -> BTreeSet<u64> {
        self.live
            .iter()
            .chain(self.candidate.iter())
            .map(|live| live.revision)
            .filter(|&number| number > 0)
            .collect()
    }
}

#[derive(Debug)]
pub struct GroupEntry {
    pub metadata: ObjectMeta,
    pub selector: Selector,
    pub members: RoaringBitmap,
}

#[derive(Debug)]
pub struct TokenEntry {
    pub metadata: ObjectMeta,
    pub spec: RegistrationTokenSpec,
    pub secret_hash: [u8; 32],
    /// Unix seconds; none for tokens that never expire.
    pub expires_at: Option<u64>,
    pub uses: u64,
    /// Registrations in flight that hold a use of this token.
    pub reserved: u64,
}

#[derive(Debug)]
pub struct GitRepoEntry {
    pub metadata: ObjectMeta,
    pub spec: flotilla_api::GitRepoSpec,
    pub status: flotilla_api::GitRepoStatus,
}

#[derive(Debug)]
pub struct SecretEntry {
    pub metadata: ObjectMeta,
    pub spec: flotilla_api::SecretSpec,
}

/// The whole fleet.
#[derive(Debug, Default)]
pub struct Fleet {
    interner: Interner,
    index: LabelIndex,
    clusters: Vec<Option<ClusterEntry>>,
    free_clusters: Vec<u32>,
    /// Cluster ordinals by name, sorted (listings page through it).
    cluster_names: BTreeMap<Box<str>, u32>,
    /// Cluster ordinals by a hash of their name: the lookup every agent call makes to check its
    /// credential (a hash and one comparison, where the sorted map takes twenty comparisons of
    /// names that share long prefixes). Holds ordinals only; names live in `clusters`.
    name_index: hashbrown::HashTable<u32>,
    name_hasher: foldhash::fast::RandomState,
    all: RoaringBitmap,
    online: RoaringBitmap,
    bundles: Vec<Option<BundleEntry>>,
    free_bundles: Vec<u32>,
    bundle_names: BTreeMap<String, u32>,
    groups: BTreeMap<String, GroupEntry>,
    tokens: BTreeMap<String, TokenEntry>,
    gitrepos: BTreeMap<String, GitRepoEntry>,
    secrets: BTreeMap<String, SecretEntry>,
    /// Content of live and latest bundle specs, by digest, held while a bundle references it.
    contents: contents::Contents,
    /// Ordinals of the bundles whose live targets name each cluster group, so a group write
    /// re-targets those bundles without a walk over every bundle.
    bundles_by_group: std::collections::HashMap<String, RoaringBitmap>,
    /// Names of the bundles each GitRepo owns, so a render or a GitRepo delete finds its
    /// bundles without a walk over every bundle.
    bundles_by_owner: std::collections::HashMap<String, BTreeSet<String>>,
    /// Names of clusters whose registration is being committed.
    pending_registrations: HashSet<String>,
    /// Clusters by state, indexed by `cluster_state_index`.
    cluster_counts: [u64; 3],
    /// Bundles whose run still moves or holds pins.
    running: RoaringBitmap,
}

pub fn cluster_state_index(state: ClusterState) -> usize {
    match state {
        ClusterState::Pending => 0,
        ClusterState::Online => 1,
        ClusterState::Offline => 2,
    }
}

pub fn state_index(state: BundleState) -> usize {
    match state {
        BundleState::Pending => 0,
        BundleState::Ready => 1,
        BundleState::NotReady => 2,
        BundleState::Modified => 3,
        BundleState::Error => 4,
    }
}

impl Fleet {
    pub fn cluster(&self, ordinal: u32) -> Option<&ClusterEntry> {
        self.clusters.get(ordinal as usize).and_then(Option::as_ref)
    }

    fn cluster_mut(&mut self, ordinal: u32) -> Option<&mut ClusterEntry> {
        self.clusters
            .get_mut(ordinal as usize)
            .and_then(Option::as_mut)
    }

    pub fn cluster_by_name(&self, name: &str) -> Option<(u32, &ClusterEntry)> {
        let hash = self.name_hasher.hash_one(name);
        let &ordinal = self
            .name_index
            .find(hash, |&o| self.cluster(o).is_some_and(|c| *c.name == *name))?;
        self.cluster(ordinal).map(|cluster| (ordinal, cluster))
    }

    /// Adds a cluster (already in `clusters`) to the name hash index.
    fn index_name(&mut self, ordinal: u32) {
        let Some(name) = self.cluster(ordinal).map(|c| &*c.name) else {
            return;
        };
        let hash = self.name_hasher.hash_one(name);
        let (clusters, hasher) = (&self.clusters, &self.name_hasher);
        self.name_index.insert_unique(hash, ordinal, |&o| {
            hasher.hash_one(clusters[o as usize].as_ref().map_or("", |c| &*c.name))
        });
    }

    /// Removes a cluster from the name hash index.
    fn unindex_name(&mut self, ordinal: u32, name: &str) {
        let hash = self.name_hasher.hash_one(name);
        if let Ok(entry) = self.name_index.find_entry(hash, |&o| o == ordinal) {
            entry.remove();
        }
    }

    pub fn interner(&self) -> &Interner {
        &self.interner
    }

    pub fn index(&self) -> &LabelIndex {
        &self.index
    }

    /// Cluster ordinals by name, sorted (listings page through it).
    pub fn cluster_names(&self) -> &BTreeMap<Box<str>, u32> {
        &self.cluster_names
    }

    /// Every cluster's ordinal.
    pub fn all(&self) -> &RoaringBitmap {
        &self.all
    }

    /// The ordinals of the clusters Online now.
    pub fn online(&self) -> &RoaringBitmap {
        &self.online
    }

    /// Clusters by state, indexed by `cluster_state_index`.
    pub fn cluster_counts(&self) -> &[u64; 3] {
        &self.cluster_counts
    }

    /// Bundle ordinals by name, sorted.
    pub fn bundle_names(&self) -> &BTreeMap<String, u32> {
        &self.bundle_names
    }

    /// Every bundle with its ordinal.
    pub fn bundles(&self) -> impl Iterator<Item = (u32, &BundleEntry)> {
        self.bundles
            .iter()
            .enumerate()
            .filter_map(|(ordinal, bundle)| Some((ordinal as u32, bundle.as_ref()?)))
    }

    /// One past the highest cluster ordinal (ordinals index dense per-cluster vectors).
    pub fn cluster_slots(&self) -> usize {
        self.clusters.len()
    }

    pub fn bundle(&self, ordinal: u32) -> Option<&BundleEntry> {
        self.bundles.get(ordinal as usize).and_then(Option::as_ref)
    }

    fn bundle_mut(&mut self, ordinal: u32) -> Option<&mut BundleEntry> {
        self.bundles
            .get_mut(ordinal as usize)
            .and_then(Option::as_mut)
    }

    pub fn bundle_by_name(&self, name: &str) -> Option<(u32, &BundleEntry)> {
        let ordinal = *self.bundle_names.get(name)?;
        self.bundle(ordinal).map(|bundle| (ordinal, bundle))
    }

    /// Interns a label map into the compact sorted form, taking a reference to each string (give
    /// them back with `release_labels` when the labels are dropped).
    pub fn intern_labels(&mut self, labels: &BTreeMap<String, String>) -> Labels {
        let mut pairs: Vec<(u32, u32)> = labels
            .iter()
            .map(|(key, value)| (self.interner.intern(key), self.interner.intern(value)))
            .collect();
        pairs.sort_unstable();
        pairs.into()
    }

    /// Gives back the references `intern_labels` took: strings no label uses any more are freed.
    pub fn release_labels(&mut self, labels: &[(u32, u32)]) {
        for &(key, value) in labels {
            self.interner.release(key);
            self.interner.release(value);
        }
    }

    pub fn labels_map(&self, labels: &[(u32, u32)]) -> BTreeMap<String, String> {
        labels
            .iter()
            .map(|(key, value)| {
                (
                    self.interner.resolve(*key).to_string(),
                    self.interner.resolve(*value).to_string(),
                )
            })
            .collect()
    }

    /// Deployments (cluster × bundle entries) in the model. Every deployment is one cluster in
    /// its bundle's `targeted` bitmap, so this is O(bundles), not a walk over the clusters.
    pub fn deployment_count(&self) -> u64 {
        self.bundles
            .iter()
            .flatten()
            .map(|b| b.targeted.len())
            .sum()
    }

    pub fn mark_dirty(cluster: &ClusterEntry) -> bool {
        !cluster.dirty.swap(true, Ordering::AcqRel)
    }
}
