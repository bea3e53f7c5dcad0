//! The Helm charts in `deploy/charts`: they lint, every object they render is a valid Kubernetes
//! object with no misspelled or misplaced field, each mode renders what it promises, and the
//! agent chart installs the same agent as `flotilla agent manifest`.
//!
//! Rendering uses a real helm (`flotilla_testkit::helm_command`; `scripts/test-tools.sh`
//! pre-warms it). Validity is checked by deserializing each document into its k8s-openapi type
//! and serializing it back: k8s-openapi ignores unknown fields, so the round trip drops any field
//! Kubernetes would not know, and comparing it with the rendered document catches it.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{
            Container, PersistentVolumeClaim, PodSpec, Probe, Secret, Service, ServiceAccount,
        },
        networking::v1::Ingress,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// helm's first run on a cold cache execs a 60 MB binary; renders are quick after that.
const HELM_DEADLINE: Duration = Duration::from_secs(120);

fn chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/charts")
        .join(name)
}

/// Runs helm with its own empty config, cache and data dirs; its output, or Err(stderr).
fn helm(args: &[&str]) -> Result<String, String> {
    let home = tempfile::tempdir().expect("helm home");
    let mut command = flotilla_testkit::helm_command(home.path()).expect("a helm binary");
    command.args(args);
    let output =
        flotilla_testkit::run_with_deadline(&mut command, HELM_DEADLINE).expect("run helm");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("helm prints UTF-8"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn set_args(values: &[&str]) -> Vec<String> {
    values
        .iter()
        .flat_map(|value| ["--set".to_string(), value.to_string()])
        .collect()
}

/// `helm lint --strict` with `values`, which must pass.
fn lint(chart_name: &str, values: &[&str]) {
    let path = chart(chart_name);
    let mut args = vec!["lint", "--strict", path.to_str().unwrap()];
    let sets = set_args(values);
    args.extend(sets.iter().map(String::as_str));
    if let Err(stderr) = helm(&args) {
        panic!("helm lint {chart_name} {values:?}: {stderr}");
    }
}

/// `helm template` of `chart_name` as `release` in namespace `flotilla`: the documents.
fn try_render(chart_name: &str, release: &str, values: &[&str]) -> Result<Vec<Value>, String> {
    let path = chart(chart_name);
    let mut args = vec![
        "template",
        release,
        path.to_str().unwrap(),
        "--namespace",
        "flotilla",
    ];
    let sets = set_args(values);
    args.extend(sets.iter().map(String::as_str));
    let text = helm(&args)?;
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("helm template {chart_name} {values:?} is not YAML: {e}"));
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// Lints, renders and checks every document of `chart_name` with `values`.
fn render(chart_name: &str, release: &str, values: &[&str]) -> Vec<Value> {
    lint(chart_name, values);
    let documents = try_render(chart_name, release, values)
        .unwrap_or_else(|stderr| panic!("helm template {chart_name} {values:?}: {stderr}"));
    assert!(
        !documents.is_empty(),
        "{chart_name} {values:?} rendered nothing"
    );
    for document in &documents {
        check_document(document);
    }
    documents
}

/// Fails unless `document` is a known kind whose typed round trip gives it back unchanged.
fn check_document(document: &Value) {
    let kind = document["kind"].as_str().unwrap_or_default();
    match kind {
        "StatefulSet" => round_trip::<StatefulSet>(document),
        "Deployment" => round_trip::<Deployment>(document),
        "Service" => round_trip::<Service>(document),
        "Secret" => round_trip::<Secret>(document),
        "ServiceAccount" => round_trip::<ServiceAccount>(document),
        "PersistentVolumeClaim" => round_trip::<PersistentVolumeClaim>(document),
        "Ingress" => round_trip::<Ingress>(document),
        "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(document),
        "Role" => round_trip::<Role>(document),
        "RoleBinding" => round_trip::<RoleBinding>(document),
        "ClusterRole" => round_trip::<ClusterRole>(document),
        "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(document),
        "ServiceMonitor" => check_service_monitor(document),
        _ => panic!("no check for kind {kind:?}: add its type to check_document\n{document:#}"),
    }
    assert!(
        document["metadata"]["name"].is_string(),
        "{kind} without a name"
    );
}

/// Deserializes `document` as `T` (which checks apiVersion and kind), serializes it again and
/// requires the same document back, nulls aside.
fn round_trip<T: DeserializeOwned + Serialize>(document: &Value) {
    let typed: T = serde_json::from_value(document.clone()).unwrap_or_else(|e| {
        panic!(
            "not a valid {}: {e}\n{document:#}",
            std::any::type_name::<T>()
        )
    });
    let back = without_nulls(serde_json::to_value(&typed).expect("serialize"));
    let rendered = without_nulls(document.clone());
    if let Some(difference) = first_difference(&rendered, &back, "") {
        panic!(
            "{} {}: {difference} (a field Kubernetes does not know, or in the wrong place)",
            document["kind"], document["metadata"]["name"]
        );
    }
}

#[test]
#[should_panic(expected = "/spec/template/spec/containers/0/imagePullPolcy is dropped")]
fn round_trip_catches_a_misspelled_field() {
    round_trip::<Deployment>(&json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "x", "image": "x", "imagePullPolcy": "Always"}]},
            },
        },
    }));
}

#[test]
#[should_panic(expected = "invalid type: string \"http\", expected i32")]
fn round_trip_catches_a_value_of_the_wrong_type() {
    round_trip::<Service>(&json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "http"}]},
    }));
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Where `rendered` and `typed` differ first, as a JSON pointer and the two values.
fn first_difference(rendered: &Value, typed: &Value, path: &str) -> Option<String> {
    match (rendered, typed) {
        (Value::Object(left), Value::Object(right)) => {
            for (key, value) in left {
                let here = format!("{path}/{key}");
                match right.get(key) {
                    None => return Some(format!("{here} is dropped by the typed object")),
                    Some(other) => {
                        if let Some(found) = first_difference(value, other, &here) {
                            return Some(found);
                        }
                    }
                }
            }
            right
                .keys()
                .find(|key| !left.contains_key(*key))
                .map(|key| format!("{path}/{key} appears only in the typed object"))
        }
        (Value::Array(left), Value::Array(right)) if left.len() == right.len() => left
            .iter()
            .zip(right)
            .enumerate()
            .find_map(|(index, (l, r))| first_difference(l, r, &format!("{path}/{index}"))),
        _ if rendered == typed => None,
        _ => Some(format!("{path}: rendered {rendered}, typed {typed}")),
    }
}

/// ServiceMonitor (Prometheus Operator) has no k8s-openapi type: its required fields and the
/// fields this chart uses, by hand.
fn check_service_monitor(document: &Value) {
    assert_eq!(document["apiVersion"], "monitoring.coreos.com/v1");
    let allowed = |value: &Value, keys: &[&str], what: &str| {
        let map = value
            .as_object()
            .unwrap_or_else(|| panic!("{what} is an object"));
        for key in map.keys() {
            assert!(keys.contains(&key.as_str()), "{what}.{key} is not a field");
        }
    };
    allowed(
        document,
        &["apiVersion", "kind", "metadata", "spec"],
        "ServiceMonitor",
    );
    allowed(
        &document["metadata"],
        &["name", "namespace", "labels", "annotations"],
        "metadata",
    );
    let spec = &document["spec"];
    allowed(
        spec,
        &["selector", "namespaceSelector", "endpoints", "jobLabel"],
        "spec",
    );
    assert!(
        spec["selector"]["matchLabels"].is_object(),
        "spec.selector.matchLabels is required"
    );
    let endpoints = spec["endpoints"].as_array().expect("spec.endpoints");
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        allowed(
            endpoint,
            &["port", "path", "interval", "scrapeTimeout", "scheme"],
            "endpoint",
        );
        assert!(endpoint["port"].is_string(), "endpoint.port names a port");
    }
}

fn find<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<T: DeserializeOwned>(documents: &[Value], kind: &str) -> T {
    let found = find(documents, kind);
    assert_eq!(found.len(), 1, "one {kind} expected");
    serde_json::from_value(found[0].clone()).expect("typed")
}

fn named<T: DeserializeOwned>(documents: &[Value], kind: &str, name: &str) -> Option<T> {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .map(|d| serde_json::from_value(d.clone()).expect("typed"))
}

fn server_container(pod: &PodSpec) -> &Container {
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

fn env_secret(container: &Container, name: &str) -> Option<(String, String)> {
    let var = container.env.as_ref()?.iter().find(|v| v.name == name)?;
    let secret = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((secret.name.clone(), secret.key.clone()))
}

fn secret_value(documents: &[Value], name: &str, key: &str) -> String {
    let secret: Secret =
        named(documents, "Secret", name).unwrap_or_else(|| panic!("the Secret {name} is rendered"));
    let ByteString(bytes) = secret.data.expect("data")[key].clone();
    String::from_utf8(bytes).expect("UTF-8")
}

fn assert_healthz(probe: &Option<Probe>, what: &str) {
    assert_probe(probe, "/healthz", what);
}

fn assert_probe(probe: &Option<Probe>, path: &str, what: &str) {
    let get = probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .unwrap_or_else(|| panic!("{what} is an HTTP GET"));
    assert_eq!(get.path.as_deref(), Some(path), "{what}");
    assert_eq!(
        serde_json::to_value(&get.port).unwrap(),
        "http",
        "{what} port"
    );
}

/// The pod-level and container-level security settings both modes must have.
fn assert_restricted(pod: &PodSpec) {
    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(
        pod_security
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let security = server_container(pod)
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
}

/// What both modes share: probes, security, the admin token from its Secret, the grace period
/// around the server's shutdown timeout, and a Service and PDB that select the pods.
fn assert_server_pod(documents: &[Value], pod: &PodSpec, pod_labels: &Value) {
    let container = server_container(pod);
    assert_healthz(&container.startup_probe, "startupProbe");
    assert_healthz(&container.readiness_probe, "readinessProbe");
    assert_probe(&container.liveness_probe, "/livez", "livenessProbe");
    let ports = container.ports.as_ref().expect("ports");
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    assert_restricted(pod);
    let args = container.args.as_ref().expect("args");
    assert_eq!(args[0], "server");
    assert!(args.windows(2).any(|w| w == ["--listen", "0.0.0.0:8080"]));
    assert!(args.windows(2).any(|w| w == ["--shutdown-timeout", "25s"]));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let (secret, key) =
        env_secret(container, "FLOTILLA_ADMIN_TOKEN").expect("the admin token from a Secret");
    assert_eq!(secret, "flotilla-server-admin");
    assert_eq!(key, "token");
    assert!(secret_value(documents, &secret, &key).len() >= 32);
    // Writable places on a read-only root: the data volume and /tmp (HOME for git and helm).
    let mounts: Vec<&str> = container
        .volume_mounts
        .as_ref()
        .expect("volumeMounts")
        .iter()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(mounts.contains(&"/var/lib/flotilla") && mounts.contains(&"/tmp"));
    let data_dir = &args[args.iter().position(|a| a == "--data-dir").unwrap() + 1];
    assert!(data_dir.starts_with("/var/lib/flotilla/"), "{data_dir}");
    let service: Service = named(documents, "Service", "flotilla-server").expect("Service");
    let spec = service.spec.expect("spec");
    assert_selects(&serde_json::to_value(spec.selector).unwrap(), pod_labels);
    assert_eq!(spec.ports.expect("ports")[0].name.as_deref(), Some("http"));
    let budget: PodDisruptionBudget = one(documents, "PodDisruptionBudget");
    let selector = budget.spec.expect("spec").selector.expect("selector");
    assert_selects(
        &serde_json::to_value(selector.match_labels).unwrap(),
        pod_labels,
    );
    let account: ServiceAccount = one(documents, "ServiceAccount");
    assert_eq!(pod.service_account_name, account.metadata.name);
}

fn assert_selects(selector: &Value, labels: &Value) {
    let selector = selector.as_object().expect("a selector");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &labels[key], value,
            "selector {key} does not match the pods"
        );
    }
}

#[test]
fn server_chart_by_default_runs_one_replica_on_a_volume_claim_for_the_embedded_store() {
    let documents = render("flotilla-server", "flotilla-server", &[]);
    assert!(find(&documents, "Deployment").is_empty());
    assert!(find(&documents, "Ingress").is_empty());
    assert!(find(&documents, "ServiceMonitor").is_empty());
    let set: StatefulSet = one(&documents, "StatefulSet");
    let spec = set.spec;
    assert_eq!(spec.replicas, Some(1));
    let claims = spec
        .volume_claim_templates
        .expect("a volume claim template");
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    let requests = claims[0]
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.clone())
        .expect("storage request");
    assert_eq!(requests["storage"].0, "10Gi");
    // The governing Service exists.
    let headless: Service = named(
        &documents,
        "Service",
        &spec.service_name.expect("serviceName"),
    )
    .expect("headless");
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let template = spec.template;
    let pod = template.spec.as_ref().expect("pod spec");
    let labels = serde_json::to_value(&template.metadata.as_ref().unwrap().labels).unwrap();
    assert_server_pod(&documents, pod, &labels);
    let container = server_container(pod);
    assert!(
        env_secret(container, "FLOTILLA_STORE").is_none(),
        "the embedded store needs no URL"
    );
    // The claim template, not a pod volume, backs `data`.
    assert!(
        !pod.volumes
            .iter()
            .flatten()
            .any(|volume| volume.name == "data")
    );
}

#[test]
fn server_chart_with_a_postgres_url_runs_replicas_reading_the_url_from_a_secret() {
    let url = "postgres://flotilla:pw@db.example:5432/flotilla?sslmode=verify-full";
    let documents = render(
        "flotilla-server",
        "flotilla-server",
        &[&format!("store.postgres.url={url}"), "replicaCount=3"],
    );
    assert!(find(&documents, "StatefulSet").is_empty());
    let deployment: Deployment = one(&documents, "Deployment");
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.as_ref().expect("pod spec");
    let labels = serde_json::to_value(&spec.template.metadata.as_ref().unwrap().labels).unwrap();
    assert_server_pod(&documents, pod, &labels);
    let (secret, key) =
        env_secret(server_container(pod), "FLOTILLA_STORE").expect("FLOTILLA_STORE from a Secret");
    assert_eq!(secret_value(&documents, &secret, &key), url);
    // The password reaches the pods through the Secret only.
    let deployment_text = find(&documents, "Deployment")[0].to_string();
    assert!(!deployment_text.contains("pw@"));
    // Each replica's data dir (only the git cache) is its own emptyDir.
    let data = pod
        .volumes
        .iter()
        .flatten()
        .find(|volume| volume.name == "data")
        .expect("a data volume");
    assert!(data.empty_dir.is_some());
}

#[test]
fn server_chart_uses_existing_secrets_for_the_store_url_and_admin_token_and_renders_none() {
    let documents = render(
        "flotilla-server",
        "flotilla-server",
        &[
            "store.postgres.existingSecret=db",
            "store.postgres.existingSecretKey=dsn",
            "adminToken.existingSecret=admin",
        ],
    );
    assert!(find(&documents, "Secret").is_empty());
    let deployment: Deployment = one(&documents, "Deployment");
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(2));
    let container = server_container(spec.template.spec.as_ref().unwrap());
    assert_eq!(
        env_secret(container, "FLOTILLA_STORE"),
        Some(("db".into(), "dsn".into()))
    );
    assert_eq!(
        env_secret(container, "FLOTILLA_ADMIN_TOKEN"),
        Some(("admin".into(), "token".into()))
    );
}

#[test]
fn server_chart_ingress_and_service_monitor_point_at_the_service_port() {
    let documents = render(
        "flotilla-server",
        "flotilla-server",
        &[
            "ingress.enabled=true",
            "ingress.className=nginx",
            "ingress.hosts[0].host=fleet.example.com",
            "ingress.hosts[0].paths[0].path=/",
            "ingress.tls[0].secretName=fleet-tls",
            "ingress.tls[0].hosts[0]=fleet.example.com",
            "serviceMonitor.enabled=true",
            "serviceMonitor.labels.release=prometheus",
        ],
    );
    let service = find(&documents, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "flotilla-server")
        .expect("Service");
    let ingress: Ingress = one(&documents, "Ingress");
    let spec = ingress.spec.expect("spec");
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    assert_eq!(
        spec.tls.expect("tls")[0].secret_name.as_deref(),
        Some("fleet-tls")
    );
    let rule = &spec.rules.expect("rules")[0];
    assert_eq!(rule.host.as_deref(), Some("fleet.example.com"));
    let backend = rule.http.as_ref().unwrap().paths[0]
        .backend
        .service
        .as_ref()
        .expect("a Service backend");
    assert_eq!(backend.name, service["metadata"]["name"].as_str().unwrap());
    assert_eq!(
        backend.port.as_ref().and_then(|p| p.name.as_deref()),
        Some("http")
    );
    let monitor = find(&documents, "ServiceMonitor")[0];
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"],
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["flotilla"])
    );
}

/// Every FLOTILLA_* variable a chart sets is one the binary reads (clap lists them in --help).
fn assert_binary_reads(documents: &[Value], command: &str) {
    let help = Command::new(support::BIN)
        .args([command, "--help"])
        .output()
        .expect("flotilla --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let mut seen = 0;
    for document in documents.iter().filter(|d| d["kind"] == "Deployment") {
        let containers = &document["spec"]["template"]["spec"]["containers"];
        for var in containers[0]["env"].as_array().expect("env") {
            let name = var["name"].as_str().unwrap();
            if name.starts_with("FLOTILLA_") {
                assert!(
                    help.contains(&format!("env: {name}")),
                    "`flotilla {command}` does not read {name}"
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "{seen} FLOTILLA_ variables checked");
}

#[test]
fn server_chart_environment_names_variables_the_server_reads() {
    let documents = render(
        "flotilla-server",
        "flotilla-server",
        &[
            "store.postgres.url=postgres://db/flotilla",
            "renderAllowHosts={charts.example.com}",
        ],
    );
    assert_binary_reads(&documents, "server");
}

#[test]
fn server_takes_the_admin_token_it_is_given_and_a_new_one_replaces_the_old() {
    const FIRST: &str = "first-token-from-a-kubernetes-secret-0001";
    const SECOND: &str = "second-token-from-a-kubernetes-secret-002";
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // A server that made its own token first: the file goes once a token is given.
    let mut own = support::ServerProcess::start(&data_dir, &[]);
    assert!(data_dir.join("admin-token").exists());
    own.kill_9();
    // Given with the newline a Secret made with --from-file carries.
    let given = format!("{FIRST}\n");
    let mut server =
        support::ServerProcess::start_replica(&data_dir, &["--admin-token", &given], FIRST);
    server.ok(&["get", "clusters"]);
    assert!(
        !data_dir.join("admin-token").exists(),
        "a given token replaces the file of the one the server made"
    );
    server.kill_9();
    let rotated =
        support::ServerProcess::start_replica(&data_dir, &["--admin-token", SECOND], SECOND);
    rotated.ok(&["get", "clusters"]);
    let old = Command::new(support::BIN)
        .args(["get", "clusters"])
        .env("FLOTILLA_SERVER", &rotated.url)
        .env("FLOTILLA_TOKEN", FIRST)
        .output()
        .unwrap();
    assert!(!old.status.success(), "the replaced token still works");
}

#[test]
fn a_short_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(support::BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            "letmein",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("at least 32 characters"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

const AGENT_VALUES: &[&str] = &[
    "server=https://fleet.example:8080",
    "token=registration-token",
    "clusterName=store-0042",
    "labels.region=eu-west",
    "labels.env=prod",
];

#[test]
fn agent_chart_renders_valid_objects_with_a_volume_or_an_empty_dir() {
    let documents = render("flotilla-agent", "flotilla-agent", AGENT_VALUES);
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    assert!(
        !kinds.contains(&"Namespace"),
        "the release's namespace is used"
    );
    assert_binary_reads(&documents, "agent");
    let mut values = AGENT_VALUES.to_vec();
    values.extend(["stateVolume=emptyDir", "existingSecret=agent-token"]);
    let documents = render("flotilla-agent", "flotilla-agent", &values);
    assert!(find(&documents, "PersistentVolumeClaim").is_empty());
    assert!(find(&documents, "Secret").is_empty());
    let deployment: Deployment = one(&documents, "Deployment");
    let pod = deployment.spec.template.spec.unwrap();
    assert!(pod.volumes.unwrap()[0].empty_dir.is_some());
    assert_eq!(
        env_secret(&pod.containers[0], "FLOTILLA_AGENT_TOKEN"),
        Some(("agent-token".into(), "token".into()))
    );
}

#[test]
fn agent_chart_without_server_token_or_cluster_name_says_which_is_missing() {
    for (missing, message) in [
        ("server", "server"),
        ("token", "token"),
        ("clusterName", "clusterName"),
    ] {
        let values: Vec<&str> = AGENT_VALUES
            .iter()
            .copied()
            .filter(|v| !v.starts_with(&format!("{missing}=")))
            .collect();
        let stderr = try_render("flotilla-agent", "flotilla-agent", &values)
            .expect_err("renders without a required value");
        assert!(stderr.contains(message), "{missing}: {stderr}");
    }
}

/// The manifest's documents for the same inputs as [`AGENT_VALUES`].
fn agent_manifest(extra: &[&str]) -> Vec<Value> {
    let output = Command::new(support::BIN)
        .args([
            "agent",
            "manifest",
            "--server",
            "https://fleet.example:8080",
            "--token",
            "registration-token",
            "--name",
            "store-0042",
            "--labels",
            "env=prod,region=eu-west",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap()).unwrap()
}

fn deployment_pod(documents: &[Value]) -> (Value, Value) {
    let deployment = find(documents, "Deployment")[0];
    let pod = deployment["spec"]["template"]["spec"].clone();
    let mut spec = deployment["spec"].clone();
    let spec_map = spec.as_object_mut().unwrap();
    // Labels and selectors differ on purpose (the chart adds Helm's); the rest must not.
    spec_map.remove("template");
    spec_map.remove("selector");
    (spec, pod)
}

#[test]
fn agent_chart_runs_the_same_agent_as_agent_manifest() {
    // Defaults: the same image, interval, resources, security and volumes.
    let chart_documents = render("flotilla-agent", "flotilla-agent", AGENT_VALUES);
    let manifest_documents = agent_manifest(&[]);
    assert_eq!(
        deployment_pod(&chart_documents),
        deployment_pod(&manifest_documents)
    );
    // And with every input given.
    let mut values = AGENT_VALUES.to_vec();
    values.extend([
        "image.repository=registry.example/flotilla",
        "image.tag=9.9.9",
        "interval=45s",
    ]);
    let chart_documents = render("flotilla-agent", "flotilla-agent", &values);
    let manifest_documents = agent_manifest(&[
        "--image",
        "registry.example/flotilla:9.9.9",
        "--interval",
        "45s",
    ]);
    assert_eq!(
        deployment_pod(&chart_documents),
        deployment_pod(&manifest_documents)
    );
    // The same rights, the same Secret contents, the same state claim.
    for kind in ["ClusterRole", "Secret", "PersistentVolumeClaim"] {
        let strip = |document: &Value| {
            let mut document = document.clone();
            document.as_object_mut().unwrap().remove("metadata");
            document
        };
        assert_eq!(
            strip(find(&chart_documents, kind)[0]),
            strip(find(&manifest_documents, kind)[0]),
            "{kind}"
        );
    }
    let binding: ClusterRoleBinding = one(&chart_documents, "ClusterRoleBinding");
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(subject.namespace.as_deref(), Some("flotilla"));
    assert_eq!(Some(subject.name.clone()), {
        let account: ServiceAccount = one(&chart_documents, "ServiceAccount");
        account.metadata.name
    });
}

#[test]
fn the_server_chart_refuses_an_admin_token_the_server_would_refuse() {
    let short = try_render("flotilla-server", "fleet", &["adminToken.value=letmein"]);
    let stderr = short.expect_err("a short token renders nothing");
    assert!(stderr.contains("at least 32 characters"), "{stderr}");
    let long = render(
        "flotilla-server",
        "fleet",
        &["adminToken.value=0123456789abcdef0123456789abcdef"],
    );
    assert_eq!(
        secret_value(&long, "fleet-flotilla-server-admin", "token"),
        "0123456789abcdef0123456789abcdef"
    );
}
