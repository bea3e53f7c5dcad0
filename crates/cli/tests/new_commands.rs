//! End-to-end tests of `flotilla version`, `completion`, `explain`, `edit` and `token
//! list|revoke` on a real server process, driven through the real binary.

mod support;

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;
use support::{BIN, ServerProcess};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The binary with no server configured (an address where nothing listens) and no token.
fn offline(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("FLOTILLA_SERVER", "http://127.0.0.1:9")
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .expect("run flotilla")
}

/// An executable shell script in `folder`.
fn script(folder: &Path, name: &str, body: &str) -> PathBuf {
    let path = folder.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).expect("write script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

/// `flotilla edit KIND NAME` with `editor` as $EDITOR (standard input not a terminal).
fn edit(server: &ServerProcess, kind: &str, name: &str, editor: &Path) -> Output {
    Command::new(BIN)
        .args(["edit", kind, name])
        .env("FLOTILLA_SERVER", &server.url)
        .env("FLOTILLA_TOKEN", &server.admin_token)
        .env("EDITOR", editor)
        .env_remove("VISUAL")
        .env_remove("KUBE_EDITOR")
        .env("FLOTILLA_BIN", BIN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run flotilla edit")
}

fn started(root: &Path) -> ServerProcess {
    ServerProcess::start(&root.join("server"), &[])
}

fn group_yaml(name: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: ClusterGroup\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{env: prod}}\n"
    )
}

// ---------------------------------------------------------------------------------------------
// version

#[test]
fn version_client_prints_this_build_without_a_server() {
    let plain = succeeded(&offline(&["version", "--client"]), "version --client");
    assert!(
        plain.starts_with(&format!(
            "Client Version: {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{plain}"
    );
    assert!(!plain.contains("Server"), "{plain}");
    let json: Value = serde_json::from_str(&succeeded(
        &offline(&["version", "--client", "-o", "json"]),
        "version --client -o json",
    ))
    .expect("JSON");
    assert_eq!(json["clientVersion"]["version"], env!("CARGO_PKG_VERSION"));
    let commit = json["clientVersion"]["commit"].as_str().expect("commit");
    assert!(!commit.is_empty(), "{json}");
    assert!(json.get("serverVersion").is_none(), "{json}");
    let yaml = succeeded(
        &offline(&["version", "--client", "-o", "yaml"]),
        "version -o yaml",
    );
    assert!(yaml.contains("clientVersion:"), "{yaml}");
}

#[test]
fn version_shows_the_servers_build_and_store_and_needs_the_admin_token() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = started(root.path());
    let json: Value =
        serde_json::from_str(&server.ok(&["version", "-o", "json"])).expect("version JSON");
    assert_eq!(json["serverVersion"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["serverVersion"]["store"], "embedded");
    // One binary, one build: the server's commit is the client's.
    assert_eq!(
        json["serverVersion"]["commit"], json["clientVersion"]["commit"],
        "{json}"
    );
    let plain = server.ok(&["version"]);
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.len(), 2, "{plain}");
    assert!(lines[0].starts_with("Client Version: "), "{plain}");
    assert!(
        lines[1].starts_with("Server Version: ") && lines[1].contains("store embedded"),
        "{plain}"
    );
    assert_eq!(server.http_status("/api/v1/version"), Some(401));
    // A server that cannot be reached: the client's line, then the error.
    let unreachable = offline(&["version", "--token", "x"]);
    assert!(!unreachable.status.success());
    assert!(text(&unreachable.stdout).starts_with("Client Version: "));
    assert!(
        text(&unreachable.stderr).contains("reach the flotilla server"),
        "{}",
        text(&unreachable.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// completion

fn shell_exists(shell: &str) -> bool {
    Command::new(shell)
        .arg("-c")
        .arg("exit 0")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn completion_scripts_name_the_commands_and_pass_each_shells_syntax_check() {
    let folder = tempfile::tempdir().expect("temp dir");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script_text = succeeded(&offline(&["completion", shell]), shell);
        for command in ["explain", "rollout", "token", "edit"] {
            assert!(
                script_text.contains(command),
                "{shell} script lacks {command}"
            );
        }
        let path = folder.path().join(format!("flotilla.{shell}"));
        std::fs::write(&path, &script_text).expect("write script");
        let check: &[&str] = match shell {
            "bash" => &["bash", "-n"],
            "zsh" => &["zsh", "-n"],
            "fish" => &["fish", "--no-execute"],
            _ => continue,
        };
        if shell != "bash" && !shell_exists(check[0]) {
            println!("note: {shell} is not installed; its script's syntax is not checked");
            continue;
        }
        let output = Command::new(check[0])
            .args(&check[1..])
            .arg(&path)
            .output()
            .unwrap_or_else(|error| panic!("run {}: {error}", check[0]));
        assert!(
            output.status.success(),
            "{shell} rejects its script: {}",
            text(&output.stderr)
        );
    }
    // The bash script completes subcommands when sourced.
    let probe = format!(
        "source {}; COMP_WORDS=(flotilla exp); COMP_CWORD=1; _flotilla flotilla exp flotilla; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        folder.path().join("flotilla.bash").display()
    );
    let output = Command::new("bash")
        .args(["-c", &probe])
        .output()
        .expect("bash");
    assert!(
        text(&output.stdout).lines().any(|line| line == "explain"),
        "stdout: {} stderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// explain

#[test]
fn explain_a_kind_lists_its_fields_with_types_and_descriptions() {
    let output = succeeded(&offline(&["explain", "bundle"]), "explain bundle");
    assert!(output.starts_with("KIND:       Bundle\n"), "{output}");
    assert!(
        output.contains("VERSION:    flotilla.dev/v1alpha1"),
        "{output}"
    );
    assert!(output.contains("FIELDS:"), "{output}");
    assert!(output.contains("  spec\t<BundleSpec>"), "{output}");
    assert!(
        output.contains("  metadata\t<ObjectMeta> -required-"),
        "{output}"
    );
    assert!(!output.contains("<no description>"), "{output}");
}

#[test]
fn explain_a_nested_field_shows_its_path_type_and_fields() {
    let output = succeeded(
        &offline(&["explain", "bundles.spec.rollout"]),
        "explain bundles.spec.rollout",
    );
    assert!(
        output.contains("FIELD: rollout <RolloutStrategy>"),
        "{output}"
    );
    assert!(output.contains("How changes reach the fleet"), "{output}");
    assert!(output.contains("FIELDS:"), "{output}");
    let recursive = succeeded(
        &offline(&["explain", "cluster", "--recursive"]),
        "explain --recursive",
    );
    assert!(
        recursive.contains("\n    labels\t<map[string]string>"),
        "{recursive}"
    );
}

#[test]
fn explain_an_unknown_field_suggests_the_closest_and_lists_the_fields() {
    let output = offline(&["explain", "bundle.spec.targest"]);
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(error.contains("did you mean \"targets\""), "{error}");
    assert!(error.contains("paused"), "{error}");
    let unknown_kind = offline(&["explain", "deployment"]);
    assert!(!unknown_kind.status.success());
    assert!(text(&unknown_kind.stderr).contains("unknown kind"));
}

// ---------------------------------------------------------------------------------------------
// edit

/// The editor's change: a label under `metadata:`.
const ADD_LABEL: &str = r#"sed -i 's/^metadata:$/metadata:\n  labels:\n    edited: "yes"/' "$1""#;

#[test]
fn edit_sends_the_saved_change_and_an_unchanged_file_cancels() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = started(root.path());
    server.apply(&group_yaml("web"));
    let before = server.get("clustergroup", "web").expect("group");

    let unchanged = edit(
        &server,
        "clustergroup",
        "web",
        &script(root.path(), "noop.sh", "true"),
    );
    assert!(unchanged.status.success(), "{}", text(&unchanged.stderr));
    assert!(
        text(&unchanged.stderr).contains("Edit cancelled, no changes made."),
        "{}",
        text(&unchanged.stderr)
    );
    let after_noop = server.get("clustergroup", "web").expect("group");
    assert_eq!(
        after_noop["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    let labelled = edit(
        &server,
        "cg",
        "web",
        &script(root.path(), "label.sh", ADD_LABEL),
    );
    assert_eq!(
        succeeded(&labelled, "edit with a label"),
        "clustergroup/web edited\n"
    );
    let after = server.get("clustergroup", "web").expect("group");
    assert_eq!(after["metadata"]["labels"]["edited"], "yes", "{after}");
    assert_eq!(after["spec"], before["spec"]);
}

#[test]
fn edit_refuses_to_overwrite_a_change_made_while_the_editor_was_open() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = started(root.path());
    server.apply(&group_yaml("web"));
    // The editor changes the object through another client before saving its own change.
    let racing = script(
        root.path(),
        "race.sh",
        &format!(
            r#""$FLOTILLA_BIN" label clustergroup web meanwhile=1 >/dev/null
{ADD_LABEL}"#
        ),
    );
    let output = edit(&server, "clustergroup", "web", &racing);
    assert!(!output.status.success(), "the stale edit was taken");
    let error = text(&output.stderr);
    assert!(error.contains("conflict"), "{error}");
    assert!(error.contains("changed since"), "{error}");
    let kept = error
        .split("your edit is saved in ")
        .nth(1)
        .expect("the kept file is named")
        .trim();
    let kept_text = std::fs::read_to_string(kept).expect("the kept file exists");
    assert!(kept_text.contains("edited: \"yes\""), "{kept_text}");
    std::fs::remove_file(kept).expect("remove kept file");
    let group = server.get("clustergroup", "web").expect("group");
    assert_eq!(group["metadata"]["labels"]["meanwhile"], "1", "{group}");
    assert!(
        group["metadata"]["labels"].get("edited").is_none(),
        "{group}"
    );
}

#[test]
fn an_invalid_edit_reopens_the_editor_with_the_error_at_the_top() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = started(root.path());
    server.apply(&group_yaml("web"));
    let saved = root.path().join("saved.yaml");
    // First session: keep a copy and break the YAML. Second (the error comment is there):
    // restore the copy and add a label.
    let editor = script(
        root.path(),
        "fix.sh",
        &format!(
            r#"if grep -q '^# The edit was not saved' "$1"; then
  cp {saved} "$1"
  {ADD_LABEL}
else
  cp "$1" {saved}
  printf 'spec: [\n' >> "$1"
fi"#,
            saved = saved.display()
        ),
    );
    let output = edit(&server, "clustergroup", "web", &editor);
    assert_eq!(
        succeeded(&output, "edit fixed on the second try"),
        "clustergroup/web edited\n"
    );
    assert!(
        text(&output.stderr).contains("reopening the editor"),
        "{}",
        text(&output.stderr)
    );
    let group = server.get("clustergroup", "web").expect("group");
    assert_eq!(group["metadata"]["labels"]["edited"], "yes", "{group}");
}

// ---------------------------------------------------------------------------------------------
// token list | revoke

/// `POST /agent/v1/register` with `token` for a cluster `name`; the HTTP status.
fn register(server: &ServerProcess, token: &str, name: &str) -> u16 {
    let body = serde_json::json!({
        "token": token,
        "name": name,
        "clientId": format!("client-{name}"),
    })
    .to_string();
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect to server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "POST /agent/v1/register HTTP/1.0\r\nhost: flotilla\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send registration");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read reply");
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"))
}

#[test]
fn token_list_shows_uses_and_labels_but_never_the_secret() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = started(root.path());
    let token = server
        .ok(&[
            "token",
            "create",
            "--name",
            "edge",
            "--labels",
            "env=edge",
            "--max-uses",
            "5",
        ])
        .trim()
        .to_string();
    let (_, secret) = token.split_once('.').expect("name.secret");
    assert_eq!(register(&server, &token, "store-1"), 201);

    let table = server.ok(&["token", "list"]);
    let header = table.lines().next().expect("header");
    for column in ["NAME", "STATE", "USES", "LABELS", "EXPIRES", "CREATED"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table
        .lines()
        .find(|line| line.starts_with("edge "))
        .expect("edge row");
    assert!(row.contains("1/5"), "{table}");
    assert!(row.contains("env=edge"), "{table}");
    assert!(row.contains("never"), "{table}");
    for output in ["table", "json", "yaml"] {
        let listed = server.ok(&["token", "list", "-o", output]);
        assert!(!listed.contains(secret), "the secret shows in -o {output}");
    }
    let json: Value =
        serde_json::from_str(&server.ok(&["token", "list", "-o", "json"])).expect("JSON");
    assert_eq!(json["items"][0]["metadata"]["name"], "edge");
    assert_eq!(json["items"][0]["status"]["uses"], 1);
}

#[test]
fn a_revoked_token_registers_no_more_clusters() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = started(root.path());
    let token = server
        .ok(&["token", "create", "--name", "once"])
        .trim()
        .to_string();
    assert_eq!(register(&server, &token, "store-1"), 201);
    assert_eq!(
        server.ok(&["token", "revoke", "once"]),
        "registrationtoken/once revoked\n"
    );
    assert!(!server.ok(&["token", "list"]).contains("once"));
    assert_eq!(register(&server, &token, "store-2"), 401);
    // The cluster that registered before keeps its place.
    assert!(server.get("cluster", "store-1").is_some());
    let again = server.cli(&["token", "revoke", "once"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("not found"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn edit_refuses_a_secret_whose_values_it_could_not_show() {
    let root = tempfile::tempdir().unwrap();
    let server = started(root.path());
    server.apply(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata: {name: creds}\nspec:\n  type: basic-auth\n  stringData: {username: u, password: p}\n",
    );
    let editor = script(root.path(), "never", "echo opened > \"$0.opened\"\n");
    let refused = edit(&server, "secret", "creds", &editor);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("flotilla apply -f"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        !root.path().join("never.opened").exists(),
        "the editor was not opened"
    );
}
