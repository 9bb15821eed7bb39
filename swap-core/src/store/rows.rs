//! The row format shared by the SQL stores (SQLite, PostgreSQL): how a swap, its states, its
//! sent transactions and its outbox keys are written as columns, and how a row read back is
//! checked, a damaged one becoming a typed [`StoreError::Corrupt`] for that swap only. One
//! definition, so that every store writes the same thing and refuses the same damage.

use super::outbox::SendKey;
use super::seal::{read_secret, secret_column, StoreKey};
use super::{
    check_record, Role, SentTx, StateEntry, StoreError, StoredRecord, SwapRecord, SwapState,
};
use crate::params::ChainId;
use crate::types::{Asset, SwapId, Timestamp};

/// A backend failure (I/O, connection, SQL) as a [`StoreError::Backend`].
pub fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A row that cannot be read back, for the swap shown as `swap`. `detail` must never hold
/// secret material.
pub fn corrupt(swap: impl std::fmt::Display, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        swap: swap.to_string(),
        detail: detail.to_string(),
    }
}

/// The `role` column's value.
pub fn role_str(role: Role) -> &'static str {
    match role {
        Role::Initiator => "initiator",
        Role::Responder => "responder",
    }
}

/// The `lock_on` column's value for a leg: its chain and asset.
pub fn lock_on(chain: ChainId, asset: &Asset) -> Result<String, StoreError> {
    serde_json::to_string(&(chain, asset)).map_err(backend)
}

/// A `lock_amount` column's value read back (decimal base units: wei exceed 64 bits).
pub fn parse_lock_amount(amount: &str) -> Result<u128, StoreError> {
    amount
        .parse()
        .map_err(|_| corrupt("lock amount", format!("{amount:?} is no amount")))
}

pub use super::seal::{read_state, state_json};

/// The columns of a new swap's row and of its first state.
#[derive(Clone)]
pub struct NewSwapRow {
    /// `id`: the swap id's 16 bytes.
    pub id: Vec<u8>,
    /// `role`.
    pub role: &'static str,
    /// `record_json`: the [`StoredRecord`] without the secret.
    pub record_json: String,
    /// `secret`: the preimage (an initiator's), in a column of its own: sealed with the
    /// store's key ([`super::seal`]), or its 32 bytes in a store without one.
    pub secret: Option<Vec<u8>>,
    /// `finished`: whether the first state is final.
    pub finished: bool,
    /// `hashlock` (hex), indexed.
    pub hashlock: String,
    /// `lock_on`: our leg's chain and asset ([`lock_on`]).
    pub lock_on: String,
    /// `lock_amount`: our leg's amount in base units, decimal.
    pub lock_amount: String,
    /// `lock_ahead`: whether our lock is still to come.
    pub lock_ahead: bool,
    /// The first state's `state_json`.
    pub state_json: String,
}

impl std::fmt::Debug for NewSwapRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSwapRow")
            .field("id", &hex::encode(&self.id))
            .field("role", &self.role)
            .field("has_secret", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// Checks a new swap (see [`SwapStore::create`](super::SwapStore::create)) and encodes it,
/// its secrets sealed with `key` when there is one.
pub fn new_swap_row(
    key: Option<&StoreKey>,
    record: &SwapRecord,
    initial: &SwapState,
) -> Result<NewSwapRow, StoreError> {
    check_record(record, initial)?;
    let leg = record.our_leg();
    let id = record.id();
    Ok(NewSwapRow {
        id: id.0.to_vec(),
        role: role_str(record.role),
        record_json: serde_json::to_string(&StoredRecord::from_record(record)).map_err(backend)?,
        secret: secret_column(key, &id, record.secret.as_ref())?,
        finished: initial.is_final(),
        hashlock: record.terms.hashlock.to_string(),
        lock_on: lock_on(leg.params.chain, &leg.asset)?,
        lock_amount: leg.amount.base_units().to_string(),
        lock_ahead: initial.lock_ahead(),
        state_json: state_json(key, &id, initial)?,
    })
}

/// A stored id read back.
pub fn read_id(bytes: &[u8]) -> Result<SwapId, StoreError> {
    <[u8; 16]>::try_from(bytes)
        .map(SwapId)
        .map_err(|_| corrupt(hex::encode(bytes), "id is not 16 bytes"))
}

/// A swap's row (`id`, `role`, `record_json`, `secret`) read back and checked: the record
/// parses, belongs to this id and role, and an initiator's secret (opened with `key` when
/// sealed) matches its hashlock.
pub fn read_record(
    key: Option<&StoreKey>,
    id_bytes: &[u8],
    role: &str,
    record_json: &str,
    secret: Option<&[u8]>,
) -> Result<SwapRecord, StoreError> {
    let shown = hex::encode(id_bytes);
    let stored: StoredRecord =
        serde_json::from_str(record_json).map_err(|e| corrupt(&shown, format!("record: {e}")))?;
    let secret = match secret {
        None => None,
        Some(bytes) => Some(read_secret(key, id_bytes, bytes)?),
    };
    let record = stored.into_record(secret);
    if record.id().0.as_slice() != id_bytes {
        return Err(corrupt(&shown, "record belongs to another swap id"));
    }
    if role_str(record.role) != role {
        return Err(corrupt(&shown, "role column disagrees with the record"));
    }
    if record.role == Role::Initiator {
        match &record.secret {
            Some(s) if record.terms.hashlock.matches(s) => {}
            _ => return Err(corrupt(&shown, "initiator secret missing or wrong")),
        }
    }
    Ok(record)
}

/// A state row (`seq`, `entered_at`, `state_json`) of the swap `id_bytes` read back.
pub fn read_entry(
    key: Option<&StoreKey>,
    id_bytes: &[u8],
    seq: i64,
    entered_at: i64,
    json: &str,
) -> Result<StateEntry, StoreError> {
    Ok(StateEntry {
        seq: u64::try_from(seq)
            .map_err(|_| corrupt(hex::encode(id_bytes), "negative state number"))?,
        entered_at: Timestamp(entered_at.max(0) as u64),
        state: read_state(key, id_bytes, json)?,
    })
}

/// A swap's latest state row (if it has any) read back for its `record`: a swap without a
/// state, or with a state of the other role, is corrupt.
pub fn read_latest(
    key: Option<&StoreKey>,
    record: &SwapRecord,
    row: Option<(i64, i64, &str)>,
) -> Result<StateEntry, StoreError> {
    let id = record.id();
    let shown = hex::encode(id.0);
    let (seq, at, json) = row.ok_or_else(|| corrupt(&shown, "no state"))?;
    let entry = read_entry(key, &id.0, seq, at, json)?;
    if entry.state.role() != record.role {
        return Err(corrupt(&shown, "state is for the other role"));
    }
    Ok(entry)
}

/// A sent transaction's columns: its JSON, leg, kind and reference.
pub type SentTxRow = (String, String, &'static str, String);

/// The columns of a sent transaction's row: `tx_json`, `leg`, `kind`, `txref`.
pub fn sent_tx_row(tx: &SentTx) -> Result<SentTxRow, StoreError> {
    Ok((
        serde_json::to_string(tx).map_err(backend)?,
        format!("{:?}", tx.leg),
        tx.kind.as_str(),
        tx.txref.0.clone(),
    ))
}

/// A sent transaction's `tx_json` read back.
pub fn read_sent_tx(swap: &SwapId, json: &str) -> Result<SentTx, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(swap, format!("transaction row: {e}")))
}

/// The key columns of an outbox row: `swap_id`, `rail`, `kind`.
pub fn send_key_row(key: &SendKey) -> (Vec<u8>, String, &'static str) {
    (key.swap.0.to_vec(), key.rail.to_string(), key.kind.as_str())
}
