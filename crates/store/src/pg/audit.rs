//! PostgreSQL's side of the audit trail (see `crate::audit`): appending a batch's records under
//! the head's row lock, pages, marks, pruning.

use postgres::{Client, Transaction, fallible_iterator::FallibleIterator};

use super::Statements;
use crate::{AuditEntry, AuditMark, AuditQuery, Result, StoreError, audit};

/// Chains a batch's audit records after the head, under the head's row lock, in one insert.
pub(super) fn append<'a>(
    transaction: &mut Transaction<'_>,
    statements: &Statements,
    appends: impl Iterator<Item = (u64, &'a audit::AuditAppend)>,
) -> Result<(), postgres::Error> {
    let mut appends = appends.peekable();
    if appends.peek().is_none() {
        return Ok(());
    }
    let row = transaction.query_one(&statements.audit_head, &[])?;
    let mut head = mark_from(row.get(0), row.get(1));
    let entries = audit::chain(&mut head, appends);
    let column = |field: fn(&AuditEntry) -> u64| -> Vec<i64> {
        entries.iter().map(|e| audit::to_column(field(e))).collect()
    };
    let seqs = column(|e| e.seq);
    let revisions = column(|e| e.revision);
    let times = column(|e| e.time_ms);
    let actors: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
    let objects: Vec<&str> = entries.iter().map(|e| e.object.as_str()).collect();
    let projects: Vec<&str> = entries.iter().map(|e| e.project.as_str()).collect();
    let docs: Vec<&[u8]> = entries.iter().map(|e| &e.doc[..]).collect();
    let prevs: Vec<&[u8]> = entries.iter().map(|e| &e.prev[..]).collect();
    let hashes: Vec<&[u8]> = entries.iter().map(|e| &e.hash[..]).collect();
    transaction.execute(
        &statements.audit_insert,
        &[
            &seqs, &revisions, &times, &actors, &objects, &projects, &docs, &prevs, &hashes,
        ],
    )?;
    transaction.execute(
        &statements.audit_set_head,
        &[&audit::to_column(head.seq), &&head.hash[..]],
    )?;
    Ok(())
}

/// A mark's columns; a damaged hash reads as one no record has, so verification fails rather
/// than the read.
fn mark_from(seq: i64, hash: &[u8]) -> AuditMark {
    AuditMark {
        seq: seq as u64,
        hash: hash.try_into().unwrap_or([0xff; 32]),
    }
}

fn entry(row: &postgres::Row) -> AuditEntry {
    audit::StoredColumns {
        seq: row.get(0),
        revision: row.get(1),
        time_ms: row.get(2),
        actor: row.get(3),
        object: row.get(4),
        project: row.get(5),
        doc: row.get(6),
        prev: row.get(7),
        hash: row.get(8),
    }
    .into_entry()
}

/// The records `query` asks for.
pub(super) fn page(
    client: &mut Client,
    query: &AuditQuery,
) -> Result<Vec<AuditEntry>, postgres::Error> {
    let (sql, page_params) = audit::page_sql(query, |n| format!("${n}"));
    let values: Vec<Box<dyn postgres::types::ToSql + Sync>> = page_params
        .into_iter()
        .map(|param| -> Box<dyn postgres::types::ToSql + Sync> {
            match param {
                audit::PageParam::Int(value) => Box::new(value),
                audit::PageParam::Text(text) => Box::new(text.into_owned()),
            }
        })
        .collect();
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
        values.iter().map(|value| value.as_ref()).collect();
    Ok(client.query(&sql, &params)?.iter().map(entry).collect())
}

/// `(anchor, head)`, from one read.
pub(super) fn marks(client: &mut Client) -> Result<(AuditMark, AuditMark), postgres::Error> {
    let row = client.query_one(
        "SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM audit_meta WHERE id = 1",
        &[],
    )?;
    Ok((
        mark_from(row.get(0), row.get(1)),
        mark_from(row.get(2), row.get(3)),
    ))
}

/// Deletes the oldest records that are older than `older_than_ms` and verify, and moves the
/// anchor, in one transaction holding the anchor's row (so two prunes never overlap).
pub(super) fn prune(
    client: &mut Client,
    older_than_ms: u64,
    max: usize,
) -> Result<Result<usize>, postgres::Error> {
    let mut transaction = client.transaction()?;
    let row = transaction.query_one(
        "SELECT anchor_seq, anchor_hash FROM audit_meta WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    let anchor = mark_from(row.get(0), row.get(1));
    let mut walk = audit::PruneWalk::new(&anchor, older_than_ms);
    {
        let statement = transaction.prepare(&format!(
            "SELECT {} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            audit::ENTRY_COLUMNS
        ))?;
        let max = max.min(audit::MAX_AUDIT_PRUNE) as i64;
        let mut rows = transaction.query_raw(&statement, [audit::to_column(anchor.seq), max])?;
        while let Some(row) = rows.next()? {
            match walk.take(&entry(&row)) {
                Ok(true) => {}
                Ok(false) => break,
                Err(broken) => return Ok(Err(StoreError::AuditBroken(broken))),
            }
        }
    }
    let (new_anchor, count) = walk.end();
    if count > 0 {
        transaction.execute(
            "DELETE FROM audit WHERE seq > $1 AND seq <= $2",
            &[
                &audit::to_column(anchor.seq),
                &audit::to_column(new_anchor.seq),
            ],
        )?;
        transaction.execute(
            "UPDATE audit_meta SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1",
            &[&audit::to_column(new_anchor.seq), &&new_anchor.hash[..]],
        )?;
    }
    transaction.commit()?;
    Ok(Ok(count as usize))
}

#[cfg(any(test, feature = "testing"))]
pub(super) fn tamper(
    client: &mut Client,
    seq: u64,
    tamper: crate::AuditTamper,
) -> Result<(), postgres::Error> {
    let seq = audit::to_column(seq);
    match tamper {
        crate::AuditTamper::AlterDoc => client.execute(
            "UPDATE audit SET doc = CASE WHEN length(doc) = 0 THEN '\\x00'::bytea
                 ELSE set_byte(doc, 0, get_byte(doc, 0) # 1) END
             WHERE seq = $1",
            &[&seq],
        )?,
        crate::AuditTamper::Delete => {
            client.execute("DELETE FROM audit WHERE seq = $1", &[&seq])?
        }
        crate::AuditTamper::Occupy => client.execute(
            "INSERT INTO audit (seq, revision, time_ms, actor, object, project, doc, prev, hash)
             VALUES ($1, 0, 0, '', '', '', '', '', '')",
            &[&seq],
        )?,
    };
    Ok(())
}
