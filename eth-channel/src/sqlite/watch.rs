//! What the watcher needs from the store besides the states: where a channel's events start,
//! and our abandoned proposals whole.

use alloy::primitives::B256;
use rusqlite::{params, OptionalExtension};
use swap_core::store::sqlite::CachedSql;

use super::{backend, corrupt, exists, proposal_of, row_at, to_i64, SqliteChannelStore};
use crate::msg::Proposal;
use crate::store::{ChannelStore, StoreError};

/// Migration 4 of the channel store: a lower bound of the block a channel was opened in
/// (NULL: unknown, watched from block 0).
pub(super) const MIGRATION: &str = "ALTER TABLE channels ADD COLUMN open_block INTEGER;";

impl SqliteChannelStore {
    /// Records that channel `id`'s events start at or after `block` (a block at or before
    /// its first deposit, or at which it was seen open with no closing before): the watcher
    /// starts there. Keeps the lowest block recorded.
    pub fn set_open_block(&self, id: B256, block: u64) -> Result<(), StoreError> {
        let conn = self.lock()?;
        if !exists(&conn, id)? {
            return Err(StoreError::UnknownChannel(id));
        }
        conn.execute_cached(
            "UPDATE channels SET open_block = MIN(COALESCE(open_block, ?2), ?2) WHERE id = ?1",
            params![id.as_slice(), to_i64(id, block)?],
        )
        .map_err(backend)?;
        Ok(())
    }

    /// Where channel `id`'s events start (see [`SqliteChannelStore::set_open_block`]), if
    /// recorded.
    pub fn open_block(&self, id: B256) -> Result<Option<u64>, StoreError> {
        let conn = self.lock()?;
        let v: Option<Option<i64>> = conn
            .query_row_cached(
                "SELECT open_block FROM channels WHERE id = ?1",
                params![id.as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let v = v.ok_or(StoreError::UnknownChannel(id))?;
        v.map(|v| u64::try_from(v).map_err(|e| corrupt(id, e)))
            .transpose()
    }

    /// Our abandoned proposals above the latest co-signed version, oldest first, whole (see
    /// [`ChannelStore::abandoned_proposals`]): the peer may still countersign one and close
    /// with it, so the watcher needs their locks.
    pub fn abandoned_states(&self, id: B256) -> Result<Vec<Proposal>, StoreError> {
        let versions: Vec<u64> = self
            .abandoned_proposals(id)?
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        let conn = self.lock()?;
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            let row = row_at(&conn, id, v, "proposed")?
                .ok_or_else(|| corrupt(id, "abandoned proposal row vanished"))?;
            out.push(proposal_of(self.key(), id, &row)?);
        }
        Ok(out)
    }
}
