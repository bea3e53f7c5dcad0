//! SQLite's side of the audit trail (see `crate::audit`): the writer's inserts, pages, marks,
//! pruning.

use rusqlite::{Connection, OptionalExtension, params, types::Value};

use crate::{AuditEntry, AuditMark, AuditQuery, Result, audit};

/// Which mark [`read_mark`] reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mark {
    Head,
    Anchor,
}

/// Stores one chained record (in the writer's transaction).
pub(super) fn insert(connection: &Connection, entry: &AuditEntry) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO audit (seq, revision, time_ms, actor, object, project, doc, prev, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            audit::to_column(entry.seq),
            audit::to_column(entry.revision),
            audit::to_column(entry.time_ms),
            entry.actor,
            entry.object,
            entry.project,
            entry.doc,
            &entry.prev[..],
            &entry.hash[..],
        ])?;
    Ok(())
}

/// The head or the anchor. A damaged hash column reads as a hash no record has, so
/// verification fails rather than the read.
pub(super) fn read_mark(connection: &Connection, mark: Mark) -> rusqlite::Result<AuditMark> {
    let sql = match mark {
        Mark::Anchor => "SELECT anchor_seq, anchor_hash FROM audit_meta WHERE id = 1",
        Mark::Head => "SELECT head_seq, head_hash FROM audit_meta WHERE id = 1",
    };
    connection
        .query_row(sql, [], |row| {
            Ok(AuditMark {
                seq: row.get::<_, i64>(0)? as u64,
                hash: row.get_ref(1)?.as_bytes()?.try_into().unwrap_or([0xff; 32]),
            })
        })
        .optional()
        .map(|mark| mark.unwrap_or(AuditMark::GENESIS))
}

fn entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(audit::StoredColumns {
        seq: row.get(0)?,
        revision: row.get(1)?,
        time_ms: row.get(2)?,
        actor: row.get(3)?,
        object: row.get(4)?,
        project: row.get(5)?,
        doc: row.get_ref(6)?.as_bytes()?.to_vec(),
        prev: row.get_ref(7)?.as_bytes()?,
        hash: row.get_ref(8)?.as_bytes()?,
    }
    .into_entry())
}

/// Deletes the oldest records that are older than `older_than_ms` and verify, and moves the
/// anchor; one immediate transaction (waits for the writer like a lease does).
pub(super) fn prune(connection: &Connection, older_than_ms: u64, max: usize) -> Result<usize> {
    let transaction =
        rusqlite::Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate)?;
    let anchor = read_mark(&transaction, Mark::Anchor)?;
    let mut walk = audit::PruneWalk::new(&anchor, older_than_ms);
    {
        let mut statement = transaction.prepare(&format!(
            "SELECT {} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            audit::ENTRY_COLUMNS
        ))?;
        let max = max.min(audit::MAX_AUDIT_PRUNE) as i64;
        let mut rows = statement.query(params![audit::to_column(anchor.seq), max])?;
        while let Some(row) = rows.next()? {
            if !walk.take(&entry(row)?)? {
                break;
            }
        }
    }
    let (new_anchor, count) = walk.end();
    if count > 0 {
        transaction.execute(
            "DELETE FROM audit WHERE seq > ?1 AND seq <= ?2",
            params![
                audit::to_column(anchor.seq),
                audit::to_column(new_anchor.seq)
            ],
        )?;
        transaction.execute(
            "UPDATE audit_meta SET anchor_seq = ?1, anchor_hash = ?2 WHERE id = 1",
            params![audit::to_column(new_anchor.seq), &new_anchor.hash[..]],
        )?;
    }
    transaction.commit()?;
    Ok(count as usize)
}

/// The records `query` asks for.
pub(super) fn page(connection: &Connection, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let (sql, page_params) = audit::page_sql(query, |n| format!("?{n}"));
    let values: Vec<Value> = page_params
        .into_iter()
        .map(|param| match param {
            audit::PageParam::Int(value) => Value::Integer(value),
            audit::PageParam::Text(text) => Value::Text(text.into_owned()),
        })
        .collect();
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(values), entry)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(any(test, feature = "testing"))]
impl super::SqliteStore {
    /// Damages the stored audit record `seq` behind the store's back, as someone with write
    /// access to the database file could (tests of verification).
    pub fn tamper_audit_for_tests(&self, seq: u64, tamper: crate::AuditTamper) -> Result<()> {
        let seq = audit::to_column(seq);
        self.reader.with(|connection| {
            match tamper {
                crate::AuditTamper::AlterDoc => {
                    let mut doc: Vec<u8> =
                        connection.query_row("SELECT doc FROM audit WHERE seq = ?1", [seq], |row| {
                            row.get(0)
                        })?;
                    match doc.first_mut() {
                        Some(byte) => *byte ^= 1,
                        None => doc.push(0),
                    }
                    connection.execute("UPDATE audit SET doc = ?2 WHERE seq = ?1", params![seq, doc])?;
                }
                crate::AuditTamper::Delete => {
                    connection.execute("DELETE FROM audit WHERE seq = ?1", [seq])?;
                }
                crate::AuditTamper::Occupy => {
                    connection.execute(
                        "INSERT INTO audit (seq, revision, time_ms, actor, object, project, doc, prev, hash)
                         VALUES (?1, 0, 0, '', '', '', x'', zeroblob(32), zeroblob(32))",
                        [seq],
                    )?;
                }
            }
            Ok(())
        })
    }
}
