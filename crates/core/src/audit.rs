//! What an audit record says: the content the server serializes into the store's audit trail.
//!
//! The chain itself (sequence numbers, each record's link to the one before, its hash, the head
//! and the pruning anchor) is made by the store's writer in the transaction that commits the
//! change, so records are ordered by commit whichever replica wrote them: see
//! `flotilla_store::audit`. This module only defines the record, its canonical JSON (the
//! store's `doc`, covered by the chain's hash), and nothing here does IO.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened to the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Done (committed).
    Allowed,
    /// Refused by authorization.
    Denied,
    /// Authorized but refused or failed (validation, conflict, store error).
    Failed,
}

/// One audited action: a person's or a token's mutation or denied attempt, or an automated
/// decision (`actor` `system/rollouts`, `system/registration`, ...). `time`, `actor`, `object`
/// and `project` are also the store's indexed columns (`AuditAppend`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub time: u64,
    /// Who: `token/NAME`, `oidc/SUBJECT`, `admin`, `agent/CLUSTER`, `system/...`.
    pub actor: String,
    /// The verb the action needed (`edit`, `deploy`, `approve`, ...) or the decision taken.
    pub verb: String,
    /// `kind/name` of the object acted on.
    pub object: String,
    pub project: String,
    pub outcome: Outcome,
    /// Digest of the object before and after (never its content: secret values stay out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// The client's address, for requests.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Why: the denial's message, the rollout's reason, a break-glass justification.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Marks, e.g. `break-glass` for actions done under an elevated session.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, String>,
}

impl AuditRecord {
    /// The record as stored: JSON with fields in declaration order, flags sorted, empty
    /// optional fields left out, so the same record always gives the same bytes.
    pub fn to_doc(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an audit record always serializes")
    }

    /// A stored record back.
    pub fn from_doc(doc: &[u8]) -> Result<AuditRecord, serde_json::Error> {
        serde_json::from_slice(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            time: 1_700_000_000_000,
            actor: "oidc/alice".into(),
            verb: "edit".into(),
            object: "bundle/web".into(),
            project: "default".into(),
            outcome: Outcome::Allowed,
            before: Some("a".repeat(64)),
            after: Some("b".repeat(64)),
            request_id: "req-1".into(),
            source: "10.0.0.1:5000".into(),
            reason: String::new(),
            flags: BTreeMap::new(),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_doc() {
        let mut flagged = record();
        flagged
            .flags
            .insert("break-glass".into(), "session-7".into());
        for original in [record(), flagged] {
            assert_eq!(AuditRecord::from_doc(&original.to_doc()).unwrap(), original);
        }
    }

    #[test]
    fn the_same_record_always_gives_the_same_doc() {
        let mut one = record();
        let mut two = record();
        one.flags.insert("b".into(), "2".into());
        one.flags.insert("a".into(), "1".into());
        two.flags.insert("a".into(), "1".into());
        two.flags.insert("b".into(), "2".into());
        assert_eq!(one.to_doc(), two.to_doc(), "flags are sorted");
    }

    #[test]
    fn empty_optional_fields_are_left_out_of_the_doc() {
        let mut bare = record();
        bare.before = None;
        bare.after = None;
        bare.request_id.clear();
        bare.source.clear();
        let text = String::from_utf8(bare.to_doc()).unwrap();
        assert_eq!(
            text,
            r#"{"time":1700000000000,"actor":"oidc/alice","verb":"edit","object":"bundle/web","project":"default","outcome":"Allowed"}"#
        );
        assert_eq!(AuditRecord::from_doc(text.as_bytes()).unwrap(), bare);
    }

    #[test]
    fn an_unreadable_doc_is_an_error_not_a_panic() {
        assert!(AuditRecord::from_doc(b"{\"time\":").is_err());
        assert!(AuditRecord::from_doc(b"\xff").is_err());
    }
}
