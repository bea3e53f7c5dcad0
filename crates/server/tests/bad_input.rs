//! Bad input loses nothing: a real server on 127.0.0.1, driven over HTTP with malformed,
//! invalid, oversized and unauthenticated requests. Every test checks the precise status, that
//! the error body says what to fix, that the store did not move (its revision is the durable
//! proof that nothing was committed) and that the server still serves afterwards.

mod support;

use std::time::Duration;

use flotilla_api::agent::{RegisterResponse, SyncResponse};
use flotilla_server::{Server, Settings};
use reqwest::Method;
use serde_json::{Value, json};
use support::{API_VERSION, Harness, bundle, config_map, expect_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_yaml_and_json_bodies_are_bad_requests() {
    let h = Harness::start().await;
    let before = h.revision();
    let yaml = "apiVersion: flotilla.dev/v1alpha1\nkind: Bundle\nmetadata: [name: web\n  spec: {";
    let json =
        r#"{"apiVersion": "flotilla.dev/v1alpha1", "kind": "Bundle", "metadata": {"name": "web""#;
    for (path, content_type, body, what) in [
        ("/api/v1/apply", "application/yaml", yaml, "malformed YAML"),
        (
            "/api/v1/bundles",
            "application/yaml",
            yaml,
            "malformed YAML",
        ),
        ("/api/v1/apply", "application/json", json, "malformed JSON"),
        (
            "/api/v1/bundles",
            "application/json",
            json,
            "malformed JSON",
        ),
        // JSON without a content type is recognized by its opening brace.
        ("/api/v1/apply", "text/plain", json, "malformed JSON"),
    ] {
        let body = Some((content_type, body.to_string()));
        let response = h.send(Method::POST, path, Some(&h.admin), body).await;
        let error = expect_error(response, 400).await;
        assert_eq!(error.reason, "BadRequest");
        assert!(
            error.message.starts_with(what),
            "{path} {content_type}: {error:?}"
        );
        // The parser's position tells the user where to look.
        assert!(error.message.contains("line"), "{error:?}");
    }
    let empty = Some(("application/yaml", "  \n".to_string()));
    let error = expect_error(
        h.send(Method::POST, "/api/v1/apply", Some(&h.admin), empty)
            .await,
        400,
    )
    .await;
    assert!(error.message.contains("empty"), "{error:?}");
    assert_eq!(h.revision(), before, "nothing was committed");
    assert!(h.names("bundles").await.is_empty());
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kind_and_wrong_api_version_are_refused_by_name() {
    let h = Harness::start().await;
    let before = h.revision();
    let widget = json!({
        "apiVersion": API_VERSION, "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {},
    });
    let error = expect_error(h.apply(&widget).await, 400).await;
    assert!(error.message.contains("\"Widget\""), "{error:?}");
    assert!(
        error.message.contains("Bundle"),
        "lists the served kinds: {error:?}"
    );

    let mut old_version = bundle("web", json!({}));
    old_version["apiVersion"] = json!("flotilla.dev/v1");
    let error = expect_error(h.apply(&old_version).await, 400).await;
    assert!(error.message.contains("\"flotilla.dev/v1\""), "{error:?}");
    assert!(error.message.contains(API_VERSION), "{error:?}");

    // The right kind at the wrong collection, and a collection that does not exist.
    let group = json!({
        "apiVersion": API_VERSION, "kind": "ClusterGroup", "metadata": {"name": "web"},
    });
    let error = expect_error(
        h.admin(Method::POST, "/api/v1/bundles", Some(&group)).await,
        400,
    )
    .await;
    assert!(error.message.contains("/api/v1/clustergroups"), "{error:?}");
    let error = expect_error(
        h.admin(Method::POST, "/api/v1/widgets", Some(&widget))
            .await,
        404,
    )
    .await;
    assert!(error.message.contains("\"widgets\""), "{error:?}");

    assert_eq!(h.revision(), before);
    h.assert_absent("bundles", "web").await;
    h.assert_absent("clustergroups", "web").await;
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_denied_naming_the_field() {
    let h = Harness::start().await;
    let before = h.revision();
    let mut in_spec = bundle("web", json!({}));
    in_spec["spec"]["replicas"] = json!(3);
    let mut in_target = bundle("web", json!({}));
    in_target["spec"]["targets"][0]["clusterSelectr"] = json!({});
    let mut in_metadata = bundle("web", json!({}));
    in_metadata["metadata"]["namespace"] = json!("default");
    for (document, path, field) in [
        (in_spec, "spec", "replicas"),
        (in_target, "spec.targets[0]", "clusterSelectr"),
        (in_metadata, "metadata", "namespace"),
    ] {
        let error = expect_error(h.apply(&document).await, 422).await;
        assert_eq!(error.reason, "Invalid");
        assert!(error.message.contains(path), "names {path}: {error:?}");
        assert!(
            error.message.contains(&format!("unknown field `{field}`")),
            "{error:?}"
        );
    }
    assert_eq!(h.revision(), before);
    h.assert_absent("bundles", "web").await;
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_target_selector_is_unprocessable_naming_the_target() {
    let h = Harness::start().await;
    let before = h.revision();
    let near =
        json!({"matchExpressions": [{"key": "env", "operator": "Near", "values": ["prod"]}]});
    let in_without_values = json!({"matchExpressions": [{"key": "env", "operator": "In"}]});
    let bad_key = json!({"matchLabels": {"bad key!": "x"}});
    for (selector, hint) in [
        (near, "\"Near\""),
        (in_without_values, "needs at least one value"),
        (bad_key, "\"bad key!\""),
    ] {
        let error = expect_error(h.apply(&bundle("web", selector)).await, 422).await;
        assert!(
            error
                .message
                .starts_with("spec.targets[0].clusterSelector: "),
            "{error:?}"
        );
        assert!(error.message.contains(hint), "{error:?}");
    }
    // A target that selects nothing at all says how to select everything.
    let mut no_selector = bundle("web", json!({}));
    no_selector["spec"]["targets"] = json!([{"name": "all"}]);
    let error = expect_error(h.apply(&no_selector).await, 422).await;
    assert!(error.message.contains("spec.targets[0] (all)"), "{error:?}");

    assert_eq!(h.revision(), before);
    h.assert_absent("bundles", "web").await;
    // The same bundle with a valid selector is accepted.
    h.apply_ok(&bundle("web", json!({"matchLabels": {"env": "prod"}})))
        .await;
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_ignore_paths_must_be_json_pointers() {
    let h = Harness::start().await;
    let before = h.revision();
    for (ignore, hint) in [
        (
            json!([{"kind": "Deployment", "paths": ["spec.replicas"]}]),
            "spec.drift.ignore[0].paths[0]",
        ),
        (
            json!([{"kind": "Deployment", "paths": []}]),
            "spec.drift.ignore[0].paths: list at least one",
        ),
    ] {
        let mut drifting = bundle("web", json!({}));
        drifting["spec"]["drift"] = json!({"mode": "report", "ignore": ignore});
        let error = expect_error(h.apply(&drifting).await, 422).await;
        assert!(error.message.contains(hint), "{error:?}");
    }
    let mut unknown_mode = bundle("web", json!({}));
    unknown_mode["spec"]["drift"] = json!({"mode": "sometimes"});
    let error = expect_error(h.apply(&unknown_mode).await, 422).await;
    assert!(error.message.contains("spec.drift.mode"), "{error:?}");
    assert_eq!(h.revision(), before);
    h.assert_absent("bundles", "web").await;
    let mut valid = bundle("web", json!({}));
    valid["spec"]["drift"] =
        json!({"mode": "report", "ignore": [{"kind": "Deployment", "paths": ["/spec/replicas"]}]});
    h.apply_ok(&valid).await;
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_without_metadata_name_is_unprocessable() {
    let h = Harness::start().await;
    let before = h.revision();
    let mut unnamed = bundle("web", json!({}));
    unnamed["metadata"] = json!({});
    let error = expect_error(h.apply(&unnamed).await, 422).await;
    assert!(error.message.contains("metadata.name"), "{error:?}");
    let error = expect_error(
        h.admin(Method::POST, "/api/v1/bundles", Some(&unnamed))
            .await,
        422,
    )
    .await;
    assert!(error.message.contains("metadata.name"), "{error:?}");

    // A manifest inside the bundle without metadata.name names the manifest and the field.
    let mut unnamed_resource = bundle("web", json!({}));
    unnamed_resource["spec"]["resources"] =
        json!([config_map("a"), {"apiVersion": "v1", "kind": "Secret", "metadata": {}}]);
    let error = expect_error(h.apply(&unnamed_resource).await, 422).await;
    assert!(error.message.starts_with("spec.resources: "), "{error:?}");
    assert!(error.message.contains("index 1"), "{error:?}");
    assert!(error.message.contains("metadata.name"), "{error:?}");

    assert_eq!(h.revision(), before);
    assert!(h.names("bundles").await.is_empty());
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_malformed_label_selector_is_a_bad_request() {
    let h = Harness::start().await;
    h.apply_ok(&bundle("web", json!({}))).await;
    for plural in ["clusters", "bundles", "clustergroups", "registrationtokens"] {
        let url = format!("http://{}/api/v1/{plural}", h.server.addr);
        let response = h
            .http
            .get(&url)
            .bearer_auth(&h.admin)
            .query(&[("labelSelector", "env in (")])
            .send()
            .await
            .expect("request");
        let error = expect_error(response, 400).await;
        assert!(error.message.contains("\"env in (\""), "{error:?}");
        // A valid selector on the same collection works.
        let response = h
            .http
            .get(&url)
            .bearer_auth(&h.admin)
            .query(&[("labelSelector", "env in (prod)")])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200);
    }
    assert_eq!(h.names("bundles").await, ["web"]);
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_payload_too_large() {
    let limit = 64 << 10;
    let h = Harness::with_settings(Settings {
        max_body_bytes: limit,
        ..Settings::default()
    })
    .await;
    let before = h.revision();
    let mut big = bundle("big", json!({}));
    big["spec"]["resources"][0]["data"]["k"] = json!("x".repeat(limit + (16 << 10)));
    let error = expect_error(h.apply(&big).await, 413).await;
    assert_eq!(error.reason, "RequestEntityTooLarge");
    assert!(error.message.contains("--max-body-bytes"), "{error:?}");
    // The agent endpoints have the same limit.
    let body = Some(("application/json", "y".repeat(limit + 1)));
    let response = h.send(Method::POST, "/agent/v1/register", None, body).await;
    expect_error(response, 413).await;

    assert_eq!(h.revision(), before);
    h.assert_absent("bundles", "big").await;
    // Just under the limit is fine.
    big["spec"]["resources"][0]["data"]["k"] = json!("x".repeat(limit / 2));
    h.apply_ok(&big).await;
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_require_the_admin_token() {
    let h = Harness::start().await;
    let before = h.revision();
    let document = bundle("web", json!({}));
    let wrong = "0".repeat(64);
    let requests = [
        (Method::GET, "/api/v1/bundles", None),
        (Method::GET, "/api/v1/bundles/web", None),
        (Method::POST, "/api/v1/apply", Some(document.to_string())),
        (Method::POST, "/api/v1/bundles", Some(document.to_string())),
        (
            Method::PUT,
            "/api/v1/bundles/web",
            Some(document.to_string()),
        ),
        (Method::DELETE, "/api/v1/bundles/web", None),
    ];
    for (method, path, body) in requests {
        for token in [None, Some(""), Some(wrong.as_str()), Some("admin")] {
            let body = body.clone().map(|b| ("application/json", b));
            let response = h.send(method.clone(), path, token, body).await;
            let error = expect_error(response, 401).await;
            assert_eq!(error.reason, "Unauthorized");
            assert!(error.message.contains("admin token"), "{error:?}");
        }
    }
    // A cluster credential is not an admin token either.
    let token = h.token("t", json!({})).await;
    let credential = h.register_ok(&token, "store-1", "c1", json!({})).await;
    let before_cluster = h.revision();
    let response = h
        .send(Method::GET, "/api/v1/clusters", Some(&credential), None)
        .await;
    expect_error(response, 401).await;
    assert!(before_cluster > before);
    assert_eq!(h.revision(), before_cluster);
    h.assert_absent("bundles", "web").await;
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_with_garbage_token_is_unauthorized() {
    let h = Harness::start().await;
    let token = h.token("t", json!({})).await;
    let before = h.revision();
    let (name, _) = token.split_once('.').expect("name.secret");
    for garbage in [
        "garbage".to_string(),
        String::new(),
        format!("{name}.{}", "0".repeat(64)),
        format!("nope.{}", "0".repeat(64)),
    ] {
        let response = h.register(&garbage, "store-1", "c1", json!({})).await;
        let error = expect_error(response, 401).await;
        assert!(error.message.contains("registration token"), "{error:?}");
    }
    assert_eq!(h.revision(), before);
    assert!(h.names("clusters").await.is_empty());
    h.assert_absent("clusters", "store-1").await;
    // The real token still works.
    h.register_ok(&token, "store-1", "c1", json!({})).await;
    assert_eq!(h.names("clusters").await, ["store-1"]);
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_with_expired_token_is_unauthorized() {
    let h = Harness::start().await;
    // The API accepts an expiry in the past, so no waiting is needed.
    let token = h
        .token("old", json!({"expiresAt": "2000-01-01T00:00:00Z"}))
        .await;
    let state = h
        .admin(Method::GET, "/api/v1/registrationtokens/old", None)
        .await;
    let state: Value = state.json().await.expect("token JSON");
    assert_eq!(state["status"]["state"], "Expired");
    let before = h.revision();
    let error = expect_error(h.register(&token, "store-1", "c1", json!({})).await, 401).await;
    assert!(error.message.contains("\"old\" has expired"), "{error:?}");
    assert!(error.message.contains("token create"), "{error:?}");
    assert_eq!(h.revision(), before);
    h.assert_absent("clusters", "store-1").await;

    // An unexpired token registers the same cluster.
    let fresh = h.token("fresh", json!({"ttl": "1h"})).await;
    h.register_ok(&fresh, "store-1", "c1", json!({})).await;
    assert_eq!(h.names("clusters").await, ["store-1"]);
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_with_used_up_token_is_unauthorized() {
    let h = Harness::start().await;
    let token = h.token("once", json!({"maxUses": 1})).await;
    let response = h.register(&token, "store-1", "c1", json!({})).await;
    assert_eq!(response.status().as_u16(), 201);
    let before = h.revision();
    let error = expect_error(h.register(&token, "store-2", "c2", json!({})).await, 401).await;
    assert!(error.message.contains("\"once\" is used up"), "{error:?}");
    assert_eq!(h.revision(), before);
    h.assert_absent("clusters", "store-2").await;
    assert_eq!(h.names("clusters").await, ["store-1"]);

    // Re-registering the cluster that used the token is not a new use.
    let response = h.register(&token, "store-1", "c1", json!({})).await;
    assert_eq!(response.status().as_u16(), 200);
    let token_doc: Value = h
        .admin(Method::GET, "/api/v1/registrationtokens/once", None)
        .await
        .json()
        .await
        .expect("token JSON");
    assert_eq!(token_doc["status"]["uses"], 1);
    assert_eq!(token_doc["status"]["state"], "UsedUp");
    assert_eq!(h.names("clusters").await, ["store-1"]);
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registration_is_idempotent_and_another_client_cannot_take_the_name() {
    let h = Harness::start().await;
    let token = h.token("t", json!({})).await;
    let response = h
        .register(&token, "store-1", "client-a", json!({"env": "prod"}))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let first: RegisterResponse = response.json().await.expect("JSON");
    let cluster: Value = h
        .admin(Method::GET, "/api/v1/clusters/store-1", None)
        .await
        .json()
        .await
        .expect("JSON");

    // Same name and client id: 200, still one cluster, labels and generation untouched, and a
    // fresh credential that replaces the old one.
    let response = h
        .register(&token, "store-1", "client-a", json!({"env": "dev"}))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let second: RegisterResponse = response.json().await.expect("JSON");
    assert_eq!(second.name, "store-1");
    assert_ne!(second.credential, first.credential);
    assert_eq!(h.names("clusters").await, ["store-1"]);
    let again: Value = h
        .admin(Method::GET, "/api/v1/clusters/store-1", None)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(again["metadata"]["labels"], cluster["metadata"]["labels"]);
    assert_eq!(
        again["metadata"]["generation"],
        cluster["metadata"]["generation"]
    );
    h.sync_ok(&second.credential).await;
    expect_error(h.sync(&first.credential, None).await, 401).await;

    // Another client id claiming the name: 409, and the cluster keeps its credential.
    let before = h.revision();
    let response = h.register(&token, "store-1", "client-b", json!({})).await;
    let error = expect_error(response, 409).await;
    assert_eq!(error.reason, "Conflict");
    assert!(error.message.contains("\"store-1\""), "{error:?}");
    assert!(error.message.contains("another agent"), "{error:?}");
    assert_eq!(h.revision(), before);
    assert_eq!(h.names("clusters").await, ["store-1"]);
    let sync = h.sync(&second.credential, None).await;
    assert_eq!(sync.status().as_u16(), 200);
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_read_only_content_in_their_own_desired_set() {
    let h = Harness::start().await;
    h.apply_ok(&bundle("web-prod", json!({"matchLabels": {"env": "prod"}})))
        .await;
    let dev: Value = h
        .apply_ok(&bundle("web-dev", json!({"matchLabels": {"env": "dev"}})))
        .await;
    let dev_digest = dev["status"]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let token = h.token("t", json!({})).await;
    let east = h
        .register_ok(&token, "east", "c-east", json!({"env": "prod"}))
        .await;
    let west = h
        .register_ok(&token, "west", "c-west", json!({"env": "dev"}))
        .await;
    let desired = h.sync_ok(&east).await;
    let bundles = desired.bundles.expect("desired set");
    assert_eq!(bundles.len(), 1);
    assert_eq!(bundles[0].name, "web-prod");
    let own_digest = bundles[0].digest.clone();
    assert_ne!(own_digest, dev_digest);
    h.sync_ok(&west).await;

    // Its own content: served, and the first reply carried it inline, byte for byte.
    let response = h.content(&east, &own_digest).await;
    assert_eq!(response.status().as_u16(), 200);
    let served = response.bytes().await.expect("content bytes");
    let manifests: Value = serde_json::from_slice(&served).expect("content JSON");
    assert_eq!(manifests[0]["metadata"]["name"], "web-prod");
    let inlined: Vec<&String> = desired.contents.keys().collect();
    assert_eq!(inlined, [&own_digest], "only its own content rides along");
    assert_eq!(desired.contents[&own_digest].bytes(), &served[..]);
    assert!(flotilla_core::digest::verify_content(&own_digest, &served));

    // Another cluster's content and content that does not exist look the same: 404.
    let random = format!("sha256:{}", "ab".repeat(32));
    let mut messages = Vec::new();
    for (credential, digest) in [(&east, &dev_digest), (&east, &random), (&west, &own_digest)] {
        let error = expect_error(h.content(credential, digest).await, 404).await;
        assert!(error.message.contains("not in this cluster's desired set"));
        messages.push(error.message.replace(digest.as_str(), "<digest>"));
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");

    // A garbage credential is refused on content and sync, even for real content.
    let (_, east_secret) = east.split_once('.').expect("name.secret");
    for garbage in [
        "garbage".to_string(),
        format!("east.{}", "0".repeat(64)),
        format!("nowhere.{east_secret}"),
        format!("west.{east_secret}"),
    ] {
        let error = expect_error(h.content(&garbage, &own_digest).await, 401).await;
        assert!(error.message.contains("cluster credential"), "{error:?}");
        let error = expect_error(h.sync(&garbage, None).await, 401).await;
        assert!(error.message.contains("cluster credential"), "{error:?}");
    }
    let response = h.send(Method::POST, "/agent/v1/sync", None, None).await;
    expect_error(response, 401).await;

    // After all of that, a valid sync and a valid apply still work.
    let response = h.sync(&east, Some(&desired.etag)).await;
    assert_eq!(response.status().as_u16(), 204, "the etag is current");
    h.apply_ok(&bundle("web-all", json!({}))).await;
    let response = h.sync(&east, Some(&desired.etag)).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "a new bundle changes the etag"
    );
    let changed: SyncResponse = response.json().await.expect("sync JSON");
    let names: Vec<_> = changed
        .bundles
        .expect("desired set")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["web-all", "web-prod"]);
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sync_body_is_a_bad_request_naming_the_field() {
    let h = Harness::start().await;
    let token = h.token("t", json!({})).await;
    let credential = h.register_ok(&token, "store-1", "c1", json!({})).await;
    let before = h.revision();
    for (body, path) in [
        (json!({"reportDigest": 7}), "reportDigest"),
        (
            json!({"reportDigest": "r", "bundles": [{"bundle": "web"}]}),
            "bundles[0]",
        ),
        (json!({"reportDigest": "r", "surprise": true}), "surprise"),
    ] {
        let body = Some(("application/json", body.to_string()));
        let response = h
            .send(Method::POST, "/agent/v1/sync", Some(&credential), body)
            .await;
        let error = expect_error(response, 400).await;
        assert!(error.message.contains(path), "{path}: {error:?}");
    }
    assert_eq!(h.revision(), before);
    h.sync_ok(&credential).await;
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrage_of_bad_input_changes_nothing_and_the_server_keeps_serving() {
    let limit = 64 << 10;
    let h = Harness::with_settings(Settings {
        max_body_bytes: limit,
        ..Settings::default()
    })
    .await;
    h.apply_ok(&bundle("web", json!({"matchLabels": {"env": "prod"}})))
        .await;
    let token = h.token("once", json!({"maxUses": 1})).await;
    let expired = h
        .token("old", json!({"expiresAt": "2000-01-01T00:00:00Z"}))
        .await;
    let credential = h
        .register_ok(&token, "store-1", "c1", json!({"env": "prod"}))
        .await;
    let desired = h.sync_ok(&credential).await;
    let before = h.revision();

    let admin = Some(h.admin.as_str());
    let agent = Some(credential.as_str());
    let register = |token: &str, name: &str, client: &str| {
        json!({"token": token, "name": name, "clientId": client}).to_string()
    };
    let mut widget = bundle("w", json!({}));
    widget["kind"] = json!("Widget");
    let bad_selector = bundle(
        "web",
        json!({"matchExpressions": [{"key": "env", "operator": "Near"}]}),
    );
    let random = format!("/agent/v1/content/sha256:{}", "0".repeat(64));
    /// Method, path, bearer token, JSON body, expected status.
    type Case<'a> = (Method, &'a str, Option<&'a str>, Option<String>, u16);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/v1/apply",
            admin,
            Some("kind: [".into()),
            400,
        ),
        (
            Method::POST,
            "/api/v1/apply",
            admin,
            Some("{\"kind\":".into()),
            400,
        ),
        (
            Method::POST,
            "/api/v1/apply",
            admin,
            Some(widget.to_string()),
            400,
        ),
        (
            Method::PUT,
            "/api/v1/bundles/web",
            admin,
            Some(bad_selector.to_string()),
            422,
        ),
        (
            Method::POST,
            "/api/v1/apply",
            admin,
            Some("x".repeat(limit + 1)),
            413,
        ),
        (
            Method::GET,
            "/api/v1/clusters?labelSelector=env%20in%20(",
            admin,
            None,
            400,
        ),
        (Method::DELETE, "/api/v1/bundles/web", None, None, 401),
        (
            Method::POST,
            "/api/v1/bundles",
            admin,
            Some(bundle("web", json!({})).to_string()),
            409,
        ),
        (
            Method::POST,
            "/agent/v1/register",
            None,
            Some(register("garbage", "s2", "c2")),
            401,
        ),
        (
            Method::POST,
            "/agent/v1/register",
            None,
            Some(register(&expired, "s2", "c2")),
            401,
        ),
        (
            Method::POST,
            "/agent/v1/register",
            None,
            Some(register(&token, "s2", "c2")),
            401,
        ),
        (
            Method::POST,
            "/agent/v1/register",
            None,
            Some(register(&token, "store-1", "c9")),
            409,
        ),
        (
            Method::POST,
            "/agent/v1/sync",
            Some("store-1.nope"),
            Some("{}".into()),
            401,
        ),
        (
            Method::POST,
            "/agent/v1/sync",
            agent,
            Some("[]".into()),
            400,
        ),
        (Method::GET, &random, agent, None, 404),
    ];
    for (method, path, token, body, status) in cases {
        let body = body.map(|b| ("application/json", b));
        let response = h.send(method.clone(), path, token, body).await;
        let error = expect_error(response, status).await;
        assert!(!error.message.is_empty(), "{method} {path}");
    }
    assert_eq!(h.revision(), before, "no bad request committed anything");
    assert_eq!(h.names("clusters").await, ["store-1"]);
    assert_eq!(h.names("bundles").await, ["web"]);

    let response = h.sync(&credential, Some(&desired.etag)).await;
    assert_eq!(response.status().as_u16(), 204, "a valid sync");
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_git_repos_and_secrets_are_unprocessable_naming_the_field() {
    let h = Harness::start().await;
    let before = h.revision();
    let repo = |spec: Value| json!({"apiVersion": API_VERSION, "kind": "GitRepo", "metadata": {"name": "fleet"}, "spec": spec});
    for (spec, hint) in [
        (json!({"repo": "--upload-pack=evil"}), "spec.repo"),
        (json!({"repo": "ext::sh -c evil"}), "spec.repo"),
        (
            json!({"repo": "https://bob:hunter2@git.example/x.git"}),
            "clientSecretName",
        ),
        (
            json!({"repo": "https://git.example/x.git", "branch": "-x"}),
            "spec.branch",
        ),
        (
            json!({"repo": "https://git.example/x.git", "branch": "main", "revision": "v1"}),
            "spec.branch and spec.revision",
        ),
        (
            json!({"repo": "https://git.example/x.git", "paths": ["../etc"]}),
            "spec.paths[0]",
        ),
        (
            json!({"repo": "https://git.example/x.git", "pollInterval": "soon"}),
            "spec.pollInterval",
        ),
        (
            json!({"repo": "https://git.example/x.git", "targets": [{"clusterSelector": {}, "resources": []}]}),
            "spec.targets[].resources",
        ),
    ] {
        let error = expect_error(h.apply(&repo(spec)).await, 422).await;
        assert!(error.message.contains(hint), "{hint}: {error:?}");
    }
    let secret = |spec: Value| json!({"apiVersion": API_VERSION, "kind": "Secret", "metadata": {"name": "git-webhook"}, "spec": spec});
    for (spec, hint) in [
        (json!({"type": "token"}), "spec.type"),
        (
            json!({"type": "basic-auth", "stringData": {"username": "u"}}),
            "spec.stringData.password",
        ),
        // An empty webhook key would accept requests anyone can forge.
        (
            json!({"type": "webhook", "stringData": {"gitlab": ""}}),
            "spec.stringData.gitlab",
        ),
        (
            json!({"type": "ssh-auth", "stringData": {"ssh-privatekey": "k"}}),
            "spec.stringData.known_hosts",
        ),
    ] {
        let error = expect_error(h.apply(&secret(spec)).await, 422).await;
        assert!(error.message.contains(hint), "{hint}: {error:?}");
    }
    assert_eq!(h.revision(), before, "nothing was written");
    h.assert_absent("gitrepos", "fleet").await;
    h.assert_absent("secrets", "git-webhook").await;
    let shown = h
        .apply_ok(&secret(
            json!({"type": "webhook", "stringData": {"github": "s3cret"}}),
        ))
        .await;
    assert!(
        !shown.to_string().contains("s3cret"),
        "values are write-only: {shown}"
    );
    h.assert_serving().await;
    h.shutdown().await;
}

/// Opens a connection and sends the head of an agent call whose body never comes: the server
/// holds it in flight until the connection closes.
async fn hang_agent_call(server: &Server, path: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: flotilla\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream
}

async fn wait_for_in_flight(server: &Server, wanted: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = server
            .state
            .agent_in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        if now == wanted {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent calls in flight stayed at {now}, expected {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_calls_past_the_in_flight_limit_are_shed_with_retry_after() {
    let harness = Harness::with_settings(Settings {
        max_agent_requests: 2,
        ..Settings::default()
    })
    .await;
    let sync = flotilla_api::agent::SYNC_PATH;
    let register = flotilla_api::agent::REGISTER_PATH;
    let first = hang_agent_call(&harness.server, sync).await;
    wait_for_in_flight(&harness.server, 1).await;
    // Registrations give way at half the limit.
    let refused = harness
        .send(
            Method::POST,
            register,
            None,
            Some(("application/json", "{}".into())),
        )
        .await;
    let retry_after: u32 = refused
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a shed call carries Retry-After in seconds");
    assert!((2..=10).contains(&retry_after), "Retry-After {retry_after}");
    let error = expect_error(refused, 429).await;
    assert!(error.message.contains("retry after"), "{error:?}");
    let second = hang_agent_call(&harness.server, sync).await;
    wait_for_in_flight(&harness.server, 2).await;
    let refused = harness
        .send(
            Method::POST,
            sync,
            Some("c.secret"),
            Some(("application/json", "{}".into())),
        )
        .await;
    expect_error(refused, 429).await;
    // Admin calls are never shed.
    assert_eq!(harness.names("clusters").await, Vec::<String>::new());
    // Once the held calls end, agents are served again (this one is refused for its credential,
    // after admission).
    drop((first, second));
    wait_for_in_flight(&harness.server, 0).await;
    let admitted = harness
        .send(
            Method::POST,
            sync,
            Some("c.secret"),
            Some(("application/json", "{}".into())),
        )
        .await;
    expect_error(admitted, 401).await;
    let metrics = harness
        .send(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("flotilla_agent_requests_shed_total 2"),
        "the two refusals are counted:\n{metrics}"
    );
}

/// The names on every page of a keyset-paged list, following `continue` to the end.
async fn pages(harness: &Harness, plural: &str, query: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/{plural}?limit=2{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&continue={cursor}"));
        }
        let response = harness.admin(Method::GET, &path, None).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let list: Value = response.json().await.expect("list JSON");
        pages.push(
            list["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|item| item["metadata"]["name"].as_str().expect("name").to_string())
                .collect(),
        );
        match list["continue"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return pages,
        }
        assert!(pages.len() < 10, "paging does not end: {pages:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pages_continue_after_the_cursor_in_either_order() {
    let harness = Harness::start().await;
    for name in ["g3", "g1", "g5", "g2", "g4"] {
        harness
            .apply_ok(&json!({
                "apiVersion": API_VERSION, "kind": "ClusterGroup",
                "metadata": {"name": name, "labels": {"odd": (name != "g2" && name != "g4").to_string()}},
                "spec": {"selector": {"matchLabels": {"env": "prod"}}},
            }))
            .await;
    }
    let names = |pages: &[&[&str]]| -> Vec<Vec<String>> {
        pages
            .iter()
            .map(|page| page.iter().map(|n| n.to_string()).collect())
            .collect()
    };
    assert_eq!(
        pages(&harness, "clustergroups", "").await,
        names(&[&["g1", "g2"], &["g3", "g4"], &["g5"]])
    );
    assert_eq!(
        pages(&harness, "clustergroups", "&sort=-name").await,
        names(&[&["g5", "g4"], &["g3", "g2"], &["g1"]])
    );
    // A filter skips non-matching names without ending a page early.
    assert_eq!(
        pages(&harness, "clustergroups", "&labelSelector=odd%3Dtrue").await,
        names(&[&["g1", "g3"], &["g5"]])
    );
    assert_eq!(
        pages(
            &harness,
            "clustergroups",
            "&labelSelector=odd%3Dtrue&sort=-name"
        )
        .await,
        names(&[&["g5", "g3"], &["g1"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_label_gets_the_same_status_and_names_its_field_at_registration_and_on_the_admin_api()
 {
    let h = Harness::start().await;
    let token = h.token("t", json!({})).await;
    let credential = h.register_ok(&token, "store-1", "c1", json!({})).await;
    assert!(!credential.is_empty());
    let before = h.revision();
    let bad = json!({"bad key": "v"});

    let mut refusals = Vec::new();
    let registration = h.register(&token, "store-2", "c2", bad.clone()).await;
    refusals.push((
        "registration",
        "labels",
        expect_error(registration, 422).await,
    ));
    let group = json!({"apiVersion": API_VERSION, "kind": "ClusterGroup",
        "metadata": {"name": "g", "labels": bad}, "spec": {"selector": {}}});
    refusals.push((
        "cluster group",
        "metadata.labels",
        expect_error(h.apply(&group).await, 422).await,
    ));
    let mut web = bundle("web", json!({}));
    web["metadata"]["labels"] = bad.clone();
    refusals.push((
        "bundle",
        "metadata.labels",
        expect_error(h.apply(&web).await, 422).await,
    ));
    let cluster = json!({"apiVersion": API_VERSION, "kind": "Cluster",
        "metadata": {"name": "store-1", "labels": bad}});
    refusals.push((
        "cluster",
        "metadata.labels",
        expect_error(
            h.admin(Method::PUT, "/api/v1/clusters/store-1", Some(&cluster))
                .await,
            422,
        )
        .await,
    ));
    let token_labels = json!({"apiVersion": API_VERSION, "kind": "RegistrationToken",
        "metadata": {"name": "t2"}, "spec": {"labels": bad}});
    refusals.push((
        "token",
        "spec.labels",
        expect_error(h.apply(&token_labels).await, 422).await,
    ));
    for (what, field, error) in refusals {
        assert_eq!(error.reason, "Invalid", "{what}: {error:?}");
        let causes = error.details.as_ref().map(|d| d.causes.as_slice());
        assert_eq!(
            causes.and_then(|c| c.first()).map(|c| c.field.as_str()),
            Some(field),
            "{what}: the cause names the field: {error:?}"
        );
        assert!(
            error.message.starts_with(&format!("{field} bad key=v: ")),
            "{what}: the message names the field: {error:?}"
        );
    }
    assert_eq!(h.revision(), before, "nothing was stored");
    h.assert_serving().await;
    h.shutdown().await;
}
