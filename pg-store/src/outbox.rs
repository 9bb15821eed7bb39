//! The [`Outbox`] on PostgreSQL: one table of sends shared by every worker on the database.
//! A record inserts every send's row in one transaction, keyed by the send: when any of them
//! is taken (by another worker, even one whose transaction is still open: the insert waits
//! for it) the whole transaction is rolled back. Sends are written in a fixed order, so two
//! workers recording overlapping sets wait for each other instead of deadlocking.

use async_trait::async_trait;
use swap_core::store::outbox::{process_spend_guard, Outbox, SendKey, SignedTx, SpendGuard};
use swap_core::store::rows::send_key_row;
use swap_core::{StoreError, TxRef};

use crate::{db, PgStore};

/// Milliseconds since the Unix epoch (local clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Inserts `signed` unless it is stored (and locks its row either way, so that a concurrent
/// discard cannot delete it under the send that is about to refer to it).
async fn put_tx(
    tx: &deadpool_postgres::Transaction<'_>,
    signed: &SignedTx,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO outbox_txs(txid, raw, recorded_at) VALUES ($1, $2, $3)
         ON CONFLICT (txid) DO UPDATE SET txid = outbox_txs.txid",
        &[&signed.txref.0, &signed.raw, &now_ms()],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Inserts a send's row unless the send is taken; answers whether it was inserted.
async fn put_send(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &SendKey,
    txid: &str,
) -> Result<bool, StoreError> {
    let (swap, rail, kind) = send_key_row(key);
    let n = tx
        .execute(
            "INSERT INTO outbox(swap_id, rail, kind, txid) VALUES ($1, $2, $3, $4)
             ON CONFLICT (swap_id, rail, kind) DO NOTHING",
            &[&swap, &rail, &kind, &txid],
        )
        .await
        .map_err(db)?;
    Ok(n == 1)
}

/// The order sends are written in.
fn sorted<T>(items: &mut [T], key: impl Fn(&T) -> &SendKey) {
    items.sort_by_cached_key(|i| send_key_row(key(i)));
}

/// A spend guard's hold on the database: a session advisory lock on one pooled connection.
/// Dropped, it unlocks and gives the connection back to the pool (on a task; without a runtime,
/// or when the unlock fails, the connection is closed instead, which ends the lock with it).
struct AdvisoryLock {
    client: Option<deadpool_postgres::Object>,
    wallet: String,
}

/// The advisory lock key of a wallet's spend guard (`hashtext` of a name of its own).
const GUARD_KEY_SQL: &str = "hashtext('xswap-spend-guard:' || $1)";

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let wallet = std::mem::take(&mut self.wallet);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let sql = format!("SELECT pg_advisory_unlock({GUARD_KEY_SQL})");
                    if client.execute(sql.as_str(), &[&wallet]).await.is_err() {
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

#[async_trait]
impl Outbox for PgStore {
    /// This process's guard, then a session advisory lock on the database (every worker on it
    /// shares the lock; a worker that dies loses its connection, and the lock with it).
    async fn spend_guard(&self, wallet: &str) -> Result<SpendGuard, StoreError> {
        let ours = process_spend_guard(wallet).await;
        // The hold exists before the lock is asked for: a caller that gives up while it waits
        // (its future dropped) still unlocks, after the lock if the server grants it then.
        let hold = AdvisoryLock {
            client: Some(self.client().await?),
            wallet: wallet.to_owned(),
        };
        let sql = format!("SELECT pg_advisory_lock({GUARD_KEY_SQL})");
        if let Some(client) = &hold.client {
            client.execute(sql.as_str(), &[&wallet]).await.map_err(db)?;
        }
        Ok(SpendGuard::new((hold, ours)))
    }

    async fn signed(&self, key: &SendKey) -> Result<Option<SignedTx>, StoreError> {
        let (swap, rail, kind) = send_key_row(key);
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT t.txid, t.raw FROM outbox o JOIN outbox_txs t ON t.txid = o.txid
                 WHERE o.swap_id = $1 AND o.rail = $2 AND o.kind = $3",
                &[&swap, &rail, &kind],
            )
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok(SignedTx {
                txref: TxRef(r.try_get(0).map_err(db)?),
                raw: r.try_get(1).map_err(db)?,
            })
        })
        .transpose()
    }

    async fn record_signed(&self, keys: &[SendKey], signed: &SignedTx) -> Result<(), StoreError> {
        let mut keys = keys.to_vec();
        sorted(&mut keys, |k| k);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        put_tx(&tx, signed).await?;
        for key in &keys {
            if !put_send(&tx, key, &signed.txref.0).await? {
                // Dropping `tx` rolls every row back.
                return Err(StoreError::AlreadyRecorded { swap: key.swap });
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn record_each(&self, items: &[(SendKey, SignedTx)]) -> Result<Vec<SendKey>, StoreError> {
        let mut ordered: Vec<&(SendKey, SignedTx)> = items.iter().collect();
        sorted(&mut ordered, |i| &i.0);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mut taken = std::collections::HashSet::new();
        for (key, signed) in ordered {
            put_tx(&tx, signed).await?;
            if !put_send(&tx, key, &signed.txref.0).await? {
                taken.insert(*key);
            }
        }
        if !taken.is_empty() {
            tx.rollback().await.map_err(db)?;
            // In the caller's order.
            return Ok(items
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| taken.contains(k))
                .collect());
        }
        tx.commit().await.map_err(db)?;
        Ok(Vec::new())
    }

    async fn discard(&self, keys: &[SendKey], txref: &TxRef) -> Result<usize, StoreError> {
        let mut keys = keys.to_vec();
        sorted(&mut keys, |k| k);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mut n = 0;
        for key in &keys {
            let (swap, rail, kind) = send_key_row(key);
            n += tx
                .execute(
                    "DELETE FROM outbox
                     WHERE swap_id = $1 AND rail = $2 AND kind = $3 AND txid = $4",
                    &[&swap, &rail, &kind, &txref.0],
                )
                .await
                .map_err(db)?;
        }
        // The transaction itself, once no send refers to it any more.
        tx.execute(
            "DELETE FROM outbox_txs t WHERE t.txid = $1
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.txid = t.txid)",
            &[&txref.0],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
