//! The swap database of an installation, guarded against loss: an installation that has made
//! swaps never starts on a missing, truncated or replaced database without saying so (its
//! running swaps may have funds locked on chain that only the database can refund), and the
//! database is backed up automatically.
//!
//! `store-guard.json` beside the database records how many swaps the installation has made;
//! `backups/` keeps the newest [`KEEP_BACKUPS`] copies (taken when a command that runs swaps
//! opens a store with swaps in it, and after a new swap at most every [`BACKUP_EVERY`]).
//!
//! The store is always opened with the installation's key: its secrets are sealed at rest
//! (`swap_core::store::seal`), and so are those of its backups.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use swap_core::store::{SentAction, SentRecorded, SqliteStore, StateEntry, StoreKey};
use swap_core::{Asset, ChainId, Hashlock, StoreError, SwapId, SwapRecord, SwapState, SwapStore};
use tracing::warn;

/// How many backups are kept.
pub const KEEP_BACKUPS: usize = 5;
/// The longest time a new swap waits for its backup.
pub const BACKUP_EVERY: Duration = Duration::from_secs(600);

/// The database file of a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("swaps.sqlite")
}

/// The backups folder of a data directory.
pub fn backups_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

fn guard_path(data_dir: &Path) -> PathBuf {
    data_dir.join("store-guard.json")
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Guard {
    /// Swaps this installation has stored (at least).
    swaps: u64,
}

fn read_guard(data_dir: &Path) -> anyhow::Result<Guard> {
    let path = guard_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("{} is damaged", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Guard::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_guard(data_dir: &Path, guard: Guard) -> std::io::Result<()> {
    write_atomic(
        &guard_path(data_dir),
        &serde_json::to_vec(&guard).unwrap_or_default(),
    )
}

/// Replaces `path` with `bytes` through a temporary file and a rename: a reader never sees
/// half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Backups, newest first.
pub fn backups(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(backups_dir(data_dir))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sqlite"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.reverse();
    v
}

/// Forgets the recorded swap count (after a deliberate restore: `xswap recover`).
pub fn reset(data_dir: &Path, swaps: u64) -> std::io::Result<()> {
    write_guard(data_dir, Guard { swaps })
}

/// The store of `data_dir`, opened with the installation's `key` (see
/// [`Keystore::store_key`](crate::keystore::Keystore::store_key)), refusing a database that
/// holds fewer swaps than the installation has made. With `backup` (commands that run swaps),
/// a backup is taken now when it holds any.
pub async fn open(
    data_dir: &Path,
    key: StoreKey,
    backup: bool,
) -> anyhow::Result<Arc<GuardedStore>> {
    let guard = read_guard(data_dir)?;
    let path = db_path(data_dir);
    if !path.exists() && guard.swaps == 0 {
        bail!(
            "no swap database at {}: run `xswap init` (or pass --data-dir)",
            path.display()
        );
    }
    let lost = |found: u64| {
        let newest = backups(data_dir)
            .first()
            .map(|b| format!("the newest backup is {}", b.display()))
            .unwrap_or_else(|| "there is no backup".into());
        anyhow::anyhow!(
            "the swap database {} holds {found} swap(s), but this installation has made at least \
             {}: it was deleted, truncated or replaced. Swaps that were running may have funds \
             locked on chain that only it can claim or refund. Run `xswap recover` (it restores \
             the newest backup and refunds this installation's Ethereum locks found on chain); \
             {newest}",
            path.display(),
            guard.swaps
        )
    };
    if !path.exists() {
        return Err(lost(0));
    }
    let inner = SqliteStore::open_with_key(&path, key)
        .with_context(|| format!("opening {}", path.display()))?;
    let found = inner.list().await?.len() as u64;
    if found < guard.swaps {
        return Err(lost(found));
    }
    if found > guard.swaps {
        write_guard(data_dir, Guard { swaps: found })?;
    }
    let store = Arc::new(GuardedStore {
        inner,
        dir: data_dir.to_owned(),
        swaps: std::sync::Mutex::new((found, None)),
        abort_after: std::env::var("XSWAP_TEST_ABORT_AFTER_STATES")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0),
        appended: std::sync::atomic::AtomicU64::new(0),
    });
    if backup && found > 0 {
        store.backup().await?;
    }
    Ok(store)
}

/// A [`SqliteStore`] that counts the swaps it stores in the guard file and backs itself up.
///
/// A test hook for crash tests with real processes: with `XSWAP_TEST_ABORT_AFTER_STATES=k`,
/// the process aborts right after the k-th state change is committed (with the rest of its
/// tick's batch, `SwapStore::append_states`), before the driver sends any of those states'
/// actions: the harshest moment for a crash.
pub struct GuardedStore {
    inner: SqliteStore,
    dir: PathBuf,
    /// Swaps stored, and when the last backup was taken.
    swaps: std::sync::Mutex<(u64, Option<Instant>)>,
    abort_after: Option<u64>,
    appended: std::sync::atomic::AtomicU64,
}

impl GuardedStore {
    /// Counts `ok` states appended together, for the test hook: aborts the process when the
    /// count passes `XSWAP_TEST_ABORT_AFTER_STATES` with them (after their batch is committed,
    /// before any of their actions).
    fn count_appended(&self, ok: u64) {
        let n = self
            .appended
            .fetch_add(ok, std::sync::atomic::Ordering::SeqCst)
            + ok;
        if self
            .abort_after
            .is_some_and(|limit| ok > 0 && n >= limit && n - ok < limit)
        {
            eprintln!("XSWAP_TEST_ABORT_AFTER_STATES reached: aborting");
            std::process::abort();
        }
    }

    /// Takes a backup now into `backups/` and keeps the newest [`KEEP_BACKUPS`].
    pub async fn backup(&self) -> anyhow::Result<PathBuf> {
        let dir = backups_dir(&self.dir);
        std::fs::create_dir_all(&dir)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let file = dir.join(format!(
            "swaps-{}-{:09}.sqlite",
            now.as_secs(),
            now.subsec_nanos()
        ));
        self.inner.backup_to(&file).await?;
        for old in backups(&self.dir).into_iter().skip(KEEP_BACKUPS) {
            let _ = std::fs::remove_file(old);
        }
        self.lock().1 = Some(Instant::now());
        Ok(file)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Option<Instant>)> {
        self.swaps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SwapStore for GuardedStore {
    async fn create(&self, record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError> {
        self.inner.create(record, initial).await?;
        let (count, due) = {
            let mut s = self.lock();
            s.0 += 1;
            (s.0, s.1.is_none_or(|t| t.elapsed() >= BACKUP_EVERY))
        };
        if let Err(e) = write_guard(&self.dir, Guard { swaps: count }) {
            warn!(error = %e, "could not update store-guard.json");
        }
        if due {
            if let Err(e) = self.backup().await {
                warn!(error = %e, "could not back up the swap database");
            }
        }
        Ok(())
    }

    async fn append_state(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<u64, StoreError> {
        let seq = self.inner.append_state(id, expected, state).await?;
        self.count_appended(1);
        Ok(seq)
    }

    async fn load_entry(&self, id: &SwapId) -> Result<(SwapRecord, StateEntry), StoreError> {
        self.inner.load_entry(id).await
    }

    async fn append_states(
        &self,
        batch: &[(SwapId, u64, SwapState)],
    ) -> Vec<Result<u64, StoreError>> {
        let out = self.inner.append_states(batch).await;
        let ok = out.iter().filter(|r| r.is_ok()).count() as u64;
        // The test hook: abort once the count passes the limit (after the batch holding the
        // limit's state: every state of it persisted, none of its actions done).
        self.count_appended(ok);
        out
    }

    async fn record_sent(&self, sent: &[SentAction]) -> Vec<SentRecorded> {
        let out = self.inner.record_sent(sent).await;
        // The states sent actions moved on count for the test hook as the others do.
        self.count_appended(
            out.iter()
                .filter(|r| matches!(r.state, Ok(Some(_))))
                .count() as u64,
        );
        out
    }

    async fn load_entries(
        &self,
        ids: &[SwapId],
    ) -> Vec<Result<(SwapRecord, StateEntry), StoreError>> {
        self.inner.load_entries(ids).await
    }

    async fn history(&self, id: &SwapId) -> Result<Vec<StateEntry>, StoreError> {
        self.inner.history(id).await
    }

    async fn unfinished(
        &self,
    ) -> Result<Vec<Result<(SwapRecord, SwapState), StoreError>>, StoreError> {
        self.inner.unfinished().await
    }

    async fn list(&self) -> Result<Vec<SwapId>, StoreError> {
        self.inner.list().await
    }

    async fn to_lock(&self, chain: ChainId, asset: &Asset) -> Result<u128, StoreError> {
        // The store's index, not the default's read of every unfinished swap.
        self.inner.to_lock(chain, asset).await
    }

    async fn allocate_key_index(&self) -> Result<u32, StoreError> {
        self.inner.allocate_key_index().await
    }

    async fn hashlock_in_use(&self, hashlock: &Hashlock) -> Result<bool, StoreError> {
        self.inner.hashlock_in_use(hashlock).await
    }

    async fn record_tx(
        &self,
        id: &SwapId,
        tx: &swap_core::store::SentTx,
    ) -> Result<(), StoreError> {
        self.inner.record_tx(id, tx).await
    }

    async fn txs(&self, id: &SwapId) -> Result<Vec<swap_core::store::SentTx>, StoreError> {
        self.inner.txs(id).await
    }
}
