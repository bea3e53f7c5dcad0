//! `ApiError`: every failure an endpoint returns, mapped to an HTTP status and a JSON body that
//! says what to fix. Authentication failures stay vague on purpose.

use axum::{
    Json,
    extract::{
        path::ErrorKind,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use flotilla_api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    /// A well-formed document that breaks a rule, with the field to fix (422).
    #[error("{}", .0.message)]
    Invalid(flotilla_core::documents::FieldError),
    #[error("server is busy; retry after {retry_after_seconds}s")]
    Overloaded { retry_after_seconds: u32 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Any other status, as the HTTP stack produced it (408, 414, 431, …).
    #[error("{message}")]
    Status { status: StatusCode, message: String },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) | ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Status { status, .. } => *status,
        }
    }

    /// The error for a status and message, as specific as its status allows.
    pub fn from_status(status: StatusCode, message: String) -> ApiError {
        match status {
            StatusCode::BAD_REQUEST => ApiError::BadRequest(message),
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized(message),
            StatusCode::FORBIDDEN => ApiError::Forbidden(message),
            StatusCode::NOT_FOUND => ApiError::NotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(message),
            StatusCode::CONFLICT => ApiError::Conflict(message),
            StatusCode::GONE => ApiError::Gone(message),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(message),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(message),
            StatusCode::INTERNAL_SERVER_ERROR => ApiError::Internal(message),
            status => ApiError::Status { status, message },
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Gone(_) => "Gone",
            ApiError::PayloadTooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Unprocessable(_) | ApiError::Invalid(_) => "Invalid",
            ApiError::Overloaded { .. } => "TooManyRequests",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
            ApiError::Status { status, .. } => match *status {
                StatusCode::REQUEST_TIMEOUT => "RequestTimeout",
                StatusCode::URI_TOO_LONG => "RequestURITooLong",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "RequestHeaderFieldsTooLarge",
                StatusCode::GATEWAY_TIMEOUT => "Timeout",
                status if status.is_server_error() => "InternalError",
                _ => "BadRequest",
            },
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(error.to_string())
    }
}

/// A query string that does not fit the endpoint's parameters (`?limit=-1`): 400 naming the
/// parameter.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        let text = rejection.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        ApiError::BadRequest(format!(
            "invalid query string: {detail}; fix that parameter (each endpoint's parameters and \
             their types are in /api/v1/openapi.json)"
        ))
    }
}

/// A path segment that cannot be what the route expects, e.g. percent-encoding that does not
/// decode to UTF-8: 400 naming the segment.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        match &rejection {
            PathRejection::FailedToDeserializePathParams(failed) => match failed.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => ApiError::BadRequest(format!(
                    "path segment `{key}` is not UTF-8 once percent-decoded; {}",
                    path_segment_hint(key)
                )),
                ErrorKind::UnsupportedType { .. } => ApiError::internal(failed.body_text()),
                _ => ApiError::BadRequest(format!(
                    "invalid path: {}; see /api/v1/openapi.json",
                    failed.body_text()
                )),
            },
            _ => ApiError::internal(rejection.body_text()),
        }
    }
}

/// What a path segment of the routes must be, by its name in the route.
fn path_segment_hint(key: &str) -> &'static str {
    match key {
        "plural" => {
            "use a collection name: clusters, clustergroups, bundles, registrationtokens, \
             gitrepos or secrets"
        }
        "digest" => "a digest is sha256: and 64 hex digits, as the sync reply names it",
        _ => "names are DNS labels or subdomains (lowercase letters, digits, '-' and '.')",
    }
}

impl From<flotilla_store::StoreError> for ApiError {
    fn from(error: flotilla_store::StoreError) -> ApiError {
        tracing::error!(%error, "store write failed");
        ApiError::Unavailable(format!(
            "the store could not commit the change ({error}); nothing was changed, retry"
        ))
    }
}

/// The write service's answer as HTTP: one status per kind of refusal.
impl From<crate::writes::WriteError> for ApiError {
    fn from(error: crate::writes::WriteError) -> ApiError {
        use crate::writes::WriteError;
        match error {
            WriteError::Invalid(field) => ApiError::Invalid(field),
            WriteError::NotFound(message) => ApiError::NotFound(message),
            WriteError::Conflict(message) => ApiError::Conflict(message),
            WriteError::NotAllowed(message) => ApiError::MethodNotAllowed(message),
            WriteError::Unauthorized(message) => ApiError::Unauthorized(message),
            store @ WriteError::Store(_) => ApiError::Unavailable(store.to_string()),
            WriteError::Internal(message) => ApiError::Internal(message),
        }
    }
}

/// A document rule broken in a request body that is not a stored object (registration, sync).
impl From<flotilla_core::documents::FieldError> for ApiError {
    fn from(error: flotilla_core::documents::FieldError) -> ApiError {
        ApiError::Invalid(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(message) = &self {
            tracing::error!(%message, "internal error");
        }
        let details = match &self {
            ApiError::Invalid(field) => Some(flotilla_api::ErrorDetails {
                causes: vec![flotilla_api::ErrorCause {
                    field: field.field.clone(),
                    message: field.message.clone(),
                }],
            }),
            _ => None,
        };
        let body = ErrorBody {
            code: status.as_u16(),
            reason: self.reason().to_string(),
            message: self.to_string(),
            details,
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Overloaded {
            retry_after_seconds,
        } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
