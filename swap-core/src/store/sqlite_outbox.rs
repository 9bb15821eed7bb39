//! [`Outbox`] in the SQLite store: the same file as the swaps, so every process on one store
//! shares it. Records are `IMMEDIATE` transactions: of two processes recording a transaction
//! for one send, exactly one succeeds.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::outbox::{now_ms, Outbox, SendKey, SignedTx};
use super::rows::{backend, send_key_row};
use super::sqlite::{CachedSql, SqliteStore};
use super::StoreError;
use crate::types::TxRef;

fn read(conn: &rusqlite::Connection, key: &SendKey) -> Result<Option<SignedTx>, StoreError> {
    let (swap, rail, kind) = send_key_row(key);
    conn.query_row_cached(
        "SELECT t.txid, t.raw FROM outbox o JOIN outbox_txs t ON t.txid = o.txid
         WHERE o.swap_id = ?1 AND o.rail = ?2 AND o.kind = ?3",
        params![swap, rail, kind],
        |r| {
            Ok(SignedTx {
                txref: TxRef(r.get(0)?),
                raw: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(backend)
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn signed(&self, key: &SendKey) -> Result<Option<SignedTx>, StoreError> {
        let key = *key;
        self.with(move |conn| read(conn, &key)).await
    }

    async fn record_signed(&self, keys: &[SendKey], signed: &SignedTx) -> Result<(), StoreError> {
        let keys = keys.to_vec();
        let signed = signed.clone();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            for key in &keys {
                if read(&tx, key)?.is_some() {
                    return Err(StoreError::AlreadyRecorded { swap: key.swap });
                }
            }
            tx.execute_cached(
                "INSERT OR IGNORE INTO outbox_txs(txid, raw, recorded_at) VALUES (?1, ?2, ?3)",
                params![signed.txref.0, signed.raw, now_ms()],
            )
            .map_err(backend)?;
            for key in &keys {
                let (swap, rail, kind) = send_key_row(key);
                tx.execute_cached(
                    "INSERT INTO outbox(swap_id, rail, kind, txid) VALUES (?1, ?2, ?3, ?4)",
                    params![swap, rail, kind, signed.txref.0],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn record_each(&self, items: &[(SendKey, SignedTx)]) -> Result<Vec<SendKey>, StoreError> {
        let items = items.to_vec();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut taken = Vec::new();
            for (key, _) in &items {
                if read(&tx, key)?.is_some() {
                    taken.push(*key);
                }
            }
            if !taken.is_empty() {
                return Ok(taken);
            }
            let t = now_ms();
            for (key, signed) in &items {
                tx.execute_cached(
                    "INSERT OR IGNORE INTO outbox_txs(txid, raw, recorded_at) VALUES (?1, ?2, ?3)",
                    params![signed.txref.0, signed.raw, t],
                )
                .map_err(backend)?;
                let (swap, rail, kind) = send_key_row(key);
                tx.execute_cached(
                    "INSERT INTO outbox(swap_id, rail, kind, txid) VALUES (?1, ?2, ?3, ?4)",
                    params![swap, rail, kind, signed.txref.0],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(taken)
        })
        .await
    }

    async fn discard(&self, keys: &[SendKey], txref: &TxRef) -> Result<usize, StoreError> {
        let keys = keys.to_vec();
        let txid = txref.0.clone();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut n = 0;
            for key in &keys {
                let (swap, rail, kind) = send_key_row(key);
                n += tx
                    .execute_cached(
                        "DELETE FROM outbox
                         WHERE swap_id = ?1 AND rail = ?2 AND kind = ?3 AND txid = ?4",
                        params![swap, rail, kind, txid],
                    )
                    .map_err(backend)?;
            }
            // The transaction itself, once no send refers to it any more.
            tx.execute_cached(
                "DELETE FROM outbox_txs WHERE txid = ?1 AND txid NOT IN
                 (SELECT txid FROM outbox)",
                params![txid],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n)
        })
        .await
    }
}
