//! The store contract as tests. Every backend runs the same suite: add a backend by adding a
//! `suite!` line for it.

use std::sync::Arc;

use crate::{Change, Cursor, Op, Store, StoreError};

mod audit;

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
                super::audit::audit_records_get_gapless_seqs_linked_by_hash_in_their_commit(store)
                    .await;
            }
            #[tokio::test]
            async fn an_audit_record_commits_only_with_its_commit() {
                let (_guard, store) = $make;
                super::audit::an_audit_record_commits_only_with_its_commit(store).await;
            }
            #[tokio::test]
            async fn audit_pages_filter_by_time_actor_object_and_project() {
                let (_guard, store) = $make;
                super::audit::audit_pages_filter_by_time_actor_object_and_project(store).await;
            }
            #[tokio::test]
            async fn pruning_moves_the_anchor_and_the_rest_still_verifies() {
                let (_guard, store) = $make;
                super::audit::pruning_moves_the_anchor_and_the_rest_still_verifies(store).await;
            }
            #[tokio::test]
            async fn an_altered_record_fails_verification_and_is_never_pruned() {
                let (_guard, store) = $make;
                super::audit::an_altered_record_fails_verification_and_is_never_pruned(store).await;
            }
            #[tokio::test]
            async fn a_record_deleted_from_the_newest_end_is_truncation() {
                let (_guard, store) = $make;
                super::audit::a_record_deleted_from_the_newest_end_is_truncation(store).await;
            }
            #[tokio::test]
            async fn a_record_added_past_the_head_is_found() {
                let (_guard, store) = $make;
                super::audit::a_record_added_past_the_head_is_found(store).await;
            }
            #[tokio::test]
            async fn a_record_deleted_from_the_middle_is_a_gap() {
                let (_guard, store) = $make;
                super::audit::a_record_deleted_from_the_middle_is_a_gap(store).await;
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
