//! `flotilla rollout` against a real server and simulated agents: a change waits after its
//! canary wave (`pauseAfter`), `rollout resume` carries it on, and `rollout status --watch`
//! ends with exit code 0 once the server says Succeeded.

mod support;

use serde_json::Value;
use support::{AgentProcess, ServerProcess, config_map_bundle, wait_for};

const WAVES: &str = "  rollout:
    waves:
      - name: canary
        selector: {matchLabels: {tier: canary}}
        pauseAfter: true
      - name: rest
        clusters: 100%
";

#[test]
fn a_paused_rollout_resumes_from_the_cli_and_watch_exits_zero_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&config_map_bundle("web", &["a"], "env=prod", WAVES));
    let token = server.new_token();
    let _canary = AgentProcess::start(
        &server,
        &token,
        "store-1",
        "env=prod,tier=canary",
        dir.path(),
    );
    let rest = AgentProcess::start(&server, &token, "store-2", "env=prod", dir.path());
    server.wait_bundle_ready("web", 2);

    server.apply(&config_map_bundle("web", &["a", "b"], "env=prod", WAVES));
    let status = wait_for("the run to pause after its canary wave", || {
        let output = server.cli(&["rollout", "status", "web", "-o", "json"]);
        let status: Value = serde_json::from_slice(&output.stdout).ok()?;
        (status["phase"] == "Paused").then_some(status)
    });
    assert_eq!(status["waves"][0]["name"], "canary", "{status}");
    assert_eq!(status["waves"][0]["done"], 1, "{status}");
    assert_eq!(status["waves"][1]["updated"], 0, "{status}");
    let table = server.ok(&["rollout", "status", "web"]);
    assert!(table.contains("Phase:      Paused\n"), "{table}");

    let resumed = server.ok(&["rollout", "resume", "web"]);
    assert!(
        resumed.starts_with("bundle/web rollout resumed"),
        "{resumed}"
    );
    let watched = server.cli(&["rollout", "status", "web", "--watch", "--interval", "200ms"]);
    let stdout = String::from_utf8_lossy(&watched.stdout);
    assert_eq!(
        watched.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert!(stdout.contains("Phase:      Succeeded\n"), "{stdout}");
    rest.wait_objects("the new revision", |objects| {
        objects.iter().any(|object| object == "ConfigMap/b")
    });

    let history: Value =
        serde_json::from_str(&server.ok(&["history", "bundle", "web", "-o", "json"])).unwrap();
    assert_eq!(history["items"][0]["revision"], 2, "{history}");
    assert_eq!(history["items"][0]["phase"], "Stable", "{history}");
}
