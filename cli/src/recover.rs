//! `xswap recover`: an installation whose swap database was lost, truncated or replaced gets
//! back what it can. It restores the newest backup (or the one given) when the database holds
//! fewer swaps than the installation has made, then finds every Ethereum lock this
//! installation's account made that the contract still holds, from the contract's events
//! alone, and refunds those whose expiry has passed (a refund after expiry is always safe: the
//! contract accepts no claim any more). Bitcoin-family locks cannot be found from the seed alone
//! (their scripts need the terms); a restored backup brings back those it holds.

use std::path::{Path, PathBuf};

use anyhow::Context;
use swap_core::rail::Rail;

use crate::guard;
use crate::say;

/// What `recover` did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The backup restored, if one was.
    pub restored: Option<PathBuf>,
    /// Refunds sent (transaction hashes).
    pub refunds: Vec<String>,
    /// Locks still waiting for their expiry (unix time).
    pub waiting: Vec<u64>,
}

/// Moves the damaged database (and its `-wal`/`-shm` files) aside, never deleting it.
fn move_aside(db: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !db.exists() {
        return Ok(None);
    }
    let stamp = swap_core::Timestamp::now().0;
    let aside = db.with_extension(format!("sqlite.lost-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            std::fs::rename(&from, format!("{}{suffix}", aside.display()))?;
        }
    }
    Ok(Some(aside))
}

/// Restores a backup if the database lost swaps, then refunds expired Ethereum locks of ours.
pub async fn run(
    data_dir: &Path,
    backup: Option<PathBuf>,
    eth_from_block: u64,
) -> anyhow::Result<Recovered> {
    let mut out = Recovered::default();
    let ks = crate::config::open_keystore(data_dir)?;
    if let Err(lost) = guard::open(data_dir, ks.store_key()?, false).await {
        say!("{lost:#}");
        let db = guard::db_path(data_dir);
        let chosen = backup.or_else(|| guard::backups(data_dir).into_iter().next());
        if let Some(aside) = move_aside(&db)? {
            say!("moved the damaged database aside to {}", aside.display());
        }
        let swaps = match &chosen {
            Some(b) => {
                std::fs::copy(b, &db).with_context(|| format!("restoring {}", b.display()))?;
                let store = swap_core::store::SqliteStore::open_with_key(&db, ks.store_key()?)?;
                let n = swap_core::SwapStore::list(&store).await?.len();
                say!("restored {} ({n} swap(s))", b.display());
                n as u64
            }
            None => {
                say!("no backup to restore: starting an empty database");
                swap_core::store::SqliteStore::open_with_key(&db, ks.store_key()?)?;
                0
            }
        };
        guard::reset(data_dir, swaps)?;
        out.restored = chosen;
    }
    let (engine, eth) =
        crate::config::installation(data_dir, &ks, swap_core::DriverConfig::default()).await?;
    engine.verify_rails().await?;
    let tip = eth.tip().await?;
    let locks = eth.open_locks(eth_from_block).await?;
    say!(
        "{} Ethereum lock(s) of {} still held by the contract",
        locks.len(),
        eth.address()
    );
    for lock in locks {
        let decimals = if lock.htlc.is_eth() {
            18
        } else {
            eth.token_decimals(lock.htlc.token).await
        };
        let params = lock.params(decimals);
        if tip.time.0 >= lock.htlc.expiry {
            let tx = eth.refund(&params).await?;
            say!(
                "refund sent for {} ({}): {tx}",
                params.amount,
                lock.htlc.id()
            );
            out.refunds.push(tx.to_string());
        } else {
            say!(
                "{} ({}) is locked until {}: run `xswap recover` again after that (or `xswap \
                 resume` if the restored database holds its swap)",
                params.amount,
                lock.htlc.id(),
                crate::status::utc_text(lock.htlc.expiry)
            );
            out.waiting.push(lock.htlc.expiry);
        }
    }
    Ok(out)
}
