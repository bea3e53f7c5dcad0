//! A client for the flotilla admin API (`/api/v1`), used by the CLI, the demo and the bench.

use anyhow::{Context, bail};
use flotilla_api::{ErrorBody, Kind, List};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Query options for listing.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub state: Option<String>,
    pub sort: Option<String>,
}

/// Items per list page the CLI asks for (as kubectl's --chunk-size default).
const PAGE_SIZE: usize = 500;

impl AdminClient {
    pub fn new(base: &str, token: &str) -> anyhow::Result<AdminClient> {
        install_crypto_provider();
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .user_agent(concat!("flotilla-cli/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("build HTTP client")?,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.send_query(method, path, &[], body).await
    }

    async fn send_query(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "reach the flotilla server at {} (is it running? set --server or FLOTILLA_SERVER)",
                self.base
            )
        })?;
        let status = response.status();
        let bytes = response.bytes().await.context("read server reply")?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{message} ({})", status.as_u16());
        }
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).context("decode server reply")?
        };
        Ok((status, value))
    }

    /// Creates or replaces any document; returns whether it was created.
    pub async fn apply(&self, document: &Value) -> anyhow::Result<(bool, Value)> {
        let (status, value) = self
            .send(Method::POST, "/api/v1/apply", Some(document))
            .await?;
        Ok((status == StatusCode::CREATED, value))
    }

    pub async fn create(&self, kind: Kind, document: &Value) -> anyhow::Result<Value> {
        let path = format!("/api/v1/{}", kind.plural());
        Ok(self.send(Method::POST, &path, Some(document)).await?.1)
    }

    pub async fn replace(&self, kind: Kind, name: &str, document: &Value) -> anyhow::Result<Value> {
        let path = format!("/api/v1/{}/{}", kind.plural(), encode(name));
        Ok(self.send(Method::PUT, &path, Some(document)).await?.1)
    }

    pub async fn get(&self, kind: Kind, name: &str) -> anyhow::Result<Value> {
        let path = format!("/api/v1/{}/{}", kind.plural(), encode(name));
        Ok(self.send(Method::GET, &path, None).await?.1)
    }

    pub async fn delete(&self, kind: Kind, name: &str) -> anyhow::Result<()> {
        let path = format!("/api/v1/{}/{}", kind.plural(), encode(name));
        self.send(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// One page of a list: at most `limit` items after `cursor`.
    pub async fn list_page(
        &self,
        kind: Kind,
        options: &ListOptions,
        limit: usize,
        cursor: Option<&str>,
    ) -> anyhow::Result<List<Value>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(selector) = &options.label_selector {
            query.push(("labelSelector", selector.clone()));
        }
        if let Some(state) = &options.state {
            query.push(("state", state.clone()));
        }
        if let Some(sort) = &options.sort {
            query.push(("sort", sort.clone()));
        }
        if let Some(cursor) = cursor {
            query.push(("continue", cursor.to_string()));
        }
        let path = format!("/api/v1/{}", kind.plural());
        let (_, value) = self.send_query(Method::GET, &path, &query, None).await?;
        serde_json::from_value(value).context("decode list page")
    }

    /// How many objects match, without fetching them.
    pub async fn count(&self, kind: Kind, options: &ListOptions) -> anyhow::Result<u64> {
        let page = self.list_page(kind, options, 1, None).await?;
        Ok(page.total.unwrap_or(page.items.len() as u64))
    }

    /// Lists every matching object, following `continue` page by page.
    pub async fn list_all(&self, kind: Kind, options: &ListOptions) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_page(kind, options, PAGE_SIZE, cursor.as_deref())
                .await?;
            items.extend(page.items);
            match page.continue_token {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }
}

/// Installs rustls' ring provider as the process default (HTTPS servers), unless one already is.
/// Every HTTP client in flotilla is built after this has run.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Names are DNS labels or subdomains, but a user may type anything: keep the path intact.
fn encode(segment: &str) -> String {
    segment
        .replace('%', "%25")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('#', "%23")
}
