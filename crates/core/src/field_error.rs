//! The one error every document validator answers with: the field to fix and what to do.
//!
//! Its own module so validators outside `documents` (a rollout strategy's compiler) can build it
//! without importing `documents`, which imports them.

/// A rule a document breaks: the field path (`spec.targets[2].clusterSelector`) and a message
/// that says what to fix (it names the field too, so it reads alone).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}
