//! Watches (`GET /api/v1/{plural}?watch=true`, a stream of newline-delimited JSON events) and
//! server-side dry runs of an apply (`POST /api/v1/apply?dryRun=All`).

use flotilla_api::Kind;
use reqwest::{Method, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;

use crate::{AdminClient, Error, Result, collection_path, encode_body};

/// Which objects a watch follows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchParams {
    /// Label selector, e.g. `env=prod`.
    pub label_selector: Option<String>,
    /// One object by name.
    pub name: Option<String>,
}

/// One watch event, as Kubernetes sends them: `type` is ADDED, MODIFIED, DELETED, BOOKMARK or
/// ERROR (its object then a `Status` with `code`, `reason` and `message`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    pub object: Value,
}

/// An open watch: read its events with [`Watch::next`].
pub struct Watch {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

/// Longest event line accepted (an object is far smaller; a server that sends more is not ours).
const MAX_LINE: usize = 64 << 20;

impl Watch {
    /// The next event; `None` when the server ended the watch (it stopped, or the connection
    /// closed).
    pub async fn next(&mut self) -> Result<Option<WatchEvent>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|source| Error::Decode {
                        what: "a watch event from the server".into(),
                        source,
                    });
            }
            if self.buffer.len() > MAX_LINE {
                return Err(Error::Request(format!(
                    "a watch event is longer than {MAX_LINE} bytes"
                )));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(error) => return Err(Error::Read(error)),
            }
        }
    }
}

/// What a server-side dry run of an apply says.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    /// `created`, `configured` or `unchanged`.
    pub verb: String,
    /// The object as the server would write it, without status or server-set metadata.
    pub object: Value,
}

impl AdminClient {
    /// Opens a watch on one kind: the current objects come first as ADDED events.
    pub async fn watch(&self, kind: Kind, params: &WatchParams) -> Result<Watch> {
        let mut query = vec![("watch", "true".to_string())];
        if let Some(selector) = &params.label_selector {
            query.push(("labelSelector", selector.clone()));
        }
        if let Some(name) = &params.name {
            query.push(("fieldSelector", format!("metadata.name={name}")));
        }
        let response = self
            .request(Method::GET, &collection_path(kind), &query, None)
            .await?;
        Ok(Watch {
            response,
            buffer: Vec::new(),
        })
    }

    /// Runs an apply on the server as a dry run (`dryRun=All`): validated and planned there,
    /// nothing stored.
    pub async fn apply_dry_run(&self, document: &Value) -> Result<DryRun> {
        let body = encode_body(document)?;
        let response = self
            .request(
                Method::POST,
                "/api/v1/apply",
                &[("dryRun", "All".to_string())],
                Some(body),
            )
            .await?;
        let created = response.status() == StatusCode::CREATED;
        let verb = response
            .headers()
            .get("flotilla-dry-run")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| if created { "created" } else { "configured" }.to_string());
        let bytes = response.bytes().await.map_err(Error::Read)?;
        let object = serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            what: "the dry-run result from the server".into(),
            source,
        })?;
        Ok(DryRun { verb, object })
    }

    /// Sends a request and returns the response with its body unread (a watch streams it);
    /// an error status becomes the server's [`Error`].
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&*self.token)
            .query(query);
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|source| Error::Connect {
            base: self.base.to_string(),
            source,
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.map_err(Error::Read)?;
            return Err(Error::from_reply(status, &body));
        }
        Ok(response)
    }
}
