//! The shared store: PostgreSQL, for several server replicas.
//!
//! Threads, not tasks: the `postgres` client blocks, so it lives on its own threads (one writer
//! with group commit, like the SQLite backend, and a small pool of readers) and callers talk to
//! them over channels. Callers may be inside a Tokio runtime; nothing here enters one.
//!
//! Revisions are assigned inside the writing transaction by `UPDATE meta … RETURNING`, whose row
//! lock is held until commit, so transactions from every replica commit in revision order: once
//! a revision is visible, every lower one is too, and a follower reading "after revision r"
//! never misses a write that commits later with a lower number.

use std::{
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use postgres::{
    Client, IsolationLevel, Statement, Transaction, fallible_iterator::FallibleIterator,
};
use rand::RngExt;
use tokio::sync::oneshot;

mod audit;
mod tls;

use crate::{
    AuditEntry, AuditMark, AuditQuery, BatchObserver, BatchStats, Change, ChangePage, CommitFuture,
    Cursor, Op, OwnRevisions, Record, RecordRef, Request, Result, Snapshot, Store, StoreError,
    StoredContent, TOMBSTONE_RETENTION, Visitor, fold,
};

/// Records sent from a reader thread to a bulk load's caller at a time.
const LOAD_CHUNK: usize = 1_024;
/// Key of the advisory lock that serializes schema migrations across replicas.
const MIGRATION_LOCK: i64 = 0x666c_6f74_696c_6c61; // "flotilla"
/// How often the writer prunes deletions older than [`TOMBSTONE_RETENTION`].
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Schema migrations, applied in order; each runs once, in its own transaction.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE objects (
        kind TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        revision BIGINT NOT NULL,
        doc BYTEA NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE INDEX objects_by_revision ON objects (revision, kind, name);
    CREATE TABLE tombstones (
        kind TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        revision BIGINT NOT NULL,
        deleted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, name)
    );
    CREATE INDEX tombstones_by_revision ON tombstones (revision, kind, name);
    CREATE INDEX tombstones_by_age ON tombstones (deleted_at);
    CREATE TABLE contents (digest TEXT PRIMARY KEY, body BYTEA NOT NULL);
    CREATE TABLE counters (
        name TEXT COLLATE "C" PRIMARY KEY,
        value BIGINT NOT NULL,
        revision BIGINT NOT NULL
    );
    CREATE INDEX counters_by_revision ON counters (revision, name);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
"#,
    r#"
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
"#,
    // When each content was last put, for the content collector's conditional drops.
    r#"
    ALTER TABLE contents ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
"#,
    // The audit trail (see `crate::audit`): records by seq, indexed for the trail's queries, and
    // one row with the head (locked by each writing transaction that appends) and the anchor.
    r#"
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        revision BIGINT NOT NULL,
        time_ms BIGINT NOT NULL,
        actor TEXT COLLATE "C" NOT NULL,
        object TEXT COLLATE "C" NOT NULL,
        project TEXT COLLATE "C" NOT NULL,
        doc BYTEA NOT NULL,
        prev BYTEA NOT NULL,
        hash BYTEA NOT NULL
    );
    CREATE INDEX audit_by_time ON audit (time_ms, seq);
    CREATE INDEX audit_by_actor ON audit (actor, seq);
    CREATE INDEX audit_by_object ON audit (object, seq);
    CREATE INDEX audit_by_project ON audit (project, seq);
    CREATE TABLE audit_meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        head_seq BIGINT NOT NULL,
        head_hash BYTEA NOT NULL,
        anchor_seq BIGINT NOT NULL,
        anchor_hash BYTEA NOT NULL
    );
    INSERT INTO audit_meta (id, head_seq, head_hash, anchor_seq, anchor_hash)
    VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'));
"#,
];

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Reader connections (bulk loads, the change feed, content reads, health checks).
    pub readers: usize,
    /// Longest a statement may run, except the start-up bulk load; `None` for no limit.
    pub statement_timeout: Option<Duration>,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            readers: 2,
            statement_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

type Reply<T> = mpsc::SyncSender<Result<T>>;

enum ReadJob {
    Load(Reply<Snapshot>),
    LoadKinds {
        kinds: Vec<String>,
        chunks: mpsc::SyncSender<LoadChunk>,
    },
    Content(String, Reply<Option<Vec<u8>>>),
    ContentIndex(Reply<Vec<StoredContent>>),
    Changes(Cursor, usize, Reply<ChangePage>),
    Ping(Reply<()>),
    AuditPage(AuditQuery, Reply<Vec<AuditEntry>>),
    /// `(anchor, head)`.
    AuditMarks(Reply<(AuditMark, AuditMark)>),
    PruneAudit {
        older_than_ms: u64,
        max: usize,
        reply: Reply<usize>,
    },
    #[cfg(any(test, feature = "testing"))]
    TamperAudit(u64, crate::AuditTamper, Reply<()>),
    Lease {
        name: String,
        holder: String,
        /// Seconds; `None` releases.
        ttl: Option<f64>,
        reply: Reply<bool>,
    },
}

enum LoadChunk {
    Records(usize, Vec<(String, u64, Vec<u8>)>),
    Done(Result<Snapshot>),
}

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    writer: mpsc::Sender<Request>,
    readers: mpsc::Sender<ReadJob>,
    own: Arc<OwnRevisions>,
}

/// How the threads (re)connect.
#[derive(Clone)]
struct Connector {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    statement_timeout: Option<Duration>,
}

impl Connector {
    fn connect(&self) -> Result<Client> {
        let mut client = self.config.connect(self.tls.clone())?;
        let timeout = self.statement_timeout.map_or(0, |t| t.as_millis());
        client.batch_execute(&format!("SET statement_timeout = {timeout}"))?;
        Ok(client)
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`, libpq key/value strings too), applies
    /// pending schema migrations under an advisory lock (so replicas starting together do not
    /// race) and starts the writer and reader threads.
    pub fn open(url: &str, options: PgOptions) -> Result<PgStore> {
        PgStore::open_observed(url, options, None)
    }

    /// Like [`PgStore::open`]; `observer` is told about every group commit.
    pub fn open_observed(
        url: &str,
        options: PgOptions,
        observer: Option<BatchObserver>,
    ) -> Result<PgStore> {
        let (mut config, tls) = tls::configure(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("flotilla");
        }
        config.keepalives_idle(Duration::from_secs(30));
        let connector = Connector {
            config,
            tls,
            statement_timeout: options.statement_timeout,
        };
        // On a thread of its own: the blocking client must not run on a Tokio worker.
        let client = thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut client = connector.connect()?;
                    migrate(&mut client)?;
                    Ok::<_, StoreError>(client)
                })
                .join()
                .map_err(|_| StoreError::Commit("store start-up thread panicked".into()))?
        })?;
        let (writer, requests) = mpsc::channel();
        let own = Arc::new(OwnRevisions::default());
        {
            let connector = connector.clone();
            let own = own.clone();
            thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || write_loop(connector, Some(client), requests, observer, &own))?;
        }
        let (readers, jobs) = mpsc::channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for index in 0..options.readers.max(1) {
            let connector = connector.clone();
            let jobs = jobs.clone();
            thread::Builder::new()
                .name(format!("store-reader-{index}"))
                .spawn(move || read_loop(connector, jobs))?;
        }
        Ok(PgStore {
            writer,
            readers,
            own,
        })
    }

    fn read<T>(&self, job: impl FnOnce(Reply<T>) -> ReadJob) -> Result<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.readers
            .send(job(reply))
            .map_err(|_| StoreError::Closed)?;
        answer.recv().map_err(|_| StoreError::Closed)?
    }
}

fn migrate(client: &mut Client) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let applied = (|| -> Result<()> {
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )?;
        let current: i32 = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )?
            .get(0);
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            let version = index as i32 + 1;
            if version <= current {
                continue;
            }
            let mut transaction = client.transaction()?;
            transaction.batch_execute(migration)?;
            transaction.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )?;
            transaction.commit()?;
            tracing::info!(version, "store schema migrated");
        }
        if current > MIGRATIONS.len() as i32 {
            return Err(StoreError::Commit(format!(
                "the database's schema is version {current}, newer than this server knows ({}): \
                 upgrade the server",
                MIGRATIONS.len()
            )));
        }
        Ok(())
    })();
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    applied?;
    unlocked?;
    Ok(())
}

/// The writer's prepared statements, per connection.
struct Statements {
    revision: Statement,
    put: Statement,
    create: Statement,
    delete: Statement,
    untombstone: Statement,
    tombstone: Statement,
    content: Statement,
    drop_content: Statement,
    add_counter: Statement,
    reset_counter: Statement,
    delete_counter: Statement,
    audit_head: Statement,
    audit_insert: Statement,
    audit_set_head: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Statements> {
        Ok(Statements {
            revision: client.prepare(
                "UPDATE meta SET value = value + $1 WHERE key = 'revision' RETURNING value",
            )?,
            put: client.prepare(
                "INSERT INTO objects (kind, name, revision, doc)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])
                 ON CONFLICT (kind, name)
                 DO UPDATE SET revision = excluded.revision, doc = excluded.doc",
            )?,
            create: client.prepare(
                "INSERT INTO objects (kind, name, revision, doc)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])
                 ON CONFLICT (kind, name) DO NOTHING",
            )?,
            delete: client.prepare(
                "DELETE FROM objects
                 WHERE (kind, name) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            )?,
            untombstone: client.prepare(
                "DELETE FROM tombstones
                 WHERE (kind, name) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            )?,
            tombstone: client.prepare(
                "INSERT INTO tombstones (kind, name, revision)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[])
                 ON CONFLICT (kind, name)
                 DO UPDATE SET revision = excluded.revision, deleted_at = now()",
            )?,
            content: client.prepare(
                "INSERT INTO contents (digest, body, revision)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[])
                 ON CONFLICT (digest) DO UPDATE SET revision = excluded.revision",
            )?,
            drop_content: client.prepare(
                "DELETE FROM contents USING unnest($1::text[], $2::int8[]) AS d (digest, revision)
                 WHERE contents.digest = d.digest AND contents.revision <= d.revision",
            )?,
            add_counter: client.prepare(
                "INSERT INTO counters (name, value, revision)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])
                 ON CONFLICT (name) DO UPDATE
                 SET value = counters.value + excluded.value, revision = excluded.revision",
            )?,
            reset_counter: client.prepare(
                "INSERT INTO counters (name, value, revision)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])
                 ON CONFLICT (name) DO UPDATE
                 SET value = excluded.value, revision = excluded.revision",
            )?,
            delete_counter: client.prepare("DELETE FROM counters WHERE name = ANY($1::text[])")?,
            // The row lock orders appending transactions of every replica: each links to the
            // head the previous one committed.
            audit_head: client
                .prepare("SELECT head_seq, head_hash FROM audit_meta WHERE id = 1 FOR UPDATE")?,
            audit_insert: client.prepare(
                "INSERT INTO audit (seq, revision, time_ms, actor, object, project, doc, prev, hash)
                 SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[],
                                      $6::text[], $7::bytea[], $8::bytea[], $9::bytea[])",
            )?,
            audit_set_head: client
                .prepare("UPDATE audit_meta SET head_seq = $1, head_hash = $2 WHERE id = 1")?,
        })
    }
}

fn write_loop(
    connector: Connector,
    mut client: Option<Client>,
    requests: mpsc::Receiver<Request>,
    observer: Option<BatchObserver>,
    own: &OwnRevisions,
) {
    let mut statements = None;
    let mut backoff = Duration::from_millis(100);
    let mut last_prune = Instant::now();
    loop {
        // Down: answer at once (callers turn it into 503) and retry the connection with backoff.
        if client.as_ref().is_none_or(Client::is_closed) {
            statements = None;
            match connector.connect() {
                Ok(connected) => {
                    tracing::info!("store writer connected");
                    client = Some(connected);
                    backoff = Duration::from_millis(100);
                }
                Err(error) => {
                    client = None;
                    tracing::warn!(%error, retry_in = ?backoff, "store writer cannot connect");
                    let deadline = Instant::now() + jittered(backoff);
                    loop {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        match requests.recv_timeout(deadline - now) {
                            Ok(request) => {
                                let _ = request
                                    .reply
                                    .send(Err(StoreError::Unavailable(error.to_string())));
                            }
                            Err(mpsc::RecvTimeoutError::Timeout) => break,
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(connection) = client.as_mut() else {
            continue;
        };
        if statements.is_none() {
            match Statements::prepare(connection) {
                Ok(prepared) => statements = Some(prepared),
                Err(error) => {
                    tracing::warn!(%error, "store writer cannot prepare its statements");
                    client = None;
                    continue;
                }
            }
        }
        let Some(prepared) = statements.as_ref() else {
            continue;
        };
        let first = match requests.recv_timeout(PRUNE_EVERY) {
            Ok(request) => request,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                prune(connection, &mut last_prune);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let (batch, op_count) = crate::gather(first, &requests);
        let started = Instant::now();
        let applied = apply_batch(connection, prepared, &batch, own);
        let stats = BatchStats {
            requests: batch.len(),
            ops: op_count,
            duration: started.elapsed(),
            committed: applied.is_ok(),
        };
        match applied {
            Ok(revisions) => {
                for (request, revision) in batch.into_iter().zip(revisions) {
                    let _ = request.reply.send(Ok(revision));
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = batch.len(), "store commit failed");
                let closed = connection.is_closed();
                for request in batch {
                    let failure = if closed {
                        StoreError::Unavailable(error.to_string())
                    } else {
                        StoreError::Commit(error.to_string())
                    };
                    let _ = request.reply.send(Err(failure));
                }
            }
        }
        if let Some(observer) = &observer {
            observer(&stats);
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            prune(connection, &mut last_prune);
        }
    }
}

/// `base` plus up to half of it again, so replicas that lost the database together do not
/// reconnect in lockstep.
fn jittered(base: Duration) -> Duration {
    base + base.mul_f64(rand::rng().random_range(0.0..0.5))
}

/// Drops deletions older than the retention and records the newest revision dropped, so
/// followers further behind know to reload.
fn prune(client: &mut Client, last_prune: &mut Instant) {
    *last_prune = Instant::now();
    let retention = TOMBSTONE_RETENTION.as_secs_f64();
    let pruned = client.execute(
        "WITH pruned AS (
             DELETE FROM tombstones
             WHERE deleted_at < now() - make_interval(secs => $1)
             RETURNING revision
         )
         UPDATE meta SET value = greatest(value, (SELECT max(revision) FROM pruned))
         WHERE key = 'compacted' AND EXISTS (SELECT 1 FROM pruned)",
        &[&retention],
    );
    if let Err(error) = pruned {
        tracing::warn!(%error, "store could not prune old deletions");
    }
}

/// Applies a batch in one transaction; returns each request's revision.
fn apply_batch(
    client: &mut Client,
    statements: &Statements,
    batch: &[Request],
    own: &OwnRevisions,
) -> Result<Vec<u64>, postgres::Error> {
    let mut transaction = client.transaction()?;
    let count = batch.len() as i64;
    let last: i64 = transaction
        .query_one(&statements.revision, &[&count])?
        .get(0);
    let first = (last - count + 1) as u64;
    let revisions: Vec<u64> = (0..batch.len() as u64).map(|i| first + i).collect();
    let folded = fold::fold(
        revisions
            .iter()
            .zip(batch)
            .map(|(revision, request)| (*revision, &request.ops[..])),
    );
    write_folded(&mut transaction, statements, &folded)?;
    audit::append(
        &mut transaction,
        statements,
        revisions.iter().zip(batch).flat_map(|(revision, request)| {
            request.ops.iter().filter_map(move |op| match op {
                Op::Audit(append) => Some((*revision, append)),
                _ => None,
            })
        }),
    )?;
    // Marked before the commit is visible, so the feed never shows one of ours unmarked.
    own.add(&revisions);
    if let Err(error) = transaction.commit() {
        own.remove(&revisions);
        return Err(error);
    }
    Ok(revisions)
}

fn write_folded(
    transaction: &mut Transaction<'_>,
    statements: &Statements,
    folded: &fold::Folded<'_>,
) -> Result<(), postgres::Error> {
    if !folded.puts.is_empty() {
        let kinds: Vec<&str> = folded.puts.iter().map(|p| p.0).collect();
        let names: Vec<&str> = folded.puts.iter().map(|p| p.1).collect();
        let revisions: Vec<i64> = folded.puts.iter().map(|p| p.2 as i64).collect();
        let docs: Vec<&[u8]> = folded.puts.iter().map(|p| p.3).collect();
        transaction.execute(&statements.put, &[&kinds, &names, &revisions, &docs])?;
        transaction.execute(&statements.untombstone, &[&kinds, &names])?;
    }
    if !folded.creates.is_empty() {
        let kinds: Vec<&str> = folded.creates.iter().map(|p| p.0).collect();
        let names: Vec<&str> = folded.creates.iter().map(|p| p.1).collect();
        let revisions: Vec<i64> = folded.creates.iter().map(|p| p.2 as i64).collect();
        let docs: Vec<&[u8]> = folded.creates.iter().map(|p| p.3).collect();
        transaction.execute(&statements.create, &[&kinds, &names, &revisions, &docs])?;
        // A key that exists has no tombstone, so this only clears those of created keys.
        transaction.execute(&statements.untombstone, &[&kinds, &names])?;
    }
    if !folded.deletes.is_empty() {
        let kinds: Vec<&str> = folded.deletes.iter().map(|d| d.0).collect();
        let names: Vec<&str> = folded.deletes.iter().map(|d| d.1).collect();
        let revisions: Vec<i64> = folded.deletes.iter().map(|d| d.2 as i64).collect();
        transaction.execute(&statements.delete, &[&kinds, &names])?;
        transaction.execute(&statements.tombstone, &[&kinds, &names, &revisions])?;
    }
    if !folded.contents.is_empty() {
        let digests: Vec<&str> = folded.contents.iter().map(|c| c.0).collect();
        let revisions: Vec<i64> = folded.contents.iter().map(|c| c.1 as i64).collect();
        let bodies: Vec<&[u8]> = folded.contents.iter().map(|c| c.2).collect();
        transaction.execute(&statements.content, &[&digests, &bodies, &revisions])?;
    }
    if !folded.content_drops.is_empty() {
        let digests: Vec<&str> = folded.content_drops.iter().map(|c| c.0).collect();
        let revisions: Vec<i64> = folded.content_drops.iter().map(|c| c.1 as i64).collect();
        transaction.execute(&statements.drop_content, &[&digests, &revisions])?;
    }
    for reset in [false, true] {
        let writes: Vec<_> = folded
            .counters
            .iter()
            .filter(|c| c.reset == reset)
            .collect();
        if writes.is_empty() {
            continue;
        }
        let names: Vec<&str> = writes.iter().map(|c| c.name).collect();
        let values: Vec<i64> = writes.iter().map(|c| c.add).collect();
        let revisions: Vec<i64> = writes.iter().map(|c| c.revision as i64).collect();
        let statement = if reset {
            &statements.reset_counter
        } else {
            &statements.add_counter
        };
        transaction.execute(statement, &[&names, &values, &revisions])?;
        let kinds = vec![""; names.len()];
        transaction.execute(&statements.untombstone, &[&kinds, &names])?;
    }
    if !folded.counter_deletes.is_empty() {
        let names: Vec<&str> = folded.counter_deletes.iter().map(|c| c.0).collect();
        let revisions: Vec<i64> = folded.counter_deletes.iter().map(|c| c.1 as i64).collect();
        let kinds = vec![""; names.len()];
        transaction.execute(&statements.delete_counter, &[&names])?;
        transaction.execute(&statements.tombstone, &[&kinds, &names, &revisions])?;
    }
    Ok(())
}

fn read_loop(connector: Connector, jobs: Arc<Mutex<mpsc::Receiver<ReadJob>>>) {
    let mut client: Option<Client> = None;
    loop {
        let job = {
            let jobs = match jobs.lock() {
                Ok(jobs) => jobs,
                Err(poisoned) => poisoned.into_inner(),
            };
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if client.as_ref().is_none_or(Client::is_closed) {
            client = None;
            match connector.connect() {
                Ok(connected) => client = Some(connected),
                Err(error) => {
                    fail(job, StoreError::Unavailable(error.to_string()));
                    continue;
                }
            }
        }
        let Some(connection) = client.as_mut() else {
            continue;
        };
        serve(connection, job);
    }
}

fn fail(job: ReadJob, error: StoreError) {
    match job {
        ReadJob::Load(reply) => drop(reply.send(Err(error))),
        ReadJob::LoadKinds { chunks, .. } => drop(chunks.send(LoadChunk::Done(Err(error)))),
        ReadJob::Content(_, reply) => drop(reply.send(Err(error))),
        ReadJob::ContentIndex(reply) => drop(reply.send(Err(error))),
        ReadJob::Changes(_, _, reply) => drop(reply.send(Err(error))),
        ReadJob::Ping(reply) => drop(reply.send(Err(error))),
        ReadJob::AuditPage(_, reply) => drop(reply.send(Err(error))),
        ReadJob::AuditMarks(reply) => drop(reply.send(Err(error))),
        ReadJob::PruneAudit { reply, .. } => drop(reply.send(Err(error))),
        #[cfg(any(test, feature = "testing"))]
        ReadJob::TamperAudit(_, _, reply) => drop(reply.send(Err(error))),
        ReadJob::Lease { reply, .. } => drop(reply.send(Err(error))),
    }
}

/// Maps a failed read to the error its caller sees: a lost connection is "unavailable".
fn read_error(client: &Client, error: postgres::Error) -> StoreError {
    if client.is_closed() {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Postgres(error)
    }
}

fn serve(client: &mut Client, job: ReadJob) {
    match job {
        ReadJob::Load(reply) => {
            let loaded = load_all(client).map_err(|e| read_error(client, e));
            let _ = reply.send(loaded);
        }
        ReadJob::LoadKinds { kinds, chunks } => {
            let loaded = load_kinds(client, &kinds, &chunks);
            let done = match loaded {
                Ok(Some(snapshot)) => Ok(snapshot),
                // The caller stopped listening (its visitor failed): nothing to report.
                Ok(None) => return,
                Err(error) => Err(read_error(client, error)),
            };
            let _ = chunks.send(LoadChunk::Done(done));
        }
        ReadJob::Content(digest, reply) => {
            let read = client
                .query_opt("SELECT body FROM contents WHERE digest = $1", &[&digest])
                .map(|row| row.map(|row| row.get::<_, Vec<u8>>(0)))
                .map_err(|e| read_error(client, e));
            let _ = reply.send(read);
        }
        ReadJob::ContentIndex(reply) => {
            let read = client
                .query(
                    "SELECT digest, revision, octet_length(body)::int8 FROM contents",
                    &[],
                )
                .map(|rows| {
                    rows.iter()
                        .map(|row| StoredContent {
                            digest: row.get(0),
                            revision: row.get::<_, i64>(1) as u64,
                            bytes: row.get::<_, i64>(2) as u64,
                        })
                        .collect()
                })
                .map_err(|e| read_error(client, e));
            let _ = reply.send(read);
        }
        ReadJob::Changes(after, limit, reply) => {
            let read =
                changes(client, &after, limit).unwrap_or_else(|e| Err(read_error(client, e)));
            let _ = reply.send(read);
        }
        ReadJob::Lease {
            name,
            holder,
            ttl,
            reply,
        } => {
            let leased = match ttl {
                Some(ttl) => client
                    .query_opt(
                        "INSERT INTO leases (name, holder, expires_at)
                         VALUES ($1, $2, now() + make_interval(secs => $3))
                         ON CONFLICT (name) DO UPDATE
                         SET holder = excluded.holder, expires_at = excluded.expires_at
                         WHERE leases.holder = excluded.holder OR leases.expires_at < now()
                         RETURNING holder",
                        &[&name, &holder, &ttl],
                    )
                    .map(|row| row.is_some()),
                None => client
                    .execute(
                        "DELETE FROM leases WHERE name = $1 AND holder = $2",
                        &[&name, &holder],
                    )
                    .map(|_| false),
            }
            .map_err(|e| read_error(client, e));
            let _ = reply.send(leased);
        }
        ReadJob::AuditPage(query, reply) => {
            let read = audit::page(client, &query).map_err(|e| read_error(client, e));
            let _ = reply.send(read);
        }
        ReadJob::AuditMarks(reply) => {
            let read = audit::marks(client).map_err(|e| read_error(client, e));
            let _ = reply.send(read);
        }
        ReadJob::PruneAudit {
            older_than_ms,
            max,
            reply,
        } => {
            let pruned = audit::prune(client, older_than_ms, max)
                .unwrap_or_else(|e| Err(read_error(client, e)));
            let _ = reply.send(pruned);
        }
        #[cfg(any(test, feature = "testing"))]
        ReadJob::TamperAudit(seq, tamper, reply) => {
            let done = audit::tamper(client, seq, tamper).map_err(|e| read_error(client, e));
            let _ = reply.send(done);
        }
        ReadJob::Ping(reply) => {
            let pinged = client
                .simple_query("SELECT 1")
                .map(drop)
                .map_err(|e| read_error(client, e));
            let _ = reply.send(pinged);
        }
    }
}

fn snapshot_transaction(client: &mut Client) -> Result<Transaction<'_>, postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
}

fn counters_and_revision(
    transaction: &mut Transaction<'_>,
) -> Result<(Vec<(String, i64)>, u64), postgres::Error> {
    let counters = transaction
        .query("SELECT name, value FROM counters ORDER BY name", &[])?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let revision: i64 = transaction
        .query_one("SELECT value FROM meta WHERE key = 'revision'", &[])?
        .get(0);
    Ok((counters, revision as u64))
}

fn load_all(client: &mut Client) -> Result<Snapshot, postgres::Error> {
    let mut transaction = snapshot_transaction(client)?;
    transaction.batch_execute("SET LOCAL statement_timeout = 0")?;
    let records = transaction
        .query("SELECT kind, name, revision, doc FROM objects", &[])?
        .into_iter()
        .map(|row| Record {
            kind: row.get(0),
            name: row.get(1),
            revision: row.get::<_, i64>(2) as u64,
            doc: row.get(3),
        })
        .collect();
    let (counters, revision) = counters_and_revision(&mut transaction)?;
    transaction.commit()?;
    Ok(Snapshot {
        records,
        counters,
        revision,
    })
}

/// Streams each kind's records to the caller in chunks; `None` when the caller hung up.
fn load_kinds(
    client: &mut Client,
    kinds: &[String],
    chunks: &mpsc::SyncSender<LoadChunk>,
) -> Result<Option<Snapshot>, postgres::Error> {
    let mut transaction = snapshot_transaction(client)?;
    transaction.batch_execute("SET LOCAL statement_timeout = 0")?;
    let statement = transaction
        .prepare("SELECT name, revision, doc FROM objects WHERE kind = $1 ORDER BY name")?;
    for (index, kind) in kinds.iter().enumerate() {
        let mut rows = transaction.query_raw(&statement, [kind.as_str()])?;
        let mut chunk = Vec::with_capacity(LOAD_CHUNK);
        while let Some(row) = rows.next()? {
            chunk.push((row.get(0), row.get::<_, i64>(1) as u64, row.get(2)));
            if chunk.len() == LOAD_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK));
                if chunks.send(LoadChunk::Records(index, full)).is_err() {
                    return Ok(None);
                }
            }
        }
        if !chunk.is_empty() && chunks.send(LoadChunk::Records(index, chunk)).is_err() {
            return Ok(None);
        }
    }
    let (counters, revision) = counters_and_revision(&mut transaction)?;
    transaction.commit()?;
    Ok(Some(Snapshot {
        records: Vec::new(),
        counters,
        revision,
    }))
}

/// One page of the feed, from one snapshot (the compaction mark and the rows agree).
fn changes(
    client: &mut Client,
    after: &Cursor,
    limit: usize,
) -> Result<Result<ChangePage>, postgres::Error> {
    let mut transaction = snapshot_transaction(client)?;
    let compacted: i64 = transaction
        .query_one("SELECT value FROM meta WHERE key = 'compacted'", &[])?
        .get(0);
    if after.revision < compacted as u64 {
        transaction.commit()?;
        return Ok(Err(StoreError::Compacted {
            asked: after.revision,
            compacted: compacted as u64,
        }));
    }
    // Every source is read after the cursor in (revision, kind, name) order; counters sit under
    // the empty kind. `what`: 0 put, 1 delete, 2 counter.
    let revision = after.revision as i64;
    let (kind, name) = match &after.key {
        Some((kind, name)) => (kind.as_str(), name.as_str()),
        // Past every key of `revision`: no kind sorts after U+10FFFF.
        None => ("\u{10FFFF}", ""),
    };
    let limit = limit.max(1) as i64;
    let rows = transaction.query(
        "(SELECT revision, kind, name, doc, NULL::int8 AS value, 0 AS what FROM objects
          WHERE (revision, kind, name) > ($1, $2, $3)
          ORDER BY revision, kind, name LIMIT $4)
         UNION ALL
         (SELECT revision, kind, name, NULL, NULL, 1 FROM tombstones
          WHERE (revision, kind, name) > ($1, $2, $3)
          ORDER BY revision, kind, name LIMIT $4)
         UNION ALL
         (SELECT revision, ''::text COLLATE \"C\", name, NULL, value, 2 FROM counters
          WHERE (revision, ''::text COLLATE \"C\", name) > ($1, $2, $3)
          ORDER BY revision, name LIMIT $4)
         ORDER BY 1, 2, 3 LIMIT $4",
        &[&revision, &kind, &name, &limit],
    )?;
    transaction.commit()?;
    let changes = rows
        .into_iter()
        .map(|row| {
            let revision = row.get::<_, i64>(0) as u64;
            let kind: String = row.get(1);
            let name: String = row.get(2);
            match row.get::<_, i32>(5) {
                0 => Change::Put {
                    kind,
                    name,
                    revision,
                    doc: row.get(3),
                },
                1 if kind.is_empty() => Change::Counter {
                    name,
                    revision,
                    value: None,
                },
                1 => Change::Delete {
                    kind,
                    name,
                    revision,
                },
                _ => Change::Counter {
                    name,
                    revision,
                    value: row.get(4),
                },
            }
        })
        .collect();
    Ok(Ok(ChangePage::from_changes(after, changes, limit as usize)))
}

impl Store for PgStore {
    fn load(&self) -> Result<Snapshot> {
        self.read(ReadJob::Load)
    }

    fn load_kinds(&self, kinds: &[&str], visit: &mut Visitor<'_>) -> Result<Snapshot> {
        let (chunks, received) = mpsc::sync_channel(4);
        self.readers
            .send(ReadJob::LoadKinds {
                kinds: kinds.iter().map(|kind| kind.to_string()).collect(),
                chunks,
            })
            .map_err(|_| StoreError::Closed)?;
        loop {
            match received.recv().map_err(|_| StoreError::Closed)? {
                LoadChunk::Records(index, records) => {
                    for (name, revision, doc) in &records {
                        visit(RecordRef {
                            kind: kinds[index],
                            name,
                            revision: *revision,
                            doc,
                        })
                        .map_err(StoreError::Visit)?;
                    }
                }
                LoadChunk::Done(snapshot) => return snapshot,
            }
        }
    }

    fn content(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let digest = digest.to_string();
        self.read(|reply| ReadJob::Content(digest, reply))
    }

    fn content_index(&self) -> Result<Vec<StoredContent>> {
        self.read(ReadJob::ContentIndex)
    }

    fn commit(&self, ops: Vec<Op>) -> CommitFuture {
        let (reply, receiver) = oneshot::channel();
        let sent = self.writer.send(Request { ops, reply });
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            receiver.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn changes(&self, after: &Cursor, limit: usize) -> Result<ChangePage> {
        let after = after.clone();
        let mut page = self.read(|reply| ReadJob::Changes(after, limit, reply))?;
        self.own.mark(&mut page);
        Ok(page)
    }

    fn ping(&self) -> Result<()> {
        self.read(ReadJob::Ping)
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.read(|reply| ReadJob::Lease {
            name,
            holder,
            ttl: Some(ttl.as_secs_f64()),
            reply,
        })
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.read(|reply| ReadJob::Lease {
            name,
            holder,
            ttl: None,
            reply,
        })
        .map(drop)
    }
    fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let query = query.clone();
        self.read(|reply| ReadJob::AuditPage(query, reply))
    }

    fn audit_head(&self) -> Result<AuditMark> {
        self.read(ReadJob::AuditMarks).map(|(_, head)| head)
    }

    fn audit_anchor(&self) -> Result<AuditMark> {
        self.read(ReadJob::AuditMarks).map(|(anchor, _)| anchor)
    }

    fn prune_audit(&self, older_than_ms: u64, max: usize) -> Result<usize> {
        self.read(|reply| ReadJob::PruneAudit {
            older_than_ms,
            max,
            reply,
        })
    }
}

#[cfg(any(test, feature = "testing"))]
impl PgStore {
    /// Damages the stored audit record `seq` behind the store's back, as someone with write
    /// access to the database could (tests of verification).
    pub fn tamper_audit_for_tests(&self, seq: u64, tamper: crate::AuditTamper) -> Result<()> {
        self.read(|reply| ReadJob::TamperAudit(seq, tamper, reply))
    }
}

/// Scratch schemas for tests against a real PostgreSQL server: each one is created empty and
/// dropped with everything in it when the guard goes. The server is the test process's
/// throwaway one from `flotilla-testkit`, or `FLOTILLA_TEST_POSTGRES`. Compiled for this
/// crate's tests and, through the `testing` feature, for other crates' tests.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::thread;

    use postgres::Client;

    /// A client for `url` with the store's own TLS handling (so `sslmode=verify-full` works).
    pub fn connect(url: &str) -> crate::Result<Client> {
        let (config, tls) = super::tls::configure(url)?;
        Ok(config.connect(tls)?)
    }

    /// The server tests use, as a libpq key/value string: `FLOTILLA_TEST_POSTGRES` if set, else
    /// a throwaway server this test process starts from the installed PostgreSQL binaries
    /// (panicking with what to install when there are none).
    pub fn server() -> String {
        flotilla_testkit::postgres_url()
    }

    /// The value of `key` in [`server`]'s connection string, if it names one.
    pub fn server_value(key: &str) -> Option<String> {
        server().split_whitespace().find_map(|pair| {
            pair.strip_prefix(key)?
                .strip_prefix('=')
                .map(str::to_string)
        })
    }

    /// A schema of its own for one test.
    pub struct TestSchema {
        pub name: String,
        base: String,
    }

    impl TestSchema {
        /// Creates a fresh schema; panics with a clear message when PostgreSQL is not there (the
        /// PostgreSQL tests fail rather than skip).
        pub fn create(prefix: &str) -> TestSchema {
            let base = server();
            let name = format!(
                "t_{prefix}_{}_{:x}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            );
            let statement = format!("CREATE SCHEMA {name}");
            on_thread(&base, &statement);
            TestSchema { name, base }
        }

        /// Connection string for stores in this schema; `application_name` lets a test find its
        /// own connections (to terminate them).
        pub fn url(&self) -> String {
            format!(
                "{} options='-c search_path={}' application_name={}",
                self.base, self.name, self.name
            )
        }

        /// Runs SQL as the admin connection, off any async runtime.
        pub fn execute(&self, sql: &str) {
            on_thread(&self.base, sql);
        }

        /// The first column of the first row `sql` returns, as text, from the admin connection.
        pub fn query_text(&self, sql: &str) -> Option<String> {
            let (base, sql) = (self.base.clone(), sql.to_string());
            thread::spawn(move || {
                let mut client = connect(&base).expect("admin connection");
                client
                    .query(&sql, &[])
                    .unwrap_or_else(|error| panic!("{sql}: {error}"))
                    .first()
                    .map(|row| row.get::<_, String>(0))
            })
            .join()
            .expect("PostgreSQL admin query")
        }

        /// Terminates every connection the test's stores hold, as a database restart would.
        pub fn terminate_connections(&self) {
            self.execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = '{}'",
                self.name
            ));
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
            let base = self.base.clone();
            let _ = thread::spawn(move || {
                if let Ok(mut client) = connect(&base) {
                    let _ = client.batch_execute(&statement);
                }
            })
            .join();
        }
    }

    fn on_thread(base: &str, sql: &str) {
        let (base, sql) = (base.to_string(), sql.to_string());
        thread::spawn(move || {
            let mut client = connect(&base).unwrap_or_else(|error| {
                panic!(
                    "PostgreSQL is needed for this test and did not answer at '{base}': {error} \
                     (the test process's throwaway server, or FLOTILLA_TEST_POSTGRES if set)"
                )
            });
            client
                .batch_execute(&sql)
                .unwrap_or_else(|error| panic!("{sql}: {error}"));
        })
        .join()
        .expect("PostgreSQL admin statement");
    }
}
