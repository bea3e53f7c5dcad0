//! Raw YAML folders, fleet.yaml options and overlays: rendering without any engine.

mod support;

use flotilla_render::{Tools, render_folder};
use serde_json::json;
use support::{Checkout, configmap, find, ids};

#[test]
fn raw_folder_renders_every_manifest_of_nested_folders_and_skips_non_manifests() {
    let checkout = Checkout::new();
    checkout
        .write(
            "a.yaml",
            &format!(
                "{}---\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n",
                configmap("alpha")
            ),
        )
        .write(
            "sub/deep/deploy.yml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
        )
        .write("sub/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n")
        .write(
            "crd.json",
            r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "things.example.com"}}"#,
        )
        .write(
            "list.yaml",
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s1\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s2\n",
        )
        // Not manifests: a values file, a JSON config, prose, a hidden folder.
        .write("values.yaml", "replicas: 3\nimage: web:1\n")
        .write("config/settings.json", r#"{"feature": true}"#)
        .write("README.md", "# docs\n")
        .write(".github/workflows/ci.yml", &configmap("hidden"))
        // A nested bundle and a chart below the folder belong to other renderings.
        .write("nested/fleet.yaml", "defaultNamespace: other\n")
        .write("nested/cm.yaml", &configmap("nested"))
        .write("chart/Chart.yaml", "apiVersion: v2\nname: chart\nversion: 0.1.0\n")
        .write("chart/templates/cm.yaml", "{{ .Values.x }}\n");
    let rendered = render_folder(checkout.root(), ".", &Tools::none()).unwrap();
    assert_eq!(rendered.folder, ".");
    assert_eq!(
        ids(&rendered.resources),
        [
            "Namespace/-/shop",
            "CustomResourceDefinition/-/things.example.com",
            "Deployment/-/web",
            "ConfigMap/-/alpha",
            "Secret/-/s1",
            "Secret/-/s2",
            "Service/shop/web",
        ]
    );
    assert!(rendered.customizations.is_empty());
}

#[test]
fn document_missing_kind_is_an_error_naming_the_file_and_the_document() {
    let checkout = Checkout::new();
    checkout.write(
        "apps/web.yaml",
        &format!(
            "{}---\napiVersion: v1\nmetadata:\n  name: broken\n",
            configmap("fine")
        ),
    );
    let error = render_folder(checkout.root(), "apps", &Tools::none()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("apps/web.yaml"), "{error}");
    assert!(error.message.starts_with("document 2"), "{error}");
    assert!(error.message.ends_with("has no kind"), "{error}");
    assert!(
        error.to_string().starts_with("apps/web.yaml: document 2"),
        "{error}"
    );
}

#[test]
fn document_missing_name_or_api_version_is_an_error() {
    for (text, missing) in [
        (
            "kind: ConfigMap\nmetadata:\n  name: x\n",
            "has no apiVersion",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
            "has no metadata.name",
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata:\n    name: p\n",
            "item 1 has no apiVersion",
        ),
    ] {
        let checkout = Checkout::new();
        checkout.write("x.yaml", text);
        let error = render_folder(checkout.root(), ".", &Tools::none()).unwrap_err();
        assert_eq!(error.file.as_deref(), Some("x.yaml"));
        assert!(
            error.message.ends_with(missing),
            "{error} (wanted {missing})"
        );
    }
}

#[test]
fn invalid_yaml_is_an_error_naming_the_file_and_the_line() {
    let checkout = Checkout::new();
    checkout.write(
        "apps/bad.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: [name: x\n",
            configmap("ok")
        ),
    );
    let error = render_folder(checkout.root(), "apps", &Tools::none()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("apps/bad.yaml"));
    assert!(
        error.message.starts_with("invalid YAML at line 10"),
        "{error}"
    );
    let checkout = Checkout::new();
    checkout.write("bad.json", "{\"apiVersion\": \"v1\",\n \"kind\": }");
    let error = render_folder(checkout.root(), ".", &Tools::none()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("bad.json"));
    assert!(
        error.message.starts_with("invalid JSON at line 2"),
        "{error}"
    );
}

#[test]
fn duplicate_objects_are_an_error_naming_both_files() {
    let checkout = Checkout::new();
    checkout
        .write("a.yaml", &configmap("same"))
        .write("b/c.yaml", &configmap("same"));
    let error = render_folder(checkout.root(), ".", &Tools::none()).unwrap_err();
    assert!(error.message.contains("defined twice"), "{error}");
    assert!(error.message.contains("a.yaml document 1"), "{error}");
    assert!(error.message.contains("b/c.yaml document 1"), "{error}");
}

#[test]
fn same_input_renders_identical_output_whatever_the_formatting() {
    let first = Checkout::new();
    first.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {x: '1', a: '2'}\ndata: {k: v}\n---\n",
    );
    first.write("more.yaml", &configmap("b"));
    // The same objects, other key order, quoting, file layout and document order.
    let second = Checkout::new();
    second.write(
        "all.yaml",
        "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: b\ndata:\n  key: \"value\"\n---\n\
         data:\n  k: v\nmetadata:\n  labels:\n    a: \"2\"\n    x: \"1\"\n  name: a\nkind: ConfigMap\napiVersion: v1\n",
    );
    let render = |checkout: &Checkout| render_folder(checkout.root(), ".", &Tools::none()).unwrap();
    let (a, again, b) = (render(&first), render(&first), render(&second));
    assert_eq!(a, again);
    assert_eq!(a.resources, b.resources);
    let bytes =
        |resources: &[serde_json::Value]| flotilla_core::digest::canonical_content(resources);
    assert_eq!(bytes(&a.resources), bytes(&b.resources));
    assert_eq!(
        String::from_utf8(bytes(&a.resources)).unwrap(),
        r#"[{"apiVersion":"v1","data":{"k":"v"},"kind":"ConfigMap","metadata":{"labels":{"a":"2","x":"1"},"name":"a"}},{"apiVersion":"v1","data":{"key":"value"},"kind":"ConfigMap","metadata":{"name":"b"}}]"#
    );
}

#[test]
fn forced_namespace_is_set_on_every_object() {
    let checkout = Checkout::new();
    checkout
        .write("app/fleet.yaml", "namespace: shop\n")
        .write(
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: elsewhere\n---\n",
        )
        .write("app/cm2.yaml", &configmap("b"));
    let rendered = render_folder(checkout.root(), "app", &Tools::none()).unwrap();
    assert_eq!(
        ids(&rendered.resources),
        ["ConfigMap/shop/a", "ConfigMap/shop/b"]
    );
    // A forced namespace does not become a default one.
    assert_eq!(rendered.default_namespace, None);
}

#[test]
fn forced_namespace_with_a_cluster_scoped_object_is_an_error() {
    let checkout = Checkout::new();
    checkout.write("app/fleet.yaml", "namespace: shop\n").write(
        "app/rbac.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: reader\n",
    );
    let error = render_folder(checkout.root(), "app", &Tools::none()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("app/fleet.yaml"));
    assert!(
        error.message.starts_with(
            "namespace is forced to shop but the folder has cluster-scoped ClusterRole reader"
        ),
        "{error}"
    );
    assert!(error.message.contains("app/rbac.yaml"), "{error}");
}

#[test]
fn default_namespace_is_reported_and_not_written_into_manifests() {
    let checkout = Checkout::new();
    checkout
        .write("fleet.yaml", "defaultNamespace: shop\n")
        .write("cm.yaml", &configmap("a"));
    let rendered = render_folder(checkout.root(), "", &Tools::none()).unwrap();
    assert_eq!(rendered.default_namespace.as_deref(), Some("shop"));
    assert_eq!(ids(&rendered.resources), ["ConfigMap/-/a"]);
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  template:
    spec:
      containers:
      - name: web
        image: web:1
      - name: sidecar
        image: proxy:1
";

#[test]
fn overlays_patch_replace_and_add_files_for_their_customization_only() {
    let checkout = Checkout::new();
    checkout
        .write(
            "app/fleet.yaml",
            "targetCustomizations:
- name: prod
  clusterSelector:
    matchLabels: {env: prod}
  defaultNamespace: shop-prod
  yaml:
    overlays: [prod]
- name: dev
  clusterGroup: dev
- name: off
  clusterName: old-cluster
  doNotDeploy: true
  yaml:
    overlays: [prod]
",
        )
        .write("app/deployment.yaml", DEPLOYMENT)
        .write("app/svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: ClusterIP\n")
        .write(
            "app/overlays/prod/deployment_patch.yaml",
            "spec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: web\n        image: web:2\n",
        )
        .write(
            "app/overlays/prod/svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: LoadBalancer\n",
        )
        .write("app/overlays/prod/extra.yaml", &configmap("prod-only"))
        .write("app/overlays/other/junk.yaml", &configmap("never"));
    let rendered = render_folder(checkout.root(), "app", &Tools::none()).unwrap();
    // The default rendering ignores overlays/.
    assert_eq!(
        ids(&rendered.resources),
        ["Deployment/-/web", "Service/-/web"]
    );
    assert_eq!(
        find(&rendered.resources, "Deployment", "web")["spec"]["replicas"],
        1
    );

    let [prod, dev, off] = rendered.customizations.as_slice() else {
        panic!(
            "three customizations expected: {:?}",
            rendered.customizations
        );
    };
    assert_eq!(prod.name.as_deref(), Some("prod"));
    assert_eq!(prod.default_namespace.as_deref(), Some("shop-prod"));
    assert_eq!(
        prod.cluster_selector.as_ref().unwrap().match_labels["env"],
        "prod"
    );
    let prod_resources = prod
        .resources
        .as_ref()
        .expect("the prod overlay changes the rendering");
    assert_eq!(
        ids(prod_resources),
        ["Deployment/-/web", "ConfigMap/-/prod-only", "Service/-/web"]
    );
    let deployment = find(prod_resources, "Deployment", "web");
    assert_eq!(deployment["spec"]["replicas"], 3);
    // Containers merge by name, as in a strategic merge patch: the sidecar stays.
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "web:2"}, {"name": "sidecar", "image": "proxy:1"}])
    );
    assert_eq!(
        find(prod_resources, "Service", "web")["spec"]["type"],
        "LoadBalancer"
    );

    assert_eq!(dev.cluster_group.as_deref(), Some("dev"));
    assert_eq!(dev.resources, None, "no options: same as the default");
    assert_eq!(off.cluster_name.as_deref(), Some("old-cluster"));
    assert!(off.do_not_deploy);
    assert_eq!(off.resources, None);
}

#[test]
fn overlay_patch_without_its_base_file_is_an_error() {
    let checkout = Checkout::new();
    checkout
        .write(
            "fleet.yaml",
            "targetCustomizations:\n- name: x\n  clusterName: a\n  yaml: {overlays: [x]}\n",
        )
        .write("cm.yaml", &configmap("a"))
        .write("overlays/x/missing_patch.yaml", "data: {a: b}\n");
    let error = render_folder(checkout.root(), ".", &Tools::none()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("overlays/x/missing_patch.yaml"));
    assert!(error.message.contains("patches missing.yaml"), "{error}");
    assert!(
        error.message.starts_with("targetCustomizations[0] (x): "),
        "{error}"
    );
}

#[test]
fn overlay_json_patch_applies_operations() {
    let checkout = Checkout::new();
    checkout
        .write(
            "fleet.yaml",
            "targetCustomizations:\n- clusterName: a\n  yaml: {overlays: [x]}\n",
        )
        .write("deployment.yaml", DEPLOYMENT)
        .write(
            "overlays/x/deployment_patch.yaml",
            "- {op: replace, path: /spec/replicas, value: 7}\n- {op: remove, path: /spec/template/spec/containers/1}\n",
        );
    let rendered = render_folder(checkout.root(), ".", &Tools::none()).unwrap();
    let resources = rendered.customizations[0].resources.as_ref().unwrap();
    let deployment = find(resources, "Deployment", "web");
    assert_eq!(deployment["spec"]["replicas"], 7);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "web:1"}])
    );
}

#[test]
fn customization_forcing_a_namespace_renders_its_own_manifests() {
    let checkout = Checkout::new();
    checkout
        .write(
            "fleet.yaml",
            "targetCustomizations:\n- name: pinned\n  clusterSelector: {}\n  namespace: pinned\n",
        )
        .write("cm.yaml", &configmap("a"));
    let rendered = render_folder(checkout.root(), ".", &Tools::none()).unwrap();
    assert_eq!(ids(&rendered.resources), ["ConfigMap/-/a"]);
    let pinned = rendered.customizations[0].resources.as_ref().unwrap();
    assert_eq!(ids(pinned), ["ConfigMap/pinned/a"]);
}

#[test]
fn fleet_yaml_bundle_options_are_reported() {
    let checkout = Checkout::new();
    checkout
        .write(
            "app/fleet.yaml",
            "name: my-app
labels:
  team: shop
keepResources: true
paused: true
dependsOn:
- name: infra-crds
- selector:
    matchLabels: {tier: db}
diff:
  comparePatches:
  - apiVersion: apps/v1
    kind: Deployment
    name: web
    namespace: shop
    operations:
    - {op: remove, path: /spec/replicas}
    jsonPointers:
    - /spec/template/metadata/annotations
rolloutStrategy:
  maxUnavailable: 10%
# Known to Fleet, not used by flotilla: accepted.
correctDrift:
  enabled: true
namespaceLabels: {a: b}
helm:
  takeOwnership: true
  atomic: true
",
        )
        .write("app/cm.yaml", &configmap("a"));
    let rendered = render_folder(checkout.root(), "app/", &Tools::none()).unwrap();
    assert_eq!(rendered.folder, "app");
    assert_eq!(rendered.name.as_deref(), Some("my-app"));
    assert_eq!(rendered.labels["team"], "shop");
    assert!(rendered.keep_resources && rendered.paused);
    assert_eq!(rendered.depends_on.len(), 2);
    assert_eq!(rendered.depends_on[0].name.as_deref(), Some("infra-crds"));
    assert_eq!(
        rendered.depends_on[1]
            .selector
            .as_ref()
            .unwrap()
            .match_labels["tier"],
        "db"
    );
    let rollout = rendered
        .rollout
        .as_ref()
        .expect("rolloutStrategy maps to a rollout");
    assert_eq!(
        rollout.max_concurrency,
        Some(flotilla_api::IntOrPercent::Percent("10%".into()))
    );
    assert_eq!(rendered.drift_ignore.len(), 1);
    let ignore = &rendered.drift_ignore[0];
    assert_eq!(ignore.kind.as_deref(), Some("Deployment"));
    assert_eq!(ignore.name.as_deref(), Some("web"));
    assert_eq!(
        ignore.paths,
        ["/spec/replicas", "/spec/template/metadata/annotations"]
    );
}

#[test]
fn unknown_fleet_yaml_key_is_an_error_naming_it_and_the_file() {
    for (text, key) in [
        ("helmm:\n  chart: x\n", "\"helmm\""),
        ("helm:\n  valuez: {}\n", "\"valuez\" in helm"),
        (
            "targetCustomizations:\n- name: a\n  clusterSelectr: {}\n",
            "\"clusterSelectr\" in targetCustomizations[0]",
        ),
    ] {
        let checkout = Checkout::new();
        checkout
            .write("app/fleet.yaml", text)
            .write("app/cm.yaml", &configmap("a"));
        let error = render_folder(checkout.root(), "app", &Tools::none()).unwrap_err();
        assert_eq!(error.file.as_deref(), Some("app/fleet.yaml"), "{error}");
        assert!(
            error.message.starts_with(&format!("unknown key {key}")),
            "{error}"
        );
    }
}

#[test]
fn invalid_fleet_yaml_is_an_error_naming_it_and_the_problem() {
    for (text, problem) in [
        ("namespace: [a\n", "invalid YAML at line 1"),
        ("- a\n- b\n", "the document must be a mapping but is a list"),
        (
            "labels:\n  replicas: 3\n",
            "labels.replicas must be a string but is a number",
        ),
        (
            "keepResources: maybe\n",
            "keepResources must be true or false",
        ),
        (
            "namespace: Not_A_Namespace\n",
            "namespace is not a namespace name",
        ),
        (
            "targetCustomizations:\n- clusterSelector:\n    matchExpressions:\n    - {key: env, operator: Near}\n",
            "targetCustomizations[0].clusterSelector is invalid",
        ),
        (
            "targetCustomizations:\n- clusterGroupSelector: {}\n",
            "clusterGroupSelector is not supported",
        ),
        ("dependsOn:\n- {}\n", "dependsOn[0] set name or selector"),
        (
            "helm:\n  valuesFrom:\n  - configMapKeyRef: {name: x}\n",
            "helm.valuesFrom reads values",
        ),
    ] {
        let checkout = Checkout::new();
        checkout
            .write("fleet.yaml", text)
            .write("cm.yaml", &configmap("a"));
        let error = render_folder(checkout.root(), ".", &Tools::none()).unwrap_err();
        assert_eq!(error.file.as_deref(), Some("fleet.yaml"), "{error}");
        assert!(
            error.message.contains(problem),
            "{error} (wanted {problem})"
        );
    }
}

#[test]
fn missing_engines_are_clear_errors() {
    let chart = Checkout::new();
    chart
        .write(
            "web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        )
        .write(
            "web/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        );
    for tools in [
        Tools::none(),
        Tools::none().with_helm("/nonexistent/bin/helm".into()),
    ] {
        let error = render_folder(chart.root(), "web", &tools).unwrap_err();
        assert_eq!(error.file.as_deref(), Some("web"), "{error}");
        assert!(error.message.contains("needs helm v3 or later"), "{error}");
        assert!(error.message.contains("install helm"), "{error}");
    }
    let kustomize = Checkout::new();
    kustomize
        .write("k/kustomization.yaml", "resources: [cm.yaml]\n")
        .write("k/cm.yaml", &configmap("a"));
    for tools in [
        Tools::none(),
        Tools::none().with_kustomize(vec!["/nonexistent/kustomize".into(), "build".into()]),
    ] {
        let error = render_folder(kustomize.root(), "k", &tools).unwrap_err();
        assert_eq!(error.file.as_deref(), Some("k"), "{error}");
        assert!(
            error.message.contains("needs kustomize or kubectl"),
            "{error}"
        );
        assert!(error.message.contains("install one"), "{error}");
    }
}

#[test]
fn raw_helm_templates_outside_a_chart_are_an_error() {
    let checkout = Checkout::new();
    checkout.write(
        "templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.name }}\n",
    );
    let error = render_folder(checkout.root(), ".", &Tools::none()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("templates/cm.yaml"));
    assert!(error.message.contains("add a Chart.yaml"), "{error}");
}

#[test]
fn fleetignore_leaves_files_and_folders_out() {
    let checkout = Checkout::new();
    checkout
        .write(".fleetignore", "# comment\nskip-*.yaml\nscratch/*\n")
        .write("keep.yaml", &configmap("keep"))
        .write("skip-me.yaml", &configmap("skipped"))
        .write("scratch/x.yaml", &configmap("scratch"))
        .write("sub/skip-too.yaml", &configmap("skipped-too"));
    let rendered = render_folder(checkout.root(), ".", &Tools::none()).unwrap();
    assert_eq!(ids(&rendered.resources), ["ConfigMap/-/keep"]);
}

#[test]
fn kubernetes_yaml_1_1_numbers_are_read_as_kubernetes_reads_them() {
    let checkout = Checkout::new();
    checkout.write(
        "secret.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  volumes:\n  - name: v\n    secret:\n      defaultMode: 0644\n",
    );
    let rendered = render_folder(checkout.root(), ".", &Tools::none()).unwrap();
    assert_eq!(
        rendered.resources[0]["spec"]["volumes"][0]["secret"]["defaultMode"],
        420
    );
}

#[test]
fn fleet_yaml_strings_and_booleans_read_as_fleet_reads_them() {
    // A string field keeps `off` and `42` as text; a boolean field takes YAML 1.1's `yes`.
    let checkout = Checkout::new();
    checkout
        .write(
            "fleet.yaml",
            "targetCustomizations:\n- name: off\n  clusterName: 42\n  doNotDeploy: yes\n",
        )
        .write("cm.yaml", &configmap("a"));
    let rendered = render_folder(checkout.root(), ".", &Tools::none()).unwrap();
    let customization = &rendered.customizations[0];
    assert_eq!(customization.name.as_deref(), Some("off"));
    assert_eq!(customization.cluster_name.as_deref(), Some("42"));
    assert!(customization.do_not_deploy);
}

#[test]
fn charts_and_values_files_outside_the_repository_are_refused() {
    let checkout = Checkout::new();
    checkout.write("app/fleet.yaml", "helm:\n  chart: ../../../etc\n");
    let error = render_folder(checkout.root(), "app", &Tools::none()).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("app/fleet.yaml"));
    assert!(
        error.message.contains("is not a chart in the repository"),
        "{error}"
    );
    checkout.write(
        "app/fleet.yaml",
        "helm:\n  valuesFiles: [../../etc/passwd]\n",
    );
    let error = render_folder(checkout.root(), "app", &Tools::none()).unwrap_err();
    assert!(
        error
            .message
            .contains("is not a file inside the repository"),
        "{error}"
    );
}

#[test]
fn nested_kustomize_folder_in_a_raw_yaml_bundle_is_an_error_naming_it_not_shipped_or_dropped() {
    for name in ["kustomization.yaml", "kustomization.yml", "Kustomization"] {
        let checkout = Checkout::new();
        checkout
            .write("apps/cm.yaml", &configmap("loose"))
            .write(
                &format!("apps/web/{name}"),
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 resources: [deploy.yaml]\nnamePrefix: web-\n",
            )
            .write("apps/web/deploy.yaml", &configmap("app"));
        let error = render_folder(checkout.root(), "apps", &Tools::none()).unwrap_err();
        assert_eq!(
            error.file.as_deref(),
            Some(format!("apps/web/{name}").as_str())
        );
        assert!(error.message.contains("Kustomize folder"), "{error}");
        assert!(error.message.contains("fleet.yaml to apps/web"), "{error}");
    }
    // Ignored with .fleetignore, or a bundle of its own with a fleet.yaml: no error.
    let checkout = Checkout::new();
    checkout
        .write("apps/cm.yaml", &configmap("loose"))
        .write("apps/.fleetignore", "web/*\n")
        .write("apps/web/kustomization.yaml", "resources: [deploy.yaml]\n")
        .write("apps/web/deploy.yaml", &configmap("app"));
    let rendered = render_folder(checkout.root(), "apps", &Tools::none()).unwrap();
    assert_eq!(ids(&rendered.resources), ["ConfigMap/-/loose"]);
    checkout
        .write("apps/.fleetignore", "")
        .write("apps/web/fleet.yaml", "{}\n");
    let rendered = render_folder(checkout.root(), "apps", &Tools::none()).unwrap();
    assert_eq!(ids(&rendered.resources), ["ConfigMap/-/loose"]);
}
