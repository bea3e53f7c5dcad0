//! Error answers as a real API server sends them: a full `meta/v1` `Status` with both `code`
//! and `reason` (kube 5.0.0's `is_not_found()` & co. look only at `reason`, see
//! docs/dev/kube-rs-notes.md §8), and the same HTTP status code.

use serde_json::{Value, json};

use super::discovery::ResourceType;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// `deployments.apps "web" not found`.
    pub fn object_not_found(t: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", t.qualified_plural()),
        )
        .with_details(json!({"name": name, "group": t.group, "kind": t.plural}))
    }

    /// `namespaces "x" not found`: a namespaced write into a missing namespace.
    pub fn namespace_not_found(namespace: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    /// An unknown path, group, version or resource.
    pub fn no_such_resource() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 422 with one cause, message `Deployment.apps "web" is invalid: <field>: <message>`.
    pub fn invalid(t: &ResourceType, name: &str, field: &str, message: &str) -> ApiError {
        let location = if field.is_empty() {
            String::new()
        } else {
            format!("{field}: ")
        };
        ApiError::new(422, "Invalid", format!("{} \"{name}\" is invalid: {location}{message}", t.qualified_kind())).with_details(
            json!({"name": name, "group": t.group, "kind": t.kind,
                   "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]}),
        )
    }

    pub fn conflict(message: impl Into<String>, causes: Vec<Value>) -> ApiError {
        ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
    }

    pub fn method_not_allowed(method: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} is not implemented by the stand-in)"
            ),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format: {content_type} (the stand-in only implements application/apply-patch+yaml)"
            ),
        )
    }

    /// What every request gets after `set_available(false)`. 500, not 503/429: kube retries those.
    pub fn unavailable() -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            "Internal error occurred: the stand-in API server is unavailable (set_available(false))",
        )
    }

    /// The `Status` body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(details) = &self.details {
            body["details"] = details.clone();
        }
        body
    }
}

/// The body of a successful delete.
pub fn delete_success(t: &ResourceType, name: &str, uid: &Value) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": t.group, "kind": t.plural, "uid": uid},
    })
}
