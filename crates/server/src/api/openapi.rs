//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`.

use axum::{Json, response::IntoResponse};
use serde_json::{Value, json};

pub async fn document() -> impl IntoResponse {
    Json(openapi())
}

fn collection_params() -> Value {
    json!([
        {"name": "labelSelector", "in": "query", "schema": {"type": "string"},
         "description": "Kubernetes label selector, e.g. `env=prod,tier in (a,b),!canary`"},
        {"name": "state", "in": "query", "schema": {"type": "string"},
         "description": "Clusters: Online, Offline or Pending. Bundles: Ready, NotReady, Modified, Error, Pending or Paused. Tokens: Active, Expired or UsedUp."},
        {"name": "sort", "in": "query", "schema": {"type": "string", "enum": ["name", "-name"]}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500}},
        {"name": "continue", "in": "query", "schema": {"type": "string"},
         "description": "Keyset cursor from the previous page's `continue`"}
    ])
}

fn error_responses() -> Value {
    let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "400": {"description": "Malformed request; the message says what to fix", "content": error["content"]},
        "401": {"description": "Missing or invalid token", "content": error["content"]},
        "404": {"description": "Not found", "content": error["content"]},
        "409": {"description": "Conflict (exists, or changed since read)", "content": error["content"]},
        "413": {"description": "Body too large", "content": error["content"]},
        "422": {"description": "Invalid document; the message names the field", "content": error["content"]}
    })
}

pub fn openapi() -> Value {
    let object = json!({"$ref": "#/components/schemas/Object"});
    let body = json!({"required": true, "content": {
        "application/json": {"schema": object},
        "application/yaml": {"schema": object}
    }});
    let ok = |description: &str, schema: Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let mut collection_get = json!({
        "summary": "List objects, filtered and keyset-paginated",
        "parameters": collection_params(),
        "responses": error_responses()
    });
    collection_get["responses"]["200"] = ok(
        "A page of objects",
        json!({"$ref": "#/components/schemas/List"}),
    );
    let mut collection_post =
        json!({"summary": "Create an object", "requestBody": body, "responses": error_responses()});
    collection_post["responses"]["201"] = ok("Created", object.clone());
    let mut item_get = json!({"summary": "Get an object", "responses": error_responses()});
    item_get["responses"]["200"] = ok("The object", object.clone());
    let mut item_put = json!({"summary": "Create or replace an object (clusters: labels only)", "requestBody": body, "responses": error_responses()});
    item_put["responses"]["200"] = ok("Replaced", object.clone());
    item_put["responses"]["201"] = ok("Created", object.clone());
    let mut item_delete = json!({"summary": "Delete an object", "responses": error_responses()});
    item_delete["responses"]["200"] = ok("Deleted", json!({"type": "object"}));
    let mut apply = json!({"summary": "Create or replace a document of any kind", "requestBody": body, "responses": error_responses()});
    apply["responses"]["200"] = ok("Replaced", object.clone());
    apply["responses"]["201"] = ok("Created", object.clone());
    let plural = json!({"name": "plural", "in": "path", "required": true,
        "schema": {"type": "string", "enum": ["clusters", "clustergroups", "bundles", "registrationtokens", "gitrepos", "secrets"]}});
    let name =
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "flotilla",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "GitOps management plane for fleets of Kubernetes clusters. Admin endpoints take `Authorization: Bearer <admin token>`; agent endpoints take the cluster credential."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["code", "reason", "message"], "properties": {
                    "code": {"type": "integer"}, "reason": {"type": "string"}, "message": {"type": "string"}}},
                "Object": {"type": "object", "required": ["apiVersion", "kind", "metadata"], "properties": {
                    "apiVersion": {"const": flotilla_api::API_VERSION},
                    "kind": {"enum": ["Cluster", "ClusterGroup", "Bundle", "RegistrationToken", "GitRepo", "Secret"]},
                    "metadata": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                        "generation": {"type": "integer", "readOnly": true},
                        "resourceVersion": {"type": "string", "description": "Send back to replace only if unchanged"},
                        "creationTimestamp": {"type": "string", "format": "date-time", "readOnly": true}}},
                    "spec": {"type": "object"},
                    "status": {"type": "object", "readOnly": true}}},
                "List": {"type": "object", "required": ["items"], "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Object"}},
                    "continue": {"type": "string"},
                    "total": {"type": "integer"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/apply": {"post": apply},
            "/api/v1/{plural}": {"parameters": [plural.clone()], "get": collection_get, "post": collection_post},
            "/api/v1/{plural}/{name}": {"parameters": [plural, name], "get": item_get, "put": item_put, "delete": item_delete},
            "/api/v1/webhooks/git": {"post": {"summary": "GitHub or GitLab push event: fetch the GitRepos following that repository and ref now",
                "description": "Authenticated by X-Hub-Signature-256 (GitHub) or X-Gitlab-Token (GitLab) against the Secret git-webhook (type webhook, keys github / gitlab).",
                "security": [],
                "responses": {"202": {"description": "Fetches triggered; lists the GitRepos"}, "200": {"description": "Ping or ignored event"},
                    "401": {"description": "Signature or token does not match"}, "403": {"description": "Webhooks not configured"}}}},
            "/agent/v1/register": {"post": {"summary": "Register a cluster with a registration token", "security": [],
                "responses": {"201": {"description": "Registered"}, "200": {"description": "Re-registered"}}}},
            "/agent/v1/sync": {"post": {"summary": "Heartbeat, status changes, and the current desired set when the etag differs",
                "responses": {"204": {"description": "Unchanged"}, "200": {"description": "Desired set or resync request"}}}},
            "/agent/v1/content/{digest}": {"get": {"summary": "Immutable bundle content by digest",
                "parameters": [{"name": "digest", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "JSON array of manifests"}, "404": {"description": "Not in this cluster's desired set"}}}},
            "/healthz": {"get": {"security": [], "responses": {"200": {"description": "Serving"}}}},
            "/metrics": {"get": {"security": [], "responses": {"200": {"description": "Prometheus metrics"}}}}
        }
    })
}
