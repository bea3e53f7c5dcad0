//! Server replicas as real processes on a real PostgreSQL (the test process's throwaway server,
//! or `FLOTILLA_TEST_POSTGRES`), each test in its own schema: a replica killed with SIGKILL
//! mid-rollout loses nothing and its agents move to another; PostgreSQL going away makes
//! replicas answer 503 (not crash, not hang) and they resume when it is back.

mod support;

use std::{
    io,
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use flotilla_store::pg_testing::TestSchema;
use support::{AgentProcess, ServerProcess, config_map_bundle, wait_for};

fn store_args(url: &str) -> Vec<String> {
    vec![
        "--store".into(),
        url.to_string(),
        "--offline-missed-intervals".into(),
        "30".into(),
    ]
}

fn args(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

#[test]
fn a_replica_killed_mid_rollout_loses_nothing_and_its_agents_move_to_another() {
    let schema = TestSchema::create("failover");
    let dir = tempfile::tempdir().unwrap();
    let owned = store_args(&schema.url());
    let mut one = ServerProcess::start(&dir.path().join("one"), &args(&owned));
    let two =
        ServerProcess::start_replica(&dir.path().join("two"), &args(&owned), &one.admin_token);
    let token = one.new_token();
    let servers = format!("{},{}", one.url, two.url);
    let agents: Vec<AgentProcess> = (1..=3)
        .map(|i| {
            AgentProcess::start_with_servers(
                &servers,
                &token,
                &format!("store-{i}"),
                "env=prod",
                dir.path(),
            )
        })
        .collect();
    one.apply(&config_map_bundle("web", &["web"], "env=prod", ""));
    two.wait_bundle_ready("web", 3);

    // A rollout and more writes acknowledged by replica one, then SIGKILL.
    one.apply(&config_map_bundle(
        "web",
        &["web", "web-v2"],
        "env=prod",
        "",
    ));
    for index in 0..10 {
        one.apply(&config_map_bundle(
            &format!("extra-{index}"),
            &["cm"],
            "env=prod",
            "",
        ));
    }
    one.ok(&["label", "cluster", "store-1", "tier=edge"]);
    one.kill_9();

    // Replica two holds every acknowledged write, and the agents finish the rollout through it.
    wait_for(
        "the writes acknowledged by replica one on replica two",
        || (two.list("bundles", &[]).len() == 11).then_some(()),
    );
    for agent in &agents {
        agent.wait_objects("the rolled-out bundle", |objects| {
            objects.contains(&"ConfigMap/web-v2".to_string())
        });
    }
    two.wait_bundle_ready("web", 3);
    two.wait_bundle_ready("extra-9", 3);
    let cluster = two.get("cluster", "store-1").expect("store-1 on two");
    assert_eq!(cluster["metadata"]["labels"]["tier"], "edge");
    // Only replica two is left: a bundle created there reaches every agent.
    two.apply(&config_map_bundle("after", &["after"], "env=prod", ""));
    for agent in &agents {
        agent.wait_objects("the bundle created after the kill", |objects| {
            objects.contains(&"ConfigMap/after".to_string())
        });
    }
    two.wait_bundle_ready("after", 3);

    // The killed replica comes back on the same database and serves the same fleet.
    one.restart();
    assert_eq!(one.list("bundles", &[]).len(), 12);
    one.wait_bundle_ready("web", 3);
    drop(agents);
}

/// A TCP forwarder in front of PostgreSQL that can be cut (every connection reset, new ones
/// refused) and restored on the same port: from a replica's side, the database restarting.
struct CuttableProxy {
    port: u16,
    target: (String, u16),
    up: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl CuttableProxy {
    fn start(target: (String, u16)) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = CuttableProxy {
            port,
            target,
            up: Arc::new(AtomicBool::new(false)),
            streams: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        self.up.store(true, Ordering::SeqCst);
        let (up, streams, target) = (self.up.clone(), self.streams.clone(), self.target.clone());
        listener.set_nonblocking(true).expect("nonblocking");
        thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).expect("blocking");
                        let Ok(server) = TcpStream::connect((target.0.as_str(), target.1)) else {
                            continue;
                        };
                        let mut all = streams.lock().unwrap();
                        all.push(client.try_clone().expect("clone"));
                        all.push(server.try_clone().expect("clone"));
                        pipe(
                            client.try_clone().expect("clone"),
                            server.try_clone().expect("clone"),
                        );
                        pipe(server, client);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return,
                }
            }
            // Dropping the listener here refuses new connections.
        });
    }

    /// Resets every connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections again on the same port.
    fn restore(&self) {
        let listener = wait_for("the proxy port to be free again", || {
            TcpListener::bind(("127.0.0.1", self.port)).ok()
        });
        self.serve(listener);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// The PostgreSQL the tests use, as host and port.
fn postgres_address() -> (String, u16) {
    let value = flotilla_store::pg_testing::server_value;
    (
        value("host").unwrap_or_else(|| "127.0.0.1".into()),
        value("port").and_then(|p| p.parse().ok()).unwrap_or(5432),
    )
}

#[test]
fn replicas_answer_503_while_postgres_is_away_and_resume_when_it_is_back() {
    let schema = TestSchema::create("outage");
    let proxy = CuttableProxy::start(postgres_address());
    // The schema's URL, pointed at the proxy instead.
    let (host, port) = postgres_address();
    let url = schema
        .url()
        .replace(&format!("host={host}"), "host=127.0.0.1")
        .replace(&format!("port={port}"), &format!("port={}", proxy.port));
    assert!(url.contains(&format!("port={}", proxy.port)), "{url}");
    let dir = tempfile::tempdir().unwrap();
    let mut owned = store_args(&url);
    owned.extend(["--store-statement-timeout".into(), "5s".into()]);
    let mut one = ServerProcess::start(&dir.path().join("one"), &args(&owned));
    let token = one.new_token();
    let agent = AgentProcess::start(&one, &token, "store-1", "env=prod", dir.path());
    one.apply(&config_map_bundle("web", &["web"], "env=prod", ""));
    one.wait_bundle_ready("web", 1);
    assert_eq!(one.http_status("/healthz"), Some(200));
    let lease_held = |server: &ServerProcess| server.metric("flotilla_singleton_lease_held");
    wait_for("the replica to hold the singleton lease", || {
        (lease_held(&one) == Some(1.0)).then_some(())
    });

    proxy.cut();
    wait_for("/healthz to say the store is unreachable", || {
        (one.http_status("/healthz") == Some(503)).then_some(())
    });
    // Writes fail with a clear error (503), nothing hangs, the process stays up, and the agent's
    // syncs are still answered from memory.
    let refused = one.cli(&["delete", "bundle", "web"]);
    assert!(!refused.status.success(), "a write while the store is away");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("503") || stderr.to_lowercase().contains("unavailable"),
        "{stderr}"
    );
    assert!(
        one.get("bundle", "web").is_some(),
        "reads are served from memory"
    );
    assert!(one.alive(), "the replica did not crash");
    // Unable to renew, it stops singleton work before the lease could pass to another replica.
    wait_for(
        "the replica to give up singleton work without its store",
        || (lease_held(&one) == Some(0.0)).then_some(()),
    );

    proxy.restore();
    wait_for("/healthz to recover", || {
        (one.http_status("/healthz") == Some(200)).then_some(())
    });
    wait_for("the replica to take the singleton lease back", || {
        (lease_held(&one) == Some(1.0)).then_some(())
    });
    wait_for("writes to succeed again", || {
        one.cli(&["delete", "bundle", "web"])
            .status
            .success()
            .then_some(())
    });
    agent.wait_objects("the deletion applied", |objects| objects.is_empty());
    // Nothing acknowledged was lost: a restart reads the store back.
    one.restart();
    assert!(one.get("bundle", "web").is_none());
    assert_eq!(one.list("clusters", &[]).len(), 1);
    drop(agent);
}
