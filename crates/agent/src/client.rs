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
    /// Network failure or 5xx: retry with backoff.
    #[error("server unreachable: {0}")]
    Unreachable(String),
}

/// A client of one server or of several replicas (`--server URL1,URL2,…`). It keeps using the
/// replica that answered last; when that one is unreachable (network error or 5xx) it tries the
/// others in turn at once, and the agent's backoff with jitter applies only once all failed.
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

    /// Sends a request built by `build` for a base URL, to the current replica and then, while
    /// they are unreachable, to each other one once.
    async fn send(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..self.bases.len() {
            let index = (first + step) % self.bases.len();
            let base = &self.bases[index];
            let sent = build(base)
                .send()
                .await
                .map_err(|e| ClientError::Unreachable(format!("{base}: {e}")));
            let checked = match sent {
                Ok(response) => check(response).await,
                Err(error) => Err(error),
            };
            match checked {
                Err(ClientError::Unreachable(error)) => {
                    if self.bases.len() > 1 {
                        tracing::debug!(%error, "replica unreachable; trying the next one");
                    }
                    last_error = Some(ClientError::Unreachable(error));
                }
                answered => {
                    if step > 0 {
                        tracing::info!(server = %base, "switched to another server replica");
                        self.current.store(index, Ordering::Relaxed);
                    }
                    return answered;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Unreachable("no server".into())))
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
            .map_err(|e| ClientError::Unreachable(format!("decode register reply: {e}")))
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
            .map_err(|e| ClientError::Unreachable(format!("decode sync reply: {e}")))
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
            .map_err(|e| ClientError::Unreachable(format!("read content: {e}")))
    }
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let message = response
        .json::<flotilla_api::ErrorBody>()
        .await
        .map(|body| body.message)
        .unwrap_or_else(|_| status.to_string());
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::Unauthorized(message),
        StatusCode::TOO_MANY_REQUESTS => {
            ClientError::Busy(Duration::from_secs(retry_after.unwrap_or(5)))
        }
        status if status.is_client_error() => ClientError::Rejected {
            status: status.as_u16(),
            message,
        },
        _ => ClientError::Unreachable(format!("{status}: {message}")),
    })
}
