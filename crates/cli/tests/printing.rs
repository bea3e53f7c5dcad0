//! The CLI prints what the server returned: `get -o json` and `-o yaml` of every kind are the
//! server's document (keys sorted), though the CLI decodes it into its typed form on the way.

mod support;

use serde_json::Value;
use support::{AgentProcess, ServerProcess, wait_for};

/// `GET path` on the admin API with the admin token, parsed as JSON.
fn raw_get(server: &ServerProcess, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nhost: flotilla\r\nauthorization: Bearer {}\r\n\r\n",
        server.admin_token
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.split_whitespace()
        .nth(1)
        .is_some_and(|status| status == "200")
        .then(|| serde_json::from_str(body).ok())?
}

const DOCUMENTS: &str = r#"
apiVersion: flotilla.dev/v1alpha1
kind: ClusterGroup
metadata: {name: prod, labels: {team: a}}
spec:
  selector:
    matchLabels: {env: prod}
    matchExpressions: [{key: tier, operator: In, values: [web, api]}]
---
apiVersion: flotilla.dev/v1alpha1
kind: Bundle
metadata: {name: web, labels: {app: web}}
spec:
  resources:
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: web}, data: {z: "1", a: "2"}}
  targets:
    - clusterSelector: {matchLabels: {env: prod}}
      customization: {namespace: web, labels: {b: "1", a: "2"}}
---
apiVersion: flotilla.dev/v1alpha1
kind: Secret
metadata: {name: creds}
spec:
  type: basic-auth
  stringData: {username: u, password: p}
---
apiVersion: flotilla.dev/v1alpha1
kind: GitRepo
metadata: {name: repo}
spec:
  repo: file:///nonexistent/repo
  branch: main
  paused: true
"#;

#[test]
fn get_prints_the_servers_document_unchanged_for_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(DOCUMENTS);
    let token = server.new_token();
    let _agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    server.wait_bundle_ready("web", 1);
    let tokens = server.list("tokens", &[]);
    let token_name = tokens[0]["metadata"]["name"].as_str().unwrap().to_string();
    for (kind, plural, name) in [
        ("cluster", "clusters", "store-1"),
        ("clustergroup", "clustergroups", "prod"),
        ("bundle", "bundles", "web"),
        ("secret", "secrets", "creds"),
        ("gitrepo", "gitrepos", "repo"),
        ("token", "registrationtokens", token_name.as_str()),
    ] {
        // A cluster's status moves with every sync: compare a print and a read that agree.
        wait_for(
            &format!("get {kind} {name} to print the server's document"),
            || {
                let before = raw_get(&server, &format!("/api/v1/{plural}/{name}"))?;
                let json = server.ok(&["get", kind, name, "-o", "json"]);
                let yaml = server.ok(&["get", kind, name, "-o", "yaml"]);
                let after = raw_get(&server, &format!("/api/v1/{plural}/{name}"))?;
                (before == after
                    && json == format!("{}\n", serde_json::to_string_pretty(&before).unwrap())
                    && yaml == serde_saphyr::to_string(&before).unwrap())
                .then_some(())
            },
        );
        wait_for(&format!("get {plural} to print the server's list"), || {
            let page = raw_get(&server, &format!("/api/v1/{plural}"))?;
            let printed: Value =
                serde_json::from_str(&server.ok(&["get", kind, "-o", "json"])).expect("JSON list");
            (printed["items"] == page["items"]).then_some(())
        });
    }
}

#[test]
fn tables_and_describe_show_each_kinds_columns_and_facts() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(DOCUMENTS);
    let token = server.new_token();
    let _agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    server.wait_bundle_ready("web", 1);

    let bundles = server.ok(&["get", "bundles"]);
    let mut lines = bundles.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATE",
            "DESIRED",
            "READY",
            "NOT-READY",
            "MODIFIED",
            "ERROR",
            "PENDING",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..8], ["web", "Ready", "1", "1", "0", "0", "0", "0"]);

    let groups = server.ok(&["get", "clustergroups"]);
    assert!(
        groups.contains("env=prod,tier in (api,web)"),
        "selector column: {groups}"
    );
    let clusters = server.ok(&["get", "clusters"]);
    let row: Vec<&str> = clusters
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["store-1", "Online", "1/1", "3/3"]);
    let repos = server.ok(&["get", "gitrepos"]);
    assert!(
        repos.lines().nth(1).unwrap().starts_with("repo "),
        "{repos}"
    );
    let secrets = server.ok(&["get", "secrets"]);
    assert!(secrets.contains("basic-auth"), "{secrets}");
    assert!(secrets.contains("password,username"), "{secrets}");

    let described = server.ok(&["describe", "bundle", "web"]);
    for line in [
        "Name:                 web\n",
        "Kind:                 Bundle\n",
        "Labels:               app=web\n",
        "Generation:           1\n",
        "State:                Ready\n",
        "Observed generation:  1\n",
        "Status:\n",
        "Spec:\n",
    ] {
        assert!(
            described.contains(line),
            "{line:?} missing from:\n{described}"
        );
    }
    assert!(!described.contains("Paused:"), "{described}");
    let described = server.ok(&["describe", "cluster", "store-1"]);
    assert!(
        described.contains("Nodes ready:          3/3\n"),
        "{described}"
    );
    assert!(!described.contains("Spec:"), "{described}");
}
