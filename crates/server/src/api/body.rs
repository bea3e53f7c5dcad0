//! Request body extraction with errors that say what to fix: size limits, content types, YAML
//! or JSON.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::header,
};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The raw request body; a body over the limit is a 413 naming the limit.
pub struct RawBody {
    pub bytes: Bytes,
    pub content_type: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<RawBody, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(
                        "request body is larger than the server accepts (--max-body-bytes); send \
                         less: split a bundle into several, or move large content to a git source"
                            .into(),
                    )
                } else {
                    ApiError::BadRequest(format!("could not read the request body: {rejection}"))
                }
            })?;
        Ok(RawBody {
            bytes,
            content_type,
        })
    }
}

/// Whether a content type (without parameters, lowercase) names JSON.
fn is_json_type(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

/// Whether a content type names a YAML or JSON document: JSON, YAML, plain text, or curl's
/// default for `-d` (form-encoded, though the body is the document as typed).
fn is_document_type(media_type: &str) -> bool {
    is_json_type(media_type)
        || media_type.ends_with("+yaml")
        || matches!(
            media_type,
            "application/yaml"
                | "application/x-yaml"
                | "text/yaml"
                | "text/x-yaml"
                | "text/plain"
                | "application/x-www-form-urlencoded"
        )
}

impl RawBody {
    /// The media type without parameters, lowercase; `None` when the client sent none.
    fn media_type(&self) -> Option<String> {
        self.content_type.as_deref().map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// Refuses a body whose declared type is not a document (415 naming the accepted ones).
    fn accept(&self, accepted: fn(&str) -> bool, names: &str) -> Result<(), ApiError> {
        match self.media_type() {
            Some(media_type) if !media_type.is_empty() && !accepted(&media_type) => {
                Err(ApiError::UnsupportedMediaType(format!(
                    "content type {media_type:?} is not accepted here; send the body as {names}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Parses the body as one YAML or JSON document into a JSON value.
    pub fn document(&self) -> Result<serde_json::Value, ApiError> {
        self.accept(is_document_type, "application/json or application/yaml")?;
        let text = std::str::from_utf8(&self.bytes)
            .map_err(|_| ApiError::BadRequest("request body is not UTF-8 text".into()))?;
        if text.trim().is_empty() {
            return Err(ApiError::BadRequest(
                "request body is empty; send one YAML or JSON document".into(),
            ));
        }
        let is_json = self.media_type().as_deref().is_some_and(is_json_type)
            || text.trim_start().starts_with('{');
        if is_json {
            serde_json::from_str(text)
                .map_err(|error| ApiError::BadRequest(format!("malformed JSON: {error}")))
        } else {
            serde_saphyr::from_str(text)
                .map_err(|error| ApiError::BadRequest(format!("malformed YAML: {error}")))
        }
    }

    /// Parses a JSON body into `T`, naming the path of any field that does not fit. The fast
    /// path is plain serde_json; only a failure is parsed again to find the path.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        self.accept(is_json_type, "application/json")?;
        if let Ok(value) = serde_json::from_slice(&self.bytes) {
            return Ok(value);
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&self.bytes);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            ApiError::BadRequest(format!(
                "invalid request at {}: {}",
                error.path(),
                error.inner()
            ))
        })
    }
}

/// Converts a JSON value into `T`, naming the path of any field that does not fit.
pub fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        ApiError::Unprocessable(format!("invalid document at {path}: {}", error.inner()))
    })
}
