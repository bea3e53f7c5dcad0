//! The client's error: the server's refusal (status and JSON message), or why no answer came.

use flotilla_api::ErrorBody;
use reqwest::StatusCode;

/// What went wrong with an admin API call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status; `message` is its JSON `message` (or the body's
    /// text when it sent no JSON error).
    #[error("{message} ({})", status.as_u16())]
    Api {
        status: StatusCode,
        /// The server's machine-readable reason (`NotFound`, `Conflict`, …), when it sent one.
        reason: Option<String>,
        message: String,
    },
    /// No answer: the server is down, unreachable or the connection broke.
    #[error("reach the flotilla server at {base} (is it running? set --server or FLOTILLA_SERVER)")]
    Connect {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer's body did not arrive in full.
    #[error("read server reply")]
    Read(#[source] reqwest::Error),
    /// The answer is not the document asked for.
    #[error("decode {what}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be built (a document that does not serialize, a malformed URL).
    #[error("build the request: {0}")]
    Request(String),
}

impl Error {
    /// The server's error from a reply with a non-success status.
    pub(crate) fn from_reply(status: StatusCode, body: &[u8]) -> Error {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(error) => Error::Api {
                status,
                reason: Some(error.reason),
                message: error.message,
            },
            Err(_) => Error::Api {
                status,
                reason: None,
                message: String::from_utf8_lossy(body).into_owned(),
            },
        }
    }

    /// The HTTP status the server refused with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_refusal_carries_the_servers_status_reason_and_message() {
        let body = br#"{"code":409,"reason":"Conflict","message":"Bundle \"a\" already exists"}"#;
        let error = Error::from_reply(StatusCode::CONFLICT, body);
        assert_eq!(error.status(), Some(StatusCode::CONFLICT));
        assert!(
            matches!(&error, Error::Api { reason: Some(reason), .. } if reason == "Conflict"),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "Bundle \"a\" already exists (409)");
    }

    #[test]
    fn a_refusal_without_json_shows_the_body_text() {
        let error = Error::from_reply(StatusCode::BAD_GATEWAY, b"upstream gone");
        assert_eq!(error.to_string(), "upstream gone (502)");
        assert!(!error.is_not_found());
        assert!(Error::from_reply(StatusCode::NOT_FOUND, b"").is_not_found());
    }
}
