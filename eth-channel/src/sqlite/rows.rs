//! The `channel_states` rows and the look-ups the store's operations share: reading a row
//! (as a co-signed state or our proposal), the latest and pending versions, abandoned
//! versions, and inserting a state row.

use alloy::primitives::B256;
use rusqlite::{params, Connection, OptionalExtension};
use swap_core::store::sqlite::CachedSql;
use swap_core::store::StoreKey;

use super::{backend, corrupt, seal, to_i64, unix_now};
use crate::msg::{Proposal, UpdateKind, WireSig, WireState};
use crate::store::{CoSigned, StoreError};

/// One `channel_states` row.
pub(super) struct Row {
    pub(super) version: u64,
    pub(super) state_json: String,
    pub(super) kind_json: Option<String>,
    pub(super) sig_a: Option<String>,
    pub(super) sig_b: Option<String>,
}

/// The version a `SELECT MAX(version) ...` query of channel `id` gives (none without rows).
fn max_version(
    conn: &Connection,
    id: B256,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = conn
        .query_row_cached(sql, args, |r| r.get(0))
        .map_err(backend)?;
    v.map(|v| u64::try_from(v).map_err(|e| corrupt(id, e)))
        .transpose()
}

pub(super) fn latest_version(conn: &Connection, id: B256) -> Result<Option<u64>, StoreError> {
    max_version(
        conn,
        id,
        "SELECT MAX(version) FROM channel_states WHERE channel_id = ?1 AND role = 'cosigned'",
        params![id.as_slice()],
    )
}

pub(super) fn row_at(
    conn: &Connection,
    id: B256,
    version: u64,
    role: &str,
) -> Result<Option<Row>, StoreError> {
    conn.query_row_cached(
        "SELECT state_json, kind_json, sig_a, sig_b FROM channel_states
         WHERE channel_id = ?1 AND version = ?2 AND role = ?3",
        params![id.as_slice(), to_i64(id, version)?, role],
        |r| {
            Ok(Row {
                version,
                state_json: r.get(0)?,
                kind_json: r.get(1)?,
                sig_a: r.get(2)?,
                sig_b: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(backend)
}

pub(super) fn is_abandoned(conn: &Connection, id: B256, version: u64) -> Result<bool, StoreError> {
    conn.query_row_cached(
        "SELECT 1 FROM channel_abandoned WHERE channel_id = ?1 AND version = ?2",
        params![id.as_slice(), to_i64(id, version)?],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(backend)
}

/// The highest abandoned version above `above`.
pub(super) fn abandoned_above(
    conn: &Connection,
    id: B256,
    above: u64,
) -> Result<Option<u64>, StoreError> {
    max_version(
        conn,
        id,
        "SELECT MAX(version) FROM channel_abandoned WHERE channel_id = ?1 AND version > ?2",
        params![id.as_slice(), to_i64(id, above)?],
    )
}

/// Our newest proposal above `above` that is not abandoned.
pub(super) fn pending_above(
    conn: &Connection,
    id: B256,
    above: u64,
) -> Result<Option<u64>, StoreError> {
    max_version(
        conn,
        id,
        "SELECT MAX(version) FROM channel_states WHERE channel_id = ?1 AND role = 'proposed'
         AND version > ?2 AND version NOT IN
         (SELECT version FROM channel_abandoned WHERE channel_id = ?1)",
        params![id.as_slice(), to_i64(id, above)?],
    )
}

pub(super) fn exists(conn: &Connection, id: B256) -> Result<bool, StoreError> {
    conn.query_row_cached(
        "SELECT 1 FROM channels WHERE id = ?1",
        params![id.as_slice()],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(backend)
}

pub(super) fn cosigned_of(id: B256, row: &Row) -> Result<CoSigned, StoreError> {
    let ws: WireState = serde_json::from_str(&row.state_json).map_err(|e| corrupt(id, e))?;
    let sig = |s: &Option<String>| -> Result<_, StoreError> {
        s.as_deref()
            .map(|s| serde_json::from_str::<WireSig>(s).map(Into::into))
            .transpose()
            .map_err(|e| corrupt(id, e))
    };
    Ok(CoSigned {
        state: ws.state(),
        locks: ws.locks(),
        sig_a: sig(&row.sig_a)?,
        sig_b: sig(&row.sig_b)?,
    })
}

pub(super) fn proposal_of(
    key: Option<&StoreKey>,
    id: B256,
    row: &Row,
) -> Result<Proposal, StoreError> {
    let state: WireState = serde_json::from_str(&row.state_json).map_err(|e| corrupt(id, e))?;
    let kind = seal::kind_of(
        key,
        id,
        row.version,
        row.kind_json.as_deref().unwrap_or("null"),
    )?;
    let sig: WireSig =
        serde_json::from_str(row.sig_a.as_deref().unwrap_or("null")).map_err(|e| corrupt(id, e))?;
    Ok(Proposal {
        channel: id,
        state,
        kind,
        sig,
    })
}

/// Inserts a state row; a change carrying a secret (a claim's preimage) is sealed with `key`,
/// and refused without one in a store sealed meanwhile by another process.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert(
    conn: &Connection,
    key: Option<&StoreKey>,
    id: B256,
    version: u64,
    role: &str,
    state_json: &str,
    kind: Option<&UpdateKind>,
    sigs: (Option<String>, Option<String>),
) -> Result<(), StoreError> {
    if kind.is_some_and(seal::has_secret) {
        seal::refuse_if_sealed(conn, key)?;
    }
    let kind_json = kind
        .map(|k| seal::kind_json(key, id, version, k))
        .transpose()?;
    conn.execute_cached(
        "INSERT INTO channel_states
         (channel_id, version, role, state_json, kind_json, sig_a, sig_b, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id.as_slice(),
            to_i64(id, version)?,
            role,
            state_json,
            kind_json,
            sigs.0,
            sigs.1,
            unix_now()
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// A row of `channel_states` read as (state, kind, sig_a, sig_b, version).
pub(super) fn state_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let version: i64 = r.get(4)?;
    Ok(Row {
        version: u64::try_from(version).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Integer, e.into())
        })?,
        state_json: r.get(0)?,
        kind_json: r.get(1)?,
        sig_a: r.get(2)?,
        sig_b: r.get(3)?,
    })
}
