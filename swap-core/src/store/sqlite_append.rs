//! A state appended to a swap's history in the SQLite store: prepared (sealed, serialized)
//! outside the connection's lock, written inside the caller's transaction; and what rails
//! accepted, recorded in one ([`record_sent`]).

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::machine::Action;
use crate::store::rows::{backend, sent_tx_row, SentTxRow};
use crate::store::seal::StoreKey;
use crate::store::sqlite::CachedSql;
use crate::store::sqlite_read::{
    data_version, load_entry_one, load_latest, require_swap, LatestCache, RecordCache,
};
use crate::store::{now, SentAction, SentRecorded, StateEntry, StoreError, SwapState};
use crate::types::SwapId;

/// A state to append, prepared (sealed, serialized) outside the connection's lock.
pub(crate) struct Append {
    id: SwapId,
    expected: u64,
    json: String,
    role: &'static str,
    finished: bool,
    ahead: bool,
    /// When the state is entered (the local clock when it was prepared).
    at: i64,
}

impl Append {
    pub(crate) fn new(
        key: Option<&StoreKey>,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            id: *id,
            expected,
            json: crate::store::rows::state_json(key, id, state)?,
            role: crate::store::rows::role_str(state.role()),
            finished: state.is_final(),
            ahead: state.lock_ahead(),
            at: now().0 as i64,
        })
    }

    /// The entry this append makes once written at `seq`, as a read of it would answer
    /// (`state` is the state it was prepared from).
    pub(crate) fn entry(&self, seq: u64, state: SwapState) -> StateEntry {
        StateEntry {
            seq,
            entered_at: crate::types::Timestamp(self.at.max(0) as u64),
            state,
        }
    }

    /// Appends the state inside the caller's transaction (which holds the write lock):
    /// refused, writing nothing, when the swap is unknown, of the other role, or has another
    /// latest state than the one expected.
    pub(crate) fn write(&self, conn: &Connection) -> Result<u64, StoreError> {
        let id = self.id;
        let stored_role: Option<String> = conn
            .query_row_cached(
                "SELECT role FROM swaps WHERE id = ?1",
                params![&id.0[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        match stored_role {
            None => return Err(StoreError::UnknownSwap(id)),
            Some(r) if r != self.role => {
                return Err(StoreError::Invalid {
                    swap: id,
                    detail: "state is for the other role".into(),
                })
            }
            Some(_) => {}
        }
        let latest: i64 = conn
            .query_row_cached(
                "SELECT COALESCE(MAX(seq), 0) FROM swap_states WHERE swap_id = ?1",
                params![&id.0[..]],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if latest as u64 != self.expected {
            return Err(StoreError::Conflict {
                swap: id,
                expected: self.expected,
                found: latest as u64,
            });
        }
        conn.execute_cached(
            "INSERT INTO swap_states(swap_id, entered_at, state_json) VALUES (?1, ?2, ?3)",
            params![&id.0[..], self.at, self.json],
        )
        .map_err(backend)?;
        let seq = conn.last_insert_rowid() as u64;
        // Only when one of them changes: most states change neither, and rewriting the
        // swap's row (its record and secret, over several pages) at every state was most of
        // what a step wrote.
        conn.execute_cached(
            "UPDATE swaps SET finished = ?2, lock_ahead = ?3
             WHERE id = ?1 AND (finished IS NOT ?2 OR lock_ahead IS NOT ?3)",
            params![&id.0[..], self.finished, self.ahead],
        )
        .map_err(backend)?;
        Ok(seq)
    }
}

/// A [`SentAction`] prepared outside the connection's lock: its transaction's row.
pub(crate) struct SentRow {
    id: SwapId,
    tx: Option<Result<SentTxRow, StoreError>>,
    action: Action,
}

impl SentRow {
    pub(crate) fn new(sent: &SentAction) -> Self {
        Self {
            id: sent.id,
            tx: sent.tx.as_ref().map(sent_tx_row),
            action: sent.action.clone(),
        }
    }
}

/// Records `rows` in the caller's IMMEDIATE transaction, in order: each transaction row and
/// each state moved on in its own savepoint (one refused, or one that fails to serialize or
/// seal, is answered alone). `Err` when the database failed: then nothing of the transaction
/// may be kept. Each state appended is also pushed on `moved` with the sequence number it
/// followed, in order.
pub(crate) fn record_sent(
    tx: &mut Transaction<'_>,
    key: Option<&StoreKey>,
    caches: (&RecordCache, &LatestCache),
    rows: Vec<SentRow>,
    moved: &mut Vec<(SwapId, u64, StateEntry)>,
) -> Result<Vec<SentRecorded>, StoreError> {
    let version = data_version(tx)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.id;
        let recorded_tx = match row.tx {
            None => Ok(()),
            // Its own: it never reached the database.
            Some(Err(e)) => Err(e),
            Some(Ok(cols)) => sent_tx(tx, id, cols)?,
        };
        // The transaction still open before the state's savepoint (else it would run alone).
        still_open(tx)?;
        let state = sent_state(tx, key, caches, version, id, &row.action, moved)?;
        still_open(tx)?;
        out.push(SentRecorded {
            tx: recorded_tx,
            state,
        });
    }
    Ok(out)
}

/// Appends `rows` in the caller's IMMEDIATE transaction, in order, each in its own savepoint:
/// one refused (conflict, unknown swap, other role), or one that failed to serialize or seal,
/// is answered alone and the others go on. `Err` when the database failed: then nothing of
/// the transaction may be kept.
pub(crate) fn append_rows(
    tx: &mut Transaction<'_>,
    rows: Vec<Result<Append, StoreError>>,
) -> Result<Vec<Result<u64, StoreError>>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        // A row that failed to serialize or seal never reached the database.
        let answer = match row {
            Err(e) => Err(e),
            Ok(row) => {
                let sp = tx.savepoint().map_err(backend)?;
                match row.write(&sp) {
                    Ok(seq) => {
                        sp.commit().map_err(backend)?;
                        Ok(seq)
                    }
                    Err(e) => own(e)?,
                }
            }
        };
        still_open(tx)?;
        out.push(answer);
    }
    Ok(out)
}

/// `Err` when SQLite rolled the batch's whole transaction back by itself (a row's failure
/// can do that): nothing of it may be kept.
fn still_open(tx: &Transaction<'_>) -> Result<(), StoreError> {
    if tx.is_autocommit() {
        return Err(backend("the batch's transaction was rolled back"));
    }
    Ok(())
}

/// A row's answer, or `Err` when the database failed (SQLite may have rolled the whole
/// transaction back already).
type RowAnswer<T> = Result<Result<T, StoreError>, StoreError>;

/// `Ok(Err(e))` when `e` concerns one swap alone, `Err(e)` when it is the database's.
fn own<T>(e: StoreError) -> RowAnswer<T> {
    if e.is_one_swaps() {
        Ok(Err(e))
    } else {
        Err(e)
    }
}

/// A sent transaction's row, in its own savepoint.
fn sent_tx(tx: &mut Transaction<'_>, id: SwapId, cols: SentTxRow) -> RowAnswer<()> {
    let (json, leg, kind, txref) = cols;
    let sp = tx.savepoint().map_err(backend)?;
    if let Err(e) = require_swap(&sp, id) {
        return own(e);
    }
    sp.execute_cached(
        "INSERT OR IGNORE INTO swap_txs(swap_id, tx_json, leg, kind, txref)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![&id.0[..], json, leg, kind, txref],
    )
    .map_err(backend)?;
    sp.commit().map_err(backend)?;
    Ok(Ok(()))
}

/// The state `action` leads to from the swap's latest ([`SwapState::after_sent`]), appended
/// in its own savepoint; `None` when it stays.
fn sent_state(
    tx: &mut Transaction<'_>,
    key: Option<&StoreKey>,
    (records, latest): (&RecordCache, &LatestCache),
    version: i64,
    id: SwapId,
    action: &Action,
    moved: &mut Vec<(SwapId, u64, StateEntry)>,
) -> RowAnswer<Option<SwapState>> {
    let sp = tx.savepoint().map_err(backend)?;
    // The swap's latest entry as kept (`LatestCache`: no other connection wrote since it was
    // read; the transaction's data version tells), unless this transaction moved it already
    // (the kept entries move only once it commits).
    let read = if moved.iter().any(|(m, _, _)| *m == id) {
        load_entry_one(&sp, key, records, &id.0)
    } else {
        load_latest(&sp, key, records, latest, version, &id)
    };
    let entry = match read {
        Ok((_, entry)) => entry,
        Err(e) => return own(e),
    };
    let Some(next) = entry.state.after_sent(action) else {
        return Ok(Ok(None));
    };
    // Its own when it fails: serializing or sealing the state touches no database.
    let append = match Append::new(key, &id, entry.seq, &next) {
        Ok(append) => append,
        Err(e) => return Ok(Err(e)),
    };
    let seq = match append.write(&sp) {
        Ok(seq) => seq,
        Err(e) => return own(e),
    };
    sp.commit().map_err(backend)?;
    moved.push((id, entry.seq, append.entry(seq, next.clone())));
    Ok(Ok(Some(next)))
}
