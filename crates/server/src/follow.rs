//! Replicas in step: on a shared store every replica applies the others' writes to its own
//! in-memory fleet by reading the store's change feed ([`Store::changes`]) in revision order.
//!
//! The feed is the only carrier of a change (nothing is pushed between replicas). A replica polls
//! it every [`FOLLOW_INTERVAL`] when idle and at once while pages come back full, so a change
//! acknowledged by one replica reaches the others' memory within about one interval plus the
//! time to apply it (`flotilla_store_follow_poll_duration_seconds`).
//!
//! Rules of applying:
//! - A replica's own commits are skipped (the feed marks them local): its memory already holds
//!   them, or something newer.
//! - An object is applied only when its revision is newer than the one memory holds, so a change
//!   from another replica that committed before a local write never undoes it.
//! - The per-cluster parts (credential, soft state) may arrive before their cluster when the
//!   feed shows a cluster at a newer revision than its parts; they wait in [`Pending`] until it
//!   comes.
//! - Soft state (cluster state, facts, reports) is applied as written: whichever replica the
//!   agent synced with last wrote it.
//! - A bundle revision follows its bundle in a commit (the feed orders a revision's changes by
//!   kind: `Bundle` before `BundleRevision`); one that arrives before its bundle (the bundle was
//!   written again later) waits in [`Pending`] too, and so does a run record that names a
//!   candidate its bundle's record (a later change in the feed) has not brought yet.

use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::Ordering,
    time::Duration,
};

use flotilla_core::rollout::planner::Phase;
use flotilla_store::{Change, ChangePage, Cursor, StoreError};

use crate::{
    fleet::{Fleet, clusters::NewCluster, rollouts::RolloutRecord},
    records::{self, BundleRecord, ClusterRecord, CredentialRecord, ReportRecord, RevisionRecord},
    state::SharedState,
};

/// How long an idle follower waits before reading the feed again.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// Changes read per page.
const PAGE: usize = 4_096;

/// Per-cluster parts that arrived before their cluster, token use counts before their token,
/// bundle revisions and run records before their bundle.
#[derive(Default)]
pub struct Pending {
    credentials: HashMap<String, CredentialRecord>,
    reports: HashMap<String, ReportRecord>,
    token_uses: HashMap<String, u64>,
    /// By bundle name, then number: the record and the store revision that wrote it.
    revisions: HashMap<String, BTreeMap<u64, (u64, RevisionRecord)>>,
    /// By bundle name: a run record whose bundle (or candidate) memory does not hold yet.
    rollouts: HashMap<String, RolloutRecord>,
}

/// Follows the store's change feed from `cursor` for as long as the server runs.
pub async fn follower(state: SharedState, mut cursor: Cursor) {
    let mut pending = Pending::default();
    let mut failures = 0u32;
    loop {
        let started = std::time::Instant::now();
        let task_state = state.clone();
        let after = cursor.clone();
        let mut parked = std::mem::take(&mut pending);
        let moved = tokio::task::spawn_blocking(move || {
            let read = task_state.store.changes(&after, PAGE).map(|page| {
                let applied = apply_page(&task_state, &page, &mut parked);
                (page, applied)
            });
            (read, parked)
        })
        .await;
        let moved = match moved {
            Ok((read, parked)) => {
                pending = parked;
                Ok(read)
            }
            Err(join) => Err(join),
        };
        let more = match moved {
            Ok(Ok((page, applied))) => {
                failures = 0;
                state.metrics.follow_changes.inc_by(applied);
                state
                    .metrics
                    .follow_lag_seconds
                    .observe(started.elapsed().as_secs_f64());
                cursor = page.next;
                // A page cut at its limit may end inside a revision: only the ones before it
                // are whole in memory.
                let through = if page.more {
                    cursor.revision.saturating_sub(1)
                } else {
                    cursor.revision
                };
                state.followed.fetch_max(through, Ordering::Release);
                state
                    .metrics
                    .follow_revision
                    .set(i64::try_from(cursor.revision).unwrap_or(i64::MAX));
                page.more
            }
            Ok(Err(StoreError::Compacted { asked, compacted })) => {
                tracing::warn!(
                    asked,
                    compacted,
                    "this replica fell behind the change feed's retention; reloading the fleet"
                );
                state.metrics.follow_reloads.inc();
                match reload(&state).await {
                    Ok(revision) => {
                        pending = Pending::default();
                        cursor = Cursor::after(revision);
                        state.followed.fetch_max(revision, Ordering::Release);
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(%error, "reloading the fleet failed; will retry");
                        false
                    }
                }
            }
            Ok(Err(error)) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(100) {
                    tracing::warn!(%error, failures, "reading the change feed failed; will retry");
                }
                false
            }
            Err(join) => {
                // A panic while applying: the page is lost to this replica; say so loudly and
                // read on (the cursor did not move, so the page is read again).
                tracing::error!(error = %join, "applying the change feed panicked");
                false
            }
        };
        if !more {
            let backoff = FOLLOW_INTERVAL * failures.clamp(1, 50);
            tokio::time::sleep(backoff).await;
        }
    }
}

/// Replaces the model with a fresh load (the feed no longer covers this replica's gap). Soft
/// state not yet flushed is lost; agents re-send it.
async fn reload(state: &SharedState) -> anyhow::Result<u64> {
    let store = state.store.clone();
    let loaded = tokio::task::spawn_blocking(move || records::load(&*store)).await??;
    let revision = loaded.revision;
    let now = crate::state::now_seconds();
    {
        let mut fleet = state.fleet.write();
        *fleet = loaded.fleet;
        state.dirty.lock().clear();
        state.deadlines.lock().clear();
        for ordinal in loaded.online {
            if let Some(cluster) = fleet.cluster(ordinal) {
                let deadline = now + state.offline_after(cluster.facts.sync_interval_seconds);
                state.schedule_deadline(ordinal, deadline);
            }
        }
    }
    Ok(revision)
}

/// Content the page's bundles and revisions need that memory does not hold, read before the
/// fleet is locked.
fn prefetch_contents(
    state: &SharedState,
    bundles: &[(&str, u64, BundleRecord)],
    revisions: &[(&str, u64, RevisionRecord)],
) -> HashMap<String, axum::body::Bytes> {
    let mut wanted: Vec<String> = Vec::new();
    for (_, _, record) in bundles {
        wanted.push(record.spec_digest.clone());
        wanted.extend(record.spec_target_digests.iter().flatten().cloned());
        for live in record.live.iter().chain(record.candidate.iter()) {
            wanted.extend(live.digests().map(str::to_string));
        }
    }
    for (_, _, record) in revisions {
        wanted.extend(record.live.digests().map(str::to_string));
    }
    {
        let fleet = state.fleet.read();
        wanted.retain(|digest| !fleet.contents().contains_key(digest));
    }
    let mut found = HashMap::new();
    for digest in wanted {
        if found.contains_key(&digest) {
            continue;
        }
        match state.store.content(&digest) {
            Ok(Some(bytes)) => {
                found.insert(digest, axum::body::Bytes::from(bytes));
            }
            Ok(None) => tracing::error!(%digest, "content of a followed bundle is missing"),
            Err(error) => tracing::warn!(%error, %digest, "reading a followed bundle's content"),
        }
    }
    found
}

fn decode<T: for<'de> serde::Deserialize<'de>>(kind: &str, name: &str, doc: &[u8]) -> Option<T> {
    match serde_json::from_slice(doc) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::error!(%kind, %name, %error, "cannot decode a followed record; skipped");
            None
        }
    }
}

fn revision_of(metadata: &flotilla_api::ObjectMeta) -> u64 {
    metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether memory holds the object at `revision` or newer (a followed change must not undo it).
fn holds_newer(held: Option<&flotilla_api::ObjectMeta>, revision: u64) -> bool {
    held.is_some_and(|metadata| revision_of(metadata) >= revision)
}

/// Whether memory holds the object at a revision older than a followed deletion's.
fn holds_older(held: Option<&flotilla_api::ObjectMeta>, revision: u64) -> bool {
    held.is_some_and(|metadata| revision_of(metadata) < revision)
}

/// Applies one page's foreign changes; returns how many were applied.
pub fn apply_page(state: &SharedState, page: &ChangePage, pending: &mut Pending) -> u64 {
    let foreign: Vec<&Change> = page
        .changes
        .iter()
        .filter(|change| !page.local.contains(&change.revision()))
        .collect();
    if foreign.is_empty() {
        return 0;
    }
    let bundles: Vec<(&str, u64, BundleRecord)> = foreign
        .iter()
        .filter_map(|change| match change {
            Change::Put {
                kind,
                name,
                revision,
                doc,
            } if kind == records::BUNDLE => {
                decode(kind, name, doc).map(|record| (name.as_str(), *revision, record))
            }
            _ => None,
        })
        .collect();
    let revisions: Vec<(&str, u64, RevisionRecord)> = foreign
        .iter()
        .filter_map(|change| match change {
            Change::Put {
                kind,
                name,
                revision,
                doc,
            } if kind == records::BUNDLE_REVISION => {
                decode(kind, name, doc).map(|record| (name.as_str(), *revision, record))
            }
            _ => None,
        })
        .collect();
    let mut contents = prefetch_contents(state, &bundles, &revisions);
    let mut bundles: HashMap<&str, (u64, BundleRecord)> = bundles
        .into_iter()
        .map(|(name, revision, record)| (name, (revision, record)))
        .collect();
    let mut revisions: HashMap<&str, (u64, RevisionRecord)> = revisions
        .into_iter()
        .map(|(name, revision, record)| (name, (revision, record)))
        .collect();
    let mut fleet = state.fleet.write();
    let prefetched = !contents.is_empty();
    for (digest, bytes) in contents.drain() {
        fleet.hold_content(digest, bytes);
    }
    let mut applied = 0;
    for change in foreign {
        let done = match change {
            Change::Put {
                kind,
                name,
                revision,
                doc,
            } => {
                if kind == records::BUNDLE {
                    bundles
                        .remove(name.as_str())
                        .is_some_and(|(revision, record)| {
                            put_bundle(state, &mut fleet, pending, revision, record)
                        })
                } else if kind == records::BUNDLE_REVISION {
                    revisions
                        .remove(name.as_str())
                        .is_some_and(|(revision, record)| {
                            put_revision(state, &mut fleet, pending, name, revision, record)
                        })
                } else {
                    put(state, &mut fleet, pending, kind, name, *revision, doc)
                }
            }
            Change::Delete {
                kind,
                name,
                revision,
            } => delete(state, &mut fleet, pending, kind, name, *revision),
            Change::Counter { name, value, .. } => counter(&mut fleet, pending, name, *value),
        };
        applied += u64::from(done);
    }
    // Content prefetched for a bundle that was then not applied (memory held it newer).
    if prefetched {
        fleet.release_unreferenced_contents();
    }
    applied
}

/// Reads followed content memory does not hold from the store.
fn store_content(
    state: &SharedState,
) -> impl FnMut(&str) -> anyhow::Result<axum::body::Bytes> + '_ {
    |digest: &str| {
        state
            .store
            .content(digest)?
            .map(axum::body::Bytes::from)
            .ok_or_else(|| anyhow::anyhow!("content {digest} of a followed bundle is missing"))
    }
}

fn put_bundle(
    state: &SharedState,
    fleet: &mut Fleet,
    pending: &mut Pending,
    revision: u64,
    record: BundleRecord,
) -> bool {
    let name = record.metadata.name.clone();
    if holds_newer(
        fleet.bundle_by_name(&name).map(|(_, b)| &b.metadata),
        revision,
    ) {
        return false;
    }
    if let Err(error) = records::apply_bundle(fleet, record, revision, &mut store_content(state)) {
        tracing::error!(bundle = %name, %error, "cannot apply a followed bundle; skipped");
        return false;
    }
    // Revisions that arrived before their bundle.
    for (number, (written, record)) in pending.revisions.remove(&name).unwrap_or_default() {
        let record_name = records::revision_name(&name, number);
        put_revision(state, fleet, pending, &record_name, written, record);
    }
    // A run record that arrived before the bundle record naming its candidate.
    if let Some(record) = pending.rollouts.remove(&name) {
        if run_record_fits(fleet, &name, &record) {
            follow_run(fleet, &name, record);
        } else {
            pending.rollouts.insert(name, record);
        }
    }
    true
}

/// Whether memory holds what a followed run record is about: its bundle and, for a run still
/// going, the candidate it rolls out.
fn run_record_fits(fleet: &Fleet, bundle: &str, record: &RolloutRecord) -> bool {
    fleet.bundle_by_name(bundle).is_some_and(|(_, entry)| {
        let ended = record.ended.is_some()
            || record
                .saved
                .as_ref()
                .is_some_and(|saved| matches!(saved.phase, Phase::Succeeded | Phase::RolledBack));
        ended || entry.candidate.as_ref().map(|c| c.revision) == Some(record.to)
    })
}

fn follow_run(fleet: &mut Fleet, bundle: &str, record: RolloutRecord) -> bool {
    fleet.follow_rollout_record(bundle, record, |written| {
        flotilla_core::rollout::strategy::compile(bundle, written).ok()
    })
}

/// Puts a followed bundle revision, unless memory holds it from the same write or a newer one;
/// one whose bundle memory does not hold yet waits for it.
fn put_revision(
    state: &SharedState,
    fleet: &mut Fleet,
    pending: &mut Pending,
    name: &str,
    revision: u64,
    record: RevisionRecord,
) -> bool {
    let Some((bundle, number)) = records::parse_revision_name(name) else {
        tracing::error!(record = %name, "a followed bundle revision has a bad name; skipped");
        return false;
    };
    let Some((_, held)) = fleet.bundle_by_name(bundle) else {
        pending
            .revisions
            .entry(bundle.to_string())
            .or_default()
            .insert(number, (revision, record));
        return true;
    };
    if held
        .revisions
        .get(&number)
        .is_some_and(|held| held.written >= revision)
    {
        return false;
    }
    match records::apply_revision(fleet, name, record, revision, &mut store_content(state)) {
        Ok(applied) => applied,
        Err(error) => {
            tracing::error!(record = %name, %error, "cannot apply a followed bundle revision; skipped");
            false
        }
    }
}

fn put(
    state: &SharedState,
    fleet: &mut Fleet,
    pending: &mut Pending,
    kind: &str,
    name: &str,
    revision: u64,
    doc: &[u8],
) -> bool {
    match kind {
        records::CLUSTER => {
            let Some(record) = decode::<ClusterRecord>(kind, name, doc) else {
                return false;
            };
            if let Some((ordinal, cluster)) = fleet.cluster_by_name(name) {
                if cluster.revision >= revision {
                    return false;
                }
                fleet.relabel_cluster(ordinal, &record.labels, record.generation, revision);
                return true;
            }
            let credential = pending.credentials.remove(name);
            let ordinal = fleet.insert_cluster(NewCluster {
                name: name.to_string(),
                labels: record.labels,
                credential_hash: credential
                    .as_ref()
                    .and_then(|c| records::parse_hash(&c.hash))
                    .unwrap_or_default(),
                client_id: credential.map(|c| c.client_id).unwrap_or_default(),
                generation: record.generation,
                revision,
                created: record.created,
            });
            if let Some(report) = pending.reports.remove(name) {
                apply_report(state, fleet, ordinal, report);
            }
            true
        }
        records::CREDENTIAL => {
            let Some(record) = decode::<CredentialRecord>(kind, name, doc) else {
                return false;
            };
            match fleet.cluster_by_name(name).map(|(ordinal, _)| ordinal) {
                Some(ordinal) => {
                    records::apply_credential(fleet, ordinal, &record);
                }
                None => {
                    pending.credentials.insert(name.to_string(), record);
                }
            }
            true
        }
        records::REPORT => {
            let Some(record) = decode::<ReportRecord>(kind, name, doc) else {
                return false;
            };
            match fleet.cluster_by_name(name).map(|(ordinal, _)| ordinal) {
                Some(ordinal) => apply_report(state, fleet, ordinal, record),
                None => {
                    pending.reports.insert(name.to_string(), record);
                }
            }
            true
        }
        records::GROUP => {
            let Some(record) = decode::<records::GroupRecord>(kind, name, doc) else {
                return false;
            };
            if holds_newer(fleet.groups().get(name).map(|g| &g.metadata), revision) {
                return false;
            }
            match records::apply_group(fleet, name, record, revision) {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(group = %name, %error, "followed group has a bad selector");
                    false
                }
            }
        }
        records::TOKEN => {
            let Some(record) = decode::<records::TokenRecord>(kind, name, doc) else {
                return false;
            };
            if holds_newer(fleet.tokens().get(name).map(|t| &t.metadata), revision) {
                return false;
            }
            let uses = pending.token_uses.remove(name).unwrap_or(0);
            records::apply_token(fleet, name, record, revision, uses);
            true
        }
        records::SECRET => {
            let Some(record) = decode::<records::SecretRecord>(kind, name, doc) else {
                return false;
            };
            if holds_newer(fleet.secrets().get(name).map(|s| &s.metadata), revision) {
                return false;
            }
            records::apply_secret(fleet, name, record, revision);
            true
        }
        records::GITREPO => {
            let Some(record) = decode::<records::GitRepoRecord>(kind, name, doc) else {
                return false;
            };
            if holds_newer(fleet.gitrepos().get(name).map(|r| &r.metadata), revision) {
                return false;
            }
            records::apply_gitrepo(fleet, name, record, revision);
            true
        }
        records::GITREPO_STATUS => {
            let Some(record) = decode::<records::GitRepoStatusRecord>(kind, name, doc) else {
                return false;
            };
            fleet.set_gitrepo_status(name, record.status)
        }
        records::ROLLOUT => {
            let Some(record) = decode::<RolloutRecord>(kind, name, doc) else {
                return false;
            };
            if !run_record_fits(fleet, name, &record) {
                pending.rollouts.insert(name.to_string(), record);
                return true;
            }
            pending.rollouts.remove(name);
            follow_run(fleet, name, record)
        }
        _ => false,
    }
}

fn delete(
    state: &SharedState,
    fleet: &mut Fleet,
    pending: &mut Pending,
    kind: &str,
    name: &str,
    revision: u64,
) -> bool {
    match kind {
        records::CLUSTER => {
            pending.credentials.remove(name);
            pending.reports.remove(name);
            match fleet.cluster_by_name(name) {
                Some((ordinal, cluster)) if cluster.revision < revision => {
                    fleet.remove_cluster(ordinal);
                    true
                }
                _ => false,
            }
        }
        records::BUNDLE => {
            pending.revisions.remove(name);
            pending.rollouts.remove(name);
            let older = holds_older(
                fleet.bundle_by_name(name).map(|(_, b)| &b.metadata),
                revision,
            );
            if older {
                fleet.delete_bundle(name);
            }
            older
        }
        records::BUNDLE_REVISION => {
            let Some((bundle, number)) = records::parse_revision_name(name) else {
                return false;
            };
            if let Some(parked) = pending.revisions.get_mut(bundle) {
                parked.remove(&number);
            }
            let older = fleet.bundle_by_name(bundle).is_some_and(|(_, held)| {
                held.revisions
                    .get(&number)
                    .is_some_and(|held| held.written < revision)
            });
            older && fleet.remove_revision(bundle, number)
        }
        records::GROUP => {
            let older = holds_older(fleet.groups().get(name).map(|g| &g.metadata), revision);
            if older {
                fleet.remove_group(name);
            }
            older
        }
        records::TOKEN => {
            let older = holds_older(fleet.tokens().get(name).map(|t| &t.metadata), revision);
            older && fleet.remove_token(name)
        }
        records::SECRET => {
            let older = holds_older(fleet.secrets().get(name).map(|s| &s.metadata), revision);
            older && fleet.remove_secret(name)
        }
        records::GITREPO => {
            let older = holds_older(fleet.gitrepos().get(name).map(|r| &r.metadata), revision);
            if older {
                fleet.remove_gitrepo(name);
                state.gitops.forget(name);
            }
            older
        }
        records::ROLLOUT => match fleet.bundle_by_name(name).filter(|_| {
            pending.rollouts.remove(name);
            true
        }) {
            Some((ordinal, _)) => {
                fleet.end_run(ordinal);
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn counter(fleet: &mut Fleet, pending: &mut Pending, name: &str, value: Option<i64>) -> bool {
    let Some(token) = name.strip_prefix("token-uses/") else {
        return false;
    };
    let uses = value.unwrap_or(0).max(0) as u64;
    if !fleet.set_token_uses(token, uses) {
        pending.token_uses.insert(token.to_string(), uses);
    }
    true
}

/// Puts another replica's view of a cluster's soft state into this one's model.
fn apply_report(state: &SharedState, fleet: &mut Fleet, ordinal: u32, report: ReportRecord) {
    if let Some(applied) = fleet.put_soft_state(ordinal, report.into())
        && applied.went_online
    {
        let deadline = applied.last_seen + state.offline_after(applied.sync_interval_seconds);
        state.schedule_deadline(ordinal, deadline);
    }
}
