//! A state appended to a swap's history in the SQLite store: prepared (sealed, serialized)
//! outside the connection's lock, written inside the caller's transaction.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::rows::backend;
use crate::store::seal::StoreKey;
use crate::store::sqlite::CachedSql;
use crate::store::{now, StoreError, SwapState};
use crate::types::SwapId;

/// A state to append, prepared (sealed, serialized) outside the connection's lock.
pub(crate) struct Append {
    id: SwapId,
    expected: u64,
    json: String,
    role: &'static str,
    finished: bool,
    ahead: bool,
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
        })
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
            params![&id.0[..], now().0 as i64, self.json],
        )
        .map_err(backend)?;
        let seq = conn.last_insert_rowid() as u64;
        conn.execute_cached(
            "UPDATE swaps SET finished = ?2, lock_ahead = ?3 WHERE id = ?1",
            params![&id.0[..], self.finished, self.ahead],
        )
        .map_err(backend)?;
        Ok(seq)
    }
}
