//! The embedded store: one SQLite database in WAL mode, written by one thread with group commit.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::Instant,
};

use read_connection::ReadConnection;

mod audit;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::{
    AuditEntry, AuditMark, AuditQuery, BatchObserver, BatchStats, CommitFuture, Op, Record,
    Request, Result, Snapshot, Store, StoreError, StoredContent,
};

const SCHEMA_VERSION: i64 = 5;

/// How often the writer prunes deletions older than [`crate::TOMBSTONE_RETENTION`] (checked
/// after a commit).
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// SQLite-backed [`Store`]. Writes go through a dedicated writer thread that groups concurrent
/// commits into one transaction; reads use their own connection.
pub struct SqliteStore {
    writer: mpsc::Sender<Request>,
    reader: ReadConnection,
    path: PathBuf,
    own: std::sync::Arc<crate::OwnRevisions>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_observed(path, None)
    }

    /// Like [`SqliteStore::open`]; `observer` is told about every group commit.
    pub fn open_observed(path: &Path, observer: Option<BatchObserver>) -> Result<SqliteStore> {
        let connection = open_connection(path)?;
        migrate(&connection)?;
        let revision: u64 = connection
            .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64;
        let (writer, requests) = mpsc::channel();
        let own = std::sync::Arc::new(crate::OwnRevisions::default());
        {
            let own = own.clone();
            thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || write_loop(connection, requests, revision, observer, &own))?;
        }
        Ok(SqliteStore {
            writer,
            reader: ReadConnection::new(open_connection(path)?),
            path: path.to_path_buf(),
            own,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let connection = Connection::open(path)?;
    // WAL lets readers run beside the writer; synchronous=FULL fsyncs the WAL at every commit, so
    // a commit that returned is on disk.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(connection)
}

fn migrate(connection: &Connection) -> Result<()> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version < 1 {
        connection.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS objects (
                 kind TEXT NOT NULL,
                 name TEXT NOT NULL,
                 revision INTEGER NOT NULL,
                 doc BLOB NOT NULL,
                 PRIMARY KEY (kind, name)
             );
             CREATE TABLE IF NOT EXISTS contents (digest TEXT PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             COMMIT;",
        )?;
    }
    if version < 2 {
        // The change feed: deletions and counter revisions. No index on objects' revision: one
        // process owns an embedded store, so the feed is for tools and tests, and every soft-state
        // write would pay for the index.
        connection.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS tombstones (
                 kind TEXT NOT NULL,
                 name TEXT NOT NULL,
                 revision INTEGER NOT NULL,
                 deleted_at INTEGER NOT NULL,
                 PRIMARY KEY (kind, name)
             );
             ALTER TABLE counters ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
             COMMIT;",
        )?;
    }
    if version < 3 {
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS leases (
                 name TEXT PRIMARY KEY,
                 holder TEXT NOT NULL,
                 expires_ms INTEGER NOT NULL
             );",
        )?;
    }
    if version < 4 {
        // When each content was last put, for the content collector's conditional drops.
        connection.execute_batch(
            "ALTER TABLE contents ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    if version < 5 {
        // The audit trail (see `crate::audit`): records by seq, indexed for the trail's queries,
        // and one row with the head and the anchor.
        connection.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS audit (
                 seq INTEGER PRIMARY KEY,
                 revision INTEGER NOT NULL,
                 time_ms INTEGER NOT NULL,
                 actor TEXT NOT NULL,
                 object TEXT NOT NULL,
                 project TEXT NOT NULL,
                 doc BLOB NOT NULL,
                 prev BLOB NOT NULL,
                 hash BLOB NOT NULL
             );
             CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time_ms, seq);
             CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, seq);
             CREATE INDEX IF NOT EXISTS audit_by_object ON audit (object, seq);
             CREATE INDEX IF NOT EXISTS audit_by_project ON audit (project, seq);
             CREATE TABLE IF NOT EXISTS audit_meta (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 head_seq INTEGER NOT NULL,
                 head_hash BLOB NOT NULL,
                 anchor_seq INTEGER NOT NULL,
                 anchor_hash BLOB NOT NULL
             );
             INSERT INTO audit_meta (id, head_seq, head_hash, anchor_seq, anchor_hash)
             VALUES (1, 0, zeroblob(32), 0, zeroblob(32))
             ON CONFLICT (id) DO NOTHING;
             COMMIT;",
        )?;
    }
    connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

fn write_loop(
    mut connection: Connection,
    requests: mpsc::Receiver<Request>,
    mut revision: u64,
    observer: Option<BatchObserver>,
    own: &crate::OwnRevisions,
) {
    let mut last_prune = Instant::now();
    while let Ok(first) = requests.recv() {
        let (batch, op_count) = crate::gather(first, &requests);
        let start_revision = revision;
        let requests_in_batch = batch.len();
        let started = Instant::now();
        let applied = apply_batch(&mut connection, &batch, &mut revision, own);
        let stats = BatchStats {
            requests: requests_in_batch,
            ops: op_count,
            duration: started.elapsed(),
            committed: applied.is_ok(),
        };
        match applied {
            Ok(revisions) => {
                for (request, committed) in batch.into_iter().zip(revisions) {
                    let _ = request.reply.send(Ok(committed));
                }
            }
            Err(error) => {
                revision = start_revision;
                tracing::error!(%error, requests = batch.len(), "store commit failed");
                for request in batch {
                    let _ = request
                        .reply
                        .send(Err(StoreError::Commit(error.to_string())));
                }
            }
        }
        if let Some(observer) = &observer {
            observer(&stats);
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            if let Err(error) = prune(&connection) {
                tracing::warn!(%error, "store could not prune old deletions");
            }
        }
    }
}

/// Drops deletions older than the retention and records the newest revision dropped.
fn prune(connection: &Connection) -> rusqlite::Result<()> {
    let cutoff = crate::TOMBSTONE_RETENTION.as_secs() as i64;
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let pruned = (|| {
        let newest: Option<i64> = connection.query_row(
            "SELECT max(revision) FROM tombstones WHERE deleted_at < unixepoch() - ?1",
            params![cutoff],
            |row| row.get(0),
        )?;
        if let Some(newest) = newest {
            connection.execute(
                "DELETE FROM tombstones WHERE deleted_at < unixepoch() - ?1",
                params![cutoff],
            )?;
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('compacted', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                params![newest],
            )?;
        }
        Ok(())
    })();
    match pruned {
        Ok(()) => connection.execute_batch("COMMIT"),
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Applies every request of a batch in one transaction; returns each request's revision.
fn apply_batch(
    connection: &mut Connection,
    batch: &[Request],
    revision: &mut u64,
    own: &crate::OwnRevisions,
) -> rusqlite::Result<Vec<u64>> {
    // IMMEDIATE: the write lock is taken at BEGIN, waiting (busy timeout) for any other writer
    // such as a lease renewal on the read connection. A deferred transaction that read first
    // would fail at once with SQLITE_BUSY when another connection wrote meanwhile.
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut revisions = Vec::with_capacity(batch.len());
    {
        let mut put = transaction.prepare_cached(
            "INSERT INTO objects (kind, name, revision, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, name) DO UPDATE SET revision = excluded.revision, doc = excluded.doc",
        )?;
        let mut create = transaction.prepare_cached(
            "INSERT INTO objects (kind, name, revision, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, name) DO NOTHING",
        )?;
        let mut delete =
            transaction.prepare_cached("DELETE FROM objects WHERE kind = ?1 AND name = ?2")?;
        let mut untombstone =
            transaction.prepare_cached("DELETE FROM tombstones WHERE kind = ?1 AND name = ?2")?;
        let mut tombstone = transaction.prepare_cached(
            "INSERT INTO tombstones (kind, name, revision, deleted_at) VALUES (?1, ?2, ?3, unixepoch())
             ON CONFLICT (kind, name)
             DO UPDATE SET revision = excluded.revision, deleted_at = excluded.deleted_at",
        )?;
        let mut put_content = transaction.prepare_cached(
            "INSERT INTO contents (digest, body, revision) VALUES (?1, ?2, ?3)
             ON CONFLICT (digest) DO UPDATE SET revision = excluded.revision",
        )?;
        let mut drop_content = transaction
            .prepare_cached("DELETE FROM contents WHERE digest = ?1 AND revision <= ?2")?;
        let mut increment = transaction.prepare_cached(
            "INSERT INTO counters (name, value, revision) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE
             SET value = value + excluded.value, revision = excluded.revision",
        )?;
        let mut delete_counter =
            transaction.prepare_cached("DELETE FROM counters WHERE name = ?1")?;
        // Read in the transaction at the batch's first audit record, so a failed batch leaves
        // nothing to restore.
        let mut audit_head: Option<AuditMark> = None;
        // Soft-state writes are most of the traffic: skip the tombstone lookup per put while
        // there are none (deletions are rare).
        let mut has_tombstones =
            transaction.query_row("SELECT EXISTS (SELECT 1 FROM tombstones)", [], |row| {
                row.get(0)
            })?;
        for request in batch {
            *revision += 1;
            for op in &request.ops {
                match op {
                    Op::Put { kind, name, doc } => {
                        put.execute(params![kind, name, *revision as i64, doc])?;
                        if has_tombstones {
                            untombstone.execute(params![kind, name])?;
                        }
                    }
                    Op::PutIfAbsent { kind, name, doc } => {
                        let created = create.execute(params![kind, name, *revision as i64, doc])?;
                        if created > 0 && has_tombstones {
                            untombstone.execute(params![kind, name])?;
                        }
                    }
                    Op::Delete { kind, name } => {
                        delete.execute(params![kind, name])?;
                        tombstone.execute(params![kind, name, *revision as i64])?;
                        has_tombstones = true;
                    }
                    Op::PutContent { digest, body } => {
                        put_content.execute(params![digest, body, *revision as i64])?;
                    }
                    Op::DropContent {
                        digest,
                        unless_written_after,
                    } => {
                        drop_content.execute(params![digest, *unless_written_after as i64])?;
                    }
                    Op::Increment { counter, by } => {
                        increment.execute(params![counter, by, *revision as i64])?;
                        if has_tombstones {
                            untombstone.execute(params!["", counter])?;
                        }
                    }
                    Op::DeleteCounter { counter } => {
                        delete_counter.execute(params![counter])?;
                        tombstone.execute(params!["", counter, *revision as i64])?;
                        has_tombstones = true;
                    }
                    Op::Audit(append) => {
                        let head = match &mut audit_head {
                            Some(head) => head,
                            None => audit_head
                                .insert(audit::read_mark(&transaction, audit::Mark::Head)?),
                        };
                        for entry in crate::audit::chain(head, [(*revision, append)]) {
                            audit::insert(&transaction, &entry)?;
                        }
                    }
                }
            }
            revisions.push(*revision);
        }
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES ('revision', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![*revision as i64],
        )?;
        if let Some(head) = audit_head {
            transaction.execute(
                "UPDATE audit_meta SET head_seq = ?1, head_hash = ?2 WHERE id = 1",
                params![crate::audit::to_column(head.seq), &head.hash[..]],
            )?;
        }
    }
    // Marked before the commit is visible, so the feed never shows one of ours unmarked.
    own.add(&revisions);
    if let Err(error) = transaction.commit() {
        own.remove(&revisions);
        return Err(error);
    }
    Ok(revisions)
}

fn counters_and_revision(connection: &Connection) -> Result<(Vec<(String, i64)>, u64)> {
    let mut counters = Vec::new();
    let mut statement = connection.prepare("SELECT name, value FROM counters")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    for row in rows {
        counters.push(row?);
    }
    let revision = connection
        .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |row| {
            row.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64;
    Ok((counters, revision))
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Snapshot> {
        self.reader.with(|connection| {
            let mut records = Vec::new();
            let mut statement =
                connection.prepare("SELECT kind, name, revision, doc FROM objects")?;
            let rows = statement.query_map([], |row| {
                Ok(Record {
                    kind: row.get(0)?,
                    name: row.get(1)?,
                    revision: row.get::<_, i64>(2)? as u64,
                    doc: row.get(3)?,
                })
            })?;
            for row in rows {
                records.push(row?);
            }
            let (counters, revision) = counters_and_revision(connection)?;
            Ok(Snapshot {
                records,
                counters,
                revision,
            })
        })
    }

    fn load_kinds(&self, kinds: &[&str], visit: &mut crate::Visitor<'_>) -> Result<Snapshot> {
        self.reader.with(|connection| {
            // One read transaction: every kind and the counters come from the same snapshot.
            let transaction = connection.unchecked_transaction()?;
            // The primary key's index yields each kind's rows in name order.
            let mut statement = transaction
                .prepare("SELECT name, revision, doc FROM objects WHERE kind = ?1 ORDER BY name")?;
            for kind in kinds {
                let mut rows = statement.query(params![kind])?;
                while let Some(row) = rows.next()? {
                    let name = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                    let revision = row.get::<_, i64>(1)? as u64;
                    let doc = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
                    visit(crate::RecordRef {
                        kind,
                        name,
                        revision,
                        doc,
                    })
                    .map_err(StoreError::Visit)?;
                }
            }
            drop(statement);
            let (counters, revision) = counters_and_revision(&transaction)?;
            transaction.commit()?;
            Ok(Snapshot {
                records: Vec::new(),
                counters,
                revision,
            })
        })
    }

    fn content(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        self.reader.with(|connection| {
            Ok(connection
                .query_row(
                    "SELECT body FROM contents WHERE digest = ?1",
                    params![digest],
                    |row| row.get(0),
                )
                .optional()?)
        })
    }

    fn content_index(&self) -> Result<Vec<StoredContent>> {
        self.reader.with(|connection| {
            let mut statement =
                connection.prepare("SELECT digest, revision, length(body) FROM contents")?;
            let rows = statement.query_map([], |row| {
                Ok(StoredContent {
                    digest: row.get(0)?,
                    revision: row.get::<_, i64>(1)? as u64,
                    bytes: row.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn commit(&self, ops: Vec<Op>) -> CommitFuture {
        let (reply, receiver) = oneshot::channel();
        let sent = self.writer.send(Request { ops, reply });
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            receiver.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn changes(&self, after: &crate::Cursor, limit: usize) -> Result<crate::ChangePage> {
        self.reader
            .with(|connection| {
                let transaction = connection.unchecked_transaction()?;
                let compacted = transaction
                    .query_row(
                        "SELECT value FROM meta WHERE key = 'compacted'",
                        [],
                        |row| row.get::<_, i64>(0),
                    )
                    .optional()?
                    .unwrap_or(0) as u64;
                if after.revision < compacted {
                    return Err(StoreError::Compacted {
                        asked: after.revision,
                        compacted,
                    });
                }
                let (kind, name) = match &after.key {
                    Some((kind, name)) => (kind.as_str(), name.as_str()),
                    // Past every key of the revision: no kind sorts after U+10FFFF.
                    None => ("\u{10FFFF}", ""),
                };
                let limit = limit.max(1);
                // A scan: the embedded store has one server, so the feed serves tools and tests.
                let mut statement = transaction.prepare(
                    "SELECT revision, kind, name, doc, NULL, 0 FROM objects
                 WHERE (revision, kind, name) > (?1, ?2, ?3)
                 UNION ALL
                 SELECT revision, kind, name, NULL, NULL, 1 FROM tombstones
                 WHERE (revision, kind, name) > (?1, ?2, ?3)
                 UNION ALL
                 SELECT revision, '', name, NULL, value, 2 FROM counters
                 WHERE (revision, '', name) > (?1, ?2, ?3)
                 ORDER BY 1, 2, 3 LIMIT ?4",
                )?;
                let rows = statement.query_map(
                    params![after.revision as i64, kind, name, limit as i64],
                    |row| {
                        let revision = row.get::<_, i64>(0)? as u64;
                        let kind: String = row.get(1)?;
                        let name: String = row.get(2)?;
                        Ok(match row.get::<_, i64>(5)? {
                            0 => crate::Change::Put {
                                kind,
                                name,
                                revision,
                                doc: row.get(3)?,
                            },
                            1 if kind.is_empty() => crate::Change::Counter {
                                name,
                                revision,
                                value: None,
                            },
                            1 => crate::Change::Delete {
                                kind,
                                name,
                                revision,
                            },
                            _ => crate::Change::Counter {
                                name,
                                revision,
                                value: row.get(4)?,
                            },
                        })
                    },
                )?;
                let mut changes = Vec::new();
                for row in rows {
                    changes.push(row?);
                }
                Ok(crate::ChangePage::from_changes(after, changes, limit))
            })
            .map(|mut page| {
                self.own.mark(&mut page);
                page
            })
    }

    fn lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool> {
        let ttl_ms = ttl.as_millis() as i64;
        self.reader.with(|connection| {
            Ok(connection
                .query_row(
                    "INSERT INTO leases (name, holder, expires_ms)
                     VALUES (?1, ?2, CAST(unixepoch('subsec') * 1000 AS INTEGER) + ?3)
                     ON CONFLICT (name) DO UPDATE
                     SET holder = excluded.holder, expires_ms = excluded.expires_ms
                     WHERE leases.holder = excluded.holder
                        OR leases.expires_ms < CAST(unixepoch('subsec') * 1000 AS INTEGER)
                     RETURNING holder",
                    params![name, holder, ttl_ms],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.reader.with(|connection| {
            connection.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            Ok(())
        })
    }

    fn ping(&self) -> Result<()> {
        self.reader
            .with(|connection| Ok(connection.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.reader
            .with(|connection| audit::page(connection, query))
    }

    fn audit_head(&self) -> Result<AuditMark> {
        self.reader
            .with(|connection| Ok(audit::read_mark(connection, audit::Mark::Head)?))
    }

    fn audit_anchor(&self) -> Result<AuditMark> {
        self.reader
            .with(|connection| Ok(audit::read_mark(connection, audit::Mark::Anchor)?))
    }

    fn prune_audit(&self, older_than_ms: u64, max: usize) -> Result<usize> {
        self.reader
            .with(|connection| audit::prune(connection, older_than_ms, max))
    }
}

mod read_connection {
    //! A read connection shared behind a mutex (reads are rare: start-up and content misses).
    use std::sync::Mutex;

    use rusqlite::Connection;

    pub struct ReadConnection(Mutex<Connection>);

    impl ReadConnection {
        pub fn new(connection: Connection) -> ReadConnection {
            ReadConnection(Mutex::new(connection))
        }

        pub fn with<T>(&self, read: impl FnOnce(&Connection) -> T) -> T {
            let guard = match self.0.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            read(&guard)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    use super::*;

    fn put(name: &str) -> Op {
        Op::Put {
            kind: "K".into(),
            name: name.into(),
            doc: b"1".to_vec(),
        }
    }

    #[tokio::test]
    async fn every_group_commit_is_reported_to_the_observer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen: Arc<Mutex<Vec<BatchStats>>> = Arc::default();
        let observer: BatchObserver = {
            let seen = seen.clone();
            Arc::new(move |stats: &BatchStats| seen.lock().expect("lock").push(*stats))
        };
        let store =
            SqliteStore::open_observed(&dir.path().join("store.db"), Some(observer)).expect("open");
        store.commit(vec![put("soft")]).await.expect("commit");
        store.commit(vec![put("a")]).await.expect("commit");
        store
            .commit(vec![put("b"), put("c")])
            .await
            .expect("commit");
        // The observer runs after the replies are sent: wait for the last batch to show up.
        let deadline = Instant::now() + Duration::from_secs(10);
        let batches = loop {
            let batches = seen.lock().expect("lock").clone();
            if batches.iter().map(|b| b.ops).sum::<usize>() == 4 || Instant::now() > deadline {
                break batches;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        assert_eq!(
            batches.iter().map(|b| b.ops).sum::<usize>(),
            4,
            "{batches:?}"
        );
        assert_eq!(
            batches.iter().map(|b| b.requests).sum::<usize>(),
            3,
            "{batches:?}"
        );
        assert!(
            batches.iter().all(|b| b.committed && b.ops > 0),
            "{batches:?}"
        );
    }
}
