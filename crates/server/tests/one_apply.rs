//! One apply per kind: whichever way a record reaches memory — the local write that committed
//! it, the start-up load that reads it back, or another replica's follower that reads it from
//! the change feed — the fleet holds the same objects, rendered the same, with the same content.

mod support;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use flotilla_server::{
    Settings,
    fleet::Fleet,
    follow::{self, Pending},
    metrics::Metrics,
    records,
    state::{AppState, StateParts},
    view,
};
use flotilla_store::{Change, Cursor, Store};
use reqwest::Method;
use serde_json::{Value, json};
use support::{API_VERSION, Harness};

/// Every object of every kind as the API renders it, plus the content memory holds.
fn snapshot(fleet: &Fleet) -> BTreeMap<String, Value> {
    const NOW: u64 = 1_800_000_000;
    let mut objects = BTreeMap::new();
    for (name, &ordinal) in fleet.cluster_names() {
        let cluster = view::cluster(fleet, ordinal).expect("named cluster renders");
        objects.insert(format!("Cluster/{name}"), json!(cluster));
    }
    for (name, &ordinal) in fleet.bundle_names() {
        let bundle = fleet.bundle(ordinal).expect("named bundle");
        objects.insert(format!("Bundle/{name}"), json!(view::bundle(fleet, bundle)));
        let live = bundle.live.as_ref().map(|live| {
            json!({
                "revision": live.revision,
                "generation": live.generation,
                "epoch": live.epoch,
                "digests": live.digests().collect::<Vec<_>>(),
                "vars": live.vars,
                "targets": live.targets.len(),
            })
        });
        objects.insert(format!("BundleLive/{name}"), json!(live));
        objects.insert(
            format!("BundleRevisions/{name}"),
            json!([view::bundle_revisions(bundle), bundle.last_revision]),
        );
    }
    for (name, group) in fleet.groups() {
        let members: Vec<u32> = group.members.iter().collect();
        objects.insert(
            format!("ClusterGroup/{name}"),
            json!([view::group(fleet, name, group), members]),
        );
    }
    for (name, token) in fleet.tokens() {
        objects.insert(
            format!("RegistrationToken/{name}"),
            json!(view::token(token, NOW, None)),
        );
    }
    for name in fleet.secrets().keys() {
        objects.insert(format!("Secret/{name}"), json!(view::secret(fleet, name)));
    }
    for name in fleet.gitrepos().keys() {
        // The status moves with the git worker's own clock; the object is what is compared.
        let mut repo = json!(view::gitrepo(fleet, name));
        repo["status"] = Value::Null;
        objects.insert(format!("GitRepo/{name}"), repo);
    }
    let mut held: Vec<&str> = fleet.contents().referenced().collect();
    held.sort_unstable();
    objects.insert("contents".into(), json!([held, fleet.contents().len()]));
    objects.insert("interned".into(), json!(fleet.interner().len()));
    objects
}

/// A fleet built by following the store's change feed from the beginning, as another replica
/// sharing the store would.
fn followed(store: Arc<dyn Store>, settings: &Settings, cache: &std::path::Path) -> Fleet {
    let state = Arc::new(AppState::new(StateParts {
        fleet: Fleet::default(),
        store: store.clone(),
        admin_token_hash: [0; 32],
        settings: settings.clone(),
        metrics: Metrics::default(),
        git_cache: cache.to_path_buf(),
        shared_store: true,
        revision: 0,
    }));
    let mut cursor = Cursor::after(0);
    let mut pending = Pending::default();
    loop {
        let mut page = store.changes(&cursor, 7).expect("read the change feed");
        // These commits were this process's, through the same store handle; the follower of
        // another replica would see them as foreign.
        page.local.clear();
        follow::apply_page(&state, &page, &mut pending);
        cursor = page.next.clone();
        if !page.more {
            break;
        }
    }
    std::mem::take(&mut *state.fleet.write())
}

fn bundle(name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "Bundle", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
}

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_reads_the_same_after_a_local_write_a_start_up_load_and_a_followed_write() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    // Soft state is flushed soon, so the store holds the synced cluster's state too.
    let settings = Settings {
        flush_interval: Duration::from_millis(50),
        ..Settings::default()
    };
    let server = support::start_server(&dir, &settings).await;
    let h = Harness {
        admin: server.new_admin_token.clone().expect("admin token"),
        server,
        http: reqwest::Client::new(),
        dir,
        settings: settings.clone(),
    };
    // Every kind, through the admin API and registration (the local write path).
    h.apply_ok(
        &json!({"apiVersion": API_VERSION, "kind": "ClusterGroup", "metadata": {"name": "prod"},
        "spec": {"selector": {"matchLabels": {"env": "prod"}}}}),
    )
    .await;
    let token = h
        .token(
            "fleet",
            json!({"labels": {"site": "berlin"}, "maxUses": 10}),
        )
        .await;
    let first = h
        .register_ok(&token, "store-1", "agent-1", json!({"env": "prod"}))
        .await;
    h.register_ok(&token, "store-2", "agent-2", json!({"env": "dev"}))
        .await;
    let mut relabeled = h
        .admin(Method::GET, "/api/v1/clusters/store-2", None)
        .await
        .json::<Value>()
        .await
        .expect("cluster JSON");
    relabeled["metadata"]["labels"] = json!({"env": "prod", "tier": "web"});
    h.apply_ok(&relabeled).await;
    h.apply_ok(&bundle(
        "app",
        json!({
            "resources": [config_map("app", json!({"env": "${cluster.labels.env}"}))],
            "targets": [
                {"name": "web", "clusterSelector": {"matchLabels": {"tier": "web"}},
                 "resources": [config_map("app", json!({"tier": "web"}))]},
                {"name": "prod", "clusterGroup": "prod", "customization": {"namespace": "shop"}},
            ],
        }),
    ))
    .await;
    h.apply_ok(&bundle(
        "paused",
        json!({"resources": [config_map("paused", json!({"v": "1"}))], "targets": [{"clusterGroup": "prod"}]}),
    ))
    .await;
    // Paused with new content: the old revision stays live, the new one is only the spec.
    h.apply_ok(&bundle(
        "paused",
        json!({"resources": [config_map("paused", json!({"v": "2"}))], "targets": [{"clusterGroup": "prod"}], "paused": true}),
    ))
    .await;
    h.apply_ok(&bundle(
        "after-app",
        json!({"resources": [config_map("after", json!({}))], "targets": [{"clusterGroup": "prod"}],
               "dependsOn": [{"name": "app"}]}),
    ))
    .await;
    h.apply_ok(&bundle(
        "gone",
        json!({"resources": [config_map("gone", json!({}))]}),
    ))
    .await;
    let deleted = h.admin(Method::DELETE, "/api/v1/bundles/gone", None).await;
    assert_eq!(deleted.status().as_u16(), 200);
    h.apply_ok(
        &json!({"apiVersion": API_VERSION, "kind": "Secret", "metadata": {"name": "git-creds"},
        "spec": {"type": "basic-auth", "stringData": {"username": "u", "password": "p"}}}),
    )
    .await;
    h.apply_ok(
        &json!({"apiVersion": API_VERSION, "kind": "GitRepo", "metadata": {"name": "shop"},
        "spec": {"repo": "file:///nonexistent/shop.git", "clientSecretName": "git-creds"}}),
    )
    .await;
    // Soft state: one cluster syncs, and its state reaches the store.
    h.sync_ok(&first).await;
    let store = h.server.state.store.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = store.changes(&Cursor::after(0), 10_000).expect("feed");
        let flushed = page.changes.iter().any(|change| {
            matches!(change, Change::Put { kind, name, .. } if kind == records::REPORT && name == "store-1")
        });
        if flushed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the synced cluster's soft state never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let local = snapshot(&h.server.state.fleet.read());
    let loaded = snapshot(&records::load(&*store).expect("load the store").fleet);
    let cache = tempfile::tempdir().expect("cache dir");
    let followed = snapshot(&followed(store.clone(), &settings, cache.path()));

    assert!(local.contains_key("Cluster/store-1") && local.contains_key("Bundle/paused"));
    assert!(!local.contains_key("Bundle/gone"));
    for (what, other) in [("start-up load", &loaded), ("follower", &followed)] {
        let keys: Vec<&String> = local.keys().collect();
        let other_keys: Vec<&String> = other.keys().collect();
        assert_eq!(keys, other_keys, "the {what} holds other objects");
        for (key, value) in &local {
            assert_eq!(
                Some(value),
                other.get(key),
                "{key} differs after the {what} from the local write"
            );
        }
    }
}
