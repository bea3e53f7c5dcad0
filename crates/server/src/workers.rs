//! Background work: the offline sweeper, the soft-state flusher and the content collector.

use std::{
    collections::HashMap,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use flotilla_api::ClusterState;
use flotilla_store::{Op, StoreError};

use crate::{
    fleet::Fleet,
    records::{self, ReportRecord},
    state::{SharedState, now_seconds},
};

/// Most soft-state records one flush writes; the rest wait for the next tick, so a burst never
/// builds one giant transaction.
const MAX_FLUSH_RECORDS: usize = 50_000;

/// Marks clusters Offline when their deadline passes without a sync. Each online cluster sits in
/// the deadline map once; when its slot comes due it is re-checked against its last sync and
/// either rescheduled (it synced meanwhile) or marked Offline. Work is O(clusters due), never a
/// scan of the fleet.
pub async fn offline_sweeper(state: SharedState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // Singleton work: on a shared store only the lease holder turns clusters Offline.
        if state.lease.is_held() {
            sweep_offline(&state, now_seconds());
        }
    }
}

pub fn sweep_offline(state: &SharedState, now: u64) {
    let due: Vec<u32> = {
        let mut deadlines = state.deadlines.lock();
        let later = deadlines.split_off(&(now + 1));
        let due = std::mem::replace(&mut *deadlines, later);
        due.into_values().flatten().collect()
    };
    if due.is_empty() {
        return;
    }
    let mut offline = Vec::new();
    {
        let fleet = state.fleet.read();
        for &ordinal in &due {
            let Some(cluster) = fleet.cluster(ordinal) else {
                continue;
            };
            if cluster.state != ClusterState::Online {
                continue;
            }
            let last_seen = cluster.last_seen.load(Ordering::Relaxed);
            let deadline = last_seen + state.offline_after(cluster.facts.sync_interval_seconds);
            if deadline > now {
                state.schedule_deadline(ordinal, deadline);
            } else {
                offline.push(ordinal);
            }
        }
    }
    if offline.is_empty() {
        return;
    }
    let mut fleet = state.fleet.write();
    let mut went_offline = 0u64;
    for ordinal in offline {
        // Re-check under the write lock: a sync may have landed since the read.
        let Some(cluster) = fleet.cluster(ordinal) else {
            continue;
        };
        let last_seen = cluster.last_seen.load(Ordering::Relaxed);
        let deadline = last_seen + state.offline_after(cluster.facts.sync_interval_seconds);
        if deadline > now {
            state.schedule_deadline(ordinal, deadline);
            continue;
        }
        if fleet.set_cluster_state(ordinal, ClusterState::Offline) {
            went_offline += 1;
            tracing::debug!(cluster = %fleet.cluster(ordinal).map(|c| c.name.to_string()).unwrap_or_default(), "cluster offline");
            state.note_dirty(ordinal);
        }
    }
    drop(fleet);
    // One line per sweep, not per cluster: when a network partition takes a large part of the
    // fleet away at once, a line each would be millions of lines (per-cluster lines at debug).
    if went_offline > 0 {
        tracing::info!(
            clusters = went_offline,
            "clusters went offline (missed their sync deadline)"
        );
    }
}

/// Writes batched soft state (cluster state, facts, bundle reports) every flush interval. One
/// flush is in flight at a time: when the store writes slower than soft state changes, dirty
/// clusters wait in the dirty set (once each, however often they changed) instead of piling up
/// as queued writes in memory.
pub async fn soft_state_flusher(state: SharedState) {
    let mut tick = tokio::time::interval(state.settings.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush_soft_state(&state).await;
    }
}

/// Writes up to [`MAX_FLUSH_RECORDS`] dirty clusters' soft state and returns once it is durable.
/// A failed write marks those clusters dirty again, so the next flush retries them; it returns
/// false then.
pub async fn flush_soft_state(state: &SharedState) -> bool {
    let dirty: Vec<u32> = {
        let mut dirty = state.dirty.lock();
        let batch: Vec<u32> = dirty.iter().take(MAX_FLUSH_RECORDS).collect();
        if let Some(&last) = batch.last() {
            dirty.remove_range(..=last);
        }
        batch
    };
    if dirty.is_empty() {
        return true;
    }
    let (ordinals, ops): (Vec<u32>, Vec<Op>) = {
        let fleet = state.fleet.read();
        dirty
            .into_iter()
            .filter_map(|ordinal| {
                let cluster = fleet.cluster(ordinal)?;
                // Clear the flag first: a change after this read marks it dirty again.
                if !cluster.dirty.swap(false, Ordering::AcqRel) {
                    return None;
                }
                let last_seen = cluster.last_seen.load(Ordering::Relaxed);
                cluster.seen_written.store(last_seen, Ordering::Relaxed);
                let record = ReportRecord {
                    state: cluster.state,
                    last_seen,
                    facts: cluster.facts.clone(),
                    report_digest: cluster.report_digest.clone(),
                    reports: cluster
                        .deployments
                        .iter()
                        .filter_map(|d| d.report.as_deref().cloned())
                        .collect(),
                };
                Some((
                    ordinal,
                    records::put(records::REPORT, &cluster.name, &record),
                ))
            })
            .unzip()
    };
    if ops.is_empty() {
        return true;
    }
    let written = ops.len() as u64;
    match state.store.commit(ops).await {
        Ok(_) => {
            state.metrics.soft_state_writes.inc_by(written);
            true
        }
        Err(error) => {
            tracing::warn!(%error, clusters = written, "soft-state flush failed; will retry");
            let fleet = state.fleet.read();
            let mut dirty = state.dirty.lock();
            for ordinal in ordinals {
                if let Some(cluster) = fleet.cluster(ordinal) {
                    Fleet::mark_dirty(cluster);
                    dirty.insert(ordinal);
                }
            }
            false
        }
    }
}

/// Flushes every dirty cluster's soft state (used at shutdown); returns once it is durable or
/// a write failed (logged).
pub async fn flush_all_soft_state(state: &SharedState) {
    while !state.dirty.lock().is_empty() {
        if !flush_soft_state(state).await {
            tracing::error!("final soft-state flush failed");
            return;
        }
    }
}

/// Most contents one collection pass deletes; the rest wait for the next pass.
const MAX_DROPS_PER_PASS: usize = 4_096;

/// Content no bundle referenced when the collector last looked.
#[derive(Debug, Clone, Copy)]
pub struct Unreferenced {
    /// The revision the store listed it at (its last put).
    revision: u64,
    since: Instant,
}

/// Deletes content no bundle has referenced for [`Settings::content_retention`]. Singleton work:
/// only the lease holder collects (a replica that loses the lease forgets what it saw).
///
/// [`Settings::content_retention`]: crate::state::Settings::content_retention
pub async fn content_collector(state: SharedState) {
    let retention = state.settings.content_retention;
    let every = (retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unreferenced = HashMap::new();
    loop {
        tick.tick().await;
        if !state.lease.is_held() {
            unreferenced.clear();
            continue;
        }
        if let Err(error) = collect_content(&state, &mut unreferenced, retention).await {
            tracing::warn!(%error, "collecting unreferenced content failed; will retry");
        }
    }
}

/// One collection pass: lists the stored contents, remembers the unreferenced ones, and deletes
/// those unreferenced for `retention` at the revision they were first seen at. Returns how many
/// contents it deleted.
///
/// Why a content that a bundle references is never deleted: each write puts again every content
/// its bundle references ([`Op::PutContent`] marks it at the write's revision), and a drop only
/// deletes content not put since the listing ([`Op::DropContent`]). A write committed after the
/// listing therefore saves its content; one committed before is in memory when the collector
/// decides. Local writes, because the collector decides and commits under the admin lock that
/// every content-writing path holds from its check of memory to its apply; other replicas'
/// writes, because it only deletes content listed at a revision the follower has reached.
pub async fn collect_content(
    state: &SharedState,
    unreferenced: &mut HashMap<String, Unreferenced>,
    retention: Duration,
) -> Result<usize, StoreError> {
    let store = state.store.clone();
    let index = tokio::task::spawn_blocking(move || store.content_index())
        .await
        .map_err(|error| StoreError::Unavailable(format!("content listing: {error}")))??;
    let _serialized = state.admin_lock.lock().await;
    let followed = state.followed.load(Ordering::Acquire);
    let now = Instant::now();
    let mut due = Vec::new();
    {
        let fleet = state.fleet.read();
        let referenced = fleet.referenced_digests();
        let mut still = HashMap::with_capacity(unreferenced.len());
        for content in index {
            if referenced.contains(&content.digest) {
                continue;
            }
            // Put again since (a write referenced it, then let go again): a new sighting.
            let seen = match unreferenced.remove(&content.digest) {
                Some(seen) if seen.revision == content.revision => seen,
                _ => Unreferenced {
                    revision: content.revision,
                    since: now,
                },
            };
            if due.len() < MAX_DROPS_PER_PASS
                && now.duration_since(seen.since) >= retention
                && content.revision <= followed
            {
                due.push((content.digest, seen, content.bytes));
            } else {
                still.insert(content.digest, seen);
            }
        }
        *unreferenced = still;
    }
    if due.is_empty() {
        return Ok(0);
    }
    let bytes: u64 = due.iter().map(|(_, _, bytes)| bytes).sum();
    let count = due.len();
    let ops = due
        .iter()
        .map(|(digest, seen, _)| Op::DropContent {
            digest: digest.clone(),
            unless_written_after: seen.revision,
        })
        .collect();
    if let Err(error) = state.store.commit(ops).await {
        // Still due at the next pass.
        unreferenced.extend(due.into_iter().map(|(digest, seen, _)| (digest, seen)));
        return Err(error);
    }
    state.metrics.contents_collected.inc_by(count as u64);
    state.metrics.content_collected_bytes.inc_by(bytes);
    tracing::info!(
        contents = count,
        bytes,
        "deleted content no bundle has referenced for the retention period"
    );
    Ok(count)
}
