//! One error shape: every 4xx and 5xx the server answers is an `ErrorBody` in JSON whose message
//! says what to fix, whichever layer refused the request (query and path extractors, body
//! limits, content types, unknown routes, wrong methods). A real server on 127.0.0.1 walks a
//! table of bad requests.

mod support;

use flotilla_api::ErrorBody;
use flotilla_server::Settings;
use reqwest::{Method, header::CONTENT_TYPE};
use serde_json::json;
use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The body limit these tests run with: small, so oversized bodies are cheap to send.
const BODY_LIMIT: usize = 16 << 10;

/// Who sends a request of the table.
#[derive(Clone, Copy)]
enum As {
    Nobody,
    Admin,
    Agent,
}

/// One bad request and what its error must say.
struct Bad {
    method: Method,
    path: String,
    who: As,
    body: Option<(&'static str, String)>,
    status: u16,
    /// A phrase of the message that tells the client what to fix.
    names: &'static str,
}

fn bad(method: Method, path: impl Into<String>, who: As, status: u16, names: &'static str) -> Bad {
    Bad {
        method,
        path: path.into(),
        who,
        body: None,
        status,
        names,
    }
}

impl Bad {
    fn body(self, content_type: &'static str, body: String) -> Bad {
        Bad {
            body: Some((content_type, body)),
            ..self
        }
    }
}

const LISTS: [&str; 6] = [
    "clusters",
    "clustergroups",
    "bundles",
    "registrationtokens",
    "gitrepos",
    "secrets",
];

fn table() -> Vec<Bad> {
    let mut table = Vec::new();
    // Bad query values on every list endpoint.
    for plural in LISTS {
        let list = format!("/api/v1/{plural}");
        table.push(bad(
            Method::GET,
            format!("{list}?limit=-1"),
            As::Admin,
            400,
            "limit",
        ));
        table.push(bad(
            Method::GET,
            format!("{list}?limit=ten"),
            As::Admin,
            400,
            "limit",
        ));
        table.push(bad(
            Method::GET,
            format!("{list}?limit=99999999999999999999999"),
            As::Admin,
            400,
            "limit",
        ));
        table.push(bad(
            Method::GET,
            format!("{list}?sort=size"),
            As::Admin,
            400,
            "sort=name",
        ));
        table.push(bad(
            Method::GET,
            format!("{list}?continue=%FF%FE"),
            As::Admin,
            400,
            "continue",
        ));
        // Invalid percent-encoded UTF-8 in a path segment.
        table.push(bad(
            Method::GET,
            format!("{list}/%FF%FE"),
            As::Admin,
            400,
            "`name` is not UTF-8",
        ));
        table.push(bad(
            Method::DELETE,
            format!("{list}/caf%C3%28"),
            As::Admin,
            400,
            "`name` is not UTF-8",
        ));
    }
    table.push(bad(
        Method::GET,
        "/api/v1/%FF",
        As::Admin,
        400,
        "`plural` is not UTF-8",
    ));
    table.push(bad(
        Method::GET,
        "/agent/v1/content/%FF",
        As::Agent,
        400,
        "`digest` is not UTF-8",
    ));
    // Oversized bodies on admin, agent and webhook routes.
    let big = || format!("{{\"x\": \"{}\"}}", "y".repeat(BODY_LIMIT));
    for (method, path, who) in [
        (Method::POST, "/api/v1/apply", As::Admin),
        (Method::POST, "/api/v1/bundles", As::Admin),
        (Method::PUT, "/api/v1/bundles/big", As::Admin),
        (Method::POST, "/agent/v1/register", As::Nobody),
        (Method::POST, "/agent/v1/sync", As::Agent),
        (Method::POST, "/api/v1/webhooks/git", As::Nobody),
    ] {
        table.push(bad(method, path, who, 413, "--max-body-bytes").body("application/json", big()));
    }
    // Unknown routes.
    for path in [
        "/nope",
        "/api/v1/clusters/a/b",
        "/agent/v1/nope",
        "/api/v2/clusters",
    ] {
        table.push(bad(Method::GET, path, As::Admin, 404, "openapi.json"));
    }
    // Wrong methods.
    for (method, path) in [
        (Method::PATCH, "/api/v1/clusters/x"),
        (Method::PUT, "/api/v1/apply"),
        (Method::GET, "/agent/v1/sync"),
        (Method::DELETE, "/healthz"),
        (Method::POST, "/metrics"),
    ] {
        table.push(bad(method, path, As::Admin, 405, "method not allowed"));
    }
    // Wrong content types.
    let document = json!({"apiVersion": flotilla_api::API_VERSION, "kind": "ClusterGroup",
        "metadata": {"name": "g"}, "spec": {}})
    .to_string();
    table.push(
        bad(
            Method::POST,
            "/api/v1/apply",
            As::Admin,
            415,
            "application/json or application/yaml",
        )
        .body("application/xml", document.clone()),
    );
    table.push(
        bad(
            Method::POST,
            "/api/v1/clustergroups",
            As::Admin,
            415,
            "application/json or application/yaml",
        )
        .body("multipart/form-data; boundary=x", document),
    );
    table.push(
        bad(
            Method::POST,
            "/agent/v1/register",
            As::Nobody,
            415,
            "application/json",
        )
        .body("text/yaml", "{}".into()),
    );
    table.push(
        bad(
            Method::POST,
            "/agent/v1/sync",
            As::Agent,
            415,
            "application/json",
        )
        .body("application/octet-stream", "{}".into()),
    );
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_the_server_answers_is_json_naming_what_to_fix() {
    let h = Harness::with_settings(Settings {
        max_body_bytes: BODY_LIMIT,
        ..Settings::default()
    })
    .await;
    let token = h.token("errors", json!({})).await;
    let credential = h
        .register_ok(&token, "store-1", "errors-test", json!({}))
        .await;
    let before = h.revision();
    let mut failures = Vec::new();
    for request in table() {
        let token = match request.who {
            As::Nobody => None,
            As::Admin => Some(h.admin.as_str()),
            As::Agent => Some(credential.as_str()),
        };
        let what = format!("{} {}", request.method, request.path);
        let response = h
            .send(request.method, &request.path, token, request.body)
            .await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str::<ErrorBody>(&text);
        let fine = status == request.status
            && content_type.starts_with("application/json")
            && body.as_ref().is_ok_and(|body| {
                body.code == status
                    && !body.reason.is_empty()
                    && body.message.contains(request.names)
            });
        if !fine {
            failures.push(format!(
                "{what}: wanted {} naming {:?}, got {status} {content_type:?} {text}",
                request.status, request.names
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "errors that are not JSON naming what to fix:\n{}",
        failures.join("\n")
    );
    assert_eq!(h.revision(), before, "no bad request stored anything");
    h.assert_serving().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_a_json_413_too() {
    // A body without Content-Length is cut at the limit while it is read: another path through
    // the body limit than a declared length that is refused before reading.
    let h = Harness::with_settings(Settings {
        max_body_bytes: BODY_LIMIT,
        ..Settings::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(h.server.addr)
        .await
        .expect("connect");
    let mut request = String::from(
        "POST /api/v1/webhooks/git HTTP/1.1\r\nHost: flotilla\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
    );
    let chunk = "z".repeat(BODY_LIMIT / 4);
    for _ in 0..8 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    // The server may answer and close before it read everything: a failed write is expected.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(
        answer.contains("\"code\":413") && answer.contains("--max-body-bytes"),
        "{answer}"
    );
    h.shutdown().await;
}
