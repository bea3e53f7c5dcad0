//! The simulator moves between server replicas as the real agent does: two replicas on one
//! PostgreSQL database (a throwaway server, or `FLOTILLA_TEST_POSTGRES`; a schema of its own),
//! each behind a TCP forwarder that can be cut; one dies, and every simulated cluster keeps
//! syncing through the other. Fails, not skips, when PostgreSQL is not there.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use flotilla_api::Kind;
use flotilla_client::{AdminClient, ListOptions};
use flotilla_server::{PgOptions, Server, ServerConfig, Settings, StoreConfig};
use flotilla_sim::{SimConfig, Simulator};
use flotilla_store::pg_testing::TestSchema;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

const CLUSTERS: u32 = 40;
/// The simulated agents' sync interval; the server calls a cluster Offline after three missed.
const INTERVAL: Duration = Duration::from_secs(1);
const OFFLINE_MISSED_INTERVALS: u32 = 3;
/// Longest any wait in this test may take.
const DEADLINE: Duration = Duration::from_secs(90);

async fn replica(schema: &TestSchema, dir: &std::path::Path) -> Server {
    flotilla_server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.to_path_buf(),
        store: StoreConfig::Postgres {
            url: schema.url(),
            options: PgOptions::default(),
        },
        settings: Settings {
            flush_interval: Duration::from_millis(50),
            offline_missed_intervals: OFFLINE_MISSED_INTERVALS,
            ..Settings::default()
        },
    })
    .await
    .expect("start replica")
}

/// A TCP forwarder in front of a replica. Cutting it closes every forwarded connection and
/// refuses new ones: from the simulator's side, the replica's process died.
struct Forwarder {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Forwarder {
    async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let forward = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().push(forward);
                }
            })
        };
        Forwarder {
            addr,
            accept,
            connections,
        }
    }

    fn cut(&self) {
        self.accept.abort();
        for connection in self.connections.lock().drain(..) {
            connection.abort();
        }
    }
}

/// Polls `check` until it returns true, failing the test after [`DEADLINE`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn clusters_in(admin: &AdminClient, state: &str) -> impl Future<Output = u64> {
    let options = ListOptions {
        state: Some(state.into()),
        ..ListOptions::default()
    };
    async move {
        admin
            .count(Kind::Cluster, &options)
            .await
            .expect("count clusters")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_clusters_fail_over_to_the_surviving_replica_and_none_goes_offline() {
    flotilla_client::install_crypto_provider();
    let schema = TestSchema::create("simfailover");
    let dir = tempfile::tempdir().expect("temp dir");
    let one = replica(&schema, &dir.path().join("one")).await;
    let two = replica(&schema, &dir.path().join("two")).await;
    let forwarders = [
        Forwarder::start(one.addr).await,
        Forwarder::start(two.addr).await,
    ];
    let token = one
        .new_admin_token
        .clone()
        .or_else(|| two.new_admin_token.clone())
        .expect("one replica created the admin token");
    let admin_one = AdminClient::new(&format!("http://{}", one.addr), &token).expect("client");
    let admin_two = AdminClient::new(&format!("http://{}", two.addr), &token).expect("client");
    admin_one
        .apply(&json!({
            "apiVersion": flotilla_api::API_VERSION,
            "kind": "Bundle",
            "metadata": {"name": "everywhere"},
            "spec": {
                "resources": [{
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "hello", "namespace": "default"},
                }],
                "targets": [{"clusterSelector": {}}],
            },
        }))
        .await
        .expect("apply bundle");
    let created = admin_one
        .create(
            Kind::RegistrationToken,
            &json!({
                "apiVersion": flotilla_api::API_VERSION,
                "kind": "RegistrationToken",
                "metadata": {"name": "sim"},
                "spec": {},
            }),
        )
        .await
        .expect("create token");
    let registration = created["status"]["token"]
        .as_str()
        .expect("token value")
        .to_string();
    wait_for("replica two to follow the token and the bundle", || async {
        admin_two.get(Kind::RegistrationToken, "sim").await.is_ok()
            && admin_two.get(Kind::Bundle, "everywhere").await.is_ok()
    })
    .await;

    let simulator = Simulator::start(SimConfig {
        server: forwarders
            .iter()
            .map(|f| format!("http://{}", f.addr))
            .collect::<Vec<_>>()
            .join(","),
        token: registration,
        clusters: CLUSTERS,
        interval: INTERVAL,
        concurrency: 16,
        connections: 2,
        progress: false,
        ..SimConfig::default()
    })
    .expect("start simulator");
    let stats = simulator.stats();
    wait_for("every simulated cluster to register and apply", || async {
        let now = stats.snapshot(false);
        now.online == i64::from(CLUSTERS) && now.bundles_ready == i64::from(CLUSTERS)
    })
    .await;
    wait_for("both replicas to see every cluster Online", || async {
        clusters_in(&admin_one, "Online").await == u64::from(CLUSTERS)
            && clusters_in(&admin_two, "Online").await == u64::from(CLUSTERS)
    })
    .await;
    assert_eq!(
        stats.snapshot(false).failovers,
        0,
        "no replica failed yet: every cluster stayed on its first replica"
    );

    // The replica that does not hold the singleton lease dies, so the survivor, which sweeps
    // for Offline clusters, does so all along: a cluster left behind on the dead replica would
    // be Offline there within three intervals.
    let (victim, survivor, admin, forwarder) = if one.state.lease.is_held() {
        (two, one, admin_one, &forwarders[1])
    } else {
        (one, two, admin_two, &forwarders[0])
    };
    wait_for("the survivor to hold the singleton lease", || async {
        survivor.state.lease.is_held()
    })
    .await;
    forwarder.cut();
    victim.abandon();
    let killed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let errors_before = stats.snapshot(false).sync_errors;

    // Every cluster syncs with the survivor past a whole offline window after the kill.
    let past_offline_window = flotilla_server::state::rfc3339(
        killed_at + u64::from(OFFLINE_MISSED_INTERVALS) * INTERVAL.as_secs() + 1,
    );
    wait_for(
        "every cluster to sync with the survivor past an offline window after the kill",
        || async {
            let clusters = admin
                .list_all(Kind::Cluster, &ListOptions::default())
                .await
                .expect("list clusters");
            clusters.len() == CLUSTERS as usize
                && clusters.iter().all(|cluster| {
                    cluster
                        .pointer("/status/lastSeen")
                        .and_then(Value::as_str)
                        .is_some_and(|seen| seen >= past_offline_window.as_str())
                })
        },
    )
    .await;
    assert_eq!(
        clusters_in(&admin, "Offline").await,
        0,
        "no cluster went Offline"
    );
    assert_eq!(clusters_in(&admin, "Online").await, u64::from(CLUSTERS));
    let now = stats.snapshot(false);
    assert_eq!(
        now.online,
        i64::from(CLUSTERS),
        "the simulator counts every cluster online"
    );
    assert_eq!(
        now.sync_errors, errors_before,
        "a sync the dead replica did not answer was answered by the survivor, not failed"
    );
    assert_eq!(
        now.failovers,
        u64::from(CLUSTERS / 2),
        "each cluster of the dead replica moved once, and stayed"
    );
    let summary = simulator.stop().await.expect("stop simulator");
    assert_eq!(summary.stats.registration_errors, 0);
    survivor.shutdown().await.expect("survivor shuts down");
}
