//! `GET /api/v1/{plural}?watch=true`: a stream of newline-delimited JSON watch events, as
//! Kubernetes sends them (`{"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR","object":…}`),
//! first one `ADDED` per current object, then one event per change.
//!
//! Cost is O(change), not O(watches × fleet):
//! - **One hub per replica** reads the store's change feed (`Store::changes`, the feed the
//!   follower reads, so writes made on *any* replica are seen), waits until this replica's
//!   memory holds each change (its object's revision reached the change's), renders the object
//!   once, as a GET returns it, and publishes it on a `tokio::sync::broadcast`. With no watch
//!   open it renders nothing. It is started by the first watch and first catches up with the
//!   feed without publishing (watches wait for that before their initial list).
//! - **Each watch** filters the broadcast by kind, name and label selector and remembers the
//!   revision it sent per name (so a change already in its initial list is not sent twice, an
//!   object that starts matching the selector is `ADDED` and one that stops matching is
//!   `DELETED`, as Kubernetes' watch cache does). That map is the one per-watch cost that grows
//!   with the fleet: a name and a revision per object the watch shows.
//! - **Bounds:** `Settings::max_watches` open at once (429 past it); the broadcast's capacity
//!   (`Settings::watch_queue`) is each watch's queue: a watch that falls further behind gets a
//!   final `ERROR` event (410 Expired) and ends, so a slow client costs no memory; a line the
//!   client does not take within [`SEND_TIMEOUT`] ends the watch too. Every watch ends when the
//!   server stops (`Watches::stop`), so the graceful drain never waits on one.
//! - **What is an event:** a change of a stored record of the kind (admin writes, git renders,
//!   registrations, label changes). Soft state (a cluster going Online/Offline, agent reports,
//!   bundle counters) is not: it changes on every sync somewhere in a million clusters, and a
//!   watch on clusters must not turn those into a stream. A BOOKMARK every [`HEARTBEAT`] keeps
//!   proxies from closing an idle watch and frees the slot of a client that went away; one
//!   annotated `k8s.io/initial-events-end` follows the initial ADDED events.
//! - **Where a watch starts:** at the current state, with its objects as `ADDED` events. Lists
//!   carry no resourceVersion to resume from and the hub keeps no history, so `resourceVersion`
//!   other than empty or `0` is answered 410 Gone (list and watch again), as Kubernetes does
//!   for a version it no longer holds.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use flotilla_api::{API_VERSION, Kind, ObjectMeta};
use flotilla_core::selector::Selector;
use flotilla_store::{Change, ChangePage, Cursor, StoreError};
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc};

use crate::{
    error::{ApiError, ApiResult},
    fleet::Fleet,
    state::{SharedState, WatchChange, now_seconds},
    view,
};

/// How often the hub reads the change feed when it is idle (the follower's interval).
const POLL: Duration = Duration::from_millis(100);
/// Changes read per page of the feed.
const PAGE: usize = 4_096;
/// Objects rendered per hold of the read lock while a watch sends its initial list.
const INITIAL_PAGE: usize = 500;
/// A BOOKMARK event this often on a watch that had nothing else to say.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// Longest a watch waits for its client to take one line before it ends.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the hub waits for a committed change to reach this replica's memory before it
/// gives up on it (logged): a follower that cannot apply a record must not stall every watch.
const APPLY_WAIT: Duration = Duration::from_secs(5);
/// Lines queued between a watch's task and its response body.
const BODY_QUEUE: usize = 16;

/// What a watch shows: one kind, optionally one name, optionally a label selector.
pub struct WatchFilter {
    pub kind: Kind,
    pub name: Option<String>,
    pub selector: Option<Selector>,
}

impl WatchFilter {
    fn wants(&self, kind: Kind, name: &str, labels: &BTreeMap<String, String>) -> bool {
        kind == self.kind
            && self.name.as_deref().is_none_or(|wanted| wanted == name)
            && self.selector.as_ref().is_none_or(|s| s.matches_map(labels))
    }
}

/// `metadata.name=NAME` (the only field selector a watch takes), as kubectl sends for
/// `get KIND NAME --watch`.
pub fn parse_field_selector(text: Option<&str>) -> ApiResult<Option<String>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    text.strip_prefix("metadata.name=")
        .or_else(|| text.strip_prefix("metadata.name=="))
        .filter(|name| !name.is_empty() && !name.contains(','))
        .map(|name| Some(name.to_string()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unsupported fieldSelector {text:?}; only metadata.name=NAME is served"
            ))
        })
}

/// Answers a watch request: 429 past `max_watches`, 410 for a resourceVersion to resume from,
/// otherwise a streaming `200` whose body ends when the watch does.
pub fn serve(
    state: &SharedState,
    filter: WatchFilter,
    resource_version: Option<&str>,
) -> ApiResult<Response> {
    if resource_version.is_some_and(|v| !v.is_empty() && v != "0") {
        return Err(ApiError::Gone(
            "a watch starts from the current objects, sent first as ADDED events; omit \
             resourceVersion (or pass 0) and watch again"
                .into(),
        ));
    }
    if state.watches.is_stopped() {
        return Err(ApiError::Unavailable(
            "the server is shutting down; watch another replica or retry".into(),
        ));
    }
    let slot = Slot::take(state)?;
    // Subscribe before reading memory for the initial list: a change memory applies after the
    // list was read is published after this point, so it is never missed (see `run`).
    let changes = state.watches.changes.subscribe();
    if !state.watches.hub_started.swap(true, Ordering::AcqRel) {
        tokio::spawn(hub(state.clone()));
    }
    let (lines, body) = mpsc::channel::<Bytes>(BODY_QUEUE);
    tokio::spawn(run(state.clone(), slot, filter, changes, lines));
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        let line = body.recv().await?;
        Some((Ok::<_, std::io::Error>(line), body))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One open watch, counted against `Settings::max_watches` until dropped.
struct Slot(SharedState);

impl Slot {
    fn take(state: &SharedState) -> ApiResult<Slot> {
        let limit = state.settings.max_watches;
        let before = state.watches.open.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(state.clone());
        if before >= limit {
            return Err(ApiError::Status {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "too many open watches: this server serves {limit} at once (--max-watches); \
                     close one or retry later"
                ),
            });
        }
        Ok(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.watches.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one received change means for one watch.
enum Step {
    Skip,
    Send(Bytes),
    /// Send this, then end the watch.
    End(Bytes),
}

/// One watch: its initial list, then the changes it wants, until the client goes, it falls
/// behind, or the server stops.
async fn run(
    state: SharedState,
    _slot: Slot,
    filter: WatchFilter,
    mut changes: broadcast::Receiver<Arc<WatchChange>>,
    lines: mpsc::Sender<Bytes>,
) {
    let stopped = state.watches.stopped();
    tokio::pin!(stopped);
    // The hub skips the changes it finds applied while it catches up (every watch open then
    // reads them in its initial list, which it renders only after).
    tokio::select! {
        _ = &mut stopped => return,
        // A client that leaves while it waits frees its slot.
        _ = lines.closed() => return,
        _ = state.watches.caught_up() => {}
    }
    // Revision sent per name: what the client holds.
    let mut sent: HashMap<String, u64> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let (page, last) = {
            let fleet = state.fleet.read();
            initial_page(&fleet, &filter, after.as_deref(), &mut sent)
        };
        for line in page {
            if !send(&lines, line, &mut stopped).await {
                return;
            }
        }
        let Some(name) = last else {
            break;
        };
        // Changes published while the list is sent: those about names already listed are
        // sent now (a long list on a busy fleet would otherwise overflow the queue and end
        // with 410 at its end); those about names still to come are in the pages ahead.
        loop {
            let change = match changes.try_recv() {
                Ok(change) => change,
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    let line = lagged_line(missed, state.settings.watch_queue);
                    let _ = send(&lines, line, &mut stopped).await;
                    return;
                }
                Err(broadcast::error::TryRecvError::Closed) => return,
            };
            if let WatchChange::Object { name: changed, .. } = &*change
                && changed.as_str() > name.as_str()
            {
                continue;
            }
            match step(&filter, &mut sent, &change) {
                Step::Skip => {}
                Step::Send(line) => {
                    if !send(&lines, line, &mut stopped).await {
                        return;
                    }
                }
                Step::End(line) => {
                    let _ = send(&lines, line, &mut stopped).await;
                    return;
                }
            }
        }
        after = Some(name);
    }
    if !send(&lines, bookmark(filter.kind, true), &mut stopped).await {
        return;
    }
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        let step = tokio::select! {
            _ = &mut stopped => return,
            _ = heartbeat.tick() => Step::Send(bookmark(filter.kind, false)),
            received = changes.recv() => {
                received_step(&filter, &mut sent, received, state.settings.watch_queue)
            }
        };
        match step {
            Step::Skip => {}
            Step::Send(line) => {
                if !send(&lines, line, &mut stopped).await {
                    return;
                }
                heartbeat.reset();
            }
            Step::End(line) => {
                if !line.is_empty() {
                    let _ = send(&lines, line, &mut stopped).await;
                }
                return;
            }
        }
    }
}

/// Queues a line for the client; false when the client went away or stopped reading, or the
/// server is stopping (a client that reads nothing never holds up a shutdown).
async fn send(
    lines: &mpsc::Sender<Bytes>,
    line: Bytes,
    stopped: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> bool {
    tokio::select! {
        _ = stopped.as_mut() => false,
        sent = tokio::time::timeout(SEND_TIMEOUT, lines.send(line)) => matches!(sent, Ok(Ok(()))),
    }
}

/// What a watch does with what its queue gave: a change, or the news that it fell behind
/// (the queue dropped changes it had not read: it ends with 410 Expired, as Kubernetes'
/// "too old resource version", and its client watches again).
fn received_step(
    filter: &WatchFilter,
    sent: &mut HashMap<String, u64>,
    received: Result<Arc<WatchChange>, broadcast::error::RecvError>,
    queue: usize,
) -> Step {
    match received {
        Ok(change) => step(filter, sent, &change),
        Err(broadcast::error::RecvError::Lagged(missed)) => Step::End(lagged_line(missed, queue)),
        Err(broadcast::error::RecvError::Closed) => Step::End(Bytes::new()),
    }
}

/// The last line of a watch that fell behind: 410 Expired, as Kubernetes' "too old resource
/// version"; its client watches again.
fn lagged_line(missed: u64, queue: usize) -> Bytes {
    error_line(
        StatusCode::GONE,
        "Expired",
        &format!(
            "this watch fell {missed} changes behind (the server queues {queue} per watch); watch again"
        ),
    )
}

/// The watch's decision on one published change.
fn step(filter: &WatchFilter, sent: &mut HashMap<String, u64>, change: &WatchChange) -> Step {
    let WatchChange::Object {
        kind,
        name,
        revision,
        labels,
        object,
    } = change
    else {
        return Step::End(error_line(
            StatusCode::GONE,
            "Expired",
            "the server lost track of changes (its change feed was compacted); watch again",
        ));
    };
    if *kind != filter.kind || filter.name.as_deref().is_some_and(|n| n != name) {
        return Step::Skip;
    }
    let Some(object) = object else {
        return match sent.get(name).copied() {
            // A delete older than what the client holds (deleted, then created again before
            // this watch listed it) is no news.
            Some(held) if held > *revision => Step::Skip,
            Some(_) => {
                sent.remove(name);
                Step::Send(event_line("DELETED", &deleted_stub(*kind, name, *revision)))
            }
            None => Step::Skip,
        };
    };
    let matches = filter.wants(*kind, name, labels);
    match (sent.get(name).copied(), matches) {
        (Some(held), true) if held >= *revision => Step::Skip,
        (Some(_), true) => {
            sent.insert(name.clone(), *revision);
            Step::Send(event_line("MODIFIED", object.get()))
        }
        (None, true) => {
            sent.insert(name.clone(), *revision);
            Step::Send(event_line("ADDED", object.get()))
        }
        // It no longer matches the selector: gone from this watch's view.
        (Some(_), false) => {
            sent.remove(name);
            Step::Send(event_line("DELETED", object.get()))
        }
        (None, false) => Step::Skip,
    }
}

/// Up to [`INITIAL_PAGE`] of the watch's current objects after `after`, as ADDED lines, and
/// the last name visited when there may be more.
fn initial_page(
    fleet: &Fleet,
    filter: &WatchFilter,
    after: Option<&str>,
    sent: &mut HashMap<String, u64>,
) -> (Vec<Bytes>, Option<String>) {
    let range = (
        after.map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Unbounded,
    );
    let names: Box<dyn Iterator<Item = &str>> = match &filter.name {
        Some(name) => Box::new(std::iter::once(name.as_str()).filter(move |_| after.is_none())),
        None => match filter.kind {
            Kind::Cluster => Box::new(
                fleet
                    .cluster_names()
                    .range::<str, _>(range)
                    .map(|(n, _)| &**n),
            ),
            Kind::Bundle => Box::new(
                fleet
                    .bundle_names()
                    .range::<str, _>(range)
                    .map(|(n, _)| n.as_str()),
            ),
            Kind::ClusterGroup => Box::new(
                fleet
                    .groups()
                    .range::<str, _>(range)
                    .map(|(n, _)| n.as_str()),
            ),
            Kind::RegistrationToken => Box::new(
                fleet
                    .tokens()
                    .range::<str, _>(range)
                    .map(|(n, _)| n.as_str()),
            ),
            Kind::GitRepo => Box::new(
                fleet
                    .gitrepos()
                    .range::<str, _>(range)
                    .map(|(n, _)| n.as_str()),
            ),
            Kind::Secret => Box::new(
                fleet
                    .secrets()
                    .range::<str, _>(range)
                    .map(|(n, _)| n.as_str()),
            ),
        },
    };
    let mut lines = Vec::new();
    let mut visited = 0;
    let mut last = None;
    for name in names.take(INITIAL_PAGE) {
        visited += 1;
        last = Some(name);
        let Some((revision, labels, object)) = render(fleet, filter.kind, name) else {
            continue;
        };
        if !filter.wants(filter.kind, name, &labels) {
            continue;
        }
        sent.insert(name.to_string(), revision);
        lines.push(event_line("ADDED", object.get()));
    }
    let more = visited == INITIAL_PAGE && filter.name.is_none();
    (lines, last.filter(|_| more).map(str::to_string))
}

/// `{"type":TYPE,"object":OBJECT}` and a newline.
fn event_line(kind: &str, object: &str) -> Bytes {
    Bytes::from(format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n"))
}

/// The object of a DELETED event: memory no longer holds the object, so it names it (and the
/// revision of the deletion) only.
fn deleted_stub(kind: Kind, name: &str, revision: u64) -> String {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": kind.as_str(),
        "metadata": {"name": name, "resourceVersion": revision.to_string()},
    })
    .to_string()
}

/// The annotation of the BOOKMARK that follows the initial ADDED events (Kubernetes' name).
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A BOOKMARK: nothing changed; the connection is alive. After the initial list it carries
/// [`INITIAL_EVENTS_END`], so a client knows the current objects are all there.
fn bookmark(kind: Kind, initial_end: bool) -> Bytes {
    let annotations = if initial_end {
        serde_json::json!({ INITIAL_EVENTS_END: "true" })
    } else {
        serde_json::json!({})
    };
    let object = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": kind.as_str(),
        "metadata": {"annotations": annotations},
    });
    event_line("BOOKMARK", &object.to_string())
}

/// A final ERROR event, its object a Kubernetes `Status`.
fn error_line(status: StatusCode, reason: &str, message: &str) -> Bytes {
    let object = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": status.as_u16(),
        "reason": reason,
        "message": message,
    });
    event_line("ERROR", &object.to_string())
}

fn revision_of(metadata: &ObjectMeta) -> u64 {
    metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The revision of the object memory holds under this name, if any (cheap: no rendering).
fn held_revision(fleet: &Fleet, kind: Kind, name: &str) -> Option<u64> {
    match kind {
        Kind::Cluster => fleet.cluster_by_name(name).map(|(_, c)| c.revision),
        Kind::Bundle => fleet
            .bundle_by_name(name)
            .map(|(_, b)| revision_of(&b.metadata)),
        Kind::ClusterGroup => fleet.groups().get(name).map(|g| revision_of(&g.metadata)),
        Kind::RegistrationToken => fleet.tokens().get(name).map(|t| revision_of(&t.metadata)),
        Kind::GitRepo => fleet.gitrepos().get(name).map(|r| revision_of(&r.metadata)),
        Kind::Secret => fleet.secrets().get(name).map(|s| revision_of(&s.metadata)),
    }
}

type Rendered = (u64, BTreeMap<String, String>, Box<RawValue>);

fn rendered<T: serde::Serialize>(object: &T, metadata: &ObjectMeta) -> Option<Rendered> {
    let raw = serde_json::value::to_raw_value(object).ok()?;
    Some((revision_of(metadata), metadata.labels.clone(), raw))
}

/// The object as `GET /api/v1/{plural}/{name}` returns it, with its revision and labels.
fn render(fleet: &Fleet, kind: Kind, name: &str) -> Option<Rendered> {
    match kind {
        Kind::Cluster => {
            let (ordinal, _) = fleet.cluster_by_name(name)?;
            let object = view::cluster(fleet, ordinal)?;
            rendered(&object, &object.metadata)
        }
        Kind::Bundle => {
            let (_, entry) = fleet.bundle_by_name(name)?;
            let object = view::bundle(fleet, entry);
            rendered(&object, &object.metadata)
        }
        Kind::ClusterGroup => {
            let entry = fleet.groups().get(name)?;
            let object = view::group(fleet, name, entry);
            rendered(&object, &object.metadata)
        }
        Kind::RegistrationToken => {
            let object = view::token(fleet.tokens().get(name)?, now_seconds(), None);
            rendered(&object, &object.metadata)
        }
        Kind::GitRepo => {
            let object = view::gitrepo(fleet, name)?;
            rendered(&object, &object.metadata)
        }
        Kind::Secret => {
            let object = view::secret(fleet, name)?;
            rendered(&object, &object.metadata)
        }
    }
}

/// The API kind of a stored record kind; None for internal records (credentials, soft state,
/// revisions, run records, a GitRepo's status).
fn served_kind(record_kind: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == record_kind)
}

/// The feed position just after a change.
fn position(change: &Change) -> Cursor {
    let key = match change {
        Change::Put { kind, name, .. } | Change::Delete { kind, name, .. } => {
            (kind.clone(), name.clone())
        }
        Change::Counter { name, .. } => (String::new(), name.clone()),
    };
    Cursor {
        revision: change.revision(),
        key: Some(key),
    }
}

/// The hub: reads the change feed from the revision the fleet was loaded at and publishes
/// each change of a served kind once memory holds it, until the server stops. Started by the
/// first watch, it first catches up without publishing: every change it finds applied then is
/// in the initial list of the watches waiting for it (`Watches::caught_up`), and publishing
/// them would only flood those watches' queues with what they already have.
async fn hub(state: SharedState) {
    let mut cursor = Cursor::after(state.watches.loaded_revision);
    let mut waiting_since = None;
    let stopped = state.watches.stopped();
    tokio::pin!(stopped);
    let mut failures = 0u32;
    let mut catching_up = true;
    loop {
        if state.watches.is_stopped() {
            return;
        }
        let store = state.store.clone();
        let after = cursor.clone();
        let read = tokio::task::spawn_blocking(move || store.changes(&after, PAGE)).await;
        let mut again = false;
        match read {
            Ok(Ok(page)) => {
                failures = 0;
                let (next, stalled) =
                    publish(&state, &page, cursor, &mut waiting_since, !catching_up);
                cursor = next;
                again = page.more && !stalled;
                if catching_up && !page.more && !stalled {
                    catching_up = false;
                    state.watches.mark_caught_up();
                }
            }
            Ok(Err(StoreError::Compacted { compacted, .. })) => {
                tracing::warn!(
                    compacted,
                    "the watch hub fell behind the change feed's retention; open watches end"
                );
                let _ = state.watches.changes.send(Arc::new(WatchChange::Expired));
                cursor = Cursor::after(compacted);
                again = true;
            }
            Ok(Err(error)) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(100) {
                    tracing::warn!(%error, failures, "the watch hub could not read the change feed; will retry");
                }
            }
            Err(error) => tracing::error!(%error, "the watch hub failed reading the change feed"),
        }
        if again {
            continue;
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(POLL * failures.clamp(1, 50)) => {}
        }
    }
}

/// Publishes (when `announce`) a page's changes of served kinds, in order, while memory holds
/// them; returns where to read next and whether it stopped at a change memory does not hold
/// yet (committed, not yet applied: the writer is about to, or the follower has not reached it).
fn publish(
    state: &SharedState,
    page: &ChangePage,
    mut cursor: Cursor,
    waiting_since: &mut Option<Instant>,
    announce: bool,
) -> (Cursor, bool) {
    let fleet = state.fleet.read();
    for change in &page.changes {
        let (record_kind, name, revision, deleted) = match change {
            Change::Put {
                kind,
                name,
                revision,
                ..
            } => (kind, name, *revision, false),
            Change::Delete {
                kind,
                name,
                revision,
            } => (kind, name, *revision, true),
            Change::Counter { .. } => {
                cursor = position(change);
                continue;
            }
        };
        let Some(kind) = served_kind(record_kind) else {
            cursor = position(change);
            continue;
        };
        let held = held_revision(&fleet, kind, name);
        let applied = if deleted {
            held.is_none_or(|held| held > revision)
        } else {
            held.is_some_and(|held| held >= revision)
        };
        if !applied {
            let since = *waiting_since.get_or_insert_with(Instant::now);
            if since.elapsed() < APPLY_WAIT {
                return (cursor, true);
            }
            tracing::warn!(%kind, %name, revision, "a committed change did not reach this replica's memory in time; watches skip it");
        }
        *waiting_since = None;
        cursor = position(change);
        // Checked after memory holds the change: a watch that subscribes later reads it in
        // its initial list.
        if !applied || !announce || state.watches.changes.receiver_count() == 0 {
            continue;
        }
        let event = if deleted {
            WatchChange::Object {
                kind,
                name: name.clone(),
                revision,
                labels: BTreeMap::new(),
                object: None,
            }
        } else {
            let Some((revision, labels, object)) = render(&fleet, kind, name) else {
                continue;
            };
            WatchChange::Object {
                kind,
                name: name.clone(),
                revision,
                labels,
                object: Some(object),
            }
        };
        let _ = state.watches.changes.send(Arc::new(event));
    }
    (cursor, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(name: &str, revision: u64, env: &str) -> WatchChange {
        WatchChange::Object {
            kind: Kind::ClusterGroup,
            name: name.into(),
            revision,
            labels: BTreeMap::from([("env".to_string(), env.to_string())]),
            object: Some(
                serde_json::value::to_raw_value(&serde_json::json!({"metadata": {"name": name}}))
                    .expect("raw"),
            ),
        }
    }

    fn deleted(name: &str, revision: u64) -> WatchChange {
        WatchChange::Object {
            kind: Kind::ClusterGroup,
            name: name.into(),
            revision,
            labels: BTreeMap::new(),
            object: None,
        }
    }

    /// The event type a step sends, or "" for none.
    fn sent_type(step: Step) -> String {
        match step {
            Step::Skip => String::new(),
            Step::Send(line) | Step::End(line) => {
                let event: serde_json::Value = serde_json::from_slice(&line).expect("JSON line");
                event["type"].as_str().expect("type").to_string()
            }
        }
    }

    #[test]
    fn a_delete_older_than_what_the_watch_showed_is_no_news() {
        let filter = WatchFilter {
            kind: Kind::ClusterGroup,
            name: None,
            selector: None,
        };
        // Deleted at 4, created again at 6, listed at 6 before the delete reached this watch.
        let mut sent = HashMap::from([("web".to_string(), 6)]);
        assert_eq!(sent_type(step(&filter, &mut sent, &deleted("web", 4))), "");
        assert_eq!(sent.get("web"), Some(&6), "still held");
        assert_eq!(
            sent_type(step(&filter, &mut sent, &deleted("web", 7))),
            "DELETED"
        );
    }

    #[test]
    fn a_watch_sends_each_revision_once_and_deletes_only_what_it_showed() {
        let filter = WatchFilter {
            kind: Kind::ClusterGroup,
            name: None,
            selector: Some(Selector::parse("env=prod").expect("selector")),
        };
        let mut sent = HashMap::from([("held".to_string(), 5)]);
        let mut step_of = |change: WatchChange| sent_type(step(&filter, &mut sent, &change));
        // Already in the initial list at this revision (or newer): not sent again.
        assert_eq!(step_of(changed("held", 5, "prod")), "");
        assert_eq!(step_of(changed("held", 6, "prod")), "MODIFIED");
        assert_eq!(step_of(changed("new", 7, "prod")), "ADDED");
        assert_eq!(step_of(changed("other", 8, "dev")), "");
        assert_eq!(
            step_of(deleted("other", 9)),
            "",
            "never shown, never deleted"
        );
        assert_eq!(
            step_of(changed("new", 10, "dev")),
            "DELETED",
            "left the selector"
        );
        assert_eq!(
            step_of(deleted("new", 11)),
            "",
            "already gone from the view"
        );
        assert_eq!(step_of(deleted("held", 12)), "DELETED");
    }

    #[test]
    fn a_watch_that_falls_behind_its_queue_ends_with_a_410_error_event() {
        let (publish, mut queue) = broadcast::channel(2);
        for revision in 1..=5 {
            publish
                .send(Arc::new(changed("g", revision, "prod")))
                .expect("a receiver");
        }
        let filter = WatchFilter {
            kind: Kind::ClusterGroup,
            name: None,
            selector: None,
        };
        let step = received_step(
            &filter,
            &mut HashMap::new(),
            queue.try_recv().map_err(|e| match e {
                broadcast::error::TryRecvError::Lagged(n) => broadcast::error::RecvError::Lagged(n),
                _ => broadcast::error::RecvError::Closed,
            }),
            2,
        );
        let Step::End(line) = step else {
            panic!("a lagging watch must end");
        };
        let event: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
        assert_eq!(event["type"], "ERROR");
        assert_eq!(event["object"]["code"], 410);
        assert_eq!(event["object"]["reason"], "Expired");
        assert!(
            event["object"]["message"]
                .as_str()
                .expect("message")
                .contains("3 changes behind"),
            "{event}"
        );
    }
}
