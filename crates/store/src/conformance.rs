//! The store contract as tests. Every backend runs the same suite: add a backend by adding a
//! `suite!` line for it.

use std::sync::Arc;

use crate::{Op, Store};

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
            async fn concurrent_increments_are_never_lost() {
                let (_guard, store) = $make;
                super::concurrent_increments_are_never_lost(store).await;
            }
        }
    };
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::SqliteStore::open(&dir.path().join("store.db")).expect("open");
    (dir, Arc::new(store))
}

suite!(sqlite_backend, sqlite());

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
