//! A client for the flotilla admin API (`/api/v1`), used by the CLI, the demo and the bench.
//!
//! Typed, in the manner of kube's `Api<K>`: `client.api::<Bundle>().list(&ListParams::default())`
//! returns `List<Bundle>`; every call fails with an [`Error`] that carries the server's status and
//! message. The untyped methods on [`AdminClient`] (`apply`, `get`, … over `serde_json::Value`)
//! are for documents whose kind is known only at run time, such as `flotilla apply -f` of mixed
//! files. A bundle's revisions and rollout have their own calls on `Api<Bundle>`: `revisions`,
//! `rollout_status` and `rollout` (pause, resume, abort, undo as a [`RolloutVerb`]).

mod api;
mod error;
mod resource;
mod rollout;
mod version;
mod watch;

use std::sync::Arc;

use flotilla_api::{Kind, List};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

pub use crate::{
    api::{Api, Applied, ListParams},
    error::{Error, Result},
    resource::Resource,
    rollout::RolloutVerb,
    watch::{DryRun, Watch, WatchEvent, WatchParams},
};

/// The query options of the untyped list calls (`limit` and `continue_` are given apart there).
pub type ListOptions = ListParams;

/// Items per list page when following `continue` (as kubectl's --chunk-size default).
const PAGE_SIZE: usize = 500;

/// A connection to one server's admin API. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct AdminClient {
    base: Arc<str>,
    token: Arc<str>,
    http: reqwest::Client,
}

/// A successful reply: its status and body.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl AdminClient {
    pub fn new(base: &str, token: &str) -> Result<AdminClient> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("flotilla-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::Request(format!("build HTTP client: {error}")))?;
        Ok(AdminClient {
            base: base.trim_end_matches('/').into(),
            token: token.into(),
            http,
        })
    }

    /// The typed API of one kind.
    pub fn api<K: Resource>(&self) -> Api<K> {
        Api::new(self.clone())
    }

    // -- untyped: documents of any kind -----------------------------------------------------

    /// Creates or replaces a document of any kind; returns whether it was created, and the
    /// document as stored.
    pub async fn apply(&self, document: &Value) -> Result<(bool, Value)> {
        let applied = self.apply_as::<Value, Value>(document).await?;
        Ok((applied.created, applied.object))
    }

    pub async fn create(&self, kind: Kind, document: &Value) -> Result<Value> {
        self.create_as(kind, document).await
    }

    pub async fn replace(&self, kind: Kind, name: &str, document: &Value) -> Result<Value> {
        self.replace_as(kind, name, document).await
    }

    pub async fn get(&self, kind: Kind, name: &str) -> Result<Value> {
        self.get_as(kind, name).await
    }

    pub async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        self.send(Method::DELETE, &item_path(kind, name), &[], None)
            .await?;
        Ok(())
    }

    /// One page of a list: at most `limit` items after `cursor`.
    pub async fn list_page(
        &self,
        kind: Kind,
        options: &ListOptions,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<List<Value>> {
        let params = ListParams {
            limit: Some(limit),
            continue_: cursor.map(str::to_string),
            ..options.clone()
        };
        self.list_as(kind, &params).await
    }

    /// How many objects match, without fetching them.
    pub async fn count(&self, kind: Kind, options: &ListOptions) -> Result<u64> {
        self.count_of::<Value>(kind, options).await
    }

    /// Lists every matching object, following `continue` page by page.
    pub async fn list_all(&self, kind: Kind, options: &ListOptions) -> Result<Vec<Value>> {
        self.list_all_as(kind, options).await
    }

    // -- one implementation behind both faces ----------------------------------------------

    async fn apply_as<In: Serialize + ?Sized, Out: DeserializeOwned>(
        &self,
        document: &In,
    ) -> Result<Applied<Out>> {
        let body = encode_body(document)?;
        let reply = self
            .send(Method::POST, "/api/v1/apply", &[], Some(body))
            .await?;
        Ok(Applied {
            created: reply.status == StatusCode::CREATED,
            object: decode(&reply, "the applied document")?,
        })
    }

    async fn create_as<In: Serialize + ?Sized, Out: DeserializeOwned>(
        &self,
        kind: Kind,
        document: &In,
    ) -> Result<Out> {
        let body = encode_body(document)?;
        let reply = self
            .send(Method::POST, &collection_path(kind), &[], Some(body))
            .await?;
        decode(&reply, &format!("the created {kind}"))
    }

    async fn replace_as<In: Serialize + ?Sized, Out: DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
        document: &In,
    ) -> Result<Out> {
        let body = encode_body(document)?;
        let reply = self
            .send(Method::PUT, &item_path(kind, name), &[], Some(body))
            .await?;
        decode(&reply, &format!("{kind} {name:?}"))
    }

    async fn get_as<Out: DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<Out> {
        let reply = self
            .send(Method::GET, &item_path(kind, name), &[], None)
            .await?;
        decode(&reply, &format!("{kind} {name:?}"))
    }

    async fn list_as<Out: DeserializeOwned>(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<List<Out>> {
        let reply = self
            .send(Method::GET, &collection_path(kind), &params.query(), None)
            .await?;
        decode(&reply, "list page")
    }

    async fn count_of<Out: DeserializeOwned>(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<u64> {
        let params = ListParams {
            limit: Some(1),
            continue_: None,
            ..params.clone()
        };
        let page = self.list_as::<Out>(kind, &params).await?;
        Ok(page.total.unwrap_or(page.items.len() as u64))
    }

    async fn list_all_as<Out: DeserializeOwned>(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<Vec<Out>> {
        let mut params = ListParams {
            limit: Some(params.limit.unwrap_or(PAGE_SIZE)),
            ..params.clone()
        };
        let mut items = Vec::new();
        loop {
            let page = self.list_as::<Out>(kind, &params).await?;
            items.extend(page.items);
            match page.continue_token {
                Some(next) => params.continue_ = Some(next),
                None => return Ok(items),
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply> {
        let response = self.request(method, path, query, body).await?;
        let status = response.status();
        let body: Vec<u8> = response.bytes().await.map_err(Error::Read)?.into();
        Ok(Reply { status, body })
    }
}

fn encode_body<T: Serialize + ?Sized>(document: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(document)
        .map_err(|error| Error::Request(format!("encode document: {error}")))
}

/// Decodes a reply body; an empty body (which no admin endpoint sends with a document) decodes
/// as JSON `null`, so the untyped calls see `Value::Null`.
fn decode<T: DeserializeOwned>(reply: &Reply, what: &str) -> Result<T> {
    let body: &[u8] = if reply.body.is_empty() {
        b"null"
    } else {
        &reply.body
    };
    serde_json::from_slice(body).map_err(|source| Error::Decode {
        what: format!("{what} from the server"),
        source,
    })
}

fn collection_path(kind: Kind) -> String {
    format!("/api/v1/{}", kind.plural())
}

fn item_path(kind: Kind, name: &str) -> String {
    format!("/api/v1/{}/{}", kind.plural(), path_segment(name))
}

/// The WHATWG URL path-segment percent-encode set, plus `%` (a name is text, never
/// pre-encoded): names are DNS labels or subdomains, but a user may type anything, and it must
/// stay one segment.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

fn path_segment(text: &str) -> String {
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

/// Installs rustls' ring provider as the process default (HTTPS servers), unless one already is.
/// Every HTTP client in flotilla is built after this has run.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_stays_one_path_segment_whatever_it_holds() {
        assert_eq!(item_path(Kind::Bundle, "web-1"), "/api/v1/bundles/web-1");
        assert_eq!(
            item_path(Kind::Cluster, "a/b?c#d%e f"),
            "/api/v1/clusters/a%2Fb%3Fc%23d%25e%20f"
        );
        assert_eq!(path_segment("ü"), "%C3%BC");
    }
}
