//! The stand-in API server (tests/support/stand_in_apiserver) speaks what the real kube-rs
//! client expects: every test here drives it through kube 5 / k8s-openapi 0.29, as the driver
//! will.

mod support;

use std::time::{Duration, Instant};

use either::Either;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::{self, ApiResource, Scope};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::stand_in_apiserver::{
    EDIT_MANAGER, NOT_READY_ANNOTATION, REJECT_ANNOTATION, StandInApiServer,
};

const MANAGER: &str = "flotilla";

/// Resolves the manifest's kind with `pinned_kind` and applies it with SSA (force), as the
/// driver does.
async fn apply(client: &Client, manifest: Value) -> kube::Result<DynamicObject> {
    apply_with(client, manifest, &PatchParams::apply(MANAGER).force()).await
}

async fn apply_with(
    client: &Client,
    manifest: Value,
    params: &PatchParams,
) -> kube::Result<DynamicObject> {
    let object: DynamicObject = serde_json::from_value(manifest).expect("test manifest parses");
    let api = api_for(client, &object).await?;
    api.patch(&object.name_any(), params, &Patch::Apply(&object))
        .await
}

async fn api_for(client: &Client, object: &DynamicObject) -> kube::Result<Api<DynamicObject>> {
    let types = object
        .types
        .as_ref()
        .expect("manifest has apiVersion and kind");
    let gvk = GroupVersionKind::try_from(types).expect("apiVersion parses");
    let (resource, caps) = discovery::pinned_kind(client, &gvk).await?;
    Ok(match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.namespace().as_deref().unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    })
}

/// The `Status` of a `kube::Error::Api`, or a panic naming what came back instead.
fn api_status<T: std::fmt::Debug>(result: kube::Result<T>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn config_map(namespace: &str, name: &str, labels: Value, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": data})
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn deployment(namespace: &str, name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "main", "image": image}]}},
        },
    })
}

fn crd(scope: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": scope,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                          "subresources": {"status": {}}}],
        },
    })
}

fn widget(name: &str) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "namespace": "default"}, "spec": {"size": 3}})
}

#[tokio::test]
async fn discovery_resolves_built_in_kinds_with_their_scope() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    for (group, kind, plural, scope) in [
        ("apps", "Deployment", "deployments", Scope::Namespaced),
        ("", "ConfigMap", "configmaps", Scope::Namespaced),
        ("", "Namespace", "namespaces", Scope::Cluster),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            Scope::Cluster,
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            Scope::Cluster,
        ),
    ] {
        let (resource, caps) =
            discovery::pinned_kind(&client, &GroupVersionKind::gvk(group, "v1", kind))
                .await
                .unwrap();
        assert_eq!(
            (resource.plural.as_str(), &caps.scope),
            (plural, &scope),
            "{kind}"
        );
        assert!(
            caps.supports_operation("patch") && caps.supports_operation("list"),
            "{kind}"
        );
    }
    let (_, deployment_caps) =
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .await
            .unwrap();
    assert!(
        deployment_caps
            .subresources
            .iter()
            .any(|(r, _)| r.plural == "status"),
        "{:?}",
        deployment_caps.subresources
    );

    // An unknown kind in a served group is a discovery error; an unknown group the server's 404.
    let missing =
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("apps", "v1", "Gizmo")).await;
    assert!(
        matches!(
            missing,
            Err(kube::Error::Discovery(
                kube::error::DiscoveryError::MissingKind(_)
            ))
        ),
        "{missing:?}"
    );
    let status = api_status(
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("nope.io", "v1", "Gizmo")).await,
    );
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert!(status.is_not_found());

    // Full discovery works too (it walks /apis, every group version, /api, /api/v1).
    let all = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(all.has_group("apps") && all.has_group("batch") && all.has_group(""));
    let gvk = GroupVersionKind::gvk("batch", "v1", "Job");
    assert!(all.resolve_gvk(&gvk).is_some());
}

#[tokio::test]
async fn apiserver_version_and_kubeconfig() {
    let server = StandInApiServer::start().await;
    let info = server.client().apiserver_version().await.unwrap();
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "33"));
    assert!(info.git_version.starts_with("v1.33"));

    // A kubeconfig pointing at the stand-in works the same way.
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).unwrap();
    assert_eq!(
        client.apiserver_version().await.unwrap().git_version,
        info.git_version
    );
}

#[tokio::test]
async fn server_side_apply_creates_then_updates() {
    let server = StandInApiServer::start().await;
    let client = server.client();

    let created = apply(&client, deployment("default", "web", 2, "nginx:1.27"))
        .await
        .unwrap();
    let uid = created.uid().expect("uid set");
    let first_version = created.resource_version().expect("resourceVersion set");
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.data["spec"]["replicas"], 2);
    let patch = server
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        patch.path,
        "/apis/apps/v1/namespaces/default/deployments/web"
    );
    assert_eq!(
        (
            patch.param("fieldManager").as_deref(),
            patch.param("force").as_deref()
        ),
        (Some(MANAGER), Some("true"))
    );
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(patch.status, 201);
    let managed = created.managed_fields();
    assert_eq!(
        (
            managed[0].manager.as_deref(),
            managed[0].operation.as_deref()
        ),
        (Some(MANAGER), Some("Apply"))
    );
    let fields = &managed[0].fields_v1.as_ref().unwrap().0;
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"main"}"#]["f:image"],
        json!({})
    );

    // The same config again: 200, nothing changes.
    let same = apply(&client, deployment("default", "web", 2, "nginx:1.27"))
        .await
        .unwrap();
    assert_eq!(server.requests().last().unwrap().status, 200);
    assert_eq!(
        (
            same.uid(),
            same.resource_version(),
            same.metadata.generation
        ),
        (Some(uid.clone()), Some(first_version.clone()), Some(1))
    );

    // A label change moves resourceVersion but not generation.
    let mut relabelled = deployment("default", "web", 2, "nginx:1.27");
    relabelled["metadata"]["labels"]["tier"] = json!("front");
    let relabelled = apply(&client, relabelled).await.unwrap();
    assert_ne!(relabelled.resource_version(), Some(first_version));
    assert_eq!(relabelled.metadata.generation, Some(1));

    // A spec change moves generation.
    let updated = apply(&client, deployment("default", "web", 2, "nginx:1.28"))
        .await
        .unwrap();
    assert_eq!(
        (updated.uid(), updated.metadata.generation),
        (Some(uid), Some(2))
    );
    assert_eq!(
        updated.data["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    // The label the manager stopped applying is gone.
    assert_eq!(updated.labels().get("tier"), None);

    // The typed API reads the same object.
    let typed = Api::<Deployment>::namespaced(client.clone(), "default")
        .get("web")
        .await
        .unwrap();
    // (k8s-openapi 0.29: `Deployment.spec` is not an Option.)
    assert_eq!(typed.spec.replicas, Some(2));
}

#[tokio::test]
async fn fields_dropped_from_the_config_go_but_fields_of_other_actors_stay() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    apply(
        &client,
        config_map(
            "default",
            "settings",
            json!({"app": "web"}),
            json!({"a": "1", "b": "2"}),
        ),
    )
    .await
    .unwrap();
    server.edit("v1", "ConfigMap", Some("default"), "settings", |cm| {
        cm["data"]["c"] = json!("from kubectl");
        cm["metadata"]["labels"]["owner"] = json!("ops");
    });
    let edited = server
        .get("v1", "ConfigMap", Some("default"), "settings")
        .unwrap();
    let managers: Vec<&str> = edited["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, [MANAGER, EDIT_MANAGER]);

    let live = apply(
        &client,
        config_map(
            "default",
            "settings",
            json!({"app": "web"}),
            json!({"a": "1"}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(live.data["data"], json!({"a": "1", "c": "from kubectl"}));
    assert_eq!(live.labels().get("owner").map(String::as_str), Some("ops"));
    assert_eq!(
        server
            .applied_config("v1", "ConfigMap", Some("default"), "settings", MANAGER)
            .unwrap()["data"],
        json!({"a": "1"})
    );

    // Without force, taking a field another actor changed is a conflict, as on a real server.
    server.edit("v1", "ConfigMap", Some("default"), "settings", |cm| {
        cm["data"]["a"] = json!("edited")
    });
    let manifest = config_map(
        "default",
        "settings",
        json!({"app": "web"}),
        json!({"a": "1"}),
    );
    let status =
        api_status(apply_with(&client, manifest.clone(), &PatchParams::apply(MANAGER)).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains(r#"conflict with "kubectl-edit""#)
            && status.message.contains(".data.a"),
        "{}",
        status.message
    );
    // With force the manager takes it back.
    assert_eq!(
        apply(&client, manifest).await.unwrap().data["data"]["a"],
        "1"
    );
}

#[tokio::test]
async fn list_with_a_label_selector_across_namespaces() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    apply(&client, namespace("prod")).await.unwrap();
    for (ns, name, bundle) in [
        ("default", "a", "web"),
        ("prod", "b", "web"),
        ("prod", "c", "db"),
        ("default", "d", "web-extra"),
    ] {
        apply(
            &client,
            config_map(ns, name, json!({"flotilla.dev/bundle": bundle}), json!({})),
        )
        .await
        .unwrap();
    }
    apply(
        &client,
        config_map("prod", "unlabelled", json!({}), json!({})),
    )
    .await
    .unwrap();

    let web = ListParams::default().labels("flotilla.dev/bundle=web");
    let typed = Api::<ConfigMap>::all(client.clone())
        .list(&web)
        .await
        .unwrap();
    let names: Vec<(String, String)> = typed
        .iter()
        .map(|cm| (cm.namespace().unwrap(), cm.name_any()))
        .collect();
    assert_eq!(
        names,
        [
            ("default".to_string(), "a".to_string()),
            ("prod".to_string(), "b".to_string())
        ]
    );

    let (resource, _) =
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("", "v1", "ConfigMap"))
            .await
            .unwrap();
    let in_prod = Api::<DynamicObject>::namespaced_with(client.clone(), "prod", &resource);
    let set_based =
        ListParams::default().labels("flotilla.dev/bundle in (web, db),flotilla.dev/bundle!=db");
    let names: Vec<String> = in_prod
        .list(&set_based)
        .await
        .unwrap()
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(names, ["b"]);
    let names: Vec<String> = in_prod
        .list(&ListParams::default().labels("!flotilla.dev/bundle"))
        .await
        .unwrap()
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(names, ["unlabelled"]);

    // limit/continue paging.
    let everything = ListParams::default().labels("flotilla.dev/bundle");
    let page = Api::<ConfigMap>::all(client.clone())
        .list(&everything.clone().limit(3))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = Api::<ConfigMap>::all(client.clone())
        .list(&everything.limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.metadata.continue_), (1, None));

    // Every LIST carried a labelSelector, URL-encoded on the wire.
    let lists: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/configmaps"))
        .collect();
    assert_eq!(lists.len(), 5);
    assert!(lists.iter().all(|r| r.param("labelSelector").is_some()));
    assert!(
        lists[0]
            .query
            .contains("labelSelector=flotilla.dev%2Fbundle%3Dweb"),
        "{}",
        lists[0].query
    );
    assert_eq!(lists[0].path, "/api/v1/configmaps");
}

#[tokio::test]
async fn delete_then_get_is_not_found() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    apply(&client, namespace("team")).await.unwrap();
    apply(&client, config_map("team", "one", json!({}), json!({})))
        .await
        .unwrap();
    apply(&client, config_map("default", "two", json!({}), json!({})))
        .await
        .unwrap();

    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    match config_maps
        .delete("two", &DeleteParams::background())
        .await
        .unwrap()
    {
        Either::Right(status) => assert!(status.is_success(), "{status:?}"),
        Either::Left(object) => panic!("expected a Status, got {object:?}"),
    }
    let status = api_status(config_maps.get("two").await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, r#"configmaps "two" not found"#);
    assert_eq!(config_maps.get_opt("two").await.unwrap(), None);
    assert_eq!(
        api_status(config_maps.delete("two", &DeleteParams::background()).await).code,
        404
    );

    // A dry-run delete keeps the object; deleting a Namespace takes its objects along.
    let team = Api::<ConfigMap>::namespaced(client.clone(), "team");
    team.delete("one", &DeleteParams::background().dry_run())
        .await
        .unwrap();
    assert!(team.get_opt("one").await.unwrap().is_some());
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    namespaces
        .delete("team", &DeleteParams::background())
        .await
        .unwrap();
    assert!(team.get_opt("one").await.unwrap().is_none());
    let left: Vec<_> = server
        .objects()
        .into_iter()
        .map(|(_, kind, ns, name)| (kind, ns, name))
        .collect();
    assert_eq!(
        left,
        [
            ("Namespace".to_string(), None, "default".to_string()),
            ("Namespace".to_string(), None, "kube-system".to_string())
        ]
    );
}

#[tokio::test]
async fn delete_preconditions_that_do_not_match_are_a_409_and_keep_the_object() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let applied = apply(&client, config_map("default", "one", json!({}), json!({})))
        .await
        .unwrap();
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let with = |uid: Option<String>, resource_version: Option<String>| DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid,
            resource_version,
        }),
        ..DeleteParams::background()
    };
    let stale = with(None, Some("0".into()));
    let status = api_status(config_maps.delete("one", &stale).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(status.message.contains("Precondition failed"), "{status:?}");
    let other_uid = with(Some("not-the-uid".into()), None);
    assert_eq!(
        api_status(config_maps.delete("one", &other_uid).await).code,
        409
    );
    assert!(config_maps.get_opt("one").await.unwrap().is_some());
    let current = with(
        applied.metadata.uid.clone(),
        applied.metadata.resource_version.clone(),
    );
    config_maps.delete("one", &current).await.unwrap();
    assert!(config_maps.get_opt("one").await.unwrap().is_none());
}

#[tokio::test]
async fn reject_annotation_is_a_422() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let mut manifest = deployment("default", "web", 1, "nginx");
    manifest["metadata"]["annotations"] =
        json!({REJECT_ANNOTATION: "spec.selector: Required value"});
    let status = api_status(apply(&client, manifest).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(status.is_invalid());
    assert_eq!(
        status.message,
        r#"Deployment.apps "web" is invalid: spec.selector: Required value"#
    );
    assert!(
        server
            .get("apps/v1", "Deployment", Some("default"), "web")
            .is_none()
    );
}

#[tokio::test]
async fn bad_apply_requests_are_rejected_like_a_real_server() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let (resource, _) =
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("", "v1", "ConfigMap"))
            .await
            .unwrap();
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), "default", &resource);
    let params = PatchParams::apply(MANAGER).force();

    let body: DynamicObject =
        serde_json::from_value(config_map("default", "a", json!({}), json!({}))).unwrap();
    let status = api_status(api.patch("b", &params, &Patch::Apply(&body)).await);
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert!(
        status
            .message
            .contains("does not match the name on the URL"),
        "{}",
        status.message
    );

    let other_ns: DynamicObject =
        serde_json::from_value(config_map("kube-system", "a", json!({}), json!({}))).unwrap();
    assert_eq!(
        api_status(api.patch("a", &params, &Patch::Apply(&other_ns)).await).code,
        400
    );

    let wrong_kind: DynamicObject =
        serde_json::from_value(deployment("default", "a", 1, "nginx")).unwrap();
    assert_eq!(
        api_status(api.patch("a", &params, &Patch::Apply(&wrong_kind)).await).code,
        400
    );

    let mut with_managed_fields = body.clone();
    with_managed_fields.metadata.managed_fields = Some(vec![Default::default()]);
    let status = api_status(
        api.patch("a", &params, &Patch::Apply(&with_managed_fields))
            .await,
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (400, "metadata.managedFields must be nil")
    );

    let merge = api_status(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {}})),
        )
        .await,
    );
    assert_eq!(merge.code, 415);
    assert!(
        server
            .objects()
            .iter()
            .all(|(_, kind, _, _)| kind == "Namespace")
    );
}

#[tokio::test]
async fn dry_run_apply_computes_without_storing() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let dry = PatchParams::apply(MANAGER).force().dry_run();
    let preview = apply_with(
        &client,
        config_map("default", "cm", json!({}), json!({"k": "v"})),
        &dry,
    )
    .await
    .unwrap();
    assert_eq!(preview.data["data"]["k"], "v");
    assert!(
        server
            .get("v1", "ConfigMap", Some("default"), "cm")
            .is_none()
    );
    assert_eq!(
        server.requests().last().unwrap().param("dryRun").as_deref(),
        Some("All")
    );

    let live = apply(
        &client,
        config_map("default", "cm", json!({}), json!({"k": "v"})),
    )
    .await
    .unwrap();
    let preview = apply_with(
        &client,
        config_map("default", "cm", json!({}), json!({"k": "w"})),
        &dry,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            preview.data["data"]["k"].as_str(),
            preview.resource_version()
        ),
        (Some("w"), live.resource_version())
    );
    assert_eq!(
        server
            .get("v1", "ConfigMap", Some("default"), "cm")
            .unwrap()["data"]["k"],
        "v"
    );
}

#[tokio::test]
async fn crd_kinds_become_discoverable_once_established() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    assert_eq!(
        api_status(discovery::pinned_kind(&client, &gvk).await).code,
        404
    );

    let crd_object = apply(&client, crd("Namespaced")).await.unwrap();
    let conditions = crd_object.data["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "NamesAccepted" && c["status"] == "True")
    );
    let (resource, caps) = discovery::pinned_kind(&client, &gvk).await.unwrap();
    assert_eq!(
        (resource.plural.as_str(), caps.scope),
        ("widgets", Scope::Namespaced)
    );

    let created = apply(&client, widget("w1")).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 3);
    assert!(
        created.data.get("status").is_none(),
        "the stand-in simulates no controller for CRs"
    );
    server.set_status(
        "example.com/v1",
        "Widget",
        Some("default"),
        "w1",
        json!({"conditions": [{"type": "Ready", "status": "True"}]}),
    );
    // CR list items keep apiVersion/kind (built-in ones do not).
    let items = Api::<DynamicObject>::all_with(client.clone(), &resource)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        items.items[0].types.as_ref().map(|t| t.kind.as_str()),
        Some("Widget")
    );
    assert_eq!(
        items.items[0].data["status"]["conditions"][0]["type"],
        "Ready"
    );

    // Deleting the CRD removes the kind and its objects.
    Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(&()))
        .delete("widgets.example.com", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(
        api_status(discovery::pinned_kind(&client, &gvk).await).code,
        404
    );
    assert!(
        server
            .get("example.com/v1", "Widget", Some("default"), "w1")
            .is_none()
    );
}

#[tokio::test]
async fn crd_held_back_until_established() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    server.set_auto_establish(false);
    let crd_object = apply(&client, crd("Cluster")).await.unwrap();
    let established = crd_object.data["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Established")
        .unwrap()
        .clone();
    assert_eq!(
        (
            established["status"].as_str(),
            established["reason"].as_str()
        ),
        (Some("False"), Some("Installing"))
    );

    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    assert_eq!(
        api_status(discovery::pinned_kind(&client, &gvk).await).code,
        404
    );
    // Applying a CR straight to its would-be path is a 404 too.
    let resource = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let mut cluster_widget = widget("w1");
    cluster_widget["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let body: DynamicObject = serde_json::from_value(cluster_widget.clone()).unwrap();
    let status = api_status(
        Api::<DynamicObject>::all_with(client.clone(), &resource)
            .patch(
                "w1",
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    let patch = server.requests().pop().unwrap();
    assert_eq!(
        (patch.path.as_str(), patch.status),
        ("/apis/example.com/v1/widgets/w1", 404)
    );

    server.establish("widgets.example.com");
    let (_, caps) = discovery::pinned_kind(&client, &gvk).await.unwrap();
    assert_eq!(caps.scope, Scope::Cluster);
    let created = apply(&client, cluster_widget).await.unwrap();
    assert_eq!(created.namespace(), None);
}

#[tokio::test]
async fn namespaced_apply_into_a_missing_namespace_is_404() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let status =
        api_status(apply(&client, config_map("missing", "cm", json!({}), json!({}))).await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, r#"namespaces "missing" not found"#);
    apply(&client, namespace("missing")).await.unwrap();
    apply(&client, config_map("missing", "cm", json!({}), json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn nodes_parse_as_typed_nodes() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        (nodes.items.len(), nodes.iter().filter(|n| ready(n)).count()),
        (3, 3)
    );
    let capacity = nodes.items[0]
        .status
        .as_ref()
        .unwrap()
        .capacity
        .as_ref()
        .unwrap();
    assert_eq!(
        (capacity["cpu"].0.as_str(), capacity["pods"].0.as_str()),
        ("4", "110")
    );

    server.set_nodes(4, 1);
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        (nodes.items.len(), nodes.iter().filter(|n| ready(n)).count()),
        (4, 1)
    );
    let one = Api::<Node>::all(client.clone())
        .get("node-4")
        .await
        .unwrap();
    assert!(!ready(&one));
}

#[tokio::test]
async fn workloads_become_ready_unless_annotated_not_ready() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    apply(&client, deployment("default", "web", 3, "nginx"))
        .await
        .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), "default");
    let status = deployments.get("web").await.unwrap().status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );

    // A spec change by another actor (an HPA) bumps generation; the simulated controller follows.
    server.edit("apps/v1", "Deployment", Some("default"), "web", |d| {
        d["spec"]["replicas"] = json!(5)
    });
    let scaled = deployments.get("web").await.unwrap();
    assert_eq!(
        (
            scaled.metadata.generation,
            scaled.status.as_ref().unwrap().observed_generation
        ),
        (Some(2), Some(2))
    );
    assert_eq!(scaled.status.unwrap().ready_replicas, Some(5));

    let mut held = deployment("default", "slow", 2, "nginx");
    held["metadata"]["annotations"] = json!({NOT_READY_ANNOTATION: "true"});
    let held = apply(&client, held).await.unwrap();
    assert!(held.data.get("status").is_none());
    server.set_status(
        "apps/v1",
        "Deployment",
        Some("default"),
        "slow",
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
    );
    let status = deployments.get("slow").await.unwrap().status.unwrap();
    assert_eq!(
        (status.updated_replicas, status.ready_replicas),
        (Some(2), None)
    );

    for manifest in [
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": "default"}, "spec": {"template": {}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"}, "spec": {"replicas": 2}}),
    ] {
        let object = apply(&client, manifest).await.unwrap();
        let status = &object.data["status"];
        match object.types.unwrap().kind.as_str() {
            "Job" => assert!(
                status["conditions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            ),
            "PersistentVolumeClaim" => assert_eq!(status["phase"], "Bound"),
            _ => {
                assert_eq!(
                    (
                        status["readyReplicas"].as_i64(),
                        status["observedGeneration"].as_i64()
                    ),
                    (Some(2), Some(1))
                );
                assert_eq!(status["currentRevision"], status["updateRevision"]);
            }
        }
    }
}

#[tokio::test]
async fn unavailable_server_answers_500_at_once() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    server.set_available(false);
    let started = Instant::now();
    let status = api_status(client.apiserver_version().await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );
    let status = api_status(
        Api::<ConfigMap>::all(client.clone())
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(status.code, 500);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no retries: {:?}",
        started.elapsed()
    );
    server.set_available(true);
    client.apiserver_version().await.unwrap();
    assert_eq!(
        server.requests().iter().filter(|r| r.status == 500).count(),
        2
    );
}
