//! One apply per kind: the only ways objects enter, change in and leave the fleet. A local write
//! (after its commit), the start-up load and the replica follower all call these, so memory
//! holds the same whichever way a record arrived, and the fleet's invariants (content held
//! while referenced, label strings while used, indexes by group and owner) are kept here, not
//! by callers.

use std::collections::BTreeMap;

use axum::body::Bytes;
use flotilla_api::{GitRepoSpec, GitRepoStatus, ObjectMeta, RegistrationTokenSpec};
use flotilla_core::selector::Selector;

use super::{
    BundleEntry, Fleet, GitRepoEntry, GroupEntry, LiveRevision, Revision, SecretEntry, TokenEntry,
};

/// A token as a write or a record gives it; use counts are memory's.
#[derive(Debug)]
pub struct NewToken {
    pub metadata: ObjectMeta,
    pub spec: RegistrationTokenSpec,
    pub secret_hash: [u8; 32],
    pub expires_at: Option<u64>,
}

impl Fleet {
    pub fn groups(&self) -> &BTreeMap<String, GroupEntry> {
        &self.groups
    }

    pub fn tokens(&self) -> &BTreeMap<String, TokenEntry> {
        &self.tokens
    }

    pub fn gitrepos(&self) -> &BTreeMap<String, GitRepoEntry> {
        &self.gitrepos
    }

    pub fn secrets(&self) -> &BTreeMap<String, SecretEntry> {
        &self.secrets
    }

    pub fn contents(&self) -> &super::contents::Contents {
        &self.contents
    }

    /// Puts a bundle with the content it references (content already held is kept, not
    /// replaced); content no bundle references any more is released. Returns its ordinal.
    pub fn put_bundle(
        &mut self,
        entry: BundleEntry,
        contents: impl IntoIterator<Item = (String, Bytes)>,
    ) -> u32 {
        for (digest, body) in contents {
            self.contents.entry(digest).or_insert(body);
        }
        // A run whose stable or candidate revision this entry changes ends first: its clusters
        // go back to the stable revision before the revisions change under them.
        if let Some((ordinal, old)) = self.bundle_by_name(&entry.name) {
            let number =
                |r: Option<&super::LiveRevision>| r.map(|r| (r.revision, r.digest.clone()));
            let moved = number(old.live.as_ref()) != number(entry.live.as_ref())
                || number(old.candidate.as_ref()) != number(entry.candidate.as_ref());
            if moved && (old.rollout.is_some() || !old.pinned.is_empty()) {
                self.end_run(ordinal);
            }
        }
        let ordinal = self.upsert_bundle(entry);
        self.contents.release_unreferenced();
        ordinal
    }

    /// Puts a retained revision of a held bundle with the content it references (content
    /// already held is kept), replacing one held under its number. False (and nothing held)
    /// when no such bundle is held.
    pub fn put_revision(
        &mut self,
        bundle: &str,
        revision: Revision,
        contents: impl IntoIterator<Item = (String, Bytes)>,
    ) -> bool {
        for (digest, body) in contents {
            self.contents.entry(digest).or_insert(body);
        }
        let Some(entry) = self
            .bundle_names
            .get(bundle)
            .and_then(|&ordinal| self.bundles[ordinal as usize].as_mut())
        else {
            self.contents.release_unreferenced();
            return false;
        };
        // The new references first, so content shared with a replaced revision stays held.
        for digest in revision.live.digests() {
            self.contents.reference(digest);
        }
        if let Some(old) = entry.revisions.insert(revision.live.revision, revision) {
            for digest in old.live.digests() {
                self.contents.unreference(digest);
            }
        }
        self.contents.release_unreferenced();
        true
    }

    /// Removes a retained revision (pruned, or followed from another replica); its content goes
    /// unless something else references it. False when it is not held.
    pub fn remove_revision(&mut self, bundle: &str, number: u64) -> bool {
        let Some(old) = self
            .bundle_names
            .get(bundle)
            .and_then(|&ordinal| self.bundles[ordinal as usize].as_mut())
            .and_then(|entry| entry.revisions.remove(&number))
        else {
            return false;
        };
        for digest in old.live.digests() {
            self.contents.unreference(digest);
        }
        true
    }

    /// A retained revision compiled back into the live revision it was (and its targets as
    /// written), from memory alone: what putting an old revision back live starts from. None
    /// when the bundle or the revision is not held.
    pub fn revision_live(
        &self,
        bundle: &str,
        number: u64,
    ) -> Option<anyhow::Result<(LiveRevision, Vec<flotilla_api::BundleTarget>)>> {
        let (_, entry) = self.bundle_by_name(bundle)?;
        let revision = entry.revisions.get(&number)?;
        Some(revision.live.compile(&mut |digest| {
            self.contents.get(digest).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "content {digest} of revision {number} of bundle {bundle:?} is not held"
                )
            })
        }))
    }

    /// Holds content a bundle about to be put references (the follower reads it before it takes
    /// the write lock); released again unless a bundle takes it up.
    pub fn hold_content(&mut self, digest: String, body: Bytes) {
        self.contents.entry(digest).or_insert(body);
    }

    /// Removes a bundle; its content goes unless another bundle references it.
    pub fn delete_bundle(&mut self, name: &str) {
        self.remove_bundle(name);
        self.contents.release_unreferenced();
    }

    pub fn put_group(&mut self, name: &str, metadata: ObjectMeta, selector: Selector) {
        self.upsert_group(name, metadata, selector);
    }

    /// Puts a token; a token already held keeps its use count and reservations, a new one starts
    /// at `uses`.
    pub fn put_token(&mut self, name: &str, token: NewToken, uses: u64) {
        let (uses, reserved) = self
            .tokens
            .get(name)
            .map_or((uses, 0), |old| (old.uses, old.reserved));
        self.tokens.insert(
            name.to_string(),
            TokenEntry {
                metadata: token.metadata,
                spec: token.spec,
                secret_hash: token.secret_hash,
                expires_at: token.expires_at,
                uses,
                reserved,
            },
        );
    }

    /// Sets a token's use count (the store's counter); false when no such token is held.
    pub fn set_token_uses(&mut self, name: &str, uses: u64) -> bool {
        match self.tokens.get_mut(name) {
            Some(token) => {
                token.uses = uses;
                true
            }
            None => false,
        }
    }

    pub fn remove_token(&mut self, name: &str) -> bool {
        self.tokens.remove(name).is_some()
    }

    /// Whether a registration of this cluster name is being committed.
    pub fn registration_pending(&self, cluster: &str) -> bool {
        self.pending_registrations.contains(cluster)
    }

    /// Reserves a cluster name and a use of a token for a registration being committed.
    pub fn reserve_registration(&mut self, token: &str, cluster: &str) {
        if let Some(token) = self.tokens.get_mut(token) {
            token.reserved += 1;
        }
        self.pending_registrations.insert(cluster.to_string());
    }

    /// Ends a reservation: the use counts when the registration was committed.
    pub fn settle_registration(&mut self, token: &str, cluster: &str, committed: bool) {
        self.pending_registrations.remove(cluster);
        if let Some(token) = self.tokens.get_mut(token) {
            token.reserved = token.reserved.saturating_sub(1);
            if committed {
                token.uses += 1;
            }
        }
    }

    /// Sets a cluster's credential (and the agent installation it belongs to, when given).
    pub fn set_credential(&mut self, ordinal: u32, client_id: Option<&str>, hash: [u8; 32]) {
        if let Some(cluster) = self.cluster_mut(ordinal) {
            if let Some(client_id) = client_id {
                cluster.client_id = client_id.into();
            }
            cluster.credential_hash = hash;
        }
    }

    pub fn put_secret(&mut self, name: &str, secret: SecretEntry) {
        self.secrets.insert(name.to_string(), secret);
    }

    pub fn remove_secret(&mut self, name: &str) -> bool {
        self.secrets.remove(name).is_some()
    }

    /// Puts a GitRepo; one already held keeps its status.
    pub fn put_gitrepo(&mut self, name: &str, metadata: ObjectMeta, spec: GitRepoSpec) {
        let status = self
            .gitrepos
            .remove(name)
            .map(|old| old.status)
            .unwrap_or_default();
        self.gitrepos.insert(
            name.to_string(),
            GitRepoEntry {
                metadata,
                spec,
                status,
            },
        );
    }

    /// Sets a GitRepo's status; false when no such repository is held.
    pub fn set_gitrepo_status(&mut self, name: &str, status: GitRepoStatus) -> bool {
        match self.gitrepos.get_mut(name) {
            Some(repo) => {
                repo.status = status;
                true
            }
            None => false,
        }
    }

    /// Removes a GitRepo with the bundles it rendered.
    pub fn remove_gitrepo(&mut self, name: &str) -> bool {
        for bundle in self.bundles_owned_by(name) {
            self.remove_bundle(&bundle);
        }
        self.contents.release_unreferenced();
        self.gitrepos.remove(name).is_some()
    }
}

impl Fleet {
    /// Releases content held for bundles that were then not put (see `hold_content`).
    pub fn release_unreferenced_contents(&mut self) {
        self.contents.release_unreferenced();
    }
}

impl Fleet {
    /// Edits the soft part of a GitRepo's status in memory only (when it was last fetched, when
    /// it is next due): worth nothing after a restart, so never written to the store.
    pub fn edit_gitrepo_schedule(&mut self, name: &str, edit: impl FnOnce(&mut GitRepoStatus)) {
        if let Some(repo) = self.gitrepos.get_mut(name) {
            edit(&mut repo.status);
        }
    }
}

/// A cluster's soft state as another process wrote it (the start-up load, another replica).
#[derive(Debug, Default)]
pub struct SoftState {
    pub state: flotilla_api::ClusterState,
    pub last_seen: u64,
    pub facts: flotilla_api::ClusterFacts,
    pub report_digest: Option<String>,
    pub reports: Vec<flotilla_api::agent::BundleReport>,
}

/// What putting soft state changed that the caller schedules around.
#[derive(Debug, Clone, Copy)]
pub struct SoftStateApplied {
    /// The cluster is Online now and was not before.
    pub went_online: bool,
    /// Its last sync (the newer of memory's and the stored one).
    pub last_seen: u64,
    pub sync_interval_seconds: Option<u32>,
}

impl Fleet {
    /// Puts a cluster's stored soft state into memory: facts, state, and each deployment's
    /// report (none for a bundle the state does not report on). Last-seen times only move
    /// forward. None when no such cluster is held.
    pub fn put_soft_state(&mut self, ordinal: u32, soft: SoftState) -> Option<SoftStateApplied> {
        use std::sync::atomic::Ordering;
        let cluster = self.cluster_mut(ordinal)?;
        cluster.facts = soft.facts;
        cluster.report_digest = soft.report_digest;
        cluster
            .last_seen
            .fetch_max(soft.last_seen, Ordering::Relaxed);
        cluster
            .seen_written
            .fetch_max(soft.last_seen, Ordering::Relaxed);
        let applied = SoftStateApplied {
            went_online: soft.state == flotilla_api::ClusterState::Online
                && cluster.state != flotilla_api::ClusterState::Online,
            last_seen: cluster.last_seen.load(Ordering::Relaxed),
            sync_interval_seconds: cluster.facts.sync_interval_seconds,
        };
        let bundles: Vec<u32> = cluster.deployments.iter().map(|d| d.bundle).collect();
        self.set_cluster_state(ordinal, soft.state);
        let mut reports: std::collections::HashMap<u32, flotilla_api::agent::BundleReport> = soft
            .reports
            .into_iter()
            .filter_map(|r| Some((*self.bundle_names.get(&r.bundle)?, r)))
            .collect();
        for bundle in bundles {
            self.record_report(ordinal, bundle, reports.remove(&bundle).map(Box::new));
        }
        Some(applied)
    }
}
