//! HTTP client for the `/agent/v1` protocol.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use flotilla_api::agent::{
    CONTENT_PATH, REGISTER_PATH, RegisterRequest, RegisterResponse, SYNC_PATH, SyncRequest,
    SyncResponse,
};
use flotilla_core::{
    failover::{Failover, Outcome, Step},
    protocol::{Call, Reply, classify, error_message},
};

/// What went wrong talking to the server, as the agent must tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused our credential or token: register again (or give up).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The server refused the request as invalid: retrying the same request will not help.
    #[error("rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The server is overloaded: wait at least this long.
    #[error("server busy; retry after {0:?}")]
    Busy(Duration),
    /// Network failure or 5xx from every replica: retry with backoff, no sooner than
    /// `retry_after` (the longest `Retry-After` a replica asked for).
    #[error("server unreachable: {message}")]
    Unreachable {
        message: String,
        retry_after: Duration,
    },
}

impl ClientError {
    fn unreachable(message: String) -> ClientError {
        ClientError::Unreachable {
            message,
            retry_after: Duration::ZERO,
        }
    }

    /// The least the caller must wait before trying again (what the servers asked for).
    pub fn retry_after(&self) -> Duration {
        match self {
            ClientError::Busy(wait) => *wait,
            ClientError::Unreachable { retry_after, .. } => *retry_after,
            ClientError::Unauthorized(_) | ClientError::Rejected { .. } => Duration::ZERO,
        }
    }
}

/// A client of one server or of several replicas (`--server URL1,URL2,…`). What each answer means
/// is `flotilla_core::protocol::classify`'s; it moves between replicas by the rule of
/// `flotilla_core::failover` (the simulator follows both): it keeps using
/// the replica that answered last; when that one is unavailable (network error or 5xx) it tries
/// the others in turn at once, and the agent's backoff with jitter applies only once all failed.
#[derive(Clone)]
pub struct ServerClient {
    bases: Arc<[String]>,
    current: Arc<AtomicUsize>,
    http: reqwest::Client,
}

/// The server URLs of a `--server` value: comma-separated, trailing slashes dropped.
pub fn server_urls(servers: &str) -> Vec<String> {
    servers
        .split(',')
        .map(|url| url.trim().trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty())
        .collect()
}

impl ServerClient {
    /// `servers` is one URL or a comma-separated list of replicas' URLs.
    pub fn new(servers: &str) -> anyhow::Result<ServerClient> {
        let bases = server_urls(servers);
        anyhow::ensure!(
            !bases.is_empty(),
            "no server URL given; pass --server http://host:8080 (or several, comma-separated)"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("flotilla-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("build HTTP client")?;
        Ok(ServerClient {
            bases: bases.into(),
            current: Arc::default(),
            http,
        })
    }

    /// The replica in use now.
    pub fn base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Sends a `call` built by `build` for a base URL to the current replica and then, while
    /// they are unavailable, to each other one once (`flotilla_core::failover`). Returns the
    /// answer that carries what was asked for, with its classification (`Success` or
    /// `Unchanged`); every other answer is the matching [`ClientError`].
    async fn send(
        &self,
        call: Call,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, Reply), ClientError> {
        let mut walk = Failover::new(self.bases.len(), self.current.load(Ordering::Relaxed));
        let mut last_error = String::new();
        loop {
            let index = walk.replica();
            let base = &self.bases[index];
            let (outcome, answer) = match build(base).send().await {
                Ok(response) => {
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok());
                    let reply = classify(call, response.status().as_u16(), retry_after);
                    (reply.outcome(), Some((response, reply)))
                }
                Err(error) => {
                    last_error = format!("{base}: {error}");
                    (Outcome::no_answer(), None)
                }
            };
            let step = walk.on_outcome(outcome);
            if let Step::Done { current } | Step::Wait { current, .. } = step
                && self.current.swap(current, Ordering::Relaxed) != current
            {
                tracing::info!(server = %self.bases[current], "switched to another server replica");
            }
            match (step, answer) {
                (Step::Done { .. }, Some((response, reply))) => {
                    return answered(response, reply).await;
                }
                (
                    Step::Wait {
                        at_least_millis, ..
                    },
                    answer,
                ) => {
                    let retry_after = Duration::from_millis(at_least_millis);
                    return Err(match answer {
                        Some((_, Reply::Busy { .. })) => ClientError::Busy(retry_after),
                        Some((response, _)) => ClientError::Unreachable {
                            message: format!(
                                "{base}: {}: {}",
                                response.status(),
                                describe(response).await
                            ),
                            retry_after,
                        },
                        None => ClientError::Unreachable {
                            message: last_error,
                            retry_after,
                        },
                    });
                }
                (Step::TryNext { .. }, answer) => {
                    if let Some((response, _)) = answer {
                        last_error = format!(
                            "{base}: {}: {}",
                            response.status(),
                            describe(response).await
                        );
                    }
                    tracing::debug!(error = %last_error, "replica unavailable; trying the next one");
                }
                (Step::Done { .. }, None) => {
                    // A request without an answer is never `Done`; treat it as unavailable.
                    return Err(ClientError::unreachable(last_error));
                }
            }
        }
    }

    pub async fn register(
        &self,
        request: &RegisterRequest,
    ) -> Result<RegisterResponse, ClientError> {
        let response = self
            .send(Call::Register, |base| {
                self.http
                    .post(format!("{base}{REGISTER_PATH}"))
                    .json(request)
            })
            .await?
            .0;
        response
            .json()
            .await
            .map_err(|e| ClientError::unreachable(format!("decode register reply: {e}")))
    }

    /// One sync; `Ok(None)` is the 204 "unchanged" reply.
    pub async fn sync(
        &self,
        credential: &str,
        request: &SyncRequest,
    ) -> Result<Option<SyncResponse>, ClientError> {
        let (response, reply) = self
            .send(Call::Sync, |base| {
                self.http
                    .post(format!("{base}{SYNC_PATH}"))
                    .bearer_auth(credential)
                    .json(request)
            })
            .await?;
        if reply == Reply::Unchanged {
            return Ok(None);
        }
        response
            .json()
            .await
            .map(Some)
            .map_err(|e| ClientError::unreachable(format!("decode sync reply: {e}")))
    }

    pub async fn content(&self, credential: &str, digest: &str) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(Call::Content, |base| {
                self.http
                    .get(format!("{base}{CONTENT_PATH}/{digest}"))
                    .bearer_auth(credential)
            })
            .await?
            .0;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::unreachable(format!("read content: {e}")))
    }
}

/// The result of the answer a replica gave (failover is done with it): the response if it
/// carries what was asked for, else the error its classification calls for.
async fn answered(
    response: reqwest::Response,
    reply: Reply,
) -> Result<(reqwest::Response, Reply), ClientError> {
    match reply {
        Reply::Success | Reply::Unchanged => Ok((response, reply)),
        Reply::CredentialRejected => Err(ClientError::Unauthorized(describe(response).await)),
        Reply::RegistrationRefused { status } | Reply::Rejected { status } => {
            Err(ClientError::Rejected {
                status,
                message: describe(response).await,
            })
        }
        // Failover never stops at these; kept whole for the caller's backoff all the same.
        Reply::Busy { retry_after_millis } => {
            Err(ClientError::Busy(Duration::from_millis(retry_after_millis)))
        }
        Reply::Unavailable { retry_after_millis } => Err(ClientError::Unreachable {
            message: format!("{}: {}", response.status(), describe(response).await),
            retry_after: Duration::from_millis(retry_after_millis.unwrap_or(0)),
        }),
    }
}

/// The message of an error answer: the server's JSON message, or the status.
async fn describe(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    error_message(&body).unwrap_or_else(|| status.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers every request with `answer` (a whole HTTP/1.1 response) and counts
    /// the requests; returns its base URL and the count.
    async fn answering(answer: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    counted.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (base, requests)
    }

    const UNAVAILABLE_30: &str = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\n\
                                  Content-Length: 0\r\nConnection: close\r\n\r\n";
    const UNAVAILABLE_7: &str = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n\
                                 Content-Length: 0\r\nConnection: close\r\n\r\n";
    const BUSY_3: &str = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n";
    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    const FORBIDDEN: &str = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n\
                             Content-Length: 61\r\nConnection: close\r\n\r\n\
                             {\"code\":403,\"reason\":\"Forbidden\",\"message\":\"cluster deleted\"}";
    const TIMED_OUT: &str = "HTTP/1.1 408 Request Timeout\r\nRetry-After: 2\r\n\
                             Content-Length: 0\r\nConnection: close\r\n\r\n";

    fn client(bases: &[&str]) -> ServerClient {
        let _ = rustls::crypto::ring::default_provider().install_default();
        ServerClient::new(&bases.join(",")).expect("client")
    }

    #[tokio::test]
    async fn a_replica_answering_503_with_retry_after_is_passed_over_for_the_next() {
        let (down, _) = answering(UNAVAILABLE_30).await;
        let (up, _) = answering(OK).await;
        let client = client(&[&down, &up]);
        let bytes = client.content("c", "sha256:x").await.expect("answered");
        assert_eq!(bytes, b"ok");
        assert_eq!(client.base(), up, "the replica that answered is current");
    }

    #[tokio::test]
    async fn when_every_replica_is_unavailable_the_longest_retry_after_applies() {
        let (first, _) = answering(UNAVAILABLE_7).await;
        let (second, _) = answering(UNAVAILABLE_30).await;
        let client = client(&[&first, &second]);
        let error = client
            .content("c", "sha256:x")
            .await
            .expect_err("unavailable");
        assert!(matches!(error, ClientError::Unreachable { .. }), "{error}");
        assert_eq!(error.retry_after(), Duration::from_secs(30));
        assert_eq!(
            client.base(),
            first,
            "the next attempt starts where this one did"
        );
    }

    #[tokio::test]
    async fn a_replica_shedding_load_is_waited_for_not_passed_over() {
        let (busy, _) = answering(BUSY_3).await;
        let (idle, idle_requests) = answering(OK).await;
        let client = client(&[&busy, &idle]);
        let error = client.content("c", "sha256:x").await.expect_err("busy");
        assert!(matches!(error, ClientError::Busy(_)), "{error}");
        assert_eq!(error.retry_after(), Duration::from_secs(3));
        assert_eq!(idle_requests.load(Ordering::Relaxed), 0);
        assert_eq!(client.base(), busy);
    }

    #[tokio::test]
    async fn a_refused_credential_asks_to_register_again_with_the_servers_message() {
        let (server, _) = answering(FORBIDDEN).await;
        let client = client(&[&server]);
        let error = client.content("c", "sha256:x").await.expect_err("refused");
        match error {
            ClientError::Unauthorized(message) => assert_eq!(message, "cluster deleted"),
            other => panic!("expected Unauthorized, got {other}"),
        }
    }

    #[tokio::test]
    async fn a_registration_that_timed_out_is_retried_not_refused() {
        let (slow, _) = answering(TIMED_OUT).await;
        let client = client(&[&slow]);
        let error = client
            .register(&RegisterRequest {
                token: "t".into(),
                name: "c".into(),
                client_id: "id".into(),
                labels: Default::default(),
                facts: Default::default(),
            })
            .await
            .expect_err("timed out");
        assert!(matches!(error, ClientError::Unreachable { .. }), "{error}");
        assert_eq!(error.retry_after(), Duration::from_secs(2));
    }
}
