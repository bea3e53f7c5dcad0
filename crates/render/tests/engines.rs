//! Kustomize and Helm folders, rendered with the real engines (the testkit's pinned kubectl and
//! its kustomize, helm v4). These tests fail, never skip, when an engine cannot be had.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flotilla_render::{Tools, render_folder};
use serde_json::{Value, json};
use support::{Checkout, configmap, find, helm, ids, kubectl, kustomize_argv};

fn helm_tools() -> Tools {
    Tools::none().with_helm(helm())
}

/// Parsed documents of a YAML stream, ordered by kind and name, for comparisons.
fn documents(text: &str) -> Vec<Value> {
    let mut values: Vec<Value> = serde_saphyr::from_multiple(text).expect("engine output is YAML");
    values.retain(|value| !value.is_null());
    values.sort_by_key(|value| {
        (
            value["kind"].to_string(),
            value["metadata"]["name"].to_string(),
        )
    });
    values
}

fn run_ok(command: &mut Command) -> String {
    let output = flotilla_testkit::run_with_deadline(command, Duration::from_secs(120))
        .expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:1
";

fn kustomize_checkout() -> Checkout {
    let checkout = Checkout::new();
    checkout
        .write(
            "app/kustomization.yaml",
            "namePrefix: shop-\nlabels:\n- pairs: {team: shop}\n  includeSelectors: false\nresources:\n- base\n",
        )
        .write(
            "app/base/kustomization.yaml",
            "resources:\n- deploy.yaml\nconfigMapGenerator:\n- name: settings\n  literals: [mode=fast]\n",
        )
        .write("app/base/deploy.yaml", DEPLOYMENT)
        // Loose YAML next to a kustomization is not deployed on its own (Fleet's Kustomize style).
        .write("app/unused.yaml", &configmap("unused"))
        .write(
            "app/overlays/prod/kustomization.yaml",
            "resources: [../../base]\nnamePrefix: shop-\nnameSuffix: -prod\n",
        );
    checkout
}

#[test]
fn kustomize_folder_renders_exactly_what_kubectl_kustomize_prints() {
    let argv = kustomize_argv();
    let checkout = kustomize_checkout();
    let tools = Tools::none().with_kustomize(argv);
    let rendered = render_folder(checkout.root(), "app", &tools).unwrap();
    let expected = run_ok(
        Command::new(kubectl())
            .arg("kustomize")
            .arg(checkout.root().join("app")),
    );
    let mut ours = rendered.resources.clone();
    ours.sort_by_key(|value| {
        (
            value["kind"].to_string(),
            value["metadata"]["name"].to_string(),
        )
    });
    assert_eq!(ours, documents(&expected));
    let ids = ids(&rendered.resources);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], "Deployment/-/shop-web");
    // The generated ConfigMap carries kustomize's content hash.
    assert!(ids[1].starts_with("ConfigMap/-/shop-settings-"), "{ids:?}");
}

#[test]
fn kustomize_dir_of_a_customization_renders_its_own_manifests() {
    let checkout = kustomize_checkout();
    checkout.write(
        "app/fleet.yaml",
        "targetCustomizations:\n- name: prod\n  clusterSelector: {matchLabels: {env: prod}}\n  kustomize: {dir: overlays/prod}\n",
    );
    let tools = Tools::none().with_kustomize(kustomize_argv());
    let rendered = render_folder(checkout.root(), "app", &tools).unwrap();
    let prod = rendered.customizations[0]
        .resources
        .as_ref()
        .expect("prod renders differently");
    let expected = run_ok(
        Command::new(kubectl())
            .arg("kustomize")
            .arg(checkout.root().join("app/overlays/prod")),
    );
    let mut ours = prod.clone();
    ours.sort_by_key(|value| {
        (
            value["kind"].to_string(),
            value["metadata"]["name"].to_string(),
        )
    });
    assert_eq!(ours, documents(&expected));
    assert!(
        ids(prod).contains(&"Deployment/-/shop-web-prod".to_string()),
        "{:?}",
        ids(prod)
    );
}

#[test]
fn kustomize_errors_carry_the_engine_message() {
    let checkout = Checkout::new();
    checkout.write("k/kustomization.yaml", "resources: [missing.yaml]\n");
    let tools = Tools::none().with_kustomize(kustomize_argv());
    let error = render_folder(checkout.root(), "k", &tools).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("k"));
    assert!(error.message.contains("failed"), "{error}");
    assert!(error.message.contains("missing.yaml"), "{error}");
}

/// A chart whose ConfigMap shows the values, release and namespace it was rendered with.
fn write_chart(checkout: &Checkout, dir: &str, name: &str) {
    checkout
        .write(
            &format!("{dir}/Chart.yaml"),
            &format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n"),
        )
        .write(
            &format!("{dir}/values.yaml"),
            "greeting: hello\nreplicas: 1\ncluster: none\n",
        )
        .write(
            &format!("{dir}/templates/configmap.yaml"),
            "apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
  namespace: {{ .Release.Namespace }}
data:
  greeting: {{ .Values.greeting | quote }}
  cluster: {{ .Values.cluster | quote }}
",
        )
        .write(
            &format!("{dir}/templates/deployment.yaml"),
            "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:1
",
        )
        .write(
            &format!("{dir}/templates/tests/test-pod.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-test\n  annotations:\n    helm.sh/hook: test\nspec:\n  containers: []\n",
        )
        .write(
            &format!("{dir}/crds/thing.yaml"),
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: things.example.com\nspec:\n  group: example.com\n  names: {kind: Thing, plural: things}\n  scope: Namespaced\n  versions: []\n",
        );
}

#[test]
fn helm_local_chart_renders_with_values_values_files_and_customization_values() {
    let checkout = Checkout::new();
    write_chart(&checkout, "apps/web/chart", "web");
    checkout
        .write(
            "apps/web/fleet.yaml",
            "defaultNamespace: shop
helm:
  chart: ./chart
  values:
    greeting: from-values
    cluster: ${ .ClusterName }
  valuesFiles: [extra-values.yaml]
targetCustomizations:
- name: prod
  clusterSelector: {matchLabels: {env: prod}}
  helm:
    values:
      replicas: 5
- name: same
  clusterGroup: staging
  helm:
    values:
      greeting: from-file
",
        )
        .write("apps/web/extra-values.yaml", "greeting: from-file\n");
    let rendered = render_folder(checkout.root(), "apps/web", &helm_tools()).unwrap();
    // CRDs are included (Fleet installs them), chart tests are not; the release is the folder's
    // last segment and the namespace the defaultNamespace.
    assert_eq!(
        ids(&rendered.resources),
        [
            "CustomResourceDefinition/-/things.example.com",
            "Deployment/-/web",
            "ConfigMap/shop/web-settings",
        ]
    );
    let settings = find(&rendered.resources, "ConfigMap", "web-settings");
    // Fleet merges valuesFiles over values.
    assert_eq!(settings["data"]["greeting"], "from-file");
    // Fleet's cluster templating became a flotilla placeholder the agent fills in.
    assert_eq!(settings["data"]["cluster"], "${cluster.name}");
    assert_eq!(
        find(&rendered.resources, "Deployment", "web")["spec"]["replicas"],
        1
    );

    let [prod, same] = rendered.customizations.as_slice() else {
        panic!("two customizations expected");
    };
    let prod_resources = prod
        .resources
        .as_ref()
        .expect("prod's values change the rendering");
    // Only the overridden value differs.
    let mut expected = rendered.resources.clone();
    let deployment = expected
        .iter_mut()
        .find(|value| value["kind"] == "Deployment")
        .unwrap();
    deployment["spec"]["replicas"] = json!(5);
    assert_eq!(prod_resources, &expected);
    // A customization whose values change nothing renders the same: no resources of its own.
    assert_eq!(same.resources, None);
}

#[test]
fn folder_with_chart_yaml_and_no_fleet_yaml_is_a_chart() {
    let checkout = Checkout::new();
    write_chart(&checkout, "web", "web");
    let rendered = render_folder(checkout.root(), "web", &helm_tools()).unwrap();
    assert_eq!(
        ids(&rendered.resources),
        [
            "CustomResourceDefinition/-/things.example.com",
            "Deployment/-/web",
            "ConfigMap/default/web-settings",
        ]
    );
    assert_eq!(
        find(&rendered.resources, "ConfigMap", "web-settings")["data"]["greeting"],
        "hello"
    );
}

#[test]
fn helm_release_name_and_forced_namespace_apply() {
    let checkout = Checkout::new();
    write_chart(&checkout, "app/chart", "web");
    checkout.write(
        "app/fleet.yaml",
        "namespace: pinned\nhelm:\n  chart: chart\n  releaseName: custom\n",
    );
    // The chart has a CRD: a forced namespace refuses cluster-scoped objects, as in Fleet.
    let error = render_folder(checkout.root(), "app", &helm_tools()).unwrap_err();
    assert!(
        error
            .message
            .contains("cluster-scoped CustomResourceDefinition"),
        "{error}"
    );
    std::fs::remove_dir_all(checkout.root().join("app/chart/crds")).unwrap();
    let rendered = render_folder(checkout.root(), "app", &helm_tools()).unwrap();
    assert_eq!(
        ids(&rendered.resources),
        [
            "Deployment/pinned/custom",
            "ConfigMap/pinned/custom-settings"
        ]
    );
}

#[test]
fn unsupported_fleet_values_templating_is_an_error_naming_it() {
    let checkout = Checkout::new();
    write_chart(&checkout, "app/chart", "web");
    checkout.write(
        "app/fleet.yaml",
        "helm:\n  chart: ./chart\n  values:\n    greeting: ${ .ClusterValues.greeting | upper }\n",
    );
    let error = render_folder(checkout.root(), "app", &helm_tools()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("app/fleet.yaml"));
    assert!(error.message.contains("helm.values.greeting"), "{error}");
    assert!(
        error.message.contains(".ClusterValues.greeting | upper"),
        "{error}"
    );
    // disablePreProcess passes the text through, as Fleet does.
    checkout.write(
        "app/fleet.yaml",
        "helm:\n  chart: ./chart\n  disablePreProcess: true\n  values:\n    greeting: ${ .ClusterValues.greeting | upper }\n",
    );
    let rendered = render_folder(checkout.root(), "app", &helm_tools()).unwrap();
    assert_eq!(
        find(&rendered.resources, "ConfigMap", "app-settings")["data"]["greeting"],
        "${ .ClusterValues.greeting | upper }"
    );
}

#[test]
fn helm_errors_carry_helms_message() {
    let checkout = Checkout::new();
    checkout
        .write(
            "bad/Chart.yaml",
            "apiVersion: v2\nname: bad\nversion: 0.1.0\n",
        )
        .write("bad/templates/cm.yaml", "{{ .Values.nope.deeper }}\n");
    let error = render_folder(checkout.root(), "bad", &helm_tools()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("bad"));
    assert!(
        error.message.contains("helm template of chart bad failed"),
        "{error}"
    );
    assert!(error.message.contains("nil pointer"), "{error}");
}

/// `helm package` + `helm repo index`: a chart repository in `repo_dir` served at `url`.
fn chart_repository(charts: &Checkout, repo_dir: &Path, url: &str) {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo_dir).unwrap();
    run_ok(
        flotilla_testkit::helm_command(home.path())
            .unwrap()
            .arg("package")
            .arg(charts.root().join("web"))
            .arg("--destination")
            .arg(repo_dir),
    );
    run_ok(
        flotilla_testkit::helm_command(home.path())
            .unwrap()
            .args(["repo", "index"])
            .arg(repo_dir)
            .arg("--url")
            .arg(url),
    );
}

#[test]
fn helm_chart_from_a_chart_repository_renders_when_its_host_is_allowed() {
    helm();
    let charts = Checkout::new();
    write_chart(&charts, "web", "web");
    let served = tempfile::tempdir().unwrap();
    let server = flotilla_testkit::HttpFileServer::start(served.path());
    let url = format!("{}/charts", server.url());
    chart_repository(&charts, &served.path().join("charts"), &url);

    let checkout = Checkout::new();
    checkout.write(
        "apps/web/fleet.yaml",
        &format!(
            "helm:\n  repo: {url}\n  chart: web\n  version: 0.1.0\n  values:\n    greeting: remote\n\
             targetCustomizations:\n- name: old\n  clusterName: legacy\n  helm:\n    version: \"0.1.0\"\n"
        ),
    );
    let tools = helm_tools().with_allowed_hosts(["127.0.0.1"]);
    let rendered = render_folder(checkout.root(), "apps/web", &tools).unwrap();
    assert_eq!(
        ids(&rendered.resources),
        [
            "CustomResourceDefinition/-/things.example.com",
            "Deployment/-/web",
            "ConfigMap/default/web-settings",
        ]
    );
    assert_eq!(
        find(&rendered.resources, "ConfigMap", "web-settings")["data"]["greeting"],
        "remote"
    );
    // The same version again renders the same: no resources of its own.
    assert_eq!(rendered.customizations[0].resources, None);
    assert!(
        server.requests() >= 2,
        "helm fetched the index and the chart"
    );

    // A version the repository does not have is helm's error, naming the chart.
    checkout.write(
        "apps/web/fleet.yaml",
        &format!("helm:\n  repo: {url}\n  chart: web\n  version: 9.9.9\n"),
    );
    let error = render_folder(checkout.root(), "apps/web", &tools).unwrap_err();
    assert!(error.message.contains("web from"), "{error}");
    assert!(error.message.contains("9.9.9"), "{error}");
}

#[test]
fn helm_chart_output_goes_through_a_kustomization_as_in_fleet() {
    let checkout = Checkout::new();
    write_chart(&checkout, "app/chart", "web");
    std::fs::remove_dir_all(checkout.root().join("app/chart/crds")).unwrap();
    checkout
        .write("app/fleet.yaml", "helm:\n  chart: ./chart\n")
        .write(
            "app/kustomization.yaml",
            "resources: [extra.yaml]\nnamePrefix: k-\n",
        )
        .write("app/extra.yaml", &configmap("extra"));
    let tools = helm_tools().with_kustomize(kustomize_argv());
    let rendered = render_folder(checkout.root(), "app", &tools).unwrap();
    assert_eq!(
        ids(&rendered.resources),
        [
            "Deployment/-/k-app",
            "ConfigMap/-/k-extra",
            "ConfigMap/default/k-app-settings"
        ]
    );
    // The checkout is untouched: the kustomization was rewritten in a copy.
    let kustomization =
        std::fs::read_to_string(checkout.root().join("app/kustomization.yaml")).unwrap();
    assert_eq!(kustomization, "resources: [extra.yaml]\nnamePrefix: k-\n");
}

#[test]
fn helm_chart_and_values_files_may_live_elsewhere_in_the_repository() {
    let checkout = Checkout::new();
    write_chart(&checkout, "shared/chart", "web");
    checkout
        .write("shared/prod-values.yaml", "greeting: shared\n")
        .write(
            "apps/web/fleet.yaml",
            "helm:\n  chart: ../../shared/chart\n  valuesFiles: [../../shared/prod-values.yaml]\n",
        );
    let rendered = render_folder(checkout.root(), "apps/web", &helm_tools()).unwrap();
    assert_eq!(
        find(&rendered.resources, "ConfigMap", "web-settings")["data"]["greeting"],
        "shared"
    );
}
