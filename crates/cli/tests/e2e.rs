//! End-to-end: real `flotilla server`, `flotilla agent --simulated` and CLI processes on
//! 127.0.0.1 with temporary data dirs.

mod support;

use support::{AgentProcess, ServerProcess, config_map_bundle, wait_for};

fn cluster_state(server: &ServerProcess, name: &str) -> Option<String> {
    server
        .get("cluster", name)?
        .pointer("/status/state")?
        .as_str()
        .map(str::to_string)
}

#[test]
fn bundle_becomes_ready_on_every_targeted_cluster_and_only_there() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let agents: Vec<AgentProcess> = [("a", "env=prod"), ("b", "env=prod"), ("c", "env=dev")]
        .into_iter()
        .map(|(name, labels)| AgentProcess::start(&server, &token, name, labels, dir.path()))
        .collect();
    server.apply(&config_map_bundle("web", &["web-config"], "env=prod", ""));
    server.wait_bundle_ready("web", 2);
    for agent in &agents[..2] {
        agent.wait_objects("web-config", |o| {
            o.contains(&"ConfigMap/web-config".to_string())
        });
    }
    wait_for("all clusters online", || {
        let online = server.list("clusters", &["--state", "Online"]);
        (online.len() == 3).then_some(())
    });
    assert!(
        agents[2].objects().is_empty(),
        "dev cluster got {:?}",
        agents[2].objects()
    );
    let prod = server.list("clusters", &["-l", "env=prod"]);
    assert_eq!(prod.len(), 2);
    let cluster = server.get("cluster", "a").unwrap();
    assert_eq!(cluster["status"]["bundles"][0]["state"], "Ready");
    assert_eq!(cluster["status"]["nodes"]["total"], 3); // The agents took the bundle's content from their sync replies; none fetched it.
    let inlined = server.metric(r#"flotilla_content_fetches_total{result="inlined"}"#);
    assert!(inlined >= Some(2.0), "inlined {inlined:?}");
    let served = server.metric(r#"flotilla_content_fetches_total{result="served"}"#);
    assert_eq!(served.unwrap_or(0.0), 0.0);
}

#[test]
fn label_change_moves_a_bundle_on_and_off_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let agent = AgentProcess::start(&server, &token, "store-1", "env=dev", dir.path());
    server.apply(&config_map_bundle(
        "prod-only",
        &["prod-config"],
        "env=prod",
        "",
    ));
    wait_for("store-1 online", || {
        (cluster_state(&server, "store-1")? == "Online").then_some(())
    });
    assert!(agent.objects().is_empty());
    server.ok(&["label", "cluster", "store-1", "env=prod", "--overwrite"]);
    agent.wait_objects("prod-config", |o| o == ["ConfigMap/prod-config"]);
    server.wait_bundle_ready("prod-only", 1);
    server.ok(&["label", "cluster", "store-1", "env-"]);
    agent.wait_objects("nothing", |o| o.is_empty());
    let summary = server.get("bundle", "prod-only").unwrap()["status"]["summary"].clone();
    assert_eq!(summary["desired"], 0);
}

#[test]
fn label_without_overwrite_refuses_to_change_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let _agent = AgentProcess::start(&server, &token, "store-1", "env=dev", dir.path());
    wait_for("store-1 registered", || server.get("cluster", "store-1"));
    let output = server.cli(&["label", "cluster", "store-1", "env=prod"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--overwrite"));
    assert_eq!(
        server.get("cluster", "store-1").unwrap()["metadata"]["labels"]["env"],
        "dev"
    );
}

#[test]
fn removing_a_resource_from_a_bundle_removes_it_from_the_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    server.apply(&config_map_bundle("web", &["one", "two"], "env=prod", ""));
    agent.wait_objects("both config maps", |o| {
        o == ["ConfigMap/one", "ConfigMap/two"]
    });
    server.apply(&config_map_bundle("web", &["one"], "env=prod", ""));
    agent.wait_objects("only the first config map", |o| o == ["ConfigMap/one"]);
    server.wait_bundle_ready("web", 1);
}

#[test]
fn deleting_a_bundle_removes_its_objects_unless_it_keeps_resources() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    server.apply(&config_map_bundle("plain", &["plain"], "env=prod", ""));
    server.apply(&config_map_bundle(
        "kept",
        &["kept"],
        "env=prod",
        "  keepResources: true\n",
    ));
    agent.wait_objects("both bundles", |o| {
        o == ["ConfigMap/kept", "ConfigMap/plain"]
    });
    server.ok(&["delete", "bundle", "plain"]);
    agent.wait_objects("plain removed", |o| o == ["ConfigMap/kept"]);
    server.ok(&["delete", "bundle", "kept"]);
    wait_for("kept bundle forgotten by the agent", || {
        let bytes = std::fs::read(agent.state_dir.join("simulated-cluster.json")).ok()?;
        let inventory: flotilla_agent::simulated::SimInventory =
            serde_json::from_slice(&bytes).ok()?;
        inventory.bundles.is_empty().then_some(())
    });
    assert_eq!(
        agent.objects(),
        ["ConfigMap/kept"],
        "keepResources leaves objects in place"
    );
    assert!(server.get("bundle", "plain").is_none());
}

#[test]
fn acknowledged_changes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    wait_for("store-1 registered", || server.get("cluster", "store-1"));
    // Every acknowledged write, then SIGKILL straight away.
    for index in 0..20 {
        server.apply(&config_map_bundle(
            &format!("bundle-{index}"),
            &["cm"],
            "env=prod",
            "",
        ));
    }
    server.apply(
        "apiVersion: flotilla.dev/v1alpha1\nkind: ClusterGroup\nmetadata: {name: prod}\nspec:\n  selector: {matchLabels: {env: prod}}\n",
    );
    server.ok(&["label", "cluster", "store-1", "tier=edge"]);
    server.ok(&["delete", "bundle", "bundle-0"]);
    let second_token = server.new_token();
    server.kill_9();
    server.restart();
    let bundles = server.list("bundles", &[]);
    assert_eq!(bundles.len(), 19, "19 bundles survive");
    assert!(
        server.get("bundle", "bundle-0").is_none(),
        "the delete survives"
    );
    assert_eq!(
        server.get("clustergroup", "prod").unwrap()["status"]["clusterCount"],
        1
    );
    let cluster = server.get("cluster", "store-1").unwrap();
    assert_eq!(cluster["metadata"]["labels"]["tier"], "edge");
    assert_eq!(server.list("tokens", &[]).len(), 2);
    // The registered agent's credential still works after the restart.
    server.wait_bundle_ready("bundle-19", 1);
    let late = AgentProcess::start(&server, &second_token, "store-2", "env=prod", dir.path());
    server.wait_bundle_ready("bundle-19", 2);
    drop((agent, late));
}

#[test]
fn silent_cluster_turns_offline_and_back_online() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        &dir.path().join("server"),
        &["--offline-missed-intervals", "2"],
    );
    let token = server.new_token();
    let mut agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    wait_for("store-1 online", || {
        (cluster_state(&server, "store-1")? == "Online").then_some(())
    });
    agent.stop();
    wait_for("store-1 offline", || {
        (cluster_state(&server, "store-1")? == "Offline").then_some(())
    });
    assert_eq!(server.list("clusters", &["--state", "Offline"]).len(), 1);
    agent.restart();
    wait_for("store-1 online again", || {
        (cluster_state(&server, "store-1")? == "Online").then_some(())
    });
}

#[test]
fn agent_restarted_while_the_server_is_down_keeps_its_desired_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let mut agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    server.apply(&config_map_bundle("web", &["web"], "env=prod", ""));
    agent.wait_objects("web", |o| o == ["ConfigMap/web"]);
    server.kill_9();
    // The simulated cluster forgets everything (a fresh cluster); the cached desired set and
    // content bring it back without the server.
    agent.stop();
    std::fs::remove_file(agent.state_dir.join("simulated-cluster.json")).unwrap();
    agent.restart();
    agent.wait_objects("web re-applied from cache", |o| o == ["ConfigMap/web"]);
}
