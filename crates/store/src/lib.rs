//! The durable store behind the flotilla server: the [`Store`] contract and its embedded SQLite
//! backend.
//!
//! The server keeps the whole fleet in memory (the read model) and uses the store as its durable
//! log: every acknowledged mutation is committed here first, and at start-up the server loads
//! everything back in one bulk pass ([`Store::load`]). Documents are opaque bytes to the store; the
//! server owns their format.
//!
//! Invariant: when a future returned by [`Store::commit`] resolves `Ok`, its operations are on disk
//! (fsynced) and will be returned by the next [`Store::load`], whatever happens to the process.
//!
//! Several servers may share one store (the PostgreSQL backend): each one follows the others'
//! writes with [`Store::changes`], a feed of every key's latest state in revision order. Revisions
//! become visible in order: once a revision is readable, every lower one is too.

pub mod audit;
mod fold;
mod pg;
mod sqlite;

use std::{collections::BTreeSet, future::Future, pin::Pin, sync::Arc, time::Duration};

#[cfg(any(test, feature = "testing"))]
pub use audit::AuditTamper;
pub use audit::{
    AuditAppend, AuditEntry, AuditMark, AuditQuery, ChainBreak, ChainVerifier, verify_chain,
    verify_stored,
};
#[cfg(any(test, feature = "testing"))]
pub use pg::testing as pg_testing;
pub use pg::{PgOptions, PgStore};
pub use sqlite::SqliteStore;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// A namespace for names: a resource kind, or an internal record family.
    pub kind: String,
    pub name: String,
    /// Store-wide revision of the write that produced this version (monotonic).
    pub revision: u64,
    pub doc: Vec<u8>,
}

/// One write. A commit applies a list of operations atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Creates or replaces a document.
    Put {
        kind: String,
        name: String,
        doc: Vec<u8>,
    },
    /// Creates a document only if it does not exist; otherwise does nothing (the stored one and
    /// its revision stay). Lets replicas that start together agree on one first value.
    PutIfAbsent {
        kind: String,
        name: String,
        doc: Vec<u8>,
    },
    /// Removes a document; removing a missing one is not an error.
    Delete { kind: String, name: String },
    /// Stores immutable content under its digest. Storing an existing digest again keeps the
    /// body and marks the content written at this commit's revision, which a later
    /// [`Op::DropContent`] checks: every write that references content puts it again.
    PutContent { digest: String, body: Vec<u8> },
    /// Deletes content unless it was written after revision `unless_written_after`, so a
    /// collector that judged it unreferenced as of its listing ([`Store::content_index`]) never
    /// deletes content that a write since references again. Dropping missing content is not an
    /// error.
    DropContent {
        digest: String,
        unless_written_after: u64,
    },
    /// Adds `by` to a named counter (created at zero). Increments commute, so concurrent
    /// writers never lose counts.
    Increment { counter: String, by: i64 },
    /// Removes a counter.
    DeleteCounter { counter: String },
    /// Appends a record to the audit trail, chained by the writer in this commit's transaction
    /// (see [`audit`]): it is stored exactly when the rest of the commit is. Not part of the
    /// bulk load nor the change feed.
    Audit(AuditAppend),
}

/// One stored document as the bulk load visits it, borrowed from the backend's read buffer (no
/// copy per record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub revision: u64,
    pub doc: &'a [u8],
}

/// Called for every record of a bulk load; an error stops the load and is returned by it.
pub type Visitor<'v> = dyn FnMut(RecordRef<'_>) -> std::result::Result<(), VisitError> + 'v;

/// An error a [`Visitor`] returns.
pub type VisitError = Box<dyn std::error::Error + Send + Sync>;

/// Everything the store holds except content, as loaded at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub records: Vec<Record>,
    pub counters: Vec<(String, i64)>,
    /// The highest revision ever assigned.
    pub revision: u64,
}

/// A position in the change feed: just after `revision`, or, when `key` is set, just after that
/// key within `revision` (a page may end inside one revision's changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub revision: u64,
    /// `(kind, name)` of the last change read within `revision`; counters have an empty kind.
    pub key: Option<(String, String)>,
}

impl Cursor {
    /// Just after every change up to and including `revision`.
    pub fn after(revision: u64) -> Cursor {
        Cursor {
            revision,
            key: None,
        }
    }
}

/// One key's latest state, as the change feed returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        kind: String,
        name: String,
        revision: u64,
        doc: Vec<u8>,
    },
    Delete {
        kind: String,
        name: String,
        revision: u64,
    },
    /// A counter's current value; `None` when it was deleted.
    Counter {
        name: String,
        revision: u64,
        value: Option<i64>,
    },
}

impl Change {
    pub fn revision(&self) -> u64 {
        match self {
            Change::Put { revision, .. }
            | Change::Delete { revision, .. }
            | Change::Counter { revision, .. } => *revision,
        }
    }

    /// The feed's ordering key within a revision: `(kind, name)`, counters under an empty kind.
    fn key(&self) -> (&str, &str) {
        match self {
            Change::Put { kind, name, .. } | Change::Delete { kind, name, .. } => (kind, name),
            Change::Counter { name, .. } => ("", name),
        }
    }
}

/// One stored content, as [`Store::content_index`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent {
    pub digest: String,
    /// Revision of the last commit that put it.
    pub revision: u64,
    /// Length of the body in bytes.
    pub bytes: u64,
}

/// One page of the change feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangePage {
    /// Changes after the cursor asked for, by revision, then kind, then name.
    pub changes: Vec<Change>,
    /// Where the next page starts.
    pub next: Cursor,
    /// Whether the page was cut at its limit (more changes may follow at once).
    pub more: bool,
    /// The revisions among `changes` that this store handle committed itself (a follower skips
    /// them: its own memory is already at least that new).
    pub local: BTreeSet<u64>,
}

impl ChangePage {
    fn from_changes(after: &Cursor, changes: Vec<Change>, limit: usize) -> ChangePage {
        let more = changes.len() >= limit;
        let next = match changes.last() {
            Some(last) => {
                let (kind, name) = last.key();
                Cursor {
                    revision: last.revision(),
                    key: Some((kind.to_string(), name.to_string())),
                }
            }
            None => after.clone(),
        };
        ChangePage {
            changes,
            next,
            more,
            local: BTreeSet::new(),
        }
    }
}

/// One commit waiting for a backend's writer thread.
pub(crate) struct Request {
    pub(crate) ops: Vec<Op>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<u64>>,
}

/// Most operations one transaction takes before it commits; bounds commit latency under a flood
/// while still amortizing one fsync over thousands of writes.
const MAX_OPS_PER_TRANSACTION: usize = 16_384;

/// A group commit: `first` and whatever else is queued already, up to
/// [`MAX_OPS_PER_TRANSACTION`] operations. Returns the batch and its operation count.
pub(crate) fn gather(
    first: Request,
    requests: &std::sync::mpsc::Receiver<Request>,
) -> (Vec<Request>, usize) {
    let mut op_count = first.ops.len();
    let mut batch = vec![first];
    while op_count < MAX_OPS_PER_TRANSACTION {
        match requests.try_recv() {
            Ok(request) => {
                op_count += request.ops.len();
                batch.push(request);
            }
            Err(_) => break,
        }
    }
    (batch, op_count)
}

/// Revisions a store handle committed, so its change feed can mark them local. A writer adds a
/// commit's revisions before the commit is visible (so a reader never sees one unmarked) and
/// takes them back when the commit fails; the feed forgets those behind the page it returned.
#[derive(Debug, Default)]
pub(crate) struct OwnRevisions(std::sync::Mutex<BTreeSet<u64>>);

/// Most revisions remembered when nothing reads the feed (a single server).
const MAX_OWN_REVISIONS: usize = 1 << 20;

impl OwnRevisions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn add(&self, revisions: &[u64]) {
        let mut own = self.lock();
        own.extend(revisions.iter().copied());
        while own.len() > MAX_OWN_REVISIONS {
            own.pop_first();
        }
    }

    pub(crate) fn remove(&self, revisions: &[u64]) {
        let mut own = self.lock();
        for revision in revisions {
            own.remove(revision);
        }
    }

    /// Marks the page's local changes and forgets revisions before the page's end.
    pub(crate) fn mark(&self, page: &mut ChangePage) {
        let mut own = self.lock();
        for change in &page.changes {
            if own.contains(&change.revision()) {
                page.local.insert(change.revision());
            }
        }
        let keep = own.split_off(&page.next.revision);
        *own = keep;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// Shown with its causes, the driver's own message alone often being just "db error"; so
    /// not reported as a `source` too, or reporters that walk sources print them twice.
    #[error("store database error: {}", with_causes(.0))]
    Postgres(::postgres::Error),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The change feed no longer holds the deletions after this cursor: reload from a snapshot.
    #[error("the change feed was compacted past revision {asked} (kept from {compacted}); reload")]
    Compacted { asked: u64, compacted: u64 },
    #[error("store commit failed: {0}")]
    Commit(String),
    #[error("store is closed")]
    Closed,
    /// The store's settings (e.g. its connection string) are wrong; says what to fix.
    #[error("{0}")]
    Config(String),
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Visit(VisitError),
    /// The stored audit trail does not verify where an operation needed it to (a prune never
    /// deletes records that do not verify, so the evidence stays).
    #[error("{0}")]
    AuditBroken(#[from] ChainBreak),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<::postgres::Error> for StoreError {
    fn from(error: ::postgres::Error) -> StoreError {
        StoreError::Postgres(error)
    }
}

/// `error: cause: cause's cause`, each once (a driver's message sometimes already holds its
/// cause's text).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let line = next.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = next.source();
    }
    text
}

/// What one group commit (one transaction, one fsync) did; reported to a [`BatchObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Commits grouped into the transaction.
    pub requests: usize,
    /// Operations across those requests.
    pub ops: usize,
    /// Time to write the transaction and fsync it.
    pub duration: Duration,
    /// Whether the transaction committed.
    pub committed: bool,
}

/// Called by a backend after every group commit, off the commit's critical path (replies are
/// already sent). Lets the server keep metrics without the store depending on a metrics crate;
/// it runs on the writer thread, so it must be cheap and must not block.
pub type BatchObserver = Arc<dyn Fn(&BatchStats) + Send + Sync>;

/// A future resolving once a commit is durable.
pub type CommitFuture = Pin<Box<dyn Future<Output = Result<u64>> + Send>>;

/// The durable store contract shared by every backend.
pub trait Store: Send + Sync + 'static {
    /// Loads every record and counter in one pass.
    fn load(&self) -> Result<Snapshot>;

    /// The start-up bulk load: visits the records of each of `kinds`, kind by kind in the order
    /// given and by name within a kind, from one consistent read, without holding them all in
    /// memory; then returns the counters and revision (`records` is left empty). Kinds not
    /// named are not visited.
    fn load_kinds(&self, kinds: &[&str], visit: &mut Visitor<'_>) -> Result<Snapshot>;

    /// Reads content by digest.
    fn content(&self, digest: &str) -> Result<Option<Vec<u8>>>;

    /// Lists every stored content (digest, last written revision, size), without the bodies.
    fn content_index(&self) -> Result<Vec<StoredContent>>;

    /// Commits `ops` atomically; resolves with the commit's revision once durable. Concurrent
    /// commits are grouped into one transaction and one fsync (group commit).
    fn commit(&self, ops: Vec<Op>) -> CommitFuture;

    /// Up to `limit` changes after `after`: the latest state of every key written since, deletions
    /// included, ordered by revision and then key. A key written again since shows only at its
    /// newest revision, so a follower that applies the pages in order ends at the store's state.
    /// Deletions are kept for a while ([`TOMBSTONE_RETENTION`]); a cursor older than that gets
    /// [`StoreError::Compacted`] and must reload.
    fn changes(&self, after: &Cursor, limit: usize) -> Result<ChangePage>;

    /// Checks that the store answers (for health checks).
    fn ping(&self) -> Result<()>;

    /// Takes or renews the lease `name` for `holder` for `ttl`, timed by the store's clock (so
    /// replicas' clocks do not matter); `true` when `holder` holds it now. Another holder gets
    /// it only after it expired or was released. Singleton work runs under a lease.
    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Gives the lease up at once if `holder` holds it (a clean shutdown hands over quickly).
    fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// Audit records matching `query` (see [`AuditQuery`]), by seq.
    fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;

    /// The newest audit record's mark ([`AuditMark::GENESIS`] while there is none).
    fn audit_head(&self) -> Result<AuditMark>;

    /// Where the kept trail starts: the last pruned record's mark ([`AuditMark::GENESIS`] until a
    /// prune).
    fn audit_anchor(&self) -> Result<AuditMark>;

    /// Deletes the oldest audit records, from the anchor on, while their time is before
    /// `older_than_ms` (stopping at the first newer one), at most `max` (capped at
    /// [`audit::MAX_AUDIT_PRUNE`]), and moves the anchor to the last one deleted, atomically.
    /// Records are verified before they go: a stretch that does not verify is kept and the call
    /// fails with [`StoreError::AuditBroken`]. Returns how many were deleted.
    fn prune_audit(&self, older_than_ms: u64, max: usize) -> Result<usize>;
}

/// How long deletions stay in the change feed.
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod conformance;
