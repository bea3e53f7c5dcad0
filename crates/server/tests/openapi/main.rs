//! The OpenAPI document served at `/api/v1/openapi.json` describes the wire exactly: a schema per
//! kind whose properties are the keys the server serializes (no more, no fewer), the agent
//! protocol and the error body likewise, and every route the server serves, in a document that
//! parses as OpenAPI 3.1. A real server over HTTP; documents are checked against the schemas with
//! the walker in `schema.rs`, on fully populated examples (`examples.rs`) and on what the server
//! serves.

#[path = "../support/mod.rs"]
mod support;

mod examples;
mod schema;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use flotilla_api::{API_VERSION, Kind, List};
use flotilla_testkit::GitRepoFixture;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Harness, bundle};

use crate::{
    examples::{
        full_bundle_revision, full_error, full_example, full_register_request,
        full_register_response, full_sync_request, full_sync_response, to_json,
    },
    schema::{Schemas, collect_refs},
};

/// How long a GitRepo may take to be fetched and rendered by the server's git worker.
const FETCH_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn openapi_has_a_schema_per_kind_whose_properties_are_exactly_the_serialized_keys() {
    let harness = Harness::start().await;
    let document = served_document(&harness).await;
    let schemas = Schemas::of(&document);
    let mut covered = BTreeSet::new();
    for kind in Kind::ALL {
        let example = full_example(kind);
        assert_eq!(example["kind"], kind.as_str());
        schemas.assert_matches(kind.as_str(), &example, &mut covered);
        // The kind's list, as list endpoints send it.
        let list = to_json(&List {
            items: vec![example],
            continue_token: Some("cursor".into()),
            total: Some(1),
        });
        schemas.assert_matches(&format!("{kind}List"), &list, &mut covered);
    }
    // Every property of every kind's schemas is one the fully populated examples serialize: the
    // schema names no key the server never sends (a missed `rename`, a stale field).
    let kind_properties: BTreeSet<_> = Kind::ALL
        .into_iter()
        .flat_map(|kind| schemas.reachable_properties(kind.as_str()))
        .collect();
    let never_serialized: Vec<_> = kind_properties.difference(&covered).collect();
    assert!(
        never_serialized.is_empty(),
        "schema properties no serialized document has: {never_serialized:?}"
    );
}

#[tokio::test]
async fn openapi_agent_protocol_and_error_schemas_are_exactly_the_serialized_keys() {
    let harness = Harness::start().await;
    let document = served_document(&harness).await;
    let schemas = Schemas::of(&document);
    let mut covered = BTreeSet::new();
    let messages = [
        ("ErrorBody", to_json(&full_error())),
        ("RegisterRequest", to_json(&full_register_request())),
        ("RegisterResponse", to_json(&full_register_response())),
        ("SyncRequest", to_json(&full_sync_request())),
        ("SyncResponse", to_json(&full_sync_response())),
        (
            "BundleRevisionList",
            to_json(&List {
                items: vec![full_bundle_revision()],
                continue_token: Some("cursor".into()),
                total: Some(1),
            }),
        ),
    ];
    for (name, message) in &messages {
        schemas.assert_matches(name, message, &mut covered);
    }
    let properties: BTreeSet<_> = messages
        .iter()
        .flat_map(|(name, _)| schemas.reachable_properties(name))
        .collect();
    let never_serialized: Vec<_> = properties.difference(&covered).collect();
    assert!(
        never_serialized.is_empty(),
        "schema properties no serialized message has: {never_serialized:?}"
    );
}

#[tokio::test]
async fn openapi_kind_schemas_match_what_the_admin_api_serves() {
    let harness = Harness::start().await;
    let document = served_document(&harness).await;
    let schemas = Schemas::of(&document);
    populate_one_of_each_kind(&harness).await;

    let mut covered = BTreeSet::new();
    for kind in Kind::ALL {
        let plural = kind.plural();
        let response = harness
            .admin(Method::GET, &format!("/api/v1/{plural}"), None)
            .await;
        assert_eq!(response.status().as_u16(), 200, "list {plural}");
        let list: Value = response.json().await.expect("list JSON");
        let items = list["items"].as_array().expect("items");
        assert!(!items.is_empty(), "the server lists a {kind}");
        schemas.assert_matches(&format!("{kind}List"), &list, &mut covered);
        for item in items {
            let name = item["metadata"]["name"].as_str().expect("name");
            let response = harness
                .admin(Method::GET, &format!("/api/v1/{plural}/{name}"), None)
                .await;
            assert_eq!(response.status().as_u16(), 200, "get {plural}/{name}");
            let item: Value = response.json().await.expect("object JSON");
            schemas.assert_matches(kind.as_str(), &item, &mut covered);
            if kind == Kind::Bundle {
                let response = harness
                    .admin(
                        Method::GET,
                        &format!("/api/v1/bundles/{name}/revisions"),
                        None,
                    )
                    .await;
                assert_eq!(response.status().as_u16(), 200, "revisions of {name}");
                let revisions: Value = response.json().await.expect("revisions JSON");
                assert!(!revisions["items"].as_array().expect("items").is_empty());
                schemas.assert_matches("BundleRevisionList", &revisions, &mut covered);
            }
        }
    }
    let response = harness
        .admin(Method::GET, "/api/v1/bundles/missing", None)
        .await;
    assert_eq!(response.status().as_u16(), 404);
    let error: Value = response.json().await.expect("error JSON");
    schemas.assert_matches("ErrorBody", &error, &mut covered);
}

#[tokio::test]
async fn openapi_document_parses_as_openapi_3_1_and_lists_every_route() {
    let harness = Harness::start().await;
    let document = served_document(&harness).await;

    // utoipa's model of OpenAPI reads the whole document back, losing nothing.
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(document.clone()).expect("the document parses as OpenAPI");
    assert_eq!(document["openapi"], "3.1.0");
    let mut lost = Vec::new();
    differences(
        &document,
        &serde_json::to_value(&parsed).expect("serialize"),
        "",
        &mut lost,
    );
    assert!(
        lost.is_empty(),
        "parts of the document OpenAPI's model does not keep: {lost:#?}"
    );

    // The routes, methods and status codes the server answers.
    let errors = ["400", "401", "404", "409", "413", "422"];
    let admin = |statuses: &[&'static str]| -> Vec<&'static str> {
        let mut all = statuses.to_vec();
        all.extend(errors);
        all
    };
    let expected: BTreeMap<(&str, &str), Vec<&str>> = [
        (("/api/v1/apply", "post"), admin(&["200", "201"])),
        (("/api/v1/{plural}", "get"), admin(&["200"])),
        (("/api/v1/{plural}", "post"), admin(&["201"])),
        (("/api/v1/{plural}/{name}", "get"), admin(&["200"])),
        (("/api/v1/{plural}/{name}", "put"), admin(&["200", "201"])),
        (("/api/v1/{plural}/{name}", "delete"), admin(&["200"])),
        (("/api/v1/bundles/{name}/revisions", "get"), admin(&["200"])),
        (("/api/v1/bundles/{name}/rollout", "get"), admin(&["200"])),
        (
            ("/api/v1/bundles/{name}/rollout/{verb}", "post"),
            admin(&["200"]),
        ),
        (("/api/v1/version", "get"), admin(&["200"])),
        (
            ("/api/v1/webhooks/git", "post"),
            vec!["200", "202", "401", "403"],
        ),
        (("/agent/v1/register", "post"), vec!["200", "201"]),
        (("/agent/v1/sync", "post"), vec!["200", "204"]),
        (("/agent/v1/content/{digest}", "get"), vec!["200", "404"]),
        (("/healthz", "get"), vec!["200"]),
        (("/livez", "get"), vec!["200"]),
        (("/metrics", "get"), vec!["200"]),
    ]
    .into_iter()
    .collect();
    let mut listed = BTreeMap::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if method == "parameters" {
                continue;
            }
            let mut statuses: Vec<&str> = operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(String::as_str)
                .collect();
            statuses.sort_unstable();
            listed.insert((path.as_str(), method.as_str()), statuses);
        }
    }
    let expected: BTreeMap<_, _> = expected
        .into_iter()
        .map(|(route, mut statuses)| {
            statuses.sort_unstable();
            (route, statuses)
        })
        .collect();
    assert_eq!(listed, expected);

    // The kind routes refer to the per-kind schemas, and every `$ref` resolves.
    let schemas = Schemas::of(&document);
    let mut referenced = BTreeSet::new();
    collect_refs(&document["paths"], &mut referenced);
    for kind in Kind::ALL {
        assert!(referenced.contains(kind.as_str()), "routes refer to {kind}");
        assert!(
            referenced.contains(&format!("{kind}List")),
            "routes refer to {kind}List"
        );
    }
    let mut every_ref = BTreeSet::new();
    collect_refs(&document, &mut every_ref);
    for name in every_ref {
        assert!(schemas.named.contains_key(&name), "dangling $ref {name}");
    }
    let plural = &document["paths"]["/api/v1/{plural}"]["parameters"][0]["schema"]["enum"];
    let plurals: Vec<&str> = Kind::ALL.into_iter().map(Kind::plural).collect();
    assert_eq!(plural, &json!(plurals));
}

// ---------------------------------------------------------------------------------------------
// The served document

async fn served_document(harness: &Harness) -> Value {
    let response = harness
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("the document is JSON")
}

/// The JSON Pointers at which `served` and `reread` differ.
fn differences(served: &Value, reread: &Value, at: &str, found: &mut Vec<String>) {
    match (served, reread) {
        (Value::Object(served), Value::Object(reread)) => {
            let keys: BTreeSet<&String> = served.keys().chain(reread.keys()).collect();
            for key in keys {
                let at = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (served.get(key), reread.get(key)) {
                    (Some(served), Some(reread)) => differences(served, reread, &at, found),
                    (served, _) => found.push(format!("{at}: {served:?}")),
                }
            }
        }
        (Value::Array(served), Value::Array(reread)) if served.len() == reread.len() => {
            for (index, (served, reread)) in served.iter().zip(reread).enumerate() {
                differences(served, reread, &format!("{at}/{index}"), found);
            }
        }
        _ if served == reread => {}
        _ => found.push(format!("{at}: {served} became {reread}")),
    }
}

// ---------------------------------------------------------------------------------------------
// A server holding one object of each kind, with statuses

async fn populate_one_of_each_kind(harness: &Harness) {
    let token = harness
        .token("shops", json!({"labels": {"env": "prod"}}))
        .await;
    let credential = harness
        .register_ok(&token, "store-1", "install-1", json!({"tier": "a"}))
        .await;
    harness
        .apply_ok(&json!({
            "apiVersion": API_VERSION, "kind": "ClusterGroup",
            "metadata": {"name": "prod"},
            "spec": {"selector": {"matchLabels": {"env": "prod"}}},
        }))
        .await;
    harness
        .apply_ok(&bundle("web", json!({"matchLabels": {"env": "prod"}})))
        .await;
    harness
        .apply_ok(&json!({
            "apiVersion": API_VERSION, "kind": "Secret",
            "metadata": {"name": "git-auth"},
            "spec": {"type": "basic-auth", "stringData": {"username": "u", "password": "p"}},
        }))
        .await;
    // The cluster syncs once, so it is Online with facts and the bundle on it.
    harness.sync_ok(&credential).await;

    let repo = GitRepoFixture::new();
    repo.write(
        "apps/web/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  k: v\n",
    );
    let commit = repo.commit("web");
    harness
        .apply_ok(&json!({
            "apiVersion": API_VERSION, "kind": "GitRepo",
            "metadata": {"name": "fleet"},
            "spec": {"repo": repo.file_url(), "paths": ["apps"],
                     "targets": [{"clusterSelector": {}}]},
        }))
        .await;
    let deadline = Instant::now() + FETCH_DEADLINE;
    loop {
        let response = harness
            .admin(Method::GET, "/api/v1/gitrepos/fleet", None)
            .await;
        let gitrepo: Value = response.json().await.expect("GitRepo JSON");
        if gitrepo["status"]["commit"] == commit.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GitRepo not rendered at {commit} within {FETCH_DEADLINE:?}: {gitrepo}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
