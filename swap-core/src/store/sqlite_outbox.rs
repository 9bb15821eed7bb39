//! [`Outbox`] in the SQLite store: the same file as the swaps, so every process on one store
//! shares it. Claims and records are `IMMEDIATE` transactions: two processes never both get
//! one send.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::outbox::{decide_claim, now_ms, Grant, Outbox, SendClaim, SendKey, SignedTx};
use super::sqlite::{backend, SqliteStore};
use super::StoreError;
use crate::types::TxRef;

fn key_params(key: &SendKey) -> (Vec<u8>, String, &'static str) {
    (key.swap.0.to_vec(), key.rail.to_string(), key.kind.as_str())
}

fn read_row(
    conn: &rusqlite::Connection,
    key: &SendKey,
) -> Result<Option<(u64, i64, Option<SignedTx>)>, StoreError> {
    let (swap, rail, kind) = key_params(key);
    conn.query_row(
        "SELECT o.token, o.claimed_at, t.txid, t.raw FROM outbox o
         LEFT JOIN outbox_txs t ON t.txid = o.txid
         WHERE o.swap_id = ?1 AND o.rail = ?2 AND o.kind = ?3",
        params![swap, rail, kind],
        |r| {
            let txid: Option<String> = r.get(2)?;
            let raw: Option<Vec<u8>> = r.get(3)?;
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)?,
                txid.zip(raw).map(|(txid, raw)| SignedTx {
                    txref: TxRef(txid),
                    raw,
                }),
            ))
        },
    )
    .optional()
    .map_err(backend)
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn claim_sends(
        &self,
        keys: &[SendKey],
        stale_after: Duration,
    ) -> Result<Vec<SendClaim>, StoreError> {
        let keys = keys.to_vec();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let now = now_ms();
            let mut out = Vec::with_capacity(keys.len());
            for key in &keys {
                if let Some(answer) = decide_claim(read_row(&tx, key)?, now, stale_after) {
                    out.push(answer);
                    continue;
                }
                let token: i64 = tx
                    .query_row(
                        "UPDATE counters SET value = value + 1 WHERE name = 'outbox_token'
                         RETURNING value",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                let (swap, rail, kind) = key_params(key);
                tx.execute(
                    "INSERT INTO outbox(swap_id, rail, kind, token, claimed_at, txid)
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL)
                     ON CONFLICT(swap_id, rail, kind)
                     DO UPDATE SET token = excluded.token, claimed_at = excluded.claimed_at,
                                   txid = NULL",
                    params![swap, rail, kind, token, now],
                )
                .map_err(backend)?;
                out.push(SendClaim::Granted {
                    token: token as u64,
                });
            }
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
    }

    async fn record_signed(&self, grants: &[Grant], signed: &SignedTx) -> Result<(), StoreError> {
        let grants = grants.to_vec();
        let signed = signed.clone();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            for (key, token) in &grants {
                let row = read_row(&tx, key)?;
                let found = row.as_ref().map(|r| r.0).unwrap_or(0);
                if found != *token || row.is_some_and(|r| r.2.is_some()) {
                    return Err(StoreError::Conflict {
                        swap: key.swap,
                        expected: *token,
                        found,
                    });
                }
            }
            tx.execute(
                "INSERT OR IGNORE INTO outbox_txs(txid, raw, recorded_at) VALUES (?1, ?2, ?3)",
                params![signed.txref.0, signed.raw, now_ms()],
            )
            .map_err(backend)?;
            for (key, _) in &grants {
                let (swap, rail, kind) = key_params(key);
                tx.execute(
                    "UPDATE outbox SET txid = ?4 WHERE swap_id = ?1 AND rail = ?2 AND kind = ?3",
                    params![swap, rail, kind, signed.txref.0],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn release(&self, grants: &[Grant]) -> Result<(), StoreError> {
        let grants = grants.to_vec();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            for (key, token) in &grants {
                let (swap, rail, kind) = key_params(key);
                tx.execute(
                    "DELETE FROM outbox
                     WHERE swap_id = ?1 AND rail = ?2 AND kind = ?3 AND token = ?4",
                    params![swap, rail, kind, *token as i64],
                )
                .map_err(backend)?;
            }
            // A transaction no send refers to any more was never broadcast for good.
            tx.execute(
                "DELETE FROM outbox_txs WHERE txid NOT IN
                 (SELECT txid FROM outbox WHERE txid IS NOT NULL)",
                [],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn discard(&self, key: &SendKey, txref: &TxRef) -> Result<bool, StoreError> {
        let key = *key;
        let txid = txref.0.clone();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let (swap, rail, kind) = key_params(&key);
            let n = tx
                .execute(
                    "DELETE FROM outbox
                     WHERE swap_id = ?1 AND rail = ?2 AND kind = ?3 AND txid = ?4",
                    params![swap, rail, kind, txid],
                )
                .map_err(backend)?;
            tx.execute(
                "DELETE FROM outbox_txs WHERE txid = ?1 AND txid NOT IN
                 (SELECT txid FROM outbox WHERE txid IS NOT NULL)",
                params![txid],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn signed(&self, key: &SendKey) -> Result<Option<SignedTx>, StoreError> {
        let key = *key;
        self.with(move |conn| Ok(read_row(conn, &key)?.and_then(|r| r.2)))
            .await
    }
}
