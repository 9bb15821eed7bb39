//! The SQLite store's read path: a swap's row and latest state read in the caller's
//! transaction, with the parsed records kept ([`RecordCache`]).

use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{backend, read_id, read_latest, read_record};
use super::seal::StoreKey;
use super::sqlite_conn::CachedSql;
use super::{StateEntry, StoreError, SwapRecord, SwapState};
use crate::types::SwapId;

/// Swaps' latest entries as this handle last read or wrote them, with their records: a
/// swap's step reads its latest entry, and reading and parsing it again (two rows, the state
/// unsealed and parsed) after this handle wrote it was ~6 % of the CPU of a channel swap.
/// Kept only while no other connection has written the database: SQLite's
/// `PRAGMA data_version`, read in the same transaction as the rows would be, changes when
/// another connection (another handle, another process, a repair by hand) commits, and then
/// the whole cache is dropped and every swap read again (a row damaged behind the store's
/// back is still found corrupt). This handle's own commits do not change it: each one moves
/// the entries it wrote on ([`LatestCache::appended`]), with the connection still held, so no
/// read can come between. At most [`LATEST_KEPT`]; when full, it starts again empty.
#[derive(Default)]
pub(crate) struct LatestCache(Mutex<Latest>);

#[derive(Default)]
struct Latest {
    /// The data version the kept entries hold at (`None`: not read yet).
    version: Option<i64>,
    kept: std::collections::HashMap<SwapId, (SwapRecord, StateEntry)>,
}

/// How many latest entries a [`SqliteStore`] keeps.
const LATEST_KEPT: usize = 4_096;

/// `conn`'s data version (see [`LatestCache`]): inside a transaction, that of its view.
pub(crate) fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row_cached("PRAGMA data_version", [], |r| r.get(0))
        .map_err(backend)
}

impl LatestCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Latest> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `id`'s kept entry, if the cache holds at `version`; a cache that held at another
    /// version is emptied and holds at `version` from now on.
    fn get(&self, version: i64, id: &SwapId) -> Option<(SwapRecord, StateEntry)> {
        let mut latest = self.lock();
        if latest.version != Some(version) {
            latest.kept.clear();
            latest.version = Some(version);
            return None;
        }
        latest.kept.get(id).cloned()
    }

    /// Keeps what was read at `version` (nothing if the cache holds at another one).
    fn keep(&self, version: i64, record: &SwapRecord, entry: &StateEntry) {
        let mut latest = self.lock();
        if latest.version != Some(version) {
            return;
        }
        if latest.kept.len() >= LATEST_KEPT {
            latest.kept.clear();
        }
        latest
            .kept
            .insert(record.id(), (record.clone(), entry.clone()));
    }

    /// A swap this handle created and committed, its initial entry `entry`, in a transaction
    /// whose data version was `version` (kept only if the cache holds at it).
    pub(crate) fn created(&self, version: i64, record: &SwapRecord, entry: StateEntry) {
        self.keep(version, record, &entry);
    }

    /// A state this handle appended after `expected` and committed: the kept entry moves on
    /// if it was the one at `expected`, and is dropped otherwise.
    fn appended(&self, id: &SwapId, expected: u64, entry: StateEntry) {
        let mut latest = self.lock();
        match latest.kept.get_mut(id) {
            Some((_, kept)) if kept.seq == expected => *kept = entry,
            Some(_) => {
                latest.kept.remove(id);
            }
            None => {}
        }
    }

    /// After a write of this handle, with the connection still held (no read comes
    /// between): when it committed, the entries it `moved` on ([`LatestCache::appended`],
    /// each with the sequence number it followed, in order); when it failed, everything is
    /// forgotten (its outcome is not known in full).
    pub(crate) fn written<T, E>(
        &self,
        written: &Result<T, E>,
        moved: impl IntoIterator<Item = (SwapId, u64, StateEntry)>,
    ) {
        match written {
            Ok(_) => {
                for (id, expected, entry) in moved {
                    self.appended(&id, expected, entry);
                }
            }
            Err(_) => self.clear(),
        }
    }

    /// Forgets everything.
    fn clear(&self) {
        let mut latest = self.lock();
        latest.kept.clear();
        latest.version = None;
    }
}

/// [`load_entry_one`] answered from `latest` when it holds at `version` (the data version
/// of `conn`'s current transaction), and kept there when read.
pub(crate) fn load_latest(
    conn: &Connection,
    key: Option<&StoreKey>,
    records: &RecordCache,
    latest: &LatestCache,
    version: i64,
    id: &SwapId,
) -> Result<(SwapRecord, StateEntry), StoreError> {
    if let Some(kept) = latest.get(version, id) {
        return Ok(kept);
    }
    let (record, entry) = load_entry_one(conn, key, records, &id.0)?;
    latest.keep(version, &record, &entry);
    Ok((record, entry))
}

/// Swap records read before, checked and parsed, with the row they were read from. A swap's
/// row never changes once written (its states are other rows), and parsing it again at every
/// step of every swap in flight was ~8 % of the CPU of a channel swap; the row is still read
/// every time, and parsed again whenever it differs (a row changed behind the store's back
/// is still found corrupt, a secret sealed since by another handle still needs the key). At
/// most [`RECORDS_KEPT`]; when full, it starts again empty.
#[derive(Default)]
pub(crate) struct RecordCache(Mutex<std::collections::HashMap<SwapId, (RecordRow, SwapRecord)>>);

/// A swap's row as read: role, record, secret (sealed or clear).
#[derive(PartialEq, Eq)]
struct RecordRow(String, String, Option<zeroize::Zeroizing<Vec<u8>>>);

/// How many parsed records a [`SqliteStore`] keeps.
const RECORDS_KEPT: usize = 4_096;

impl RecordCache {
    /// The record parsed from `row` before, if it was.
    fn get(&self, id: &SwapId, row: &RecordRow) -> Option<SwapRecord> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .filter(|(kept, _)| kept == row)
            .map(|(_, record)| record.clone())
    }

    fn keep(&self, row: RecordRow, record: &SwapRecord) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= RECORDS_KEPT {
            map.clear();
        }
        map.insert(record.id(), (row, record.clone()));
    }
}

pub(crate) fn load_one(
    conn: &Connection,
    key: Option<&StoreKey>,
    records: &RecordCache,
    id_bytes: &[u8],
) -> Result<(SwapRecord, SwapState), StoreError> {
    load_entry_one(conn, key, records, id_bytes).map(|(r, e)| (r, e.state))
}

pub(crate) fn load_entry_one(
    conn: &Connection,
    key: Option<&StoreKey>,
    records: &RecordCache,
    id_bytes: &[u8],
) -> Result<(SwapRecord, StateEntry), StoreError> {
    let record = read_record_row(conn, key, records, id_bytes)?;
    let row: Option<(i64, i64, String)> = conn
        .query_row_cached(
            "SELECT seq, entered_at, state_json FROM swap_states WHERE swap_id = ?1
             ORDER BY seq DESC LIMIT 1",
            params![id_bytes],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let entry = read_latest(
        key,
        &record,
        row.as_ref().map(|(s, a, j)| (*s, *a, j.as_str())),
    )?;
    Ok((record, entry))
}

/// A swap's row read and checked (parsed only if it differs from the one parsed before).
fn read_record_row(
    conn: &Connection,
    key: Option<&StoreKey>,
    records: &RecordCache,
    id_bytes: &[u8],
) -> Result<SwapRecord, StoreError> {
    let row: Option<(String, String, Option<Vec<u8>>)> = conn
        .query_row_cached(
            "SELECT role, record_json, secret FROM swaps WHERE id = ?1",
            params![id_bytes],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let (role, record_json, secret) = match row {
        Some(row) => row,
        None => return Err(StoreError::UnknownSwap(read_id(id_bytes)?)),
    };
    let row = RecordRow(role, record_json, secret.map(zeroize::Zeroizing::new));
    let id = <[u8; 16]>::try_from(id_bytes).ok().map(SwapId);
    if let Some(record) = id.and_then(|id| records.get(&id, &row)) {
        return Ok(record);
    }
    let record = read_record(
        key,
        id_bytes,
        &row.0,
        &row.1,
        row.2.as_deref().map(|s| &s[..]),
    )?;
    records.keep(row, &record);
    Ok(record)
}

/// `UnknownSwap` unless the swap is stored.
pub(crate) fn require_swap(conn: &Connection, id: SwapId) -> Result<(), StoreError> {
    conn.query_row_cached(
        "SELECT 1 FROM swaps WHERE id = ?1",
        params![&id.0[..]],
        |_| Ok(()),
    )
    .optional()
    .map_err(backend)?
    .ok_or(StoreError::UnknownSwap(id))
}
