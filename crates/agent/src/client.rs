//! HTTP client for the `/agent/v1` protocol.

use std::time::Duration;

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

#[derive(Clone)]
pub struct ServerClient {
    base: String,
    http: reqwest::Client,
}

impl ServerClient {
    pub fn new(base: &str) -> anyhow::Result<ServerClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("flotilla-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("build HTTP client")?;
        Ok(ServerClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn register(
        &self,
        request: &RegisterRequest,
    ) -> Result<RegisterResponse, ClientError> {
        let response = self
            .http
            .post(format!("{}{REGISTER_PATH}", self.base))
            .json(request)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let response = check(response).await?;
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
            .http
            .post(format!("{}{SYNC_PATH}", self.base))
            .bearer_auth(credential)
            .json(request)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let response = check(response).await?;
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
            .http
            .get(format!("{}{CONTENT_PATH}/{digest}", self.base))
            .bearer_auth(credential)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let response = check(response).await?;
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
