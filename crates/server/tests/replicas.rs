//! Several server replicas on one PostgreSQL database (the test process's throwaway server from
//! the installed PostgreSQL binaries, or `FLOTILLA_TEST_POSTGRES`): what one replica
//! acknowledges, the others serve. Each test has its own schema. These tests fail, not skip,
//! when PostgreSQL is not there.

use std::time::{Duration, Instant};

use flotilla_api::agent::{RegisterResponse, SyncRequest, SyncResponse};
use flotilla_server::{PgOptions, Server, ServerConfig, Settings, StoreConfig};
use flotilla_store::pg_testing::TestSchema;
use reqwest::{Method, Response, header::CONTENT_TYPE};
use serde_json::{Value, json};

const API_VERSION: &str = flotilla_api::API_VERSION;
/// Longest a change may take to reach another replica in these tests (it takes ~0.1 s).
const REPLICATION_DEADLINE: Duration = Duration::from_secs(20);

struct Replica {
    server: Server,
    _dir: tempfile::TempDir,
}

async fn replica(schema: &TestSchema) -> Replica {
    replica_with(schema, Settings::default()).await
}

async fn replica_with(schema: &TestSchema, settings: Settings) -> Replica {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = flotilla_server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        store: StoreConfig::Postgres {
            url: schema.url(),
            options: PgOptions::default(),
        },
        settings: Settings {
            flush_interval: Duration::from_millis(50),
            ..settings
        },
    })
    .await
    .expect("start replica");
    Replica { server, _dir: dir }
}

struct Client {
    http: reqwest::Client,
    admin: String,
}

impl Client {
    async fn send(
        &self,
        replica: &Replica,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Response {
        let url = format!("http://{}{path}", replica.server.addr);
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        request.send().await.expect("request reaches the replica")
    }

    async fn admin(
        &self,
        replica: &Replica,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        self.send(
            replica,
            method,
            path,
            Some(&self.admin),
            body.map(Value::to_string),
        )
        .await
    }

    async fn apply_ok(&self, replica: &Replica, document: &Value) -> Value {
        let response = self
            .admin(replica, Method::POST, "/api/v1/apply", Some(document))
            .await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON body");
        assert!(
            status == 200 || status == 201,
            "apply failed: {status} {body}"
        );
        body
    }

    async fn get(&self, replica: &Replica, path: &str) -> (u16, Value) {
        let response = self.admin(replica, Method::GET, path, None).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn sync(&self, replica: &Replica, credential: &str) -> SyncResponse {
        self.sync_every(replica, credential, None).await
    }

    /// A full sync, telling the server the agent's sync interval.
    async fn sync_every(
        &self,
        replica: &Replica,
        credential: &str,
        interval_seconds: Option<u32>,
    ) -> SyncResponse {
        let request = SyncRequest {
            report_digest: "report-0".into(),
            full: true,
            facts: Some(flotilla_api::ClusterFacts {
                sync_interval_seconds: interval_seconds,
                ..Default::default()
            }),
            ..SyncRequest::default()
        };
        let response = self
            .send(
                replica,
                Method::POST,
                flotilla_api::agent::SYNC_PATH,
                Some(credential),
                Some(serde_json::to_string(&request).expect("JSON")),
            )
            .await;
        assert_eq!(response.status().as_u16(), 200, "sync");
        response.json().await.expect("sync JSON")
    }
}

/// Polls `check` until it returns `Some`, failing the test at the deadline with `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + REPLICATION_DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "not within {REPLICATION_DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bundle(name: &str, value: &str) -> Value {
    json!({
        "apiVersion": API_VERSION, "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {
            "resources": [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"},
                "data": {"value": value},
            }],
            "targets": [{"clusterSelector": {}}],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_replica_acknowledges_the_other_serves() {
    let schema = TestSchema::create("replicas");
    let one = replica(&schema).await;
    let admin = one
        .server
        .new_admin_token
        .clone()
        .expect("the first replica creates the admin token");
    let two = replica(&schema).await;
    assert!(
        two.server.new_admin_token.is_none(),
        "the second replica uses the stored admin token"
    );
    let client = Client {
        http: reqwest::Client::new(),
        admin,
    };

    // A token created on one replica registers a cluster on the other.
    let document = json!({
        "apiVersion": API_VERSION, "kind": "RegistrationToken",
        "metadata": {"name": "fleet"}, "spec": {},
    });
    let response = client
        .admin(
            &one,
            Method::POST,
            "/api/v1/registrationtokens",
            Some(&document),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("token JSON");
    let token = body["status"]["token"]
        .as_str()
        .expect("secret")
        .to_string();
    let credential = eventually("the token reaches replica two", || async {
        let body = json!({"token": token, "name": "store-1", "clientId": "c1", "labels": {}});
        let response = client
            .send(
                &two,
                Method::POST,
                flotilla_api::agent::REGISTER_PATH,
                None,
                Some(body.to_string()),
            )
            .await;
        match response.status().as_u16() {
            200 | 201 => Some(
                response
                    .json::<RegisterResponse>()
                    .await
                    .expect("registration JSON")
                    .credential,
            ),
            _ => None,
        }
    })
    .await;

    // A bundle created on replica one reaches the agent syncing with replica two.
    client.apply_ok(&one, &bundle("web", "1")).await;
    let desired = eventually("the bundle reaches the agent on replica two", || async {
        let reply = client.sync(&two, &credential).await;
        reply
            .bundles
            .filter(|bundles| bundles.iter().any(|b| b.name == "web"))
    })
    .await;
    assert_eq!(desired.len(), 1);

    // The cluster registered on two, and its state from syncing with two, show on one.
    eventually("replica one sees the cluster Online", || async {
        let (status, cluster) = client.get(&one, "/api/v1/clusters/store-1").await;
        (status == 200 && cluster["status"]["state"] == "Online").then_some(())
    })
    .await;

    // The agent may sync with either replica: its credential works on one too, with the same
    // desired set.
    let on_one = client.sync(&one, &credential).await;
    assert_eq!(on_one.etag, client.sync(&two, &credential).await.etag);

    // A change and a deletion on two reach one.
    client.apply_ok(&two, &bundle("web", "2")).await;
    client.apply_ok(&two, &bundle("db", "1")).await;
    let response = client
        .admin(&two, Method::DELETE, "/api/v1/bundles/db", None)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let (_, on_two) = client.get(&two, "/api/v1/bundles/web").await;
    eventually("the change and the deletion reach replica one", || async {
        let (web_status, web) = client.get(&one, "/api/v1/bundles/web").await;
        let (db_status, _) = client.get(&one, "/api/v1/bundles/db").await;
        (web_status == 200
            && web["metadata"]["resourceVersion"] == on_two["metadata"]["resourceVersion"]
            && db_status == 404)
            .then_some(())
    })
    .await;
    let (_, web) = client.get(&one, "/api/v1/bundles/web").await;
    assert_eq!(web["spec"]["resources"][0]["data"]["value"], "2");

    one.server.shutdown().await.expect("shutdown one");
    two.server.shutdown().await.expect("shutdown two");
}

/// The cluster `edge-1`'s state as `replica` reports it.
async fn state_on(client: &Client, name: &str, replica: &Replica) -> String {
    let (status, cluster) = client.get(replica, "/api/v1/clusters/edge-1").await;
    if status == 404 {
        return "absent".into();
    }
    assert_eq!(status, 200, "{name}: {cluster}");
    cluster["status"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Waits until exactly one of the replicas holds the singleton lease; returns its index.
async fn lease_holder(replicas: &[&Replica]) -> usize {
    eventually("one replica takes the singleton lease", || async {
        let held: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].server.state.lease.is_held())
            .collect();
        (held.len() == 1).then(|| held[0])
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_work_runs_on_one_replica_and_moves_when_its_holder_dies() {
    let schema = TestSchema::create("lease");
    let settings = Settings {
        lease_ttl: Duration::from_secs(1),
        ..Settings::default()
    };
    let one = replica_with(&schema, settings.clone()).await;
    let two = replica_with(&schema, settings).await;
    let holder = lease_holder(&[&one, &two]).await;
    // Never both, over several renewals.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(
            !(one.server.state.lease.is_held() && two.server.state.lease.is_held()),
            "two replicas held the singleton lease at once"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (dead, survivor) = if holder == 0 { (one, two) } else { (two, one) };
    let died = Instant::now();
    dead.server.abandon();
    eventually("the lease moves to the surviving replica", || async {
        survivor.server.state.lease.is_held().then_some(())
    })
    .await;
    eprintln!(
        "the singleton lease moved {:?} after its holder died",
        died.elapsed()
    );
    survivor.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_syncing_with_one_replica_stays_online_on_the_lease_holder_until_it_stops() {
    let schema = TestSchema::create("heartbeat");
    // Offline after 2 missed 2-second intervals (5 s): short enough for a test, with room for
    // the heartbeat (every 2 s), the flush and the follower between them.
    let settings = Settings {
        offline_missed_intervals: 2,
        lease_ttl: Duration::from_secs(2),
        ..Settings::default()
    };
    let one = replica_with(&schema, settings.clone()).await;
    let admin = one.server.new_admin_token.clone().expect("admin token");
    let two = replica_with(&schema, settings).await;
    let client = Client {
        http: reqwest::Client::new(),
        admin,
    };
    let holder = lease_holder(&[&one, &two]).await;
    let (leader, other) = if holder == 0 {
        (&one, &two)
    } else {
        (&two, &one)
    };
    let document = json!({
        "apiVersion": API_VERSION, "kind": "RegistrationToken",
        "metadata": {"name": "fleet"}, "spec": {},
    });
    let response = client
        .admin(
            other,
            Method::POST,
            "/api/v1/registrationtokens",
            Some(&document),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("token JSON");
    let token = body["status"]["token"].as_str().expect("secret");
    let body = json!({"token": token, "name": "edge-1", "clientId": "c1", "labels": {}});
    let response = client
        .send(
            other,
            Method::POST,
            flotilla_api::agent::REGISTER_PATH,
            None,
            Some(body.to_string()),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let credential = response
        .json::<RegisterResponse>()
        .await
        .expect("registration JSON")
        .credential;
    client.sync_every(other, &credential, Some(2)).await;
    eventually("the leader sees the cluster Online", || async {
        (state_on(&client, "leader", leader).await == "Online").then_some(())
    })
    .await;
    // Syncing only with the other replica, for more than two offline windows: the leader, which
    // alone turns clusters Offline, must keep it Online.
    let until = Instant::now() + Duration::from_secs(11);
    while Instant::now() < until {
        client.sync_every(other, &credential, Some(2)).await;
        assert_eq!(state_on(&client, "leader", leader).await, "Online");
        assert_eq!(state_on(&client, "other", other).await, "Online");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Silent now: the leader turns it Offline, and the other replica follows.
    eventually("the cluster turns Offline on both replicas", || async {
        (state_on(&client, "leader", leader).await == "Offline"
            && state_on(&client, "other", other).await == "Offline")
            .then_some(())
    })
    .await;
    one.server.shutdown().await.expect("shutdown one");
    two.server.shutdown().await.expect("shutdown two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_client_hangs_up_mid_commit_still_reaches_memory() {
    use tokio::io::AsyncWriteExt;

    let schema = TestSchema::create("hangup");
    let one = replica(&schema).await;
    let admin = one.server.new_admin_token.clone().expect("admin token");
    // Hold the store's next object write: a transaction of the test's own locks the table.
    let (locked, locked_rx) = std::sync::mpsc::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let url = schema.url();
    let locker = std::thread::spawn(move || {
        let mut client = flotilla_store::pg_testing::connect(&url).expect("locker connection");
        let mut transaction = client.transaction().expect("begin");
        transaction
            .batch_execute("LOCK TABLE objects IN EXCLUSIVE MODE")
            .expect("lock objects");
        locked.send(()).expect("report the lock");
        let _ = release_rx.recv();
        transaction.commit().expect("release the lock");
    });
    locked_rx.recv().expect("the table is locked");

    // A bundle write over a raw connection that the client closes while the commit waits.
    let body = bundle("hung-up", "v1").to_string();
    let mut stream = tokio::net::TcpStream::connect(one.server.addr)
        .await
        .expect("connect");
    let request = format!(
        "PUT /api/v1/bundles/hung-up HTTP/1.1\r\nhost: flotilla\r\nauthorization: Bearer {admin}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the write");
    let waiting = format!(
        "SELECT count(*)::text FROM pg_stat_activity \
         WHERE application_name = '{}' AND wait_event_type = 'Lock'",
        schema.name
    );
    eventually("the store's commit waits on the test's lock", || async {
        (schema.query_text(&waiting).as_deref() != Some("0")).then_some(())
    })
    .await;
    drop(stream);
    // One more round trip, so the server has seen the hang-up before the commit can finish.
    let client = Client {
        http: reqwest::Client::new(),
        admin,
    };
    let (status, _) = client.get(&one, "/healthz").await;
    assert_eq!(status, 200);
    release.send(()).expect("release the lock");
    locker.join().expect("locker thread");

    // The write committed; the replica must serve it (its follower skips its own revisions,
    // so only the handler itself can apply it).
    eventually("the committed write is in the replica's model", || async {
        let (status, _) = client.get(&one, "/api/v1/bundles/hung-up").await;
        (status == 200).then_some(())
    })
    .await;
    one.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_no_bundle_references_is_collected_by_the_lease_holder_alone() {
    let schema = TestSchema::create("contentgc");
    let settings = Settings {
        content_retention: Duration::from_millis(300),
        ..Settings::default()
    };
    let one = replica_with(&schema, settings.clone()).await;
    let two = replica_with(&schema, settings).await;
    let client = Client {
        http: reqwest::Client::new(),
        admin: one.server.new_admin_token.clone().expect("admin token"),
    };
    // One revision kept besides the live one, so the third version prunes the first.
    let limited = |value: &str| {
        let mut document = bundle("web", value);
        document["spec"]["revisionHistoryLimit"] = json!(1);
        document
    };
    client.apply_ok(&one, &limited("v1")).await;
    // Written on the other replica, once it has the first version.
    eventually("the bundle reaches the second replica", || async {
        (client.get(&two, "/api/v1/bundles/web").await.0 == 200).then_some(())
    })
    .await;
    client.apply_ok(&two, &limited("v2")).await;
    client.apply_ok(&two, &limited("v3")).await;
    let referenced = two.server.state.fleet.read().referenced_digests();
    eventually("the first version's content is collected", || async {
        let stored: std::collections::BTreeSet<String> = one
            .server
            .state
            .store
            .content_index()
            .expect("content index")
            .into_iter()
            .map(|content| content.digest)
            .collect();
        (stored == referenced).then_some(())
    })
    .await;
    let collected = |replica: &Replica| replica.server.state.metrics.contents_collected.get();
    assert_eq!(
        collected(&one) + collected(&two),
        1,
        "one replica collected it, once"
    );
    let holder = lease_holder(&[&one, &two]).await;
    assert_eq!(collected([&one, &two][holder]), 1, "the lease holder did");
    one.server.shutdown().await.expect("shutdown");
    two.server.shutdown().await.expect("shutdown");
}
