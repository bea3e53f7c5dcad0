//! The audit trail's contract as tests, run against both backends by the `suite!` of
//! `conformance.rs`, plus PostgreSQL's two writers and SQLite's schema upgrade.

use std::sync::Arc;

use super::{docs_of, drain, put};
use crate::{
    AuditAppend, AuditEntry, AuditMark, AuditQuery, AuditTamper, ChainBreak, Cursor, Op, Store,
    StoreError, verify_stored,
};

/// A backend whose stored audit records a test can damage behind its back.
pub trait Tamper: Store {
    fn tamper(&self, seq: u64, how: AuditTamper);
}

impl Tamper for crate::SqliteStore {
    fn tamper(&self, seq: u64, how: AuditTamper) {
        self.tamper_audit_for_tests(seq, how).expect("tamper");
    }
}

impl Tamper for crate::PgStore {
    fn tamper(&self, seq: u64, how: AuditTamper) {
        self.tamper_audit_for_tests(seq, how).expect("tamper");
    }
}

fn audit(time_ms: u64, actor: &str, object: &str, project: &str) -> Op {
    Op::Audit(AuditAppend {
        time_ms,
        actor: actor.into(),
        object: object.into(),
        project: project.into(),
        doc: format!(r#"{{"time":{time_ms},"actor":"{actor}","object":"{object}"}}"#).into_bytes(),
    })
}

/// `count` records, one commit each, at times 1000, 1001, ...
async fn append_audits(store: &dyn Store, count: u64) {
    for i in 0..count {
        store
            .commit(vec![audit(
                1000 + i,
                "token/ci",
                &format!("bundle/b{i}"),
                "default",
            )])
            .await
            .expect("commit");
    }
}

fn all_audits(store: &dyn Store) -> Vec<AuditEntry> {
    store
        .audit_page(&AuditQuery {
            limit: crate::audit::MAX_AUDIT_PAGE,
            ..AuditQuery::default()
        })
        .expect("audit page")
}

fn seqs(entries: &[AuditEntry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

fn verified(store: &dyn Store) -> Result<u64, ChainBreak> {
    // Pages of 2: the walk crosses page boundaries.
    verify_stored(store, 2).expect("verify reads the store")
}

pub async fn audit_records_get_gapless_seqs_linked_by_hash_in_their_commit(store: Arc<dyn Store>) {
    assert_eq!(store.audit_head().expect("head"), AuditMark::GENESIS);
    assert_eq!(verified(&*store), Ok(0));
    let first = store
        .commit(vec![
            audit(1, "token/ci", "bundle/a", "default"),
            put("Bundle", "a", "1"),
            audit(2, "token/ci", "bundle/b", "default"),
        ])
        .await
        .expect("commit");
    // Several commits in flight: grouped into one transaction, still chained in order.
    let in_flight: Vec<_> = (0..5)
        .map(|i| {
            store.commit(vec![audit(
                10 + i,
                "oidc/alice",
                &format!("clustergroup/g{i}"),
                "web",
            )])
        })
        .collect();
    let mut revisions = vec![first, first];
    for commit in in_flight {
        revisions.push(commit.await.expect("commit"));
    }
    let entries = all_audits(&*store);
    assert_eq!(seqs(&entries), (1..=7).collect::<Vec<_>>());
    assert_eq!(
        entries.iter().map(|e| e.revision).collect::<Vec<_>>(),
        revisions,
        "each record carries its commit's revision, in commit order"
    );
    assert_eq!(entries[0].prev, crate::audit::GENESIS_HASH);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash, "record {} links", pair[1].seq);
    }
    for entry in &entries {
        assert_eq!(entry.hash, entry.computed_hash(), "record {}", entry.seq);
    }
    assert_eq!(
        entries[1].object, "bundle/b",
        "a commit's records keep their order"
    );
    assert_eq!(
        entries[1].doc,
        br#"{"time":2,"actor":"token/ci","object":"bundle/b"}"#
    );
    assert_eq!(store.audit_head().expect("head"), entries[6].mark());
    assert_eq!(store.audit_anchor().expect("anchor"), AuditMark::GENESIS);
    assert_eq!(verified(&*store), Ok(7));
    // Neither the bulk load nor the change feed carries the trail.
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.records.len(), 1, "{:?}", snapshot.records);
    let (changes, _) = drain(&*store, &Cursor::after(0), 100);
    assert_eq!(changes.len(), 1, "{changes:?}");
}

pub async fn an_audit_record_commits_only_with_its_commit<S: Tamper>(store: Arc<S>) {
    append_audits(&*store, 2).await;
    let head = store.audit_head().expect("head");
    // A junk row where the commit's second record goes makes that commit fail midway.
    store.tamper(4, AuditTamper::Occupy);
    store
        .commit(vec![
            audit(5, "token/ci", "bundle/x", "default"),
            put("Bundle", "x", "1"),
            audit(6, "token/ci", "bundle/x", "default"),
        ])
        .await
        .expect_err("the commit fails on the occupied seq");
    assert_eq!(store.audit_head().expect("head"), head, "the head stays");
    assert!(
        docs_of(&*store, "Bundle").is_empty(),
        "nothing of the commit stays"
    );
    store.tamper(4, AuditTamper::Delete);
    assert_eq!(
        seqs(&all_audits(&*store)),
        [1, 2],
        "no record of the failed commit"
    );
    // The next commit links to the head as it was.
    store
        .commit(vec![audit(7, "token/ci", "bundle/y", "default")])
        .await
        .expect("commit");
    assert_eq!(seqs(&all_audits(&*store)), [1, 2, 3]);
    assert_eq!(verified(&*store), Ok(3));
}

pub async fn audit_pages_filter_by_time_actor_object_and_project(store: Arc<dyn Store>) {
    store
        .commit(vec![
            audit(100, "token/ci", "bundle/web", "shop"),
            audit(200, "oidc/alice", "bundle/api", "shop"),
            audit(300, "oidc/alice", "bundles/other", "shop"),
            audit(400, "token/ci", "bundle0", "ops"),
            audit(500, "oidc/bob", "bundle/web", "ops"),
            audit(600, "oidc/alice", "clustergroup/eu", "ops"),
            audit(700, "token/ci", "bundle/web-2", "shop"),
        ])
        .await
        .expect("commit");
    let page = |query: AuditQuery| {
        seqs(
            &store
                .audit_page(&AuditQuery {
                    limit: if query.limit == 0 { 100 } else { query.limit },
                    ..query
                })
                .expect("audit page"),
        )
    };
    assert_eq!(page(AuditQuery::default()), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        page(AuditQuery {
            since_ms: Some(300),
            until_ms: Some(600),
            ..AuditQuery::default()
        }),
        [3, 4, 5],
        "since is inclusive, until exclusive"
    );
    assert_eq!(
        page(AuditQuery {
            actor: Some("oidc/alice".into()),
            ..AuditQuery::default()
        }),
        [2, 3, 6]
    );
    assert_eq!(
        page(AuditQuery {
            object: Some("bundle/".into()),
            ..AuditQuery::default()
        }),
        [1, 2, 5, 7],
        "a kind prefix takes that kind's objects only"
    );
    assert_eq!(
        page(AuditQuery {
            object: Some("bundle/web".into()),
            ..AuditQuery::default()
        }),
        [1, 5],
        "a name is exact"
    );
    assert_eq!(
        page(AuditQuery {
            project: Some("ops".into()),
            ..AuditQuery::default()
        }),
        [4, 5, 6]
    );
    assert_eq!(
        page(AuditQuery {
            project: Some("shop".into()),
            object: Some("bundle/".into()),
            actor: Some("token/ci".into()),
            since_ms: Some(150),
            ..AuditQuery::default()
        }),
        [7],
        "filters combine"
    );
    // Oldest first, by seq.
    let mut after_seq = 0;
    let mut pages = Vec::new();
    loop {
        let next = page(AuditQuery {
            after_seq,
            limit: 3,
            ..AuditQuery::default()
        });
        let Some(last) = next.last() else { break };
        after_seq = *last;
        pages.push(next);
    }
    assert_eq!(pages, [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    // Newest first, by seq.
    let newest = |before_seq| {
        page(AuditQuery {
            before_seq,
            newest_first: true,
            limit: 3,
            ..AuditQuery::default()
        })
    };
    assert_eq!(newest(None), [7, 6, 5]);
    assert_eq!(newest(Some(5)), [4, 3, 2]);
    assert_eq!(newest(Some(2)), [1]);
    assert_eq!(
        page(AuditQuery {
            after_seq: 2,
            before_seq: Some(5),
            ..AuditQuery::default()
        }),
        [3, 4]
    );
    assert_eq!(
        page(AuditQuery {
            after_seq: u64::MAX,
            since_ms: Some(u64::MAX),
            ..AuditQuery::default()
        }),
        Vec::<u64>::new(),
        "bounds past the columns' range match nothing"
    );
}

pub async fn pruning_moves_the_anchor_and_the_rest_still_verifies(store: Arc<dyn Store>) {
    append_audits(&*store, 6).await; // times 1000 ..= 1005
    // Older than the cutoff but after a newer record: kept, pruning is contiguous.
    store
        .commit(vec![audit(1, "token/ci", "bundle/late", "default")])
        .await
        .expect("commit");
    let entries = all_audits(&*store);
    assert_eq!(store.prune_audit(1004, 2).expect("prune"), 2, "at most max");
    assert_eq!(store.audit_anchor().expect("anchor"), entries[1].mark());
    assert_eq!(
        store.prune_audit(1004, 100).expect("prune"),
        2,
        "up to the first newer record"
    );
    assert_eq!(store.audit_anchor().expect("anchor"), entries[3].mark());
    assert_eq!(seqs(&all_audits(&*store)), [5, 6, 7]);
    assert_eq!(verified(&*store), Ok(3));
    assert_eq!(store.prune_audit(1004, 100).expect("prune"), 0);
    // Everything pruned: the anchor is the head, and the trail goes on from it.
    assert_eq!(store.prune_audit(u64::MAX, 100).expect("prune"), 3);
    assert_eq!(
        store.audit_anchor().expect("anchor"),
        store.audit_head().expect("head")
    );
    assert_eq!(verified(&*store), Ok(0));
    store
        .commit(vec![audit(2000, "token/ci", "bundle/next", "default")])
        .await
        .expect("commit");
    let rest = all_audits(&*store);
    assert_eq!(seqs(&rest), [8]);
    assert_eq!(rest[0].prev, entries[6].hash);
    assert_eq!(verified(&*store), Ok(1));
}

pub async fn an_altered_record_fails_verification_and_is_never_pruned<S: Tamper>(store: Arc<S>) {
    append_audits(&*store, 5).await;
    store.tamper(3, AuditTamper::AlterDoc);
    let broken = verified(&*store).expect_err("an altered record");
    assert_eq!(broken, ChainBreak::Altered { seq: 3 });
    assert_eq!(broken.seq(), 3);
    match store.prune_audit(u64::MAX, 100) {
        Err(StoreError::AuditBroken(ChainBreak::Altered { seq: 3 })) => {}
        other => panic!("a prune over an altered record must refuse, got {other:?}"),
    }
    assert_eq!(
        store.audit_anchor().expect("anchor"),
        AuditMark::GENESIS,
        "a refused prune deletes nothing"
    );
    assert_eq!(store.prune_audit(1002, 100).expect("prune before it"), 2);
    assert_eq!(verified(&*store), Err(ChainBreak::Altered { seq: 3 }));
}

pub async fn a_record_deleted_from_the_newest_end_is_truncation<S: Tamper>(store: Arc<S>) {
    append_audits(&*store, 4).await;
    store.tamper(4, AuditTamper::Delete);
    assert_eq!(
        verified(&*store),
        Err(ChainBreak::Truncated { last: 3, head: 4 })
    );
}

pub async fn a_record_added_past_the_head_is_found<S: Tamper>(store: Arc<S>) {
    append_audits(&*store, 3).await;
    store.tamper(9, AuditTamper::Occupy);
    assert_eq!(
        verified(&*store),
        Err(ChainBreak::HeadMismatch { seq: 9, head: 3 })
    );
}

pub async fn a_record_deleted_from_the_middle_is_a_gap<S: Tamper>(store: Arc<S>) {
    append_audits(&*store, 4).await;
    store.tamper(2, AuditTamper::Delete);
    let broken = verified(&*store).expect_err("a gap");
    assert_eq!(
        broken,
        ChainBreak::Gap {
            expected: 2,
            found: 3
        }
    );
    assert_eq!(broken.seq(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_writers_append_one_gapless_chain_in_commit_order() {
    let schema = crate::pg::testing::TestSchema::create("audit");
    let one =
        Arc::new(crate::PgStore::open(&schema.url(), crate::PgOptions::default()).expect("open"));
    let two =
        Arc::new(crate::PgStore::open(&schema.url(), crate::PgOptions::default()).expect("open"));
    // Each writer with several commits in flight at once, so their transactions interleave.
    let writers: Vec<_> = [one.clone(), two.clone()]
        .into_iter()
        .enumerate()
        .map(|(writer, store)| {
            tokio::spawn(async move {
                let commits: Vec<_> = (0..60)
                    .map(|i| {
                        let actor = format!("writer/{writer}");
                        store.commit(vec![
                            audit(i, &actor, &format!("bundle/b{i}"), "default"),
                            put("K", &format!("{writer}-{i}"), "1"),
                            audit(i, &actor, &format!("bundle/b{i}"), "default"),
                        ])
                    })
                    .collect();
                let mut revisions = Vec::new();
                for commit in commits {
                    revisions.push(commit.await.expect("commit"));
                }
                revisions
            })
        })
        .collect();
    let mut committed = Vec::new();
    for writer in writers {
        committed.extend(writer.await.expect("writer"));
    }
    committed.sort();
    let entries = all_audits(&*one);
    assert_eq!(
        seqs(&entries),
        (1..=240).collect::<Vec<_>>(),
        "gapless, none lost"
    );
    let mut revisions: Vec<u64> = entries.iter().map(|e| e.revision).collect();
    assert!(
        revisions.windows(2).all(|pair| pair[0] <= pair[1]),
        "the chain's order is the commit (revision) order"
    );
    revisions.dedup();
    assert_eq!(
        revisions, committed,
        "two records per commit, every commit's"
    );
    assert_eq!(verify_stored(&*two, 50).expect("verify"), Ok(240));
    assert_eq!(one.audit_head().expect("head"), entries[239].mark());
}

#[tokio::test]
async fn sqlite_audit_trail_survives_reopen_and_is_added_to_older_databases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    {
        let store = crate::SqliteStore::open(&path).expect("open");
        store
            .commit(vec![put("K", "a", "1")])
            .await
            .expect("commit");
    }
    // As a database written before the trail existed (schema version 4).
    {
        let connection = rusqlite::Connection::open(&path).expect("open");
        connection
            .execute_batch("DROP TABLE audit; DROP TABLE audit_meta; PRAGMA user_version = 4;")
            .expect("downgrade");
    }
    {
        let store = crate::SqliteStore::open(&path).expect("open an older database");
        assert_eq!(docs_of(&store, "K").len(), 1);
        append_audits(&store, 3).await;
    }
    let store = crate::SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.audit_head().expect("head").seq, 3);
    append_audits(&store, 1).await;
    assert_eq!(verify_stored(&store, 10).expect("verify"), Ok(4));
}
