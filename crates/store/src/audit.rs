//! The audit trail's records, their hash chain and its verification.
//!
//! The store's writer chains the trail: an [`Op::Audit`](crate::Op::Audit) in a commit becomes a
//! record in the same transaction as the rest of the commit, numbered `seq` 1, 2, ... without
//! gaps, with `prev` the hash of the record before it and `hash` over `prev` and its own fields
//! ([`record_hash`]). So a record commits exactly when the change it describes does, and the
//! chain's order is the commit order, whichever replica wrote. The store keeps two marks beside
//! the records: the head (the newest record's seq and hash, so records cut from the newest end
//! are found) and the anchor (the last record pruned, where the kept trail starts; seq 0 and 32
//! zero bytes before any pruning).
//!
//! Verification is pure: [`ChainVerifier`] walks records in seq order in O(1) memory, so a
//! trail of millions of records is checked page by page ([`verify_stored`] does the paging
//! against a store).

use sha2::{Digest, Sha256};

use crate::{Result, Store};

/// The hash a record at genesis links to, and the anchor of a trail never pruned.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Most records one [`AuditQuery`] returns; larger limits are cut to this (a page is held in
/// memory, and a few thousand records of a few hundred bytes keep it to a few MB).
pub const MAX_AUDIT_PAGE: usize = 10_000;

/// Most records one [`Store::prune_audit`] call deletes: the prune is one transaction that also
/// re-verifies what it deletes, so it stays short; the caller loops while it returns `max`.
pub const MAX_AUDIT_PRUNE: usize = 10_000;

/// One record to append to the trail, as the server built it. The store reads only the indexed
/// fields; `doc` (the record's JSON) is opaque to it, and all of them are covered by the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAppend {
    /// Unix milliseconds, the server's clock.
    pub time_ms: u64,
    pub actor: String,
    /// `kind/name` of the object acted on.
    pub object: String,
    pub project: String,
    pub doc: Vec<u8>,
}

/// One stored record of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the trail, from 1, without gaps.
    pub seq: u64,
    /// Revision of the commit that wrote it.
    pub revision: u64,
    pub time_ms: u64,
    pub actor: String,
    pub object: String,
    pub project: String,
    pub doc: Vec<u8>,
    /// Hash of the record before (or of the anchor, or [`GENESIS_HASH`]).
    pub prev: [u8; 32],
    /// [`record_hash`] of this record.
    pub hash: [u8; 32],
}

impl AuditEntry {
    /// What this record's hash must be, from its fields.
    pub fn computed_hash(&self) -> [u8; 32] {
        record_hash(
            &self.prev,
            self.seq,
            self.time_ms,
            &self.actor,
            &self.object,
            &self.project,
            &self.doc,
        )
    }

    /// The mark this record leaves: where the next one links.
    pub fn mark(&self) -> AuditMark {
        AuditMark {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// A position in the chain: a record's seq and hash (the head, the anchor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditMark {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl AuditMark {
    /// Before the first record.
    pub const GENESIS: AuditMark = AuditMark {
        seq: 0,
        hash: GENESIS_HASH,
    };
}

/// Which records [`Store::audit_page`] returns: those matching every filter set, by seq
/// (ascending unless `newest_first`), at most `limit` (1 ..= [`MAX_AUDIT_PAGE`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records with a seq above this (0: from the start).
    pub after_seq: u64,
    /// Only records with a seq below this.
    pub before_seq: Option<u64>,
    /// Only records with `time_ms >= since_ms`.
    pub since_ms: Option<u64>,
    /// Only records with `time_ms < until_ms`.
    pub until_ms: Option<u64>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact `kind/name`, or every object of a kind when it ends with `/` (`bundle/`).
    pub object: Option<String>,
    /// Exact project.
    pub project: Option<String>,
    /// Newest first: the page holds the highest seqs below `before_seq` (or the head),
    /// descending; the next page is `before_seq` = the last seq returned.
    pub newest_first: bool,
    pub limit: usize,
}

impl AuditQuery {
    /// The page limit actually used.
    pub fn bounded_limit(&self) -> usize {
        self.limit.clamp(1, MAX_AUDIT_PAGE)
    }

    /// The object filter as a half-open range `[low, high)` when it is a kind prefix
    /// (`bundle/` → `["bundle/", "bundle0")`, `0` being the byte after `/`), or `None` when it
    /// is an exact name.
    pub(crate) fn object_prefix_range(object: &str) -> Option<(&str, String)> {
        let stem = object.strip_suffix('/')?;
        Some((object, format!("{stem}0")))
    }
}

/// SHA-256 over `prev ‖ seq ‖ time_ms ‖ actor ‖ object ‖ project ‖ doc`: integers as 8 bytes
/// big-endian, each variable field preceded by its length as 8 bytes big-endian, so no field's
/// bytes can be read as another's (moving a byte from `actor` to `object` changes the hash).
pub fn record_hash(
    prev: &[u8; 32],
    seq: u64,
    time_ms: u64,
    actor: &str,
    object: &str,
    project: &str,
    doc: &[u8],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(seq.to_be_bytes());
    hasher.update(time_ms.to_be_bytes());
    for field in [actor.as_bytes(), object.as_bytes(), project.as_bytes(), doc] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.finalize().into()
}

/// Chains `appends` after `head`, in order: what a writer stores in its transaction (with the
/// commit's `revision` for each) and the head it leaves.
pub(crate) fn chain<'a>(
    head: &mut AuditMark,
    appends: impl IntoIterator<Item = (u64, &'a AuditAppend)>,
) -> Vec<AuditEntry> {
    appends
        .into_iter()
        .map(|(revision, append)| {
            let seq = head.seq + 1;
            let hash = record_hash(
                &head.hash,
                seq,
                append.time_ms,
                &append.actor,
                &append.object,
                &append.project,
                &append.doc,
            );
            let entry = AuditEntry {
                seq,
                revision,
                time_ms: append.time_ms,
                actor: append.actor.clone(),
                object: append.object.clone(),
                project: append.project.clone(),
                doc: append.doc.clone(),
                prev: head.hash,
                hash,
            };
            *head = entry.mark();
            entry
        })
        .collect()
}

/// A stored integer column: `u64` kept bit for bit in a signed 64-bit column.
pub(crate) fn to_column(value: u64) -> i64 {
    value as i64
}

/// A query bound on an integer column; past the column's range it means "no such value".
pub(crate) fn to_bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored hash column as 32 bytes, or `None` when it is not 32 bytes long (damaged).
fn fixed_hash(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

/// A stored record's columns, as read by a backend.
pub(crate) struct StoredColumns<'a> {
    pub seq: i64,
    pub revision: i64,
    pub time_ms: i64,
    pub actor: String,
    pub object: String,
    pub project: String,
    pub doc: Vec<u8>,
    pub prev: &'a [u8],
    pub hash: &'a [u8],
}

impl StoredColumns<'_> {
    /// The record. A hash column of the wrong length (damaged in the database) does not fail
    /// the read: the entry gets a value that cannot verify, so verification names its seq.
    pub(crate) fn into_entry(self) -> AuditEntry {
        let mut entry = AuditEntry {
            seq: self.seq as u64,
            revision: self.revision as u64,
            time_ms: self.time_ms as u64,
            actor: self.actor,
            object: self.object,
            project: self.project,
            doc: self.doc,
            prev: [0; 32],
            hash: [0; 32],
        };
        let prev = fixed_hash(self.prev);
        // A damaged prev links to nothing: its all-ones stand-in is no record's hash.
        entry.prev = prev.unwrap_or([0xff; 32]);
        entry.hash = match (prev, fixed_hash(self.hash)) {
            (Some(_), Some(hash)) => hash,
            _ => {
                let mut wrong = entry.computed_hash();
                wrong[0] ^= 1;
                wrong
            }
        };
        entry
    }
}

/// The columns a page reads, in [`StoredColumns`] order.
pub(crate) const ENTRY_COLUMNS: &str =
    "seq, revision, time_ms, actor, object, project, doc, prev, hash";

/// A parameter of [`page_sql`].
pub(crate) enum PageParam<'a> {
    Int(i64),
    Text(std::borrow::Cow<'a, str>),
}

/// The one page query both backends run: `placeholder(n)` writes the n-th parameter (from 1) in
/// the backend's syntax. Every filter is a range or equality on an indexed column; a kind
/// prefix is the range `[kind/, kind0)` (the columns compare bytes).
pub(crate) fn page_sql<'q>(
    query: &'q AuditQuery,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<PageParam<'q>>) {
    let mut sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit WHERE seq > {}",
        placeholder(1)
    );
    let mut params = vec![PageParam::Int(to_bound(query.after_seq))];
    let condition = |sql: &mut String, params: &mut Vec<PageParam<'q>>, test: &str, value| {
        params.push(value);
        sql.push_str(&format!(" AND {test} {}", placeholder(params.len())));
    };
    if let Some(before) = query.before_seq {
        condition(
            &mut sql,
            &mut params,
            "seq <",
            PageParam::Int(to_bound(before)),
        );
    }
    if let Some(since) = query.since_ms {
        condition(
            &mut sql,
            &mut params,
            "time_ms >=",
            PageParam::Int(to_bound(since)),
        );
    }
    if let Some(until) = query.until_ms {
        condition(
            &mut sql,
            &mut params,
            "time_ms <",
            PageParam::Int(to_bound(until)),
        );
    }
    if let Some(actor) = &query.actor {
        condition(
            &mut sql,
            &mut params,
            "actor =",
            PageParam::Text(actor.into()),
        );
    }
    if let Some(object) = &query.object {
        match AuditQuery::object_prefix_range(object) {
            Some((low, high)) => {
                condition(
                    &mut sql,
                    &mut params,
                    "object >=",
                    PageParam::Text(low.into()),
                );
                condition(
                    &mut sql,
                    &mut params,
                    "object <",
                    PageParam::Text(high.into()),
                );
            }
            None => condition(
                &mut sql,
                &mut params,
                "object =",
                PageParam::Text(object.into()),
            ),
        }
    }
    if let Some(project) = &query.project {
        condition(
            &mut sql,
            &mut params,
            "project =",
            PageParam::Text(project.into()),
        );
    }
    let order = if query.newest_first { "DESC" } else { "ASC" };
    params.push(PageParam::Int(query.bounded_limit() as i64));
    sql.push_str(&format!(
        " ORDER BY seq {order} LIMIT {}",
        placeholder(params.len())
    ));
    (sql, params)
}

/// Why a trail does not verify, naming the first record that breaks it ([`ChainBreak::seq`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The record's fields do not give its stored hash: changed after it was written.
    #[error(
        "audit record {seq}: its content does not match its hash (changed after it was written)"
    )]
    Altered { seq: u64 },
    /// Record `expected` is missing: `found` came next (removed, or out of order).
    #[error("audit record {expected} is missing: record {found} came after record {}", expected - 1)]
    Gap { expected: u64, found: u64 },
    /// The record's `prev` is not the hash of the record (or anchor) before it.
    #[error("audit record {seq}: it does not link to the record before it")]
    Unlinked { seq: u64 },
    /// The trail ends at `last` but the head says `head`: the newest records were removed.
    #[error(
        "the audit trail ends at record {last}, but its head is record {head} (newest records removed)"
    )]
    Truncated { last: u64, head: u64 },
    /// The newest record is not the one the head names (the trail goes past the head, or its
    /// last record was replaced).
    #[error(
        "audit record {seq}: the trail's newest record does not match its head (record {head})"
    )]
    HeadMismatch { seq: u64, head: u64 },
}

impl ChainBreak {
    /// The first record that is wrong or missing.
    pub fn seq(&self) -> u64 {
        match *self {
            ChainBreak::Altered { seq }
            | ChainBreak::Unlinked { seq }
            | ChainBreak::HeadMismatch { seq, .. } => seq,
            ChainBreak::Gap { expected, .. } => expected,
            ChainBreak::Truncated { last, .. } => last + 1,
        }
    }
}

/// Verifies a trail record by record, in seq order from an anchor, holding only the last
/// record's mark: feed it each page of [`Store::audit_page`] (ascending, `after_seq` = the last
/// seq seen), then [`ChainVerifier::finish`] with the head.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    last: AuditMark,
    count: u64,
    broken: Option<ChainBreak>,
}

impl ChainVerifier {
    /// Starts after `anchor` ([`Store::audit_anchor`]).
    pub fn new(anchor: &AuditMark) -> ChainVerifier {
        ChainVerifier {
            last: *anchor,
            count: 0,
            broken: None,
        }
    }

    /// Checks the next record: its seq follows, it links to the one before, its hash is right.
    /// After a break, every call returns that first break.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        if let Some(broken) = self.broken {
            return Err(broken);
        }
        let expected = self.last.seq + 1;
        let broken = if entry.seq != expected {
            Some(ChainBreak::Gap {
                expected,
                found: entry.seq,
            })
        } else if entry.computed_hash() != entry.hash {
            Some(ChainBreak::Altered { seq: entry.seq })
        } else if entry.prev != self.last.hash {
            Some(ChainBreak::Unlinked { seq: entry.seq })
        } else {
            None
        };
        if let Some(broken) = broken {
            self.broken = Some(broken);
            return Err(broken);
        }
        self.last = entry.mark();
        self.count += 1;
        Ok(())
    }

    /// The last record verified (the anchor before any): the next page starts after its seq.
    pub fn last(&self) -> AuditMark {
        self.last
    }

    /// Ends the walk: the last record must be the one `head` names. Returns how many records
    /// were verified.
    pub fn finish(self, head: &AuditMark) -> Result<u64, ChainBreak> {
        if let Some(broken) = self.broken {
            return Err(broken);
        }
        if self.last.seq < head.seq {
            return Err(ChainBreak::Truncated {
                last: self.last.seq,
                head: head.seq,
            });
        }
        if self.last != *head {
            return Err(ChainBreak::HeadMismatch {
                seq: self.last.seq,
                head: head.seq,
            });
        }
        Ok(self.count)
    }
}

/// Verifies `entries` (in seq order) from `anchor` to `head`; returns how many there were.
pub fn verify_chain(
    anchor: &AuditMark,
    entries: impl IntoIterator<Item = AuditEntry>,
    head: &AuditMark,
) -> Result<u64, ChainBreak> {
    let mut verifier = ChainVerifier::new(anchor);
    for entry in entries {
        verifier.push(&entry)?;
    }
    verifier.finish(head)
}

/// What one prune deletes: records in seq order from the anchor while older than the cutoff,
/// each verified first, so retention never deletes a stretch that would not verify.
pub(crate) struct PruneWalk {
    verifier: ChainVerifier,
    older_than_ms: u64,
}

impl PruneWalk {
    pub(crate) fn new(anchor: &AuditMark, older_than_ms: u64) -> PruneWalk {
        PruneWalk {
            verifier: ChainVerifier::new(anchor),
            older_than_ms,
        }
    }

    /// Whether `entry` (the next in seq order) goes; `false` ends the walk (it and every later
    /// record stay).
    pub(crate) fn take(&mut self, entry: &AuditEntry) -> Result<bool, ChainBreak> {
        if entry.time_ms >= self.older_than_ms {
            return Ok(false);
        }
        self.verifier.push(entry)?;
        Ok(true)
    }

    /// The new anchor and how many records go.
    pub(crate) fn end(&self) -> (AuditMark, u64) {
        (self.verifier.last, self.verifier.count)
    }
}

/// Times [`verify_stored`] starts again when a prune moved the anchor while it read.
const VERIFY_ATTEMPTS: usize = 3;

/// Verifies the whole trail a store holds, `page` records at a time (O(page) memory): reads the
/// anchor, then the head, then the records between them; then checks that no record lies past
/// the head as read afterwards (records added behind the writer's back). Records appended
/// meanwhile are past the first head read and left out; a prune meanwhile (which deletes the
/// oldest records) shows as a break at the start, so when the anchor moved the walk starts
/// again from the new one. The outer `Result` is the store's, the inner one the verdict.
///
/// What this cannot find: the newest records deleted *and* the head rewound to match, by
/// someone with write access to the database. Keeping the head somewhere else too (a log
/// line, another system) covers that.
pub fn verify_stored(store: &dyn Store, page: usize) -> Result<Result<u64, ChainBreak>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let anchor = store.audit_anchor()?;
        let head = store.audit_head()?;
        let mut verdict = verify_between(store, &anchor, &head, page)?;
        if let Ok(count) = verdict {
            verdict = past_head(store)?.map(|()| count);
        }
        if verdict.is_err() && attempt < VERIFY_ATTEMPTS && store.audit_anchor()? != anchor {
            continue;
        }
        return Ok(verdict);
    }
}

/// Finds a record past the head: the newest record is read before the head, so a record
/// appended in between is covered by the head read after it.
fn past_head(store: &dyn Store) -> Result<Result<(), ChainBreak>> {
    let newest = store.audit_page(&AuditQuery {
        newest_first: true,
        limit: 1,
        ..AuditQuery::default()
    })?;
    let head = store.audit_head()?;
    Ok(match newest.first() {
        Some(newest) if newest.seq > head.seq => Err(ChainBreak::HeadMismatch {
            seq: newest.seq,
            head: head.seq,
        }),
        _ => Ok(()),
    })
}

fn verify_between(
    store: &dyn Store,
    anchor: &AuditMark,
    head: &AuditMark,
    page: usize,
) -> Result<Result<u64, ChainBreak>> {
    let mut verifier = ChainVerifier::new(anchor);
    let mut query = AuditQuery {
        before_seq: Some(head.seq.saturating_add(1)),
        limit: page,
        ..AuditQuery::default()
    };
    loop {
        query.after_seq = verifier.last().seq;
        let entries = store.audit_page(&query)?;
        if entries.is_empty() {
            return Ok(verifier.finish(head));
        }
        for entry in &entries {
            if let Err(broken) = verifier.push(entry) {
                return Ok(Err(broken));
            }
        }
        if verifier.last().seq >= head.seq {
            return Ok(verifier.finish(head));
        }
    }
}

/// How [`tamper_audit_for_tests`](crate::SqliteStore::tamper_audit_for_tests) damages a stored
/// record, as an attacker with database access would.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditTamper {
    /// Flips one bit of the record's first doc byte.
    AlterDoc,
    /// Deletes the record.
    Delete,
    /// Inserts a junk record at this (free) seq, so the commit whose audit records reach it
    /// fails on the primary key.
    Occupy,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(i: usize) -> AuditAppend {
        AuditAppend {
            time_ms: 1_700_000_000_000 + i as u64,
            actor: "token/ci".into(),
            object: format!("bundle/web-{i}"),
            project: "default".into(),
            doc: format!("{{\"i\":{i}}}").into_bytes(),
        }
    }

    fn trail(from: &AuditMark, count: usize) -> (Vec<AuditEntry>, AuditMark) {
        let appends: Vec<_> = (0..count).map(append).collect();
        let mut head = *from;
        let entries = chain(&mut head, appends.iter().map(|a| (7, a)));
        (entries, head)
    }

    #[test]
    fn a_chained_trail_verifies_from_genesis_to_its_head() {
        let (entries, head) = trail(&AuditMark::GENESIS, 5);
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(entries[0].prev, GENESIS_HASH);
        assert_eq!(entries[1].prev, entries[0].hash);
        assert_eq!(verify_chain(&AuditMark::GENESIS, entries, &head), Ok(5));
        assert_eq!(
            verify_chain(&AuditMark::GENESIS, [], &AuditMark::GENESIS),
            Ok(0)
        );
    }

    #[test]
    fn any_changed_field_is_altered() {
        let (entries, head) = trail(&AuditMark::GENESIS, 3);
        let changes: [fn(&mut AuditEntry); 6] = [
            |e| e.time_ms += 1,
            |e| e.actor.push('x'),
            |e| e.object.push('x'),
            |e| e.project.push('x'),
            |e| e.doc[0] ^= 1,
            |e| e.revision += 1,
        ];
        for (index, change) in changes.iter().enumerate() {
            let mut tampered = entries.clone();
            change(&mut tampered[1]);
            let verdict = verify_chain(&AuditMark::GENESIS, tampered, &head);
            if index == 5 {
                // The revision is the store's bookkeeping, not part of what was recorded.
                assert_eq!(verdict, Ok(3));
            } else {
                assert_eq!(
                    verdict,
                    Err(ChainBreak::Altered { seq: 2 }),
                    "change {index}"
                );
            }
        }
    }

    #[test]
    fn bytes_moved_between_fields_change_the_hash() {
        let a = record_hash(&GENESIS_HASH, 1, 1, "ab", "c", "p", b"d");
        let b = record_hash(&GENESIS_HASH, 1, 1, "a", "bc", "p", b"d");
        let c = record_hash(&GENESIS_HASH, 1, 1, "a", "b", "cp", b"d");
        let d = record_hash(&GENESIS_HASH, 1, 1, "a", "b", "c", b"pd");
        assert!(a != b && b != c && c != d && a != c);
    }

    #[test]
    fn a_removed_record_is_a_gap_named_by_the_missing_seq() {
        let (mut entries, head) = trail(&AuditMark::GENESIS, 4);
        entries.remove(1);
        let broken = verify_chain(&AuditMark::GENESIS, entries, &head).unwrap_err();
        assert_eq!(
            broken,
            ChainBreak::Gap {
                expected: 2,
                found: 3
            }
        );
        assert_eq!(broken.seq(), 2);
    }

    #[test]
    fn a_renumbered_record_no_longer_links() {
        let (mut entries, head) = trail(&AuditMark::GENESIS, 4);
        entries.remove(1);
        // Renumbered and rehashed to hide the gap: its prev still names the removed record.
        entries[1].seq = 2;
        entries[1].hash = entries[1].computed_hash();
        assert_eq!(
            verify_chain(&AuditMark::GENESIS, entries, &head),
            Err(ChainBreak::Unlinked { seq: 2 })
        );
    }

    #[test]
    fn records_cut_from_the_newest_end_are_truncation() {
        let (entries, head) = trail(&AuditMark::GENESIS, 4);
        let broken = verify_chain(&AuditMark::GENESIS, entries[..2].to_vec(), &head).unwrap_err();
        assert_eq!(broken, ChainBreak::Truncated { last: 2, head: 4 });
        assert_eq!(broken.seq(), 3);
        // A head that fell behind the records (or names another record) is a mismatch.
        let stale = entries[2].mark();
        assert_eq!(
            verify_chain(&AuditMark::GENESIS, entries, &stale),
            Err(ChainBreak::HeadMismatch { seq: 4, head: 3 })
        );
    }

    #[test]
    fn a_pruned_trail_verifies_from_its_anchor_only() {
        let (entries, head) = trail(&AuditMark::GENESIS, 6);
        let anchor = entries[2].mark();
        assert_eq!(verify_chain(&anchor, entries[3..].to_vec(), &head), Ok(3));
        assert_eq!(
            verify_chain(&AuditMark::GENESIS, entries[3..].to_vec(), &head),
            Err(ChainBreak::Gap {
                expected: 1,
                found: 4
            })
        );
        // Continuing after a head links on.
        let (more, new_head) = trail(&head, 2);
        assert_eq!(more[0].seq, 7);
        assert_eq!(verify_chain(&head, more, &new_head), Ok(2));
    }

    #[test]
    fn the_verifier_keeps_its_first_break() {
        let (mut entries, head) = trail(&AuditMark::GENESIS, 3);
        entries[0].doc.push(b' ');
        let mut verifier = ChainVerifier::new(&AuditMark::GENESIS);
        assert_eq!(
            verifier.push(&entries[0]),
            Err(ChainBreak::Altered { seq: 1 })
        );
        assert_eq!(
            verifier.push(&entries[1]),
            Err(ChainBreak::Altered { seq: 1 })
        );
        assert_eq!(verifier.finish(&head), Err(ChainBreak::Altered { seq: 1 }));
    }

    #[test]
    fn a_kind_prefix_is_a_range_up_to_the_byte_after_the_slash() {
        assert_eq!(
            AuditQuery::object_prefix_range("bundle/"),
            Some(("bundle/", "bundle0".to_string()))
        );
        assert_eq!(AuditQuery::object_prefix_range("bundle/web"), None);
        assert!("bundle/zzz" < "bundle0" && "bundle0" > "bundle/");
    }
}
