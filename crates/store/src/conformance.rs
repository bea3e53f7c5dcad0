//! The store contract as tests. Every backend runs the same suite: add a backend by adding a
//! `suite!` line for it.

use std::sync::Arc;

use crate::{
    AuditAppend, AuditEntry, AuditMark, AuditQuery, AuditTamper, ChainBreak, Change, Cursor, Op,
    Store, StoreError, verify_stored,
};

fn put(kind: &str, name: &str, doc: &str) -> Op {
    Op::Put {
        kind: kind.into(),
        name: name.into(),
        doc: doc.as_bytes().to_vec(),
    }
}

fn docs_of(store: &dyn Store, kind: &str) -> Vec<(String, String)> {
    let mut docs: Vec<_> = store
        .load()
        .expect("load")
        .records
        .into_iter()
        .filter(|record| record.kind == kind)
        .map(|record| (record.name, String::from_utf8(record.doc).expect("utf8")))
        .collect();
    docs.sort();
    docs
}

pub async fn committed_put_is_loaded(store: Arc<dyn Store>) {
    store
        .commit(vec![put("Bundle", "a", "1"), put("Bundle", "b", "2")])
        .await
        .expect("commit");
    assert_eq!(
        docs_of(&*store, "Bundle"),
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
}

pub async fn bulk_load_visits_the_named_kinds_in_order_by_name(store: Arc<dyn Store>) {
    store
        .commit(vec![
            put("Report", "b", "rb"),
            put("Cluster", "b", "cb"),
            put("Other", "x", "ox"),
            put("Cluster", "a", "ca"),
            put("Report", "a", "ra"),
        ])
        .await
        .expect("commit");
    store
        .commit(vec![Op::Increment {
            counter: "uses".into(),
            by: 2,
        }])
        .await
        .expect("commit");
    let mut seen = Vec::new();
    let snapshot = store
        .load_kinds(&["Cluster", "Report"], &mut |record| {
            seen.push(format!(
                "{}/{}={}",
                record.kind,
                record.name,
                String::from_utf8_lossy(record.doc)
            ));
            Ok(())
        })
        .expect("load");
    assert_eq!(
        seen,
        ["Cluster/a=ca", "Cluster/b=cb", "Report/a=ra", "Report/b=rb"],
        "kinds in the order asked, names in order, unnamed kinds skipped"
    );
    assert_eq!(snapshot.counters, vec![("uses".to_string(), 2)]);
    assert_eq!(snapshot.revision, store.load().expect("load").revision);
    let error = store
        .load_kinds(&["Cluster"], &mut |record| {
            Err(format!("cannot read {}", record.name).into())
        })
        .expect_err("a visitor's error stops the load");
    assert!(error.to_string().contains("cannot read a"), "{error}");
}

pub async fn put_replaces_and_delete_removes(store: Arc<dyn Store>) {
    store
        .commit(vec![put("Bundle", "a", "1")])
        .await
        .expect("commit");
    store
        .commit(vec![put("Bundle", "a", "2")])
        .await
        .expect("commit");
    store
        .commit(vec![put("Bundle", "b", "3"), put("ClusterGroup", "a", "4")])
        .await
        .expect("commit");
    store
        .commit(vec![Op::Delete {
            kind: "Bundle".into(),
            name: "b".into(),
        }])
        .await
        .expect("commit");
    assert_eq!(docs_of(&*store, "Bundle"), vec![("a".into(), "2".into())]);
    assert_eq!(
        docs_of(&*store, "ClusterGroup"),
        vec![("a".into(), "4".into())]
    );
}

pub async fn revisions_increase_with_every_commit(store: Arc<dyn Store>) {
    let first = store
        .commit(vec![put("K", "a", "1")])
        .await
        .expect("commit");
    let second = store
        .commit(vec![put("K", "b", "1")])
        .await
        .expect("commit");
    assert!(second > first, "{second} > {first}");
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.revision, second);
    let record = snapshot.records.iter().find(|r| r.name == "b").expect("b");
    assert_eq!(record.revision, second);
}

pub async fn content_is_stored_once_by_digest(store: Arc<dyn Store>) {
    let op = |body: &str| Op::PutContent {
        digest: "sha256:x".into(),
        body: body.as_bytes().to_vec(),
    };
    store.commit(vec![op("first")]).await.expect("commit");
    store.commit(vec![op("second")]).await.expect("commit");
    assert_eq!(
        store.content("sha256:x").expect("read"),
        Some(b"first".to_vec())
    );
    assert_eq!(store.content("sha256:missing").expect("read"), None);
}

pub async fn content_is_dropped_only_if_not_put_since_the_collectors_listing(
    store: Arc<dyn Store>,
) {
    let put = |digest: &str| Op::PutContent {
        digest: digest.into(),
        body: digest.as_bytes().to_vec(),
    };
    let drop = |digest: &str, unless_written_after| Op::DropContent {
        digest: digest.into(),
        unless_written_after,
    };
    let first = store
        .commit(vec![put("sha256:old"), put("sha256:again")])
        .await
        .expect("commit");
    let listed = |store: &dyn Store| {
        let mut index = store.content_index().expect("index");
        index.sort_by(|a, b| a.digest.cmp(&b.digest));
        index
            .into_iter()
            .map(|c| (c.digest, c.revision, c.bytes))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(&*store),
        vec![
            ("sha256:again".to_string(), first, 12),
            ("sha256:old".to_string(), first, 10),
        ]
    );
    // Put again after the listing: the listing's revision no longer allows dropping it.
    let again = store
        .commit(vec![put("sha256:again")])
        .await
        .expect("commit");
    assert!(again > first);
    store
        .commit(vec![
            drop("sha256:old", first),
            drop("sha256:again", first),
            drop("sha256:missing", first),
        ])
        .await
        .expect("dropping content, missing content too, commits");
    assert_eq!(store.content("sha256:old").expect("read"), None);
    assert_eq!(
        store.content("sha256:again").expect("read"),
        Some(b"sha256:again".to_vec())
    );
    assert_eq!(
        listed(&*store),
        vec![("sha256:again".to_string(), again, 12)]
    );
    // Dropped, then put again: stored once more.
    store.commit(vec![put("sha256:old")]).await.expect("commit");
    assert_eq!(
        store.content("sha256:old").expect("read"),
        Some(b"sha256:old".to_vec())
    );
}

pub async fn concurrent_increments_are_never_lost(store: Arc<dyn Store>) {
    let mut commits = Vec::new();
    for _ in 0..200 {
        commits.push(store.commit(vec![Op::Increment {
            counter: "uses".into(),
            by: 1,
        }]));
    }
    for commit in commits {
        commit.await.expect("commit");
    }
    let counters = store.load().expect("load").counters;
    assert_eq!(counters, vec![("uses".to_string(), 200)]);
    store
        .commit(vec![Op::DeleteCounter {
            counter: "uses".into(),
        }])
        .await
        .expect("commit");
    assert!(store.load().expect("load").counters.is_empty());
}

/// Reads the whole feed after `after`, `limit` changes per page.
fn drain(store: &dyn Store, after: &Cursor, limit: usize) -> (Vec<Change>, Cursor) {
    let mut cursor = after.clone();
    let mut all = Vec::new();
    loop {
        let page = store.changes(&cursor, limit).expect("changes");
        let done = page.changes.is_empty();
        all.extend(page.changes);
        cursor = page.next;
        if done {
            return (all, cursor);
        }
    }
}

pub async fn the_feed_holds_each_keys_latest_state_in_revision_order(store: Arc<dyn Store>) {
    let first = store
        .commit(vec![put("K", "a", "1"), put("K", "b", "1")])
        .await
        .expect("commit");
    let second = store
        .commit(vec![
            put("K", "a", "2"),
            Op::Delete {
                kind: "K".into(),
                name: "b".into(),
            },
            Op::Increment {
                counter: "c".into(),
                by: 3,
            },
        ])
        .await
        .expect("commit");
    let third = store
        .commit(vec![put("J", "z", "9")])
        .await
        .expect("commit");
    let page = store.changes(&Cursor::after(0), 100).expect("changes");
    assert_eq!(
        page.local,
        [second, third].into_iter().collect(),
        "the handle's own commits are marked local"
    );
    let (changes, end) = drain(&*store, &Cursor::after(0), 100);
    assert_eq!(
        changes,
        vec![
            Change::Counter {
                name: "c".into(),
                revision: second,
                value: Some(3)
            },
            Change::Put {
                kind: "K".into(),
                name: "a".into(),
                revision: second,
                doc: b"2".to_vec()
            },
            Change::Delete {
                kind: "K".into(),
                name: "b".into(),
                revision: second
            },
            Change::Put {
                kind: "J".into(),
                name: "z".into(),
                revision: third,
                doc: b"9".to_vec()
            },
        ],
        "a key written twice shows once, at its newest revision; deletions are kept"
    );
    assert!(first < second);
    assert_eq!(end.revision, third);
    // One change per page walks the same feed, also through a revision's middle.
    let (paged, _) = drain(&*store, &Cursor::after(0), 1);
    assert_eq!(paged, changes);
    // Nothing after the end until the next write; a re-created key leaves the deletions.
    assert!(
        store
            .changes(&end, 100)
            .expect("changes")
            .changes
            .is_empty()
    );
    let fourth = store
        .commit(vec![
            put("K", "b", "again"),
            Op::DeleteCounter {
                counter: "c".into(),
            },
        ])
        .await
        .expect("commit");
    let (later, _) = drain(&*store, &end, 100);
    assert_eq!(
        later,
        vec![
            Change::Counter {
                name: "c".into(),
                revision: fourth,
                value: None
            },
            Change::Put {
                kind: "K".into(),
                name: "b".into(),
                revision: fourth,
                doc: b"again".to_vec()
            },
        ]
    );
    // A follower starting from a snapshot reads only what came after it.
    let snapshot = store.load().expect("load");
    assert!(
        store
            .changes(&Cursor::after(snapshot.revision), 100)
            .expect("changes")
            .changes
            .is_empty()
    );
}

pub async fn a_page_cut_at_its_limit_says_more_may_follow(store: Arc<dyn Store>) {
    store
        .commit(vec![
            put("K", "a", "1"),
            put("K", "b", "1"),
            put("K", "c", "1"),
        ])
        .await
        .expect("commit");
    let page = store.changes(&Cursor::after(0), 2).expect("changes");
    assert_eq!(page.changes.len(), 2);
    assert!(page.more);
    let rest = store.changes(&page.next, 2).expect("changes");
    assert_eq!(rest.changes.len(), 1);
    assert!(!rest.more);
}

pub async fn put_if_absent_keeps_the_first_value(store: Arc<dyn Store>) {
    let create = |doc: &str| Op::PutIfAbsent {
        kind: "Meta".into(),
        name: "admin".into(),
        doc: doc.as_bytes().to_vec(),
    };
    let first = store.commit(vec![create("first")]).await.expect("commit");
    // Two creations racing in one group commit, and one after: the first value stays.
    let (a, b) = (
        store.commit(vec![create("second")]),
        store.commit(vec![create("third")]),
    );
    a.await.expect("commit");
    b.await.expect("commit");
    let snapshot = store.load().expect("load");
    let record = snapshot
        .records
        .iter()
        .find(|r| r.name == "admin")
        .expect("admin");
    assert_eq!(record.doc, b"first");
    assert_eq!(
        record.revision, first,
        "an ignored creation leaves the revision"
    );
    // Deleted, it can be created again.
    store
        .commit(vec![
            Op::Delete {
                kind: "Meta".into(),
                name: "admin".into(),
            },
            create("again"),
        ])
        .await
        .expect("commit");
    assert_eq!(
        docs_of(&*store, "Meta"),
        vec![("admin".into(), "again".into())]
    );
}

pub async fn a_lease_has_one_holder_until_released_or_expired(store: Arc<dyn Store>) {
    let long = std::time::Duration::from_secs(60);
    assert!(store.lease("sweeper", "a", long).expect("lease"));
    assert!(
        !store.lease("sweeper", "b", long).expect("lease"),
        "held by a"
    );
    assert!(
        store.lease("sweeper", "a", long).expect("lease"),
        "a renews"
    );
    assert!(
        store.lease("other", "b", long).expect("lease"),
        "leases are independent"
    );
    store.release_lease("sweeper", "b").expect("release");
    assert!(
        !store.lease("sweeper", "b", long).expect("lease"),
        "only the holder releases"
    );
    store.release_lease("sweeper", "a").expect("release");
    assert!(
        store.lease("sweeper", "b", long).expect("lease"),
        "released: b takes it"
    );
    assert!(!store.lease("sweeper", "a", long).expect("lease"));
    // A lease that is not renewed expires and moves.
    let short = std::time::Duration::from_millis(200);
    assert!(store.lease("short", "a", short).expect("lease"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !store.lease("short", "b", long).expect("lease") {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !store.lease("short", "a", short).expect("lease"),
        "b holds it now"
    );
}

pub async fn lease_renewals_beside_commits_never_fail_them(store: Arc<dyn Store>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut renewals = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store
                    .lease("sweeper", "a", std::time::Duration::from_secs(60))
                    .expect("lease");
                renewals += 1;
            }
            renewals
        })
    };
    for i in 0..200 {
        // A read before the writes in the same commit (the tombstone check) must not turn a
        // concurrent lease write into a failed commit.
        store
            .commit(vec![
                put("K", &format!("{i}"), "1"),
                Op::Delete {
                    kind: "K".into(),
                    name: format!("gone-{i}"),
                },
            ])
            .await
            .expect("a commit beside lease renewals");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(renewer.join().expect("renewer") > 0);
}

pub async fn a_healthy_store_answers_ping(store: Arc<dyn Store>) {
    store.ping().expect("ping");
}

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

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn committed_put_is_loaded() {
                let (_guard, store) = $make;
                super::committed_put_is_loaded(store).await;
            }
            #[tokio::test]
            async fn bulk_load_visits_the_named_kinds_in_order_by_name() {
                let (_guard, store) = $make;
                super::bulk_load_visits_the_named_kinds_in_order_by_name(store).await;
            }
            #[tokio::test]
            async fn put_replaces_and_delete_removes() {
                let (_guard, store) = $make;
                super::put_replaces_and_delete_removes(store).await;
            }
            #[tokio::test]
            async fn revisions_increase_with_every_commit() {
                let (_guard, store) = $make;
                super::revisions_increase_with_every_commit(store).await;
            }
            #[tokio::test]
            async fn content_is_stored_once_by_digest() {
                let (_guard, store) = $make;
                super::content_is_stored_once_by_digest(store).await;
            }
            #[tokio::test]
            async fn content_is_dropped_only_if_not_put_since_the_collectors_listing() {
                let (_guard, store) = $make;
                super::content_is_dropped_only_if_not_put_since_the_collectors_listing(store).await;
            }
            #[tokio::test]
            async fn concurrent_increments_are_never_lost() {
                let (_guard, store) = $make;
                super::concurrent_increments_are_never_lost(store).await;
            }
            #[tokio::test]
            async fn the_feed_holds_each_keys_latest_state_in_revision_order() {
                let (_guard, store) = $make;
                super::the_feed_holds_each_keys_latest_state_in_revision_order(store).await;
            }
            #[tokio::test]
            async fn a_page_cut_at_its_limit_says_more_may_follow() {
                let (_guard, store) = $make;
                super::a_page_cut_at_its_limit_says_more_may_follow(store).await;
            }
            #[tokio::test]
            async fn put_if_absent_keeps_the_first_value() {
                let (_guard, store) = $make;
                super::put_if_absent_keeps_the_first_value(store).await;
            }
            #[tokio::test]
            async fn a_lease_has_one_holder_until_released_or_expired() {
                let (_guard, store) = $make;
                super::a_lease_has_one_holder_until_released_or_expired(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lease_renewals_beside_commits_never_fail_them() {
                let (_guard, store) = $make;
                super::lease_renewals_beside_commits_never_fail_them(store).await;
            }
            #[tokio::test]
            async fn a_healthy_store_answers_ping() {
                let (_guard, store) = $make;
                super::a_healthy_store_answers_ping(store).await;
            }
            #[tokio::test]
            async fn audit_records_get_gapless_seqs_linked_by_hash_in_their_commit() {
                let (_guard, store) = $make;
                super::audit_records_get_gapless_seqs_linked_by_hash_in_their_commit(store).await;
            }
            #[tokio::test]
            async fn an_audit_record_commits_only_with_its_commit() {
                let (_guard, store) = $make;
                super::an_audit_record_commits_only_with_its_commit(store).await;
            }
            #[tokio::test]
            async fn audit_pages_filter_by_time_actor_object_and_project() {
                let (_guard, store) = $make;
                super::audit_pages_filter_by_time_actor_object_and_project(store).await;
            }
            #[tokio::test]
            async fn pruning_moves_the_anchor_and_the_rest_still_verifies() {
                let (_guard, store) = $make;
                super::pruning_moves_the_anchor_and_the_rest_still_verifies(store).await;
            }
            #[tokio::test]
            async fn an_altered_record_fails_verification_and_is_never_pruned() {
                let (_guard, store) = $make;
                super::an_altered_record_fails_verification_and_is_never_pruned(store).await;
            }
            #[tokio::test]
            async fn a_record_deleted_from_the_newest_end_is_truncation() {
                let (_guard, store) = $make;
                super::a_record_deleted_from_the_newest_end_is_truncation(store).await;
            }
            #[tokio::test]
            async fn a_record_added_past_the_head_is_found() {
                let (_guard, store) = $make;
                super::a_record_added_past_the_head_is_found(store).await;
            }
            #[tokio::test]
            async fn a_record_deleted_from_the_middle_is_a_gap() {
                let (_guard, store) = $make;
                super::a_record_deleted_from_the_middle_is_a_gap(store).await;
            }
        }
    };
}

fn sqlite() -> (tempfile::TempDir, Arc<crate::SqliteStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::SqliteStore::open(&dir.path().join("store.db")).expect("open");
    (dir, Arc::new(store))
}

suite!(sqlite_backend, sqlite());

fn postgres() -> (crate::pg::testing::TestSchema, Arc<crate::PgStore>) {
    let schema = crate::pg::testing::TestSchema::create("store");
    let store = crate::PgStore::open(&schema.url(), crate::PgOptions::default()).expect("open");
    (schema, Arc::new(store))
}

suite!(postgres_backend, postgres());

#[tokio::test]
async fn postgres_replicas_starting_together_migrate_once() {
    let schema = crate::pg::testing::TestSchema::create("migrate");
    let url = schema.url();
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || crate::PgStore::open(&url, crate::PgOptions::default()))
        })
        .collect();
    let stores: Vec<_> = opened
        .into_iter()
        .map(|handle| handle.join().expect("thread").expect("open"))
        .collect();
    let revision = stores[0]
        .commit(vec![put("K", "a", "1")])
        .await
        .expect("commit");
    assert_eq!(stores[3].load().expect("load").revision, revision);
}

#[tokio::test]
async fn postgres_writers_on_two_replicas_get_distinct_revisions_a_follower_sees_all() {
    let schema = crate::pg::testing::TestSchema::create("replicas");
    let one = crate::PgStore::open(&schema.url(), crate::PgOptions::default()).expect("open");
    let two = crate::PgStore::open(&schema.url(), crate::PgOptions::default()).expect("open");
    let mut commits = Vec::new();
    for i in 0..100 {
        let store = if i % 2 == 0 { &one } else { &two };
        commits.push(store.commit(vec![put("K", &format!("{i:03}"), "1")]));
    }
    let mut revisions = Vec::new();
    for commit in commits {
        revisions.push(commit.await.expect("commit"));
    }
    let mut unique = revisions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 100, "every commit has its own revision");
    let mut cursor = Cursor::after(0);
    let (mut changes, mut foreign) = (0, 0);
    loop {
        let page = two.changes(&cursor, 7).expect("changes");
        if page.changes.is_empty() {
            break;
        }
        changes += page.changes.len();
        foreign += page
            .changes
            .iter()
            .filter(|c| !page.local.contains(&c.revision()))
            .count();
        cursor = page.next;
    }
    let end = cursor;
    assert_eq!(changes, 100);
    assert_eq!(
        foreign, 50,
        "the other replica's commits are not marked local"
    );
    assert_eq!(end.revision, *unique.last().expect("revisions"));
}

#[tokio::test]
async fn postgres_lost_connections_answer_unavailable_then_reconnect() {
    let schema = crate::pg::testing::TestSchema::create("reconnect");
    let store = crate::PgStore::open(&schema.url(), crate::PgOptions::default()).expect("open");
    store
        .commit(vec![put("K", "a", "1")])
        .await
        .expect("commit");
    schema.terminate_connections();
    // The first calls after the loss may fail as unavailable (never hang, never panic); the
    // store reconnects by itself and later calls succeed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let revision = loop {
        match store.commit(vec![put("K", "b", "2")]).await {
            Ok(revision) => break revision,
            Err(StoreError::Unavailable(_) | StoreError::Commit(_)) => {
                assert!(std::time::Instant::now() < deadline, "no reconnect in 30 s");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let snapshot = loop {
        match store.load() {
            Ok(snapshot) => break snapshot,
            Err(StoreError::Unavailable(_) | StoreError::Postgres(_)) => {
                assert!(std::time::Instant::now() < deadline, "no reconnect in 30 s");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    };
    assert_eq!(snapshot.revision, revision);
    assert_eq!(
        docs_of(&store, "K").len(),
        2,
        "nothing acknowledged was lost"
    );
}

#[test]
fn postgres_unreachable_fails_to_open_with_a_clear_error() {
    let error = match crate::PgStore::open(
        "host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=2",
        crate::PgOptions::default(),
    ) {
        Ok(_) => panic!("opened a store on a closed port"),
        Err(error) => error,
    };
    assert!(error.to_string().contains("store"), "{error}");
}

#[tokio::test]
async fn sqlite_commits_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let revision = {
        let store = crate::SqliteStore::open(&path).expect("open");
        store
            .commit(vec![put("K", "a", "1")])
            .await
            .expect("commit")
    };
    let store = crate::SqliteStore::open(&path).expect("reopen");
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.revision, revision);
    assert_eq!(snapshot.records.len(), 1);
    let next = store
        .commit(vec![put("K", "b", "1")])
        .await
        .expect("commit");
    assert!(next > revision, "revisions continue after reopen");
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
