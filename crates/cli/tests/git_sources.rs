//! Git sources end to end: real repositories made with the real `git`, served by real git
//! (file://, `git daemon`, `git http-backend`), a real `flotilla server` polling them, real
//! simulated agents converging, and the real `flotilla render`.

mod support;

use std::{collections::BTreeMap, process::Command};

use flotilla_testkit::{GitDaemon, GitHttpServer, GitRepoFixture};
use serde_json::Value;
use support::{AgentProcess, BIN, ServerProcess, wait_for};

/// Each folder with a fleet.yaml is its own bundle (Fleet's rule); without one, the whole path is.
const FOLDER_FLEET_YAML: &str = "defaultNamespace: apps\n";

const WEB_V1: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: apps\ndata:\n  mode: v1\n  cluster: ${cluster.name}\n";

fn gitrepo(name: &str, url: &str, extra: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: GitRepo\nmetadata:\n  name: {name}\nspec:\n  repo: {url}\n  paths: [apps]\n  targets:\n    - clusterSelector: {{}}\n{extra}"
    )
}

fn status_commit(server: &ServerProcess, repo: &str) -> Option<String> {
    server.get("gitrepo", repo)?["status"]["commit"]
        .as_str()
        .map(str::to_string)
}

fn wait_commit(server: &ServerProcess, repo: &str, commit: &str) -> Value {
    wait_for(&format!("GitRepo {repo} at {commit}"), || {
        let repo = server.get("gitrepo", repo)?;
        (repo["status"]["commit"] == commit).then_some(repo)
    })
}

fn digest(server: &ServerProcess, bundle: &str) -> Option<String> {
    server.get("bundle", bundle)?["status"]["digest"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn new_commit_gives_a_new_digest_and_agents_converge_while_an_unrendered_change_wakes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write("apps/web/fleet.yaml", FOLDER_FLEET_YAML);
    repo.write("apps/web/config.yaml", WEB_V1);
    repo.write("README.md", "# fleet\n");
    let first = repo.commit("web v1");
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    server.apply(&gitrepo("fleet", &repo.file_url(), "  pollInterval: 1s\n"));
    wait_commit(&server, "fleet", &first);
    server.wait_bundle_ready("fleet-apps-web", 1);
    agent.wait_objects("the repo's ConfigMap", |o| o == ["ConfigMap/web"]);
    let d1 = digest(&server, "fleet-apps-web").unwrap();

    // A rendered change: a new digest, and the agent reports the new revision Ready.
    repo.write(
        "apps/web/config.yaml",
        WEB_V1.replace("mode: v1", "mode: v2"),
    );
    let second = repo.commit("web v2");
    wait_commit(&server, "fleet", &second);
    let d2 = digest(&server, "fleet-apps-web").unwrap();
    assert_ne!(d1, d2, "a rendered change moves the digest");
    server.wait_bundle_ready("fleet-apps-web", 1);

    // A commit that changes nothing rendered writes nothing: same digest, same resourceVersion.
    let before = server.get("bundle", "fleet-apps-web").unwrap();
    repo.write("README.md", "# fleet\n\nNow with docs.\n");
    let third = repo.commit("docs only");
    wait_commit(&server, "fleet", &third);
    let after = server.get("bundle", "fleet-apps-web").unwrap();
    assert_eq!(after["status"]["digest"], before["status"]["digest"]);
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "an unchanged render must not rewrite the bundle"
    );

    // A folder that goes away takes its bundle with it; a new folder gets one.
    repo.remove("apps/web");
    repo.write("apps/api/fleet.yaml", FOLDER_FLEET_YAML);
    repo.write(
        "apps/api/config.yaml",
        WEB_V1.replace("name: web", "name: api"),
    );
    let fourth = repo.commit("web → api");
    wait_commit(&server, "fleet", &fourth);
    server.wait_bundle_ready("fleet-apps-api", 1);
    assert!(server.get("bundle", "fleet-apps-web").is_none());
    agent.wait_objects("the new folder's ConfigMap only", |o| {
        o == ["ConfigMap/api"]
    });

    // Bundles a GitRepo renders are changed through the repository, not the API.
    let refused = server.cli(&["delete", "bundle", "fleet-apps-api"]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("GitRepo"), "{message}");

    // Deleting the GitRepo deletes its bundles.
    server.ok(&["delete", "gitrepo", "fleet"]);
    assert!(server.get("bundle", "fleet-apps-api").is_none());
    agent.wait_objects("nothing once the GitRepo is gone", |o| o.is_empty());
}

/// GitHub signs the body with the webhook secret (HMAC-SHA256).
fn github_signature(key: &str, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn post_webhook(server: &ServerProcess, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("{}/api/v1/webhooks/git", server.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    })
}

#[test]
fn webhook_triggers_a_fetch_before_the_poll_would() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write("apps/web/fleet.yaml", FOLDER_FLEET_YAML);
    repo.write("apps/web/config.yaml", WEB_V1);
    let first = repo.commit("v1");
    let http = GitHttpServer::start(repo.repos_dir());
    let url = http.url_for(&repo);
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: git-webhook\nspec:\n  type: webhook\n  stringData:\n    github: hook-secret\n    gitlab: lab-token\n",
    );
    server.apply(&gitrepo("fleet", &url, "  pollInterval: 1h\n"));
    wait_commit(&server, "fleet", &first);

    repo.write(
        "apps/web/config.yaml",
        WEB_V1.replace("mode: v1", "mode: v2"),
    );
    let second = repo.commit("v2");
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "after": second,
        "repository": {"clone_url": url},
    })
    .to_string();
    let (status, text) = post_webhook(
        &server,
        &[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &github_signature("wrong", &body)),
        ],
        &body,
    );
    assert_eq!(status, 401, "a bad signature is refused: {text}");
    let (status, text) = post_webhook(
        &server,
        &[
            ("x-github-event", "push"),
            (
                "x-hub-signature-256",
                &github_signature("hook-secret", &body),
            ),
        ],
        &body,
    );
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("fleet"), "{text}");
    // The poll is an hour away: only the webhook can have fetched this.
    wait_commit(&server, "fleet", &second);

    // GitLab's push hook with its token does the same.
    repo.write(
        "apps/web/config.yaml",
        WEB_V1.replace("mode: v1", "mode: v3"),
    );
    let third = repo.commit("v3");
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "project": {"git_http_url": url},
    })
    .to_string();
    let (status, _) = post_webhook(
        &server,
        &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "nope")],
        &body,
    );
    assert_eq!(status, 401);
    let (status, text) = post_webhook(
        &server,
        &[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "lab-token"),
        ],
        &body,
    );
    assert_eq!(status, 202, "{text}");
    wait_commit(&server, "fleet", &third);
}

#[test]
fn failing_repo_backs_off_reports_why_keeps_its_last_bundles_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write("apps/web/fleet.yaml", FOLDER_FLEET_YAML);
    repo.write("apps/web/config.yaml", WEB_V1);
    repo.commit("v1");
    let release = repo.commit_on("release", "release branch");
    let daemon = GitDaemon::serve(&repo);
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&gitrepo(
        "fleet",
        &daemon.url_for(&repo),
        "  branch: release\n  pollInterval: 1s\n",
    ));
    wait_commit(&server, "fleet", &release);
    let served = digest(&server, "fleet-apps-web").unwrap();

    // The branch disappears: every poll fails, the error says why, and polling backs off.
    repo.git(&[
        "--git-dir",
        &repo.bare_path().display().to_string(),
        "branch",
        "-D",
        "release",
    ]);
    let failing = wait_for("three failed polls in a row", || {
        let repo = server.get("gitrepo", "fleet")?;
        (repo["status"]["failures"].as_u64()? >= 3).then_some(repo)
    });
    let error = failing["status"]["error"].as_str().unwrap();
    assert!(error.contains("release"), "{error}");
    assert_eq!(
        digest(&server, "fleet-apps-web").as_deref(),
        Some(served.as_str()),
        "the last good bundle keeps serving"
    );
    let next =
        humantime::parse_rfc3339_weak(failing["status"]["nextFetch"].as_str().unwrap()).unwrap();
    let fetched =
        humantime::parse_rfc3339_weak(failing["status"]["lastFetched"].as_str().unwrap()).unwrap();
    assert!(
        next.duration_since(fetched).unwrap().as_secs() >= 2,
        "after 3 failures the next poll is backed off beyond the 1s interval"
    );

    // The branch comes back: the next poll succeeds and the failure count resets.
    let back = repo.commit_on("release", "release again");
    let recovered = wait_commit(&server, "fleet", &back);
    assert_eq!(recovered["status"]["failures"].as_u64().unwrap_or(0), 0);
    assert!(recovered["status"]["error"].is_null());
}

#[test]
fn credentials_come_from_a_secret_and_a_wrong_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write("apps/web/fleet.yaml", FOLDER_FLEET_YAML);
    repo.write("apps/web/config.yaml", WEB_V1);
    let first = repo.commit("v1");
    let http = GitHttpServer::start_with_basic_auth(repo.repos_dir(), "deploy", "s3cret-token");
    let url = http.url_for(&repo);
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let secret = |password: &str| {
        format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: git-creds\nspec:\n  type: basic-auth\n  stringData:\n    username: deploy\n    password: {password}\n"
        )
    };
    server.apply(&secret("wrong"));
    server.apply(&gitrepo(
        "fleet",
        &url,
        "  pollInterval: 1s\n  clientSecretName: git-creds\n",
    ));
    let failing = wait_for("the wrong password reported", || {
        let repo = server.get("gitrepo", "fleet")?;
        repo["status"]["error"].as_str().map(str::to_string)
    });
    assert!(
        !failing.contains("wrong"),
        "no secret in the status: {failing}"
    );
    // Values never come back from the API.
    let shown = server.get("secret", "git-creds").unwrap();
    assert!(!shown.to_string().contains("wrong"), "{shown}");
    assert_eq!(
        shown["status"]["keys"],
        serde_json::json!(["password", "username"])
    );

    server.apply(&secret("s3cret-token"));
    wait_commit(&server, "fleet", &first);
    assert!(digest(&server, "fleet-apps-web").is_some());
}

const FLEET_YAML: &str = "defaultNamespace: shop
targetCustomizations:
  - name: prod
    clusterSelector:
      matchLabels: {env: prod}
    yaml:
      overlays: [prod]
  - name: lab
    clusterSelector:
      matchLabels: {env: lab}
    doNotDeploy: true
";

#[test]
fn fleet_yaml_target_customizations_send_each_cluster_its_variant() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write("apps/shop/fleet.yaml", FLEET_YAML);
    repo.write(
        "apps/shop/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shop\ndata:\n  tier: base\n",
    );
    repo.write(
        "apps/shop/overlays/prod/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shop-prod-extra\ndata:\n  tier: prod\n",
    );
    let first = repo.commit("shop");
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let prod = AgentProcess::start(&server, &token, "prod-1", "env=prod", dir.path());
    let dev = AgentProcess::start(&server, &token, "dev-1", "env=dev", dir.path());
    let lab = AgentProcess::start(&server, &token, "lab-1", "env=lab", dir.path());
    server.apply(&gitrepo("fleet", &repo.file_url(), "  pollInterval: 1s\n"));
    wait_commit(&server, "fleet", &first);
    server.wait_bundle_ready("fleet-apps-shop", 2);
    prod.wait_objects("the prod overlay", |o| {
        o == ["ConfigMap/shop", "ConfigMap/shop-prod-extra"]
    });
    dev.wait_objects("the base only", |o| o == ["ConfigMap/shop"]);
    assert!(lab.objects().is_empty(), "doNotDeploy: {:?}", lab.objects());
}

/// What the agent does with a desired bundle before applying it (without its ownership stamp).
fn agent_view(server: &ServerProcess, token: &str, name: &str, labels: &str) -> Vec<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = flotilla_agent::client::ServerClient::new(&server.url).unwrap();
        let labels: BTreeMap<String, String> = labels
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let registered = client
            .register(&flotilla_api::agent::RegisterRequest {
                token: token.to_string(),
                name: name.to_string(),
                client_id: format!("{name}-id"),
                labels,
                facts: Default::default(),
            })
            .await
            .unwrap();
        let reply = client
            .sync(
                &registered.credential,
                &flotilla_api::agent::SyncRequest {
                    full: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .expect("a desired set");
        let bundles = reply.bundles.expect("the full desired set");
        assert_eq!(bundles.len(), 1, "{bundles:?}");
        let bytes = client
            .content(&registered.credential, &bundles[0].digest)
            .await
            .unwrap();
        let manifests: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        flotilla_core::customize::customize(&manifests, &bundles[0].options, &|a, k| {
            !flotilla_core::customize::is_cluster_scoped(a, k)
        })
        .unwrap()
    })
}

#[test]
fn render_prints_exactly_what_an_agent_with_those_labels_receives() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write("apps/shop/fleet.yaml", FLEET_YAML);
    repo.write(
        "apps/shop/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shop\ndata:\n  tier: base\n  where: ${cluster.labels.region}\n",
    );
    repo.write(
        "apps/shop/overlays/prod/config_patch.yaml",
        "data:\n  tier: prod\n",
    );
    let first = repo.commit("shop");
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    // The GitRepo's own target customization (extra labels) is part of what agents receive.
    let document = format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: GitRepo\nmetadata:\n  name: fleet\nspec:\n  repo: {}\n  paths: [apps]\n  pollInterval: 1h\n  targets:\n    - clusterSelector: {{}}\n      customization:\n        labels: {{team: shop}}\n",
        repo.file_url()
    );
    server.apply(&document);
    let gitrepo_file = dir.path().join("gitrepo.yaml");
    std::fs::write(&gitrepo_file, &document).unwrap();
    wait_commit(&server, "fleet", &first);
    for (name, labels) in [("p-1", "env=prod,region=eu"), ("d-1", "env=dev,region=us")] {
        let received = agent_view(&server, &token, name, labels);
        assert_eq!(received[0]["metadata"]["labels"]["team"], "shop");
        let output = Command::new(BIN)
            .args([
                "render",
                &repo.work_dir().join("apps/shop").display().to_string(),
            ])
            .args(["--cluster-name", name, "--labels", labels, "-o", "json"])
            .arg("--gitrepo")
            .arg(&gitrepo_file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rendered: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(rendered, received, "cluster {name} ({labels})");
    }
    // The prod overlay's patch is what differs.
    let prod = agent_view(&server, &token, "p-2", "env=prod,region=eu");
    assert_eq!(prod[0]["data"]["tier"], "prod");
    assert_eq!(prod[0]["data"]["where"], "eu");
    assert_eq!(prod[0]["metadata"]["namespace"], "shop");
}

#[test]
fn bad_input_in_a_folder_is_reported_and_the_last_good_bundle_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write("apps/web/fleet.yaml", FOLDER_FLEET_YAML);
    repo.write("apps/web/config.yaml", WEB_V1);
    repo.write("apps/api/fleet.yaml", FOLDER_FLEET_YAML);
    repo.write(
        "apps/api/config.yaml",
        WEB_V1.replace("name: web", "name: api"),
    );
    let first = repo.commit("v1");
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&gitrepo("fleet", &repo.file_url(), "  pollInterval: 1s\n"));
    wait_commit(&server, "fleet", &first);
    let web = digest(&server, "fleet-apps-web").unwrap();

    for (file, contents, expected) in [
        (
            "apps/web/broken.yaml",
            "kind: [unclosed\n",
            "apps/web/broken.yaml",
        ),
        (
            "apps/web/kindless.yaml",
            "apiVersion: v1\nmetadata:\n  name: x\n",
            "kind",
        ),
    ] {
        repo.write(file, contents);
        repo.write(
            "apps/api/config.yaml",
            WEB_V1
                .replace("name: web", "name: api")
                .replace("v1\n  cluster", &format!("{file}\n  cluster")),
        );
        let commit = repo.commit("bad input");
        let status = wait_commit(&server, "fleet", &commit);
        let bundles = status["status"]["bundles"].as_array().unwrap();
        let web_entry = bundles
            .iter()
            .find(|b| b["path"] == "apps/web")
            .expect("apps/web listed");
        let error = web_entry["error"].as_str().expect("an error on the folder");
        assert!(error.contains(expected), "{error}");
        assert!(status["status"]["error"].as_str().is_some());
        assert_eq!(
            digest(&server, "fleet-apps-web").as_deref(),
            Some(web.as_str())
        );
        // The other folder still moves on.
        let api = bundles.iter().find(|b| b["path"] == "apps/api").unwrap();
        assert!(api["error"].is_null(), "{api}");
        repo.remove(file);
    }

    // An unreachable repository is an error on the GitRepo, not a crash.
    server.apply(&gitrepo(
        "nowhere",
        "git://127.0.0.1:1/nothing.git",
        "  pollInterval: 1s\n",
    ));
    let error = wait_for("the unreachable repo reported", || {
        server.get("gitrepo", "nowhere")?["status"]["error"]
            .as_str()
            .map(str::to_string)
    });
    assert!(error.contains("git"), "{error}");
    assert!(status_commit(&server, "nowhere").is_none());
}

/// A kustomization in `repo` whose base climbs out of the render's folder and comes down into
/// `target` (an absolute path), however deep the render's folder is.
fn escaping_base(target: &std::path::Path) -> String {
    format!(
        "resources:\n- {}{}\n",
        "../".repeat(40),
        target.display().to_string().trim_start_matches('/')
    )
}

#[test]
fn renders_see_only_their_repository_and_a_failing_first_render_names_its_bundle() {
    let dir = tempfile::tempdir().unwrap();
    // Another repository's private folder, on the same disk as the server.
    let private = GitRepoFixture::new();
    private.write("secret/kustomization.yaml", "resources: [cm.yaml]\n");
    private.write(
        "secret/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: private\ndata:\n  token: hunter2\n",
    );
    private.commit("private");

    let repo = GitRepoFixture::new();
    // A base reaching out of the repository into the other one's files.
    repo.write(
        "apps/steal/kustomization.yaml",
        escaping_base(&private.work_dir().join("secret")),
    );
    repo.write("apps/steal/fleet.yaml", "defaultNamespace: apps\n");
    // A raw folder with a link out of the repository, and one with a link inside it.
    repo.write("apps/leak/fleet.yaml", "defaultNamespace: apps\n");
    std::os::unix::fs::symlink(
        private.work_dir().join("secret/cm.yaml"),
        repo.work_dir().join("apps/leak/cm.yaml"),
    )
    .unwrap();
    repo.write("apps/ok/fleet.yaml", "name: fine\ndefaultNamespace: apps\n");
    repo.write("apps/ok/real.yaml", WEB_V1);
    repo.write(
        "shared/other.yaml",
        WEB_V1.replace("name: web", "name: shared"),
    );
    std::os::unix::fs::symlink(
        "../../shared/other.yaml",
        repo.work_dir().join("apps/ok/other.yaml"),
    )
    .unwrap();
    // A folder that claims a name and never renders.
    repo.write("apps/named/fleet.yaml", "name: storefront\n");
    repo.write("apps/named/broken.yaml", "kind: [unclosed\n");
    let commit = repo.commit("hostile");

    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&gitrepo("evil", &repo.file_url(), ""));
    let status = wait_commit(&server, "evil", &commit);
    let bundles = status["status"]["bundles"].as_array().unwrap();
    let entry = |path: &str| {
        bundles
            .iter()
            .find(|b| b["path"] == path)
            .unwrap_or_else(|| panic!("{path} listed in {bundles:?}"))
            .clone()
    };

    let steal = entry("apps/steal");
    let error = steal["error"].as_str().expect("the escaping base fails");
    assert!(error.contains("apps/steal/kustomization.yaml"), "{error}");
    assert!(error.contains("leaves the repository"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert_eq!(steal["name"], "evil-apps-steal", "{steal}");
    assert!(steal.get("digest").is_none(), "{steal}");
    assert!(server.get("bundle", "evil-apps-steal").is_none());

    let leak = entry("apps/leak");
    let error = leak["error"].as_str().expect("the outside link fails");
    assert!(error.contains("apps/leak/cm.yaml"), "{error}");
    assert!(error.contains("symbolic link"), "{error}");
    assert!(server.get("bundle", "evil-apps-leak").is_none());

    let named = entry("apps/named");
    assert_eq!(named["name"], "storefront", "{named}");
    assert!(
        named["error"].as_str().unwrap().contains("broken.yaml"),
        "{named}"
    );

    // A link inside the repository is followed.
    let ok = entry("apps/ok");
    assert_eq!(ok["name"], "fine", "{ok}");
    assert!(ok["error"].is_null(), "{ok}");
    assert!(ok["digest"].as_str().is_some_and(|d| !d.is_empty()), "{ok}");
    let bundle = server
        .get("bundle", "fine")
        .expect("the bundle exists")
        .to_string();
    assert!(bundle.contains("\"shared\""), "{bundle}");

    // Every bundle of the repository, and nothing else, came from its own files.
    for bundle in server.list("bundles", &[]) {
        assert!(
            !bundle.to_string().contains("hunter2"),
            "another repository's content was rendered: {bundle}"
        );
    }
    // Scratch folders are gone once the render is done; the cache keeps no work tree.
    let git_dir = server.data_dir.join("git");
    let scratch: Vec<_> = std::fs::read_dir(git_dir.join("scratch"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(scratch.is_empty(), "{scratch:?}");
    for cache in std::fs::read_dir(git_dir.join("repos")).unwrap().flatten() {
        assert!(
            cache.path().join("HEAD").exists(),
            "{:?} is a bare repository",
            cache.path()
        );
        assert!(
            !cache.path().join("apps").exists(),
            "{:?} has a work tree",
            cache.path()
        );
    }
}

/// A server started in `cwd` with `--data-dir ./data` (the default is relative too).
struct RelativeServer {
    child: std::process::Child,
    url: String,
    token: String,
}

impl Drop for RelativeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelativeServer {
    fn start(cwd: &std::path::Path) -> RelativeServer {
        let port = support::free_port();
        let log = std::fs::File::create(cwd.join("server.log")).unwrap();
        // Kustomize folders render with the testkit's pinned kubectl, not one on PATH
        // (FLOTILLA_KUSTOMIZE is split at whitespace: the cache path has none).
        let kustomize = flotilla_testkit::kustomize_argv()
            .unwrap_or_else(|error| panic!("this test needs a real kubectl: {error:#}"))
            .join(" ");
        let child = Command::new(BIN)
            .current_dir(cwd)
            .env("FLOTILLA_KUSTOMIZE", kustomize)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", "./data"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let token_file = cwd.join("data/admin-token");
        let mut server = RelativeServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            token: String::new(),
        };
        server.token = wait_for("the admin token file", || {
            std::fs::read_to_string(&token_file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        wait_for("the server to answer", || {
            server
                .cli(&["get", "bundles"])
                .status
                .success()
                .then_some(())
        });
        server
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("FLOTILLA_SERVER", &self.url)
            .env("FLOTILLA_TOKEN", &self.token)
            .output()
            .unwrap()
    }

    fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let output = self.cli(&["get", kind, name, "-o", "json"]);
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).unwrap())
    }
}

#[test]
fn a_server_with_a_relative_data_dir_renders_kustomize_folders() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write(
        "apps/web/kustomization.yaml",
        "resources: [config.yaml]\nnamePrefix: k-\n",
    );
    repo.write("apps/web/config.yaml", WEB_V1);
    repo.write("apps/web/fleet.yaml", FOLDER_FLEET_YAML);
    let commit = repo.commit("kustomize");
    let server = RelativeServer::start(dir.path());
    let file = dir.path().join("gitrepo.yaml");
    std::fs::write(&file, gitrepo("rel", &repo.file_url(), "")).unwrap();
    let applied = server.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(applied.status.success(), "{applied:?}");
    let status = wait_for("the GitRepo rendered", || {
        let repo = server.get("gitrepo", "rel")?;
        (repo["status"]["commit"] == commit.as_str()).then_some(repo)
    });
    let bundles = status["status"]["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 1, "{status}");
    assert!(bundles[0]["error"].is_null(), "{status}");
    let bundle = server
        .get("bundle", "rel-apps-web")
        .expect("the bundle exists");
    assert!(
        bundle.to_string().contains("k-web"),
        "kustomize's namePrefix applied: {bundle}"
    );
}

#[test]
fn folders_whose_depends_on_close_a_cycle_in_one_commit_fail_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepoFixture::new();
    repo.write(
        "apps/web/fleet.yaml",
        "defaultNamespace: apps\ndependsOn:\n  - name: fleet-apps-api\n",
    );
    repo.write("apps/web/config.yaml", WEB_V1);
    repo.write(
        "apps/api/fleet.yaml",
        "defaultNamespace: apps\ndependsOn:\n  - name: fleet-apps-web\n",
    );
    repo.write(
        "apps/api/config.yaml",
        WEB_V1.replace("name: web", "name: api"),
    );
    repo.write("apps/db/fleet.yaml", FOLDER_FLEET_YAML);
    repo.write(
        "apps/db/config.yaml",
        WEB_V1.replace("name: web", "name: db"),
    );
    let commit = repo.commit("a cycle");
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&gitrepo("fleet", &repo.file_url(), "  pollInterval: 1s\n"));
    let status = wait_commit(&server, "fleet", &commit);
    let bundles = status["status"]["bundles"].as_array().unwrap();
    for path in ["apps/web", "apps/api"] {
        let entry = bundles.iter().find(|b| b["path"] == path).expect(path);
        let error = entry["error"].as_str().expect("an error on the folder");
        assert!(error.contains("cycle"), "{error}");
        assert!(
            error.contains("fleet-apps-web") && error.contains("fleet-apps-api"),
            "{error}"
        );
    }
    // Neither was stored (nothing of them ever rendered); the folder outside it was.
    assert!(server.get("bundle", "fleet-apps-web").is_none());
    assert!(server.get("bundle", "fleet-apps-api").is_none());
    assert!(digest(&server, "fleet-apps-db").is_some());
}
