//! [`Outbox`] in the SQLite store: the same file as the swaps, so every process on one store
//! shares it. Records are `IMMEDIATE` transactions: of two processes recording a transaction
//! for one send, exactly one succeeds.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::outbox::{now_ms, process_spend_guard, Outbox, SendKey, SignedTx, SpendGuard};
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

/// The file whose lock is the spend guard of `wallet` for the database at `db`: beside it,
/// named by a hash of the wallet's name.
fn guard_file(db: &str, wallet: &str) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(wallet.as_bytes());
    std::path::PathBuf::from(format!("{db}.spend-{}.lock", hex::encode(&hash[..8])))
}

/// Takes the lock of the guard file `path` (created readable by its owner only), waiting for
/// another process (or handle) that holds it. The operating system releases it with the file,
/// also when the process dies.
fn lock_guard_file(path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(backend)?;
    file.lock().map_err(backend)?;
    Ok(file)
}

#[async_trait]
impl Outbox for SqliteStore {
    /// This process's guard, then a lock on a file beside the database (every process on the
    /// store shares the file). A database in memory has no other process: this process's guard.
    async fn spend_guard(&self, wallet: &str) -> Result<SpendGuard, StoreError> {
        let ours = process_spend_guard(wallet).await;
        let wallet = wallet.to_owned();
        let db = self
            .with(|conn| Ok(conn.path().filter(|p| !p.is_empty()).map(str::to_owned)))
            .await?;
        let Some(db) = db else {
            return Ok(SpendGuard::new(ours));
        };
        let file = tokio::task::spawn_blocking(move || lock_guard_file(&guard_file(&db, &wallet)))
            .await
            .map_err(backend)??;
        Ok(SpendGuard::new((ours, file)))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The spend guard of a store on a file is a lock on a file beside it, which another
    /// process (here: another open of the file, as another process's would be) cannot take
    /// while the guard is held, and can once it is dropped. Guards of other wallets are other
    /// files.
    #[tokio::test]
    async fn the_spend_guard_locks_a_file_beside_the_database_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("swaps.sqlite");
        let store = SqliteStore::open(&db).unwrap();
        let guard = store.spend_guard("wallet a").await.unwrap();
        let path = guard_file(db.to_str().unwrap(), "wallet a");
        assert!(path.exists(), "{path:?}");
        let other = std::fs::File::open(&path).unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "held by the guard"
        );
        // Another wallet's guard is free meanwhile.
        let b = store.spend_guard("wallet b").await.unwrap();
        assert_ne!(guard_file(db.to_str().unwrap(), "wallet b"), path);
        drop(b);
        drop(guard);
        other.try_lock().expect("free once the guard is dropped");
        drop(other);
        // And taken again by the next holder.
        let again = store.spend_guard("wallet a").await.unwrap();
        let third = std::fs::File::open(&path).unwrap();
        assert!(third.try_lock().is_err());
        drop(again);
    }
}
