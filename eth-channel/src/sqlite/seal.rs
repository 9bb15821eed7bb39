//! Secrets at rest in the channel store, sealed like the swap store's
//! (`swap_core::store::seal`): with the installation's [`StoreKey`] (XChaCha20-Poly1305, a
//! fresh nonce per write), each bound to its record.
//!
//! What is secret here:
//! - a claim's preimage, in the `kind_json` of a proposal or co-signed state (`Claim`): its
//!   `preimage` field holds the sealed bytes in hex (146 digits) instead of the 32-byte value
//!   (`0x` and 64 digits), bound to the channel and version;
//! - the signed transactions the watcher records before their broadcast (`watcher_txs.raw`):
//!   a reveal carries its preimage before it is public. A sealed one is [`RAW_MAGIC`] then the
//!   sealed bytes, bound to the transaction's hash (`0xff` starts no EIP-2718 transaction).
//!
//! A store knows it is sealed by its key check (`store_meta`, migration 5): opened without a
//! key it is refused with [`StoreError::KeyRequired`], with another key with
//! [`StoreError::WrongKey`], before anything is read or written. Opened with a key for the
//! first time, it seals the clear secrets it holds in place (see [`seal_at_open`]). Clear
//! values written before still read.

use alloy::primitives::{hex, B256};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use swap_core::store::StoreKey;
use zeroize::Zeroizing;

use super::{backend, corrupt};
use crate::msg::UpdateKind;
use crate::store::StoreError;

/// Migration 5 of the channel store: facts about the store itself; `key_check` (present once
/// its secrets are sealed) tells the key that seals them from any other.
pub(super) const MIGRATION: &str =
    "CREATE TABLE store_meta (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);";

/// What starts a sealed `watcher_txs.raw`.
pub(crate) const RAW_MAGIC: &[u8; 4] = b"\xffxs1";

/// The length of a sealed preimage.
const SEALED_PREIMAGE: usize = StoreKey::sealed_len(32);

fn kind_ad(channel: B256, version: u64) -> Vec<u8> {
    let mut ad = b"eth-channel/claim:".to_vec();
    ad.extend_from_slice(channel.as_slice());
    ad.extend_from_slice(&version.to_be_bytes());
    ad
}

/// A batch's claim `index` (see [`UpdateKind::Batch`]): bound to its place as well.
fn part_ad(channel: B256, version: u64, index: usize) -> Vec<u8> {
    let mut ad = kind_ad(channel, version);
    ad.extend_from_slice(b"/part:");
    ad.extend_from_slice(&u64::try_from(index).unwrap_or(u64::MAX).to_be_bytes());
    ad
}

/// The JSON objects of a change that may hold a preimage, each with the binding of its seal:
/// the change itself, and each change of a batch.
fn secret_places(channel: B256, version: u64, v: &mut Value) -> Vec<(Vec<u8>, &mut Value)> {
    if v.get("changes").is_none() {
        return vec![(kind_ad(channel, version), v)];
    }
    match v.get_mut("changes") {
        Some(Value::Array(parts)) => parts
            .iter_mut()
            .enumerate()
            .map(|(i, p)| (part_ad(channel, version, i), p))
            .collect(),
        _ => vec![],
    }
}

fn raw_ad(hash: B256) -> Vec<u8> {
    let mut ad = b"eth-channel/tx:".to_vec();
    ad.extend_from_slice(hash.as_slice());
    ad
}

/// The store's key check, if its secrets are sealed.
pub(super) fn key_check(conn: &Connection) -> Result<Option<Vec<u8>>, StoreError> {
    conn.query_row(
        "SELECT value FROM store_meta WHERE name = 'key_check'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)
}

/// A store opened without a key about to write a secret into a store sealed meanwhile (by
/// another process opened with one): refused, never written in clear.
pub(crate) fn refuse_if_sealed(
    conn: &Connection,
    key: Option<&StoreKey>,
) -> Result<(), StoreError> {
    match key {
        None if key_check(conn)?.is_some() => Err(StoreError::KeyRequired),
        _ => Ok(()),
    }
}

/// Whether an update carries a secret.
pub(super) fn has_secret(kind: &UpdateKind) -> bool {
    kind.parts()
        .iter()
        .any(|k| matches!(k, UpdateKind::Claim { .. }))
}

/// An update's change as stored: a claim's preimage sealed when there is a key.
pub(super) fn kind_json(
    key: Option<&StoreKey>,
    channel: B256,
    version: u64,
    kind: &UpdateKind,
) -> Result<String, StoreError> {
    let mut v = serde_json::to_value(kind).map_err(backend)?;
    if let Some(key) = key {
        seal_value(key, channel, version, &mut v)?;
    }
    serde_json::to_string(&v).map_err(backend)
}

/// Seals every clear `preimage` of a change's JSON (a batch's too); whether it sealed any.
fn seal_value(
    key: &StoreKey,
    channel: B256,
    version: u64,
    v: &mut Value,
) -> Result<bool, StoreError> {
    let mut any = false;
    for (ad, place) in secret_places(channel, version, v) {
        any |= seal_one(key, channel, &ad, place)?;
    }
    Ok(any)
}

/// Seals the clear `preimage` of one change's JSON object; whether it did.
fn seal_one(key: &StoreKey, channel: B256, ad: &[u8], v: &mut Value) -> Result<bool, StoreError> {
    let Some(Value::String(s)) = v.get_mut("preimage") else {
        return Ok(false);
    };
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.len() != 64 {
        return Ok(false);
    }
    let plain = Zeroizing::new(hex::decode(digits).map_err(|_| corrupt(channel, "preimage"))?);
    let sealed = key.seal_bytes(ad, &plain).map_err(key_error)?;
    *s = hex::encode(sealed);
    Ok(true)
}

/// A stored change read back, its sealed preimage opened.
pub(super) fn kind_of(
    key: Option<&StoreKey>,
    channel: B256,
    version: u64,
    json: &str,
) -> Result<UpdateKind, StoreError> {
    // serde_json's messages name the field, never echo its value.
    if !json.contains("\"preimage\"") {
        return serde_json::from_str(json).map_err(|e| corrupt(channel, e));
    }
    let mut v: Value = serde_json::from_str(json).map_err(|e| corrupt(channel, e))?;
    for (ad, place) in secret_places(channel, version, &mut v) {
        let Some(Value::String(s)) = place.get_mut("preimage") else {
            continue;
        };
        if s.len() == 2 * SEALED_PREIMAGE {
            let sealed =
                hex::decode(s.as_str()).map_err(|_| corrupt(channel, "sealed preimage"))?;
            let key = key.ok_or(StoreError::KeyRequired)?;
            let plain = key.open_bytes(&ad, &sealed).ok_or_else(|| {
                corrupt(
                    channel,
                    format!(
                        "the sealed preimage of version {version} does not open here \
                             (copied from another record, or modified)"
                    ),
                )
            })?;
            *s = format!("0x{}", hex::encode(plain.as_slice()));
        }
    }
    serde_json::from_value(v).map_err(|e| corrupt(channel, e))
}

/// A signed transaction as stored: sealed when there is a key.
pub(crate) fn raw_to_store(
    key: Option<&StoreKey>,
    hash: B256,
    raw: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let Some(key) = key else {
        return Ok(raw.to_vec());
    };
    let sealed = key.seal_bytes(&raw_ad(hash), raw).map_err(key_error)?;
    let mut out = Vec::with_capacity(RAW_MAGIC.len() + sealed.len());
    out.extend_from_slice(RAW_MAGIC);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// A stored signed transaction read back (clear, or sealed and opened).
pub(crate) fn raw_of_store(
    key: Option<&StoreKey>,
    hash: &[u8],
    stored: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    let Some(sealed) = stored.strip_prefix(RAW_MAGIC.as_slice()) else {
        return Ok(stored);
    };
    let key = key.ok_or(StoreError::KeyRequired)?;
    let hash = (hash.len() == 32)
        .then(|| B256::from_slice(hash))
        .ok_or_else(|| backend("watcher_txs: hash length"))?;
    key.open_bytes(&raw_ad(hash), sealed)
        .map(|p| p.to_vec())
        .ok_or_else(|| {
            backend(format!(
                "watcher_txs: the sealed transaction {hash} does not open here (copied from \
                 another record, or modified)"
            ))
        })
}

/// Checks the key a store is opened with against its key check, and with a key for a store
/// that has none yet, seals every clear secret it holds and writes the key check, in one
/// transaction (of two processes opening it at once, one seals, the other finds it sealed).
/// The clear bytes are overwritten on disk (`secure_delete`, then a checkpoint that empties
/// the write-ahead log); a backup taken before still holds them.
pub(super) fn seal_at_open(
    conn: &mut Connection,
    key: Option<&StoreKey>,
) -> Result<(), StoreError> {
    use swap_core::store::seal::{open_store, KeyState};
    let state = open_store(key, key_check(conn)?.as_deref()).map_err(key_error)?;
    let (KeyState::ToSeal, Some(key)) = (state, key) else {
        return Ok(());
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    if open_store(Some(key), key_check(&tx)?.as_deref()).map_err(key_error)? != KeyState::ToSeal {
        return tx.commit().map_err(backend);
    }
    let kinds: Vec<(i64, Vec<u8>, i64, String)> = {
        let mut stmt = tx
            .prepare(
                "SELECT seq, channel_id, version, kind_json FROM channel_states
                 WHERE kind_json LIKE '%\"preimage\"%'",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    let mut sealed_kinds = vec![];
    for (seq, id, version, json) in kinds {
        let (Ok(version), true) = (u64::try_from(version), id.len() == 32) else {
            continue;
        };
        let channel = B256::from_slice(&id);
        // JSON that does not parse is left for the channel's load to report.
        let Ok(mut v) = serde_json::from_str::<Value>(&json) else {
            continue;
        };
        if seal_value(key, channel, version, &mut v)? {
            sealed_kinds.push((seq, serde_json::to_string(&v).map_err(backend)?));
        }
    }
    if !sealed_kinds.is_empty() {
        // `channel_states` is append-only (a trigger refuses updates): the trigger is set
        // aside for these updates only, and put back as it was, in this transaction.
        let trigger: String = tx
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger'
                 AND name = 'channel_states_no_update'",
                [],
                |r| r.get(0),
            )
            .map_err(backend)?;
        tx.execute_batch("DROP TRIGGER channel_states_no_update")
            .map_err(backend)?;
        for (seq, json) in sealed_kinds {
            tx.execute(
                "UPDATE channel_states SET kind_json = ?2 WHERE seq = ?1",
                params![seq, json],
            )
            .map_err(backend)?;
        }
        tx.execute_batch(&trigger).map_err(backend)?;
    }
    let raws: Vec<(i64, Vec<u8>, Vec<u8>)> = {
        let mut stmt = tx
            .prepare("SELECT seq, tx_hash, raw FROM watcher_txs")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    for (seq, hash, raw) in raws {
        if raw.starts_with(RAW_MAGIC) || hash.len() != 32 {
            continue;
        }
        let raw = Zeroizing::new(raw);
        let sealed = raw_to_store(Some(key), B256::from_slice(&hash), &raw)?;
        tx.execute(
            "UPDATE watcher_txs SET raw = ?2 WHERE seq = ?1",
            params![seq, sealed],
        )
        .map_err(backend)?;
    }
    tx.execute(
        "INSERT INTO store_meta (name, value) VALUES ('key_check', ?1)",
        params![key.key_check().map_err(key_error)?],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(backend)
}

fn key_error(e: swap_core::store::StoreError) -> StoreError {
    match e {
        swap_core::store::StoreError::KeyRequired => StoreError::KeyRequired,
        swap_core::store::StoreError::WrongKey => StoreError::WrongKey,
        other => backend(other),
    }
}
