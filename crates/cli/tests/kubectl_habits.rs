//! A kubectl user's habits work against a real server and the real binary: `-o name`,
//! `-o jsonpath=`, `-o wide`, several names and `-l` on `get` and `delete`, `delete -f`,
//! `--ignore-not-found`, did-you-mean on kinds, colour only on a terminal, and the count line
//! under long tables.

mod support;

use std::process::{Command, Output, Stdio};

use support::{BIN, ServerProcess};

/// A bundle with one config map, labelled `labels` (flow form, e.g. `{env: dev}`); a target
/// naming a cluster group that does not exist makes the server call it Error.
fn bundle(name: &str, labels: &str, group: Option<&str>) -> String {
    let target = match group {
        Some(group) => format!("  targets: [{{clusterGroup: {group}}}]\n"),
        None => String::new(),
    };
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Bundle\nmetadata: {{name: {name}, labels: {labels}}}\nspec:\n  resources:\n    - {{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}}}}}\n{target}---\n"
    )
}

fn secret(name: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata: {{name: {name}}}\nspec:\n  type: basic-auth\n  stringData: {{username: u, password: p}}\n---\n"
    )
}

/// `api`, `db` (env=dev) and `web` (env=prod, with an `app.kubernetes.io/name` label).
fn three_bundles() -> String {
    [
        bundle("web", "{env: prod, app.kubernetes.io/name: web}", None),
        bundle("api", "{env: dev}", None),
        bundle("db", "{env: dev}", None),
    ]
    .concat()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn bundle_names(server: &ServerProcess) -> Vec<String> {
    server
        .list("bundles", &[])
        .iter()
        .map(|bundle| bundle["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn name_and_jsonpath_output_print_what_kubectl_would() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&three_bundles());

    assert_eq!(
        server.ok(&["get", "bundles", "-o", "name"]),
        "bundle/api\nbundle/db\nbundle/web\n"
    );
    assert_eq!(
        server.ok(&["get", "bundle", "web", "-o", "name"]),
        "bundle/web\n"
    );
    assert_eq!(
        server.ok(&["get", "bundles", "-o", "jsonpath={.items[*].metadata.name}"]),
        "api db web"
    );
    assert_eq!(
        server.ok(&[
            "get",
            "bundles",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.env}{"\n"}{end}"#
        ]),
        "api=dev\ndb=dev\nweb=prod\n"
    );
    assert_eq!(
        server.ok(&[
            "get",
            "bundle",
            "web",
            "-o",
            r"jsonpath={.kind}/{.metadata.labels.app\.kubernetes\.io/name}"
        ]),
        "Bundle/web"
    );
    assert_eq!(
        server.ok(&[
            "get",
            "bundles",
            "-o",
            r#"jsonpath={.items[?(@.metadata.labels.env=="dev")].metadata.name}"#
        ]),
        "api db"
    );
    // --sort takes `-name` as a value, not as flags.
    assert_eq!(
        server.ok(&["get", "bundles", "--sort", "-name", "-o", "name"]),
        "bundle/web\nbundle/db\nbundle/api\n"
    );

    let wide = server.ok(&["get", "bundles", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[..2], ["NAME", "STATE"]);
    assert!(
        header.ends_with(&["DIGEST", "GENERATION", "PAUSED", "LABELS"]),
        "{wide}"
    );
    assert!(wide.contains("env=prod"), "{wide}");

    let refused = server.cli(&["get", "bundles", "-o", "jsonpath={.items[*"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("has no"), "{}", stderr(&refused));
    let refused = server.cli(&["get", "bundles", "-o", "xml"]);
    assert!(
        stderr(&refused).contains("jsonpath=TEMPLATE"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn get_and_delete_take_several_names_and_selectors_and_go_on_past_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&three_bundles());
    server.apply(&(bundle("cache", "{env: dev}", None) + &bundle("queue", "{env: dev}", None)));

    assert_eq!(
        server.ok(&["get", "bundles", "web", "api", "-o", "name"]),
        "bundle/web\nbundle/api\n"
    );
    let partly = server.cli(&["get", "bundles", "web", "nope"]);
    assert!(!partly.status.success());
    assert!(stdout(&partly).lines().nth(1).unwrap().starts_with("web "));
    assert!(
        stderr(&partly).contains("bundle/nope"),
        "{}",
        stderr(&partly)
    );
    let both = server.cli(&["get", "bundles", "web", "-l", "env=dev"]);
    assert!(!both.status.success(), "a name and a selector together");

    let deleted = server.cli(&["delete", "bundles", "web", "nope", "api"]);
    assert_eq!(stdout(&deleted), "bundle/web deleted\nbundle/api deleted\n");
    assert!(
        stderr(&deleted).contains("bundle/nope"),
        "{}",
        stderr(&deleted)
    );
    assert!(
        !deleted.status.success(),
        "a missing object fails the command"
    );
    assert_eq!(bundle_names(&server), ["cache", "db", "queue"]);

    let ignored = server.cli(&["delete", "bundle", "nope", "--ignore-not-found"]);
    assert!(ignored.status.success(), "{}", stderr(&ignored));
    assert_eq!(stdout(&ignored), "");

    server.apply(&bundle("keep", "{env: prod}", None));
    assert_eq!(
        server.ok(&["delete", "bundles", "-l", "env=dev"]),
        "bundle/cache deleted\nbundle/db deleted\nbundle/queue deleted\n"
    );
    assert_eq!(bundle_names(&server), ["keep"]);
    let none = server.cli(&["delete", "bundles", "-l", "env=dev"]);
    assert!(none.status.success());
    assert!(
        stderr(&none).contains("No bundles found"),
        "{}",
        stderr(&none)
    );
    let unnamed = server.cli(&["delete", "bundles"]);
    assert!(
        !unnamed.status.success(),
        "delete KIND alone deletes nothing"
    );
    assert!(stderr(&unnamed).contains("--all"), "{}", stderr(&unnamed));
    assert_eq!(
        server.ok(&["delete", "bundles", "--all"]),
        "bundle/keep deleted\n"
    );
    assert!(bundle_names(&server).is_empty());
}

#[test]
fn delete_f_deletes_what_files_folders_and_stdin_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let folder = dir.path().join("manifests");
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    std::fs::write(folder.join("web.yaml"), bundle("web", "{}", None)).unwrap();
    std::fs::write(folder.join("nested/creds.yml"), secret("creds")).unwrap();
    let folder = folder.display().to_string();
    server.ok(&["apply", "-f", &folder]);
    server.apply(&(bundle("api", "{}", None) + &secret("other")));

    assert_eq!(
        server.ok(&["delete", "-f", &folder]),
        "secret/creds deleted\nbundle/web deleted\n"
    );
    assert_eq!(bundle_names(&server), ["api"]);

    // A document of an unknown kind is an error; the others are still deleted.
    let input = bundle("api", "{}", None)
        + "apiVersion: flotilla.dev/v1alpha1\nkind: Bundel\nmetadata: {name: x}\n---\n"
        + &secret("other");
    let deleted = server.cli_with_input(&["delete", "-f", "-"], &input);
    assert_eq!(
        stdout(&deleted),
        "bundle/api deleted\nsecret/other deleted\n"
    );
    assert!(
        stderr(&deleted).contains(r#"did you mean "bundle"?"#),
        "{}",
        stderr(&deleted)
    );
    assert!(!deleted.status.success());
    assert!(server.list("secrets", &[]).is_empty());

    // What is already gone fails, unless told to ignore it.
    assert!(!server.cli(&["delete", "-f", &folder]).status.success());
    let ignored = server.cli(&["delete", "-f", &folder, "--ignore-not-found"]);
    assert!(ignored.status.success(), "{}", stderr(&ignored));
}

#[test]
fn an_unknown_kind_gets_the_nearest_one_and_help_lists_every_kind() {
    // The kind is checked before the server is asked: no server needed.
    let output = Command::new(BIN)
        .args(["get", "bundels", "--server", "http://127.0.0.1:9"])
        .env("FLOTILLA_TOKEN", "t")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output).trim(),
        r#"error: unknown kind "bundels"; did you mean "bundles"?"#
    );
    let output = Command::new(BIN)
        .args(["delete", "pods", "x", "--server", "http://127.0.0.1:9"])
        .env("FLOTILLA_TOKEN", "t")
        .output()
        .unwrap();
    let error = stderr(&output);
    for kind in flotilla_api::Kind::ALL {
        assert!(error.contains(kind.plural()), "{kind}: {error}");
    }
    for command in ["get", "delete", "describe", "label"] {
        let help = Command::new(BIN)
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = stdout(&help);
        for kind in flotilla_api::Kind::ALL {
            assert!(
                help.contains(kind.plural()),
                "{command} --help lacks {kind}"
            );
        }
    }
}

/// Runs `flotilla ARGS` on a pseudo-terminal (`script` from util-linux), with `no_color` as
/// NO_COLOR when given; its output, or None when `script` is not installed.
fn on_a_terminal(server: &ServerProcess, args: &str, no_color: Option<&str>) -> Option<String> {
    let mut command = Command::new("script");
    command
        .args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
        .env("FLOTILLA_SERVER", &server.url)
        .env("FLOTILLA_TOKEN", &server.admin_token)
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let output = command.output().ok()?;
    assert!(output.status.success(), "{}", stderr(&output));
    Some(stdout(&output))
}

#[test]
fn states_are_coloured_on_a_terminal_only_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&(bundle("web", "{}", None) + &bundle("broken", "{}", Some("nope"))));

    let piped = server.ok(&["get", "bundles"]);
    assert!(
        piped.contains("Error") && piped.contains("Ready"),
        "{piped}"
    );
    assert!(
        !piped.contains('\u{1b}'),
        "colour in piped output: {piped:?}"
    );

    let Some(terminal) = on_a_terminal(&server, "get bundles", None) else {
        eprintln!("no `script` to run a pseudo-terminal; only the piped case was checked");
        return;
    };
    assert!(
        terminal.contains("\u{1b}[31mError\u{1b}[0m"),
        "{terminal:?}"
    );
    assert!(
        terminal.contains("\u{1b}[32mReady\u{1b}[0m"),
        "{terminal:?}"
    );
    for no_color in ["1", ""] {
        let plain = on_a_terminal(&server, "get bundles", Some(no_color)).unwrap();
        assert!(plain.contains("Error"), "{plain:?}");
        assert!(
            !plain.contains('\u{1b}'),
            "NO_COLOR={no_color:?}: {plain:?}"
        );
    }
}

#[test]
fn a_long_table_is_followed_by_a_count_line_on_stderr_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let mut documents: String = (0..20)
        .map(|i| bundle(&format!("b{i:02}"), "{}", None))
        .collect();
    server.apply(&documents);
    let short = server.cli(&["get", "bundles"]);
    assert_eq!(stdout(&short).lines().count(), 21);
    assert_eq!(stderr(&short), "", "20 rows fit a screen: no count");

    documents = bundle("x1", "{}", Some("nope")) + &bundle("x2", "{}", Some("nope"));
    server.apply(&documents);
    let long = server.cli(&["get", "bundles"]);
    assert!(long.status.success());
    assert_eq!(stderr(&long), "22 bundles: 20 Ready, 2 Error\n");
    assert_eq!(
        stdout(&long).lines().count(),
        23,
        "the table alone on stdout"
    );
    for format in ["name", "json", "yaml", "jsonpath={.items[*].metadata.name}"] {
        let output = server.cli(&["get", "bundles", "-o", format]);
        assert!(output.status.success());
        assert_eq!(stderr(&output), "", "-o {format}");
        assert!(!stdout(&output).contains("22 bundles"), "-o {format}");
    }
}

#[test]
fn a_blank_selector_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&three_bundles());
    for blank in ["", " "] {
        let refused = server.cli(&["delete", "bundles", "-l", blank]);
        assert!(!refused.status.success(), "-l {blank:?} was taken");
        assert!(stderr(&refused).contains("--all"), "{}", stderr(&refused));
    }
    assert_eq!(bundle_names(&server).len(), 3, "nothing was deleted");
}
