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
use flotilla_core::failover::{Failover, Outcome, Step};
use reqwest::StatusCode;

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

/// A client of one server or of several replicas (`--server URL1,URL2,…`), moving between them
/// by the rule of `flotilla_core::failover` (the simulator follows the same one): it keeps using
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

    /// Sends a request built by `build` for a base URL to the current replica and then, while
    /// they are unavailable, to each other one once (`flotilla_core::failover`).
    async fn send(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut walk = Failover::new(self.bases.len(), self.current.load(Ordering::Relaxed));
        let mut last_error = String::new();
        loop {
            let index = walk.replica();
            let base = &self.bases[index];
            let (outcome, response) = match build(base).send().await {
                Ok(response) => {
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok());
                    (
                        Outcome::from_status(response.status().as_u16(), retry_after),
                        Some(response),
                    )
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
            match (step, response) {
                (Step::Done { .. }, Some(response)) => return check(response).await,
                (
                    Step::Wait {
                        at_least_millis, ..
                    },
                    response,
                ) => {
                    let retry_after = Duration::from_millis(at_least_millis);
                    return Err(match response {
                        Some(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                            ClientError::Busy(retry_after)
                        }
                        Some(response) => ClientError::Unreachable {
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
                (Step::TryNext { .. }, response) => {
                    if let Some(response) = response {
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
            .send(|base| {
                self.http
                    .post(format!("{base}{REGISTER_PATH}"))
                    .json(request)
            })
            .await?;
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
        let response = self
            .send(|base| {
                self.http
                    .post(format!("{base}{SYNC_PATH}"))
                    .bearer_auth(credential)
                    .json(request)
            })
            .await?;
        if response.status() == StatusCode::NO_CONTENT {
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
            .send(|base| {
                self.http
                    .get(format!("{base}{CONTENT_PATH}/{digest}"))
                    .bearer_auth(credential)
            })
            .await?;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::unreachable(format!("read content: {e}")))
    }
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let message = describe(response).await;
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::Unauthorized(message),
        status if status.is_client_error() => ClientError::Rejected {
            status: status.as_u16(),
            message,
        },
        _ => ClientError::unreachable(format!("{status}: {message}")),
    })
}

/// The message of an error answer: its `ErrorBody`'s, or the status.
async fn describe(response: reqwest::Response) -> String {
    let status = response.status();
    response
        .json::<flotilla_api::ErrorBody>()
        .await
        .map(|body| body.message)
        .unwrap_or_else(|_| status.to_string())
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
}
