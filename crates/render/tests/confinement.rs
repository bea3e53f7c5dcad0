//! A rendering reads only its repository and uses the network only for allowed hosts: Kustomize
//! bases and files that leave the repository (by `..` or a symbolic link) and remote resources,
//! bases and charts fail the rendering with an error naming the file, the field and the path,
//! before any engine runs or any request is made. Real engines (kubectl's kustomize, helm v4).

mod support;

use std::path::{Path, PathBuf};

use flotilla_render::{Tools, declared_name, render_folder};
use flotilla_testkit::HttpFileServer;
use support::{Checkout, configmap, helm, ids, kustomize_argv};

fn kustomize_tools() -> Tools {
    Tools::none().with_kustomize(kustomize_argv())
}

/// A temporary directory holding a repository (`repo/`) next to another repository's private
/// kustomization (`other/private/`), the layout of the server's cache before renders got scratch
/// folders.
struct Neighbours {
    dir: tempfile::TempDir,
}

impl Neighbours {
    fn new() -> Neighbours {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("other/private");
        std::fs::create_dir_all(&private).unwrap();
        std::fs::write(
            private.join("kustomization.yaml"),
            "resources: [secret.yaml]\n",
        )
        .unwrap();
        std::fs::write(private.join("secret.yaml"), configmap("other-repos-secret")).unwrap();
        std::fs::create_dir_all(dir.path().join("repo")).unwrap();
        Neighbours { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn private(&self) -> PathBuf {
        self.dir.path().join("other/private")
    }
}

#[test]
fn kustomize_base_reaching_outside_the_repository_fails_naming_it_and_renders_nothing_of_it() {
    let tools = kustomize_tools();
    // Straight up and over, and through a base inside the repository.
    for (kustomization, base, reference) in [
        (
            "resources:\n- ../../other/private\n",
            None,
            "../../other/private",
        ),
        (
            "resources:\n- base\n",
            Some("resources:\n- ../../../other/private\n"),
            "../../../other/private",
        ),
        (
            "bases:\n- ../../other/private\n",
            None,
            "../../other/private",
        ),
    ] {
        let neighbours = Neighbours::new();
        neighbours.write("apps/kustomization.yaml", kustomization);
        neighbours.write("apps/cm.yaml", &configmap("mine"));
        if let Some(base) = base {
            neighbours.write("apps/base/kustomization.yaml", base);
        }
        // Without the check, kustomize renders the neighbour's private ConfigMap.
        let error = render_folder(&neighbours.root(), "apps", &tools).unwrap_err();
        let expected_file = if base.is_some() {
            "apps/base/kustomization.yaml"
        } else {
            "apps/kustomization.yaml"
        };
        assert_eq!(error.file.as_deref(), Some(expected_file), "{error}");
        assert!(error.message.contains(reference), "{error}");
        assert!(error.message.contains("leaves the repository"), "{error}");
        assert!(!error.message.contains("other-repos-secret"), "{error}");
    }

    // However many `..` it takes to reach `/` and come down elsewhere.
    let neighbours = Neighbours::new();
    let deep = format!("{}{}", "../".repeat(40), neighbours.private().display());
    neighbours.write(
        "apps/kustomization.yaml",
        &format!("resources:\n- {deep}\n"),
    );
    let error = render_folder(&neighbours.root(), "apps", &tools).unwrap_err();
    assert!(error.message.contains("leaves the repository"), "{error}");
}

#[test]
fn files_and_bases_behind_symbolic_links_leading_outside_the_repository_are_refused() {
    let tools = kustomize_tools();
    let neighbours = Neighbours::new();
    neighbours.write("apps/kustomization.yaml", "resources:\n- linked\n");
    std::os::unix::fs::symlink(neighbours.private(), neighbours.root().join("apps/linked"))
        .unwrap();
    let error = render_folder(&neighbours.root(), "apps", &tools).unwrap_err();
    assert!(error.to_string().contains("linked"), "{error}");
    assert!(error.message.contains("symbolic link"), "{error}");
    // Also when the link sits outside the folder the files are collected from.
    let neighbours = Neighbours::new();
    neighbours.write(
        "apps/kustomization.yaml",
        "resources:\n- ../shared/linked\n",
    );
    std::fs::create_dir_all(neighbours.root().join("shared")).unwrap();
    std::os::unix::fs::symlink(
        neighbours.private(),
        neighbours.root().join("shared/linked"),
    )
    .unwrap();
    let error = render_folder(&neighbours.root(), "apps", &tools).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("apps/kustomization.yaml"));
    assert!(error.message.contains("\"../shared/linked\""), "{error}");
    assert!(error.message.contains("symbolic link"), "{error}");

    // A patch file is checked the same way as a base.
    let neighbours = Neighbours::new();
    neighbours.write(
        "apps/kustomization.yaml",
        "resources: [cm.yaml]\npatches:\n- path: ../../other/private/secret.yaml\n",
    );
    neighbours.write("apps/cm.yaml", &configmap("mine"));
    let error = render_folder(&neighbours.root(), "apps", &tools).unwrap_err();
    assert!(error.message.contains("patches[0].path"), "{error}");
    assert!(error.message.contains("leaves the repository"), "{error}");

    // Bases elsewhere inside the repository are what overlays are for: still fine.
    let neighbours = Neighbours::new();
    neighbours.write("base/kustomization.yaml", "resources: [cm.yaml]\n");
    neighbours.write("base/cm.yaml", &configmap("base"));
    neighbours.write(
        "apps/prod/kustomization.yaml",
        "resources: [../../base]\nnameSuffix: -prod\n",
    );
    let rendered = render_folder(&neighbours.root(), "apps/prod", &tools).unwrap();
    assert_eq!(ids(&rendered.resources), ["ConfigMap/-/base-prod"]);
}

/// A directory served over HTTP on 127.0.0.1 holding `remote.yaml`.
fn remote_manifest() -> (tempfile::TempDir, HttpFileServer) {
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("remote.yaml"), configmap("remote")).unwrap();
    let server = HttpFileServer::start(served.path());
    (served, server)
}

#[test]
fn kustomize_remote_resource_is_refused_without_a_request_unless_its_host_is_allowed() {
    let (_served, server) = remote_manifest();
    let url = format!("{}/remote.yaml", server.url());
    let checkout = Checkout::new();
    checkout
        .write(
            "apps/kustomization.yaml",
            &format!("resources:\n- cm.yaml\n- {url}\n"),
        )
        .write("apps/cm.yaml", &configmap("mine"));

    let error = render_folder(checkout.root(), "apps", &kustomize_tools()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("apps/kustomization.yaml"));
    assert!(error.message.contains("resources[1]"), "{error}");
    assert!(error.message.contains(&url), "{error}");
    assert!(
        error.message.contains("--render-allow-hosts 127.0.0.1"),
        "{error}"
    );
    assert_eq!(server.requests(), 0, "{:?}", server.request_log());

    // Other hosts on the list do not let it through either.
    let elsewhere = kustomize_tools().with_allowed_hosts(["charts.example", "*.example"]);
    render_folder(checkout.root(), "apps", &elsewhere).unwrap_err();
    assert_eq!(server.requests(), 0, "{:?}", server.request_log());

    // With its host allowed, the same folder renders the remote resource.
    let allowed = kustomize_tools().with_allowed_hosts(["127.0.0.1"]);
    let rendered = render_folder(checkout.root(), "apps", &allowed).unwrap();
    assert_eq!(
        ids(&rendered.resources),
        ["ConfigMap/-/mine", "ConfigMap/-/remote"]
    );
    assert!(server.requests() >= 1);
}

#[test]
fn kustomize_git_remote_bases_are_refused_by_default_naming_their_host() {
    for (reference, host) in [
        ("github.com/example/repo//base?ref=v1", "github.com"),
        ("git::https://git.example/org/repo//base", "git.example"),
        ("git@gitlab.example:org/repo.git", "gitlab.example"),
        (
            "https://git.example/org/repo.git//base?ref=main",
            "git.example",
        ),
        ("example.org/org/repo/base", "example.org"),
    ] {
        let checkout = Checkout::new();
        checkout.write(
            "apps/kustomization.yaml",
            &format!("resources:\n- {reference}\n"),
        );
        let error = render_folder(checkout.root(), "apps", &kustomize_tools()).unwrap_err();
        assert!(error.message.contains(reference), "{error}");
        assert!(
            error
                .message
                .contains(&format!("--render-allow-hosts {host}")),
            "{reference}: {error}"
        );
    }
}

/// `helm package` + `helm repo index` of a chart called `web`, served at `<server>/charts`.
fn chart_repository() -> (tempfile::TempDir, HttpFileServer, String) {
    let charts = Checkout::new();
    charts
        .write(
            "web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        )
        .write("web/templates/cm.yaml", &configmap("web"));
    let served = tempfile::tempdir().unwrap();
    let server = HttpFileServer::start(served.path());
    let url = format!("{}/charts", server.url());
    let repo_dir = served.path().join("charts");
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "package".to_string(),
            charts.root().join("web").display().to_string(),
            "--destination".into(),
            repo_dir.display().to_string(),
        ],
        vec![
            "repo".into(),
            "index".into(),
            repo_dir.display().to_string(),
            "--url".into(),
            url.clone(),
        ],
    ] {
        let output = flotilla_testkit::run_with_deadline(
            flotilla_testkit::helm_command(home.path())
                .unwrap()
                .args(&args),
            std::time::Duration::from_secs(120),
        )
        .unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    (served, server, url)
}

#[test]
fn helm_remote_charts_and_dependencies_are_refused_without_a_request_unless_allowed() {
    let tools = Tools::none().with_helm(helm());
    let (_served, server, url) = chart_repository();
    let checkout = Checkout::new();

    // helm.repo + helm.chart.
    checkout.write(
        "apps/web/fleet.yaml",
        &format!("helm:\n  repo: {url}\n  chart: web\n  version: 0.1.0\n"),
    );
    let error = render_folder(checkout.root(), "apps/web", &tools).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("apps/web/fleet.yaml"));
    assert!(error.message.contains("helm.repo"), "{error}");
    assert!(
        error.message.contains("--render-allow-hosts 127.0.0.1"),
        "{error}"
    );
    assert_eq!(server.requests(), 0, "{:?}", server.request_log());

    // A packaged chart by URL, and a registry.
    for chart in [
        format!("{url}/web-0.1.0.tgz"),
        "oci://127.0.0.1:1/charts/web".into(),
    ] {
        checkout.write("apps/web/fleet.yaml", &format!("helm:\n  chart: {chart}\n"));
        let error = render_folder(checkout.root(), "apps/web", &tools).unwrap_err();
        assert!(error.message.contains("helm.chart"), "{error}");
        assert!(error.message.contains(&chart), "{error}");
        assert!(error.message.contains("--render-allow-hosts"), "{error}");
    }
    assert_eq!(server.requests(), 0, "{:?}", server.request_log());

    // A local chart whose dependency comes from a chart repository.
    let checkout = Checkout::new();
    checkout
        .write(
            "apps/web/Chart.yaml",
            &format!(
                "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: web\n  \
                 version: 0.1.0\n  repository: {url}\n"
            ),
        )
        .write("apps/web/templates/cm.yaml", &configmap("app"));
    let error = render_folder(checkout.root(), "apps/web", &tools).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("apps/web/Chart.yaml"));
    assert!(
        error.message.contains("dependencies[0].repository"),
        "{error}"
    );
    assert_eq!(server.requests(), 0, "{:?}", server.request_log());

    // Allowed, the dependency is fetched and rendered.
    let allowed = tools.clone().with_allowed_hosts(["127.0.0.1"]);
    let rendered = render_folder(checkout.root(), "apps/web", &allowed).unwrap();
    assert_eq!(
        ids(&rendered.resources),
        ["ConfigMap/-/app", "ConfigMap/-/web"]
    );
    assert!(server.requests() >= 1);
}

#[test]
fn helm_file_dependencies_must_stay_inside_the_repository() {
    let tools = Tools::none().with_helm(helm());
    let neighbours = Neighbours::new();
    neighbours.write(
        "apps/web/Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: private\n  \
         version: 0.1.0\n  repository: file://../../../other/private\n",
    );
    let error = render_folder(&neighbours.root(), "apps/web", &tools).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("apps/web/Chart.yaml"));
    assert!(
        error
            .message
            .contains("not a chart folder inside the repository"),
        "{error}"
    );
}

/// `to` relative to the current directory, e.g. `../../target/tmp/x` (both absolute).
fn relative_to_cwd(to: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let common = cwd
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = PathBuf::new();
    for _ in cwd.components().skip(common) {
        relative.push("..");
    }
    relative.join(to.components().skip(common).collect::<PathBuf>())
}

#[test]
fn kustomize_folder_renders_from_a_relative_repository_path() {
    // Under the build's own tmp folder, so the relative path does not pass through `/` (from
    // where any number of `..` would find it again from anywhere).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("apps")).unwrap();
    std::fs::write(
        root.join("apps/kustomization.yaml"),
        "resources: [cm.yaml]\nnamePrefix: k-\n",
    )
    .unwrap();
    std::fs::write(root.join("apps/cm.yaml"), configmap("web")).unwrap();
    let relative = relative_to_cwd(&root);
    assert!(relative.is_relative() && relative.exists(), "{relative:?}");
    let rendered = render_folder(&relative, "apps", &kustomize_tools()).unwrap();
    assert_eq!(ids(&rendered.resources), ["ConfigMap/-/k-web"]);
}

#[test]
fn declared_name_is_read_from_fleet_yaml_even_when_the_folder_cannot_render() {
    let checkout = Checkout::new();
    checkout
        .write(
            "apps/web/fleet.yaml",
            "name: storefront\nhelm:\n  repo: https://x\n",
        )
        .write("apps/api/config.yaml", "kind: [broken\n");
    assert!(render_folder(checkout.root(), "apps/web", &Tools::none()).is_err());
    assert_eq!(
        declared_name(checkout.root(), "apps/web").as_deref(),
        Some("storefront")
    );
    assert_eq!(declared_name(checkout.root(), "apps/api"), None);
    assert_eq!(declared_name(checkout.root(), "../outside"), None);
}
