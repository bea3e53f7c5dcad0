//! The audit trail's chain: every record names the hash of the one before it, so a record that
//! was changed, removed or put out of order is found by walking the chain again.
//!
//! A record's hash is SHA-256 over its canonical JSON without the `hash` field (fields in
//! declaration order, maps sorted), which holds `prev`, the previous record's hash. The first record after a pruned
//! stretch chains to an [`Anchor`]: the sequence number and hash of the last record pruned, kept
//! by the store, so retention shortens the trail without breaking it.
//!
//! What a chain alone cannot show: records cut from its newest end. The store keeps the head
//! (`Anchor` of the newest record) apart from the records for that; see `verify`'s `head`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
/// decision (`actor` `system/rollouts`, `system/registration`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Position in the trail, from 1, without gaps.
    pub seq: u64,
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
    /// Hex SHA-256 of the previous record (or the anchor); empty for the very first record.
    #[serde(default)]
    pub prev: String,
    /// Hex SHA-256 of this record without `hash` (`prev` included).
    #[serde(default)]
    pub hash: String,
}

/// Where a chain starts when older records were pruned: the last pruned record's position and
/// hash. The start of a trail that was never pruned is `Anchor::GENESIS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

impl Anchor {
    pub const GENESIS: Anchor = Anchor {
        seq: 0,
        hash: String::new(),
    };

    /// The anchor a record leaves for the one after it.
    pub fn of(record: &AuditRecord) -> Anchor {
        Anchor {
            seq: record.seq,
            hash: record.hash.clone(),
        }
    }
}

/// The hash a record must carry after `prev`.
pub fn hash_of(record: &AuditRecord) -> String {
    let mut unhashed = record.clone();
    unhashed.hash = String::new();
    // A struct with declaration-ordered fields and sorted maps: the same record always gives
    // the same bytes.
    let canonical = serde_json::to_vec(&unhashed).expect("an audit record always serializes");
    hex::encode(Sha256::digest(&canonical))
}

/// Links `record` after `previous`: sets its `seq`, `prev` and `hash`.
pub fn link(previous: &Anchor, mut record: AuditRecord) -> AuditRecord {
    record.seq = previous.seq + 1;
    record.prev = previous.hash.clone();
    record.hash = hash_of(&record);
    record
}

/// Why a trail does not verify, naming the first record that breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("record {seq}: its content does not match its hash (changed after it was written)")]
    Altered { seq: u64 },
    #[error("record {seq}: expected record {expected} here (records removed or out of order)")]
    Gap { seq: u64, expected: u64 },
    #[error("record {seq}: it does not chain to the record before it")]
    Unlinked { seq: u64 },
    #[error("the trail ends at record {last}, but its head says {head} (newest records removed)")]
    Truncated { last: u64, head: u64 },
}

/// Checks a trail read in order from `anchor`: each record's hash over its content, its link to
/// the one before, no gaps; with `head`, that nothing after the last record was cut.
/// O(records), one pass; records may come from an iterator over the store.
pub fn verify<'a>(
    anchor: &Anchor,
    records: impl IntoIterator<Item = &'a AuditRecord>,
    head: Option<&Anchor>,
) -> Result<u64, Broken> {
    let mut last = anchor.clone();
    let mut count = 0;
    for record in records {
        let expected = last.seq + 1;
        if record.seq != expected {
            return Err(Broken::Gap {
                seq: record.seq,
                expected,
            });
        }
        if record.prev != last.hash {
            return Err(Broken::Unlinked { seq: record.seq });
        }
        if hash_of(record) != record.hash {
            return Err(Broken::Altered { seq: record.seq });
        }
        last = Anchor::of(record);
        count += 1;
    }
    if let Some(head) = head
        && (head.seq != last.seq || head.hash != last.hash)
    {
        return Err(Broken::Truncated {
            last: last.seq,
            head: head.seq,
        });
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(actor: &str, object: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            time: 1_700_000_000_000,
            actor: actor.into(),
            verb: "edit".into(),
            object: object.into(),
            project: "default".into(),
            outcome: Outcome::Allowed,
            before: Some("a".repeat(64)),
            after: Some("b".repeat(64)),
            request_id: "req-1".into(),
            source: "10.0.0.1:5000".into(),
            reason: String::new(),
            flags: BTreeMap::new(),
            prev: String::new(),
            hash: String::new(),
        }
    }

    fn trail(count: usize) -> Vec<AuditRecord> {
        let mut anchor = Anchor::GENESIS;
        (0..count)
            .map(|i| {
                let linked = link(&anchor, record("token/ci", &format!("bundle/web-{i}")));
                anchor = Anchor::of(&linked);
                linked
            })
            .collect()
    }

    #[test]
    fn a_linked_trail_verifies_with_its_head() {
        let records = trail(5);
        let head = Anchor::of(records.last().unwrap());
        assert_eq!(verify(&Anchor::GENESIS, &records, Some(&head)), Ok(5));
    }

    #[test]
    fn any_altered_byte_of_any_field_is_found() {
        let records = trail(3);
        let serialized = serde_json::to_string(&records[1]).unwrap();
        // Flip each byte of each value in turn (where the result still parses as a record).
        let mut checked = 0;
        for position in 0..serialized.len() {
            let mut bytes = serialized.clone().into_bytes();
            bytes[position] ^= 0x01;
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            let Ok(altered) = serde_json::from_str::<AuditRecord>(&text) else {
                continue;
            };
            if altered == records[1] {
                continue;
            }
            let mut tampered = records.clone();
            tampered[1] = altered;
            assert!(
                verify(&Anchor::GENESIS, &tampered, None).is_err(),
                "an altered byte at {position} went unnoticed: {text}"
            );
            checked += 1;
        }
        assert!(
            checked > 100,
            "the alterations exercised the fields ({checked})"
        );
    }

    #[test]
    fn a_removed_or_reordered_record_is_found() {
        let records = trail(4);
        let mut removed = records.clone();
        removed.remove(2);
        assert_eq!(
            verify(&Anchor::GENESIS, &removed, None),
            Err(Broken::Gap {
                seq: 4,
                expected: 3
            })
        );
        let mut swapped = records.clone();
        swapped.swap(1, 2);
        assert!(verify(&Anchor::GENESIS, &swapped, None).is_err());
        // Renumbered to hide the gap: the link breaks instead.
        let mut renumbered = removed;
        renumbered[2].seq = 3;
        assert!(verify(&Anchor::GENESIS, &renumbered, None).is_err());
    }

    #[test]
    fn records_cut_from_the_end_are_found_only_against_the_head() {
        let records = trail(4);
        let head = Anchor::of(&records[3]);
        assert_eq!(verify(&Anchor::GENESIS, &records[..3], None), Ok(3));
        assert_eq!(
            verify(&Anchor::GENESIS, &records[..3], Some(&head)),
            Err(Broken::Truncated { last: 3, head: 4 })
        );
    }

    #[test]
    fn a_pruned_trail_verifies_from_its_anchor() {
        let records = trail(6);
        let anchor = Anchor::of(&records[2]);
        assert_eq!(verify(&anchor, &records[3..], None), Ok(3));
        assert!(
            verify(&Anchor::GENESIS, &records[3..], None).is_err(),
            "without the anchor the pruned start is not taken for the beginning"
        );
    }

    #[test]
    fn flags_and_optional_fields_are_covered_by_the_hash() {
        let mut flagged = record("oidc/alice", "bundle/web");
        flagged
            .flags
            .insert("break-glass".into(), "session-7".into());
        let linked = link(&Anchor::GENESIS, flagged);
        let mut unflagged = linked.clone();
        unflagged.flags.clear();
        assert!(verify(&Anchor::GENESIS, [&unflagged], None).is_err());
        let mut no_before = linked.clone();
        no_before.before = None;
        assert!(verify(&Anchor::GENESIS, [&no_before], None).is_err());
    }
}
