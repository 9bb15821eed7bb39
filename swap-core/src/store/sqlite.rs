//! The default store: one SQLite file, WAL, full sync, versioned migrations; secrets sealed
//! with the installation's key when it is given ([`SqliteStore::open_with_key`], see
//! [`super::seal`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{
    backend, corrupt, lock_on, new_swap_row, parse_lock_amount, read_entry, read_id, read_sent_tx,
    sent_tx_row,
};
use super::seal::{self, KeyState, StoreKey};
use super::{
    now, SentAction, SentRecorded, StateEntry, StoreError, SwapRecord, SwapState, SwapStore,
};
use crate::params::ChainId;
use crate::types::{Asset, SwapId};

use super::sqlite_append::{append_rows, record_sent, Append, SentRow};
use super::sqlite_read::{
    data_version, load_latest, load_one, require_swap, LatestCache, RecordCache,
};

pub use super::sqlite_conn::{
    configure, migrate, CachedSql, Migration, STATEMENT_CACHE, WAL_AUTOCHECKPOINT_PAGES,
};

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied.
/// Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: swaps, their append-only state history, counters.
    "CREATE TABLE swaps (
        id          BLOB PRIMARY KEY NOT NULL,
        role        TEXT NOT NULL,
        record_json TEXT NOT NULL,
        secret      BLOB,
        created_at  INTEGER NOT NULL,
        finished    INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE swap_states (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        swap_id    BLOB NOT NULL REFERENCES swaps(id),
        entered_at INTEGER NOT NULL,
        state_json TEXT NOT NULL
    );
    CREATE INDEX swap_states_by_swap ON swap_states(swap_id, seq);
    CREATE INDEX swaps_unfinished ON swaps(finished, created_at);
    CREATE TABLE counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
    INSERT INTO counters(name, value) VALUES ('key_index', 0);",
    // 2: the hashlock of each swap, indexed (a responder refuses a hashlock it already has).
    "ALTER TABLE swaps ADD COLUMN hashlock TEXT;
    UPDATE swaps SET hashlock = json_extract(record_json, '$.terms.hashlock');
    CREATE INDEX swaps_by_hashlock ON swaps(hashlock);",
    // 3: the transactions sent for each swap (what `xswap show` lists).
    "CREATE TABLE swap_txs (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        swap_id BLOB NOT NULL REFERENCES swaps(id),
        tx_json TEXT NOT NULL,
        leg     TEXT NOT NULL,
        kind    TEXT NOT NULL,
        txref   TEXT NOT NULL,
        UNIQUE (swap_id, leg, kind, txref)
    );",
    // 4: the outbox (see `outbox.rs`): each send's signed transaction, recorded before its
    // broadcast.
    "CREATE TABLE outbox_txs (
        txid        TEXT PRIMARY KEY NOT NULL,
        raw         BLOB NOT NULL,
        recorded_at INTEGER NOT NULL
    );
    CREATE TABLE outbox (
        swap_id BLOB NOT NULL,
        rail    TEXT NOT NULL,
        kind    TEXT NOT NULL,
        txid    TEXT NOT NULL REFERENCES outbox_txs(txid),
        PRIMARY KEY (swap_id, rail, kind)
    );
    CREATE INDEX outbox_by_txid ON outbox(txid);",
    // 5: what each swap will still lock, indexed (a maker's reserve, `to_lock`, without
    // reading every unfinished swap): the chain and asset of our leg, its amount in base units
    // (decimal text: wei exceed 64 bits), and whether our lock is still ahead. Rows written
    // before this migration get their values at open (`track_locks`); finished ones need none.
    "ALTER TABLE swaps ADD COLUMN lock_on TEXT;
    ALTER TABLE swaps ADD COLUMN lock_amount TEXT;
    ALTER TABLE swaps ADD COLUMN lock_ahead INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE swaps ADD COLUMN lock_tracked INTEGER NOT NULL DEFAULT 0;
    UPDATE swaps SET lock_tracked = 1 WHERE finished = 1;
    CREATE INDEX swaps_to_lock ON swaps(lock_on) WHERE lock_ahead = 1;
    CREATE INDEX swaps_untracked ON swaps(id) WHERE lock_tracked = 0;",
    // 6: facts about the store itself; `key_check` (present once its secrets are sealed with a
    // key, see `seal.rs`) tells the key that seals them from any other.
    "CREATE TABLE store_meta (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);",
];

/// The key check of a store, if its secrets are sealed.
fn key_check(conn: &Connection) -> Result<Option<Vec<u8>>, StoreError> {
    conn.query_row_cached(
        "SELECT value FROM store_meta WHERE name = 'key_check'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)
}

/// Checks the key a store is opened with against the store's key check, and with a key for a
/// store that has none yet, seals every clear secret it holds and writes the key check, in one
/// transaction (of two processes opening it at once, one seals, the other finds it sealed).
/// The old clear bytes are overwritten on disk (`secure_delete`, then a checkpoint that
/// empties the write-ahead log); a backup taken before still holds them.
fn seal_at_open(conn: &mut Connection, key: Option<&StoreKey>) -> Result<(), StoreError> {
    let (KeyState::ToSeal, Some(key)) = (seal::open_store(key, key_check(conn)?.as_deref())?, key)
    else {
        return Ok(());
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    // Again under the write lock: another process may have sealed it meanwhile.
    if seal::open_store(Some(key), key_check(&tx)?.as_deref())? != KeyState::ToSeal {
        return tx.commit().map_err(backend);
    }
    let secrets: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut stmt = tx
            .prepare_cached("SELECT id, secret FROM swaps WHERE secret IS NOT NULL")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    for (id, secret) in secrets {
        let secret = zeroize::Zeroizing::new(secret);
        if let Some(sealed) = seal::reseal_secret(key, &id, &secret)? {
            tx.execute_cached(
                "UPDATE swaps SET secret = ?2 WHERE id = ?1",
                params![id, sealed],
            )
            .map_err(backend)?;
        }
    }
    let states: Vec<(i64, Vec<u8>, String)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT seq, swap_id, state_json FROM swap_states
                 WHERE state_json LIKE '%\"preimage\"%'",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    for (seq, id, json) in states {
        if let Some(sealed) = seal::reseal_state(key, &id, &json)? {
            tx.execute_cached(
                "UPDATE swap_states SET state_json = ?2 WHERE seq = ?1",
                params![seq, sealed],
            )
            .map_err(backend)?;
        }
    }
    tx.execute_cached(
        "INSERT INTO store_meta(name, value) VALUES ('key_check', ?1)",
        params![key.key_check()?],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(backend)
}

/// A write of secrets by a store opened without a key, to a store sealed meanwhile (by another
/// process opened with one): refused, never written in clear.
fn refuse_if_sealed(conn: &Connection, key: Option<&StoreKey>) -> Result<(), StoreError> {
    match key {
        None if key_check(conn)?.is_some() => Err(StoreError::KeyRequired),
        _ => Ok(()),
    }
}

/// Runs `f` in an IMMEDIATE transaction (the write lock taken before its first read, so two
/// processes cannot both see the same latest state and both write after it), refused when
/// the store was sealed meanwhile and this handle has no key; commits what `f` returns.
fn write_tx<T>(
    conn: &mut Connection,
    key: Option<&StoreKey>,
    f: impl FnOnce(&mut rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    refuse_if_sealed(&tx, key)?;
    let out = f(&mut tx)?;
    tx.commit().map_err(backend)?;
    Ok(out)
}

/// Fills the lock columns of unfinished swaps stored before migration 5 (found through a
/// partial index, so an open costs nothing once they are filled). A swap that cannot be
/// loaded is left untracked (it cannot run either; `unfinished` reports it).
fn track_locks(conn: &mut Connection, key: Option<&StoreKey>) -> Result<(), StoreError> {
    let ids: Vec<Vec<u8>> = {
        let mut stmt = conn
            .prepare_cached("SELECT id FROM swaps WHERE lock_tracked = 0")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    if ids.is_empty() {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    for id in ids {
        let Ok((record, state)) = load_one(&tx, key, &RecordCache::default(), &id) else {
            continue;
        };
        let leg = record.our_leg();
        tx.execute_cached(
            "UPDATE swaps SET lock_on = ?2, lock_amount = ?3, lock_ahead = ?4, lock_tracked = 1
             WHERE id = ?1",
            params![
                id,
                lock_on(leg.params.chain, &leg.asset)?,
                leg.amount.base_units().to_string(),
                state.lock_ahead()
            ],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// A [`SwapStore`] in a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    key: Option<Arc<StoreKey>>,
    records: Arc<RecordCache>,
    latest: Arc<LatestCache>,
    /// Key indexes reserved in the file and not handed out yet ([`KEY_INDEX_BLOCK`]).
    keys: Arc<Mutex<std::ops::Range<u32>>>,
}

/// Key indexes reserved in the file at a time: one write per this many swaps instead of one
/// per swap (each was a transaction and a sync of its own). Those of a block still unused
/// when the process ends are never handed out (a key index is a hardened derivation index:
/// a gap costs nothing, and 2^31 of them last ~67 million reservations).
pub const KEY_INDEX_BLOCK: u32 = 32;

impl SqliteStore {
    /// Opens (creating if needed, readable by its owner only) the store at `path` and applies
    /// pending migrations. Without a key, secrets are written in clear: for tests and library
    /// users who choose so; a store whose secrets are sealed is refused with
    /// [`StoreError::KeyRequired`]. The CLI opens its store with [`SqliteStore::open_with_key`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_file(path.as_ref(), None)
    }

    /// Opens the store at `path` with the installation's key: every secret written is sealed
    /// with it, and a store holding clear secrets (written without a key, or by an older build)
    /// has them sealed in place now. A store sealed with another key is refused with
    /// [`StoreError::WrongKey`], untouched.
    pub fn open_with_key(path: impl AsRef<Path>, key: StoreKey) -> Result<Self, StoreError> {
        Self::open_file(path.as_ref(), Some(key))
    }

    fn open_file(path: &Path, key: Option<StoreKey>) -> Result<Self, StoreError> {
        create_private(path).map_err(backend)?;
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn, key)
    }

    /// Writes a consistent copy of the whole database to `dest` (which must not exist), while
    /// the store stays in use (`VACUUM INTO`); the copy is readable by its owner only.
    pub async fn backup_to(&self, dest: impl AsRef<Path>) -> Result<(), StoreError> {
        let dest = dest.as_ref().to_path_buf();
        self.with(move |conn| {
            let text = dest
                .to_str()
                .ok_or_else(|| backend("backup path is not UTF-8"))?
                .to_owned();
            conn.execute("VACUUM INTO ?1", [text]).map_err(backend)?;
            restrict(&dest).map_err(backend)
        })
        .await
    }

    /// A store in memory (for tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend)?, None)
    }

    fn init(mut conn: Connection, key: Option<StoreKey>) -> Result<Self, StoreError> {
        configure(&conn, std::time::Duration::from_secs(10)).map_err(backend)?;
        // Deleted and overwritten rows (a clear secret sealed in place) are zeroed on disk.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(backend)?;
        match migrate(&mut conn, MIGRATIONS) {
            Ok(()) => {}
            Err(Migration::Newer { found, supported }) => {
                return Err(StoreError::UnsupportedVersion { found, supported })
            }
            Err(Migration::Sqlite(e)) => return Err(backend(e)),
        }
        seal_at_open(&mut conn, key.as_ref())?;
        track_locks(&mut conn, key.as_ref())?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            key: key.map(Arc::new),
            records: Arc::default(),
            latest: Arc::default(),
            keys: Arc::default(),
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn.lock().map_err(|_| backend("poisoned"))?;
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend)
    }

    /// Runs `f` on the connection right here, on the caller's thread: the calls a swap's
    /// steps make (a swap's latest entry read, its states and sent transactions written)
    /// are short, and handing each to the blocking pool cost more than it took (a thread
    /// woken and another parked per call, for every step of every swap). A commit's sync
    /// waits here too, as the Lightning and channel stores' writes do on their callers.
    /// Reads of many swaps and backups go through [`SqliteStore::with`].
    pub(super) async fn at_once<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError>,
    {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| backend("store mutex poisoned"))?;
        // A panic in `f` is an error of this call, as on the blocking pool, not the caller's
        // task's end (a transaction it had open rolls back as it unwinds).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut guard)))
            .unwrap_or_else(|_| Err(backend("a store call panicked")))
    }

    /// Runs `f` on the connection on tokio's blocking pool (for calls that may take long:
    /// reads of every swap, backups).
    pub(super) async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| backend("store mutex poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(backend)?
    }
}

/// Creates an empty file at `path`, readable and writable by its owner only, unless one
/// exists (SQLite takes an empty file as an empty database; its `-wal` and `-shm` files get
/// the same mode).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `path` readable and writable by its owner only.
fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The raw swap ids a query of one `id` column answers, in its order.
fn id_column(conn: &Connection, sql: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let ids = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(ids)
}

#[async_trait]
impl SwapStore for SqliteStore {
    async fn create(&self, record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError> {
        let id = record.id();
        let key = self.key.clone();
        let row = new_swap_row(key.as_deref(), record, initial)?;
        let latest = Arc::clone(&self.latest);
        let (record, initial) = (record.clone(), initial.clone());
        self.at_once(move |conn| {
            let written = write_tx(conn, key.as_deref(), |tx| {
                let version = data_version(tx)?;
                let exists: Option<i64> = tx
                    .query_row_cached(
                        "SELECT 1 FROM swaps WHERE id = ?1",
                        params![&id.0[..]],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if exists.is_some() {
                    return Err(StoreError::Duplicate(id));
                }
                let t = now().0 as i64;
                tx.execute_cached(
                "INSERT INTO swaps(id, role, record_json, secret, created_at, finished, hashlock,
                                   lock_on, lock_amount, lock_ahead, lock_tracked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1)",
                params![
                    row.id,
                    row.role,
                    row.record_json,
                    row.secret,
                    t,
                    row.finished,
                    row.hashlock,
                    row.lock_on,
                    row.lock_amount,
                    row.lock_ahead
                ],
            )
            .map_err(backend)?;
                tx.execute_cached(
                    "INSERT INTO swap_states(swap_id, entered_at, state_json) VALUES (?1, ?2, ?3)",
                    params![row.id, t, row.state_json],
                )
                .map_err(backend)?;
                Ok((version, tx.last_insert_rowid() as u64, t))
            });
            // The swap's first read (its first step, right after) finds its entry kept.
            if let Ok((version, seq, t)) = &written {
                latest.created(
                    *version,
                    &record,
                    StateEntry {
                        seq: *seq,
                        entered_at: crate::types::Timestamp((*t).max(0) as u64),
                        state: initial,
                    },
                );
            }
            written.map(|_| ())
        })
        .await
    }

    async fn append_state(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<u64, StoreError> {
        let row = Append::new(self.key.as_deref(), id, expected, state)?;
        let key = self.key.clone();
        let latest = Arc::clone(&self.latest);
        let (id, state) = (*id, state.clone());
        self.at_once(move |conn| {
            let written = write_tx(conn, key.as_deref(), |tx| row.write(tx));
            let moved = written.as_ref().ok().map(|seq| row.entry(*seq, state));
            latest.written(&written, moved.map(|entry| (id, expected, entry)));
            written
        })
        .await
    }

    /// One IMMEDIATE transaction for the whole batch (one disk sync), each state in its own
    /// savepoint: one refused (conflict, unknown swap, other role) is rolled back alone.
    async fn append_states(
        &self,
        batch: &[(SwapId, u64, SwapState)],
    ) -> Vec<Result<u64, StoreError>> {
        // A tick that changed no state writes nothing (not even an empty transaction: it takes
        // the write lock and commits).
        if batch.is_empty() {
            return Vec::new();
        }
        let rows: Vec<Result<Append, StoreError>> = batch
            .iter()
            .map(|(id, expected, state)| Append::new(self.key.as_deref(), id, *expected, state))
            .collect();
        let n = rows.len();
        let key = self.key.clone();
        let latest = Arc::clone(&self.latest);
        // The entries the rows make, their sequence numbers once written.
        let entries: Vec<_> = rows
            .iter()
            .zip(batch)
            .map(|(r, (_, _, state))| r.as_ref().ok().map(|a| a.entry(0, state.clone())))
            .collect();
        let written = self
            .at_once(move |conn| {
                let written = write_tx(conn, key.as_deref(), |tx| append_rows(tx, rows));
                let moved: Vec<_> = match &written {
                    Ok(out) => batch
                        .iter()
                        .zip(entries)
                        .zip(out)
                        .filter_map(|(((id, expected, _), entry), seq)| {
                            let (entry, seq) = (entry?, *seq.as_ref().ok()?);
                            Some((*id, *expected, StateEntry { seq, ..entry }))
                        })
                        .collect(),
                    Err(_) => Vec::new(),
                };
                latest.written(&written, moved);
                written
            })
            .await;
        match written {
            Ok(out) => out,
            // Nothing was committed: every state gets the failure.
            Err(e) => (0..n).map(|_| Err(e.again())).collect(),
        }
    }

    /// One IMMEDIATE transaction for a rail's whole answer (one disk sync), each row in its
    /// own savepoint (`super::sqlite_append::record_sent`).
    async fn record_sent(&self, sent: &[SentAction]) -> Vec<SentRecorded> {
        if sent.is_empty() {
            return Vec::new();
        }
        let rows: Vec<SentRow> = sent.iter().map(SentRow::new).collect();
        let n = rows.len();
        let key = self.key.clone();
        let records = Arc::clone(&self.records);
        let latest = Arc::clone(&self.latest);
        let written = self
            .at_once(move |conn| {
                let mut moved = Vec::new();
                let written = write_tx(conn, key.as_deref(), |tx| {
                    record_sent(tx, key.as_deref(), (&records, &latest), rows, &mut moved)
                });
                latest.written(&written, moved);
                written
            })
            .await;
        match written {
            Ok(out) => out,
            // Nothing was committed: every row gets the failure.
            Err(e) => (0..n)
                .map(|_| SentRecorded {
                    tx: Err(e.again()),
                    state: Err(e.again()),
                })
                .collect(),
        }
    }

    async fn load_entries(
        &self,
        ids: &[SwapId],
    ) -> Vec<Result<(SwapRecord, StateEntry), StoreError>> {
        let owned = ids.to_vec();
        let key = self.key.clone();
        let records = Arc::clone(&self.records);
        let latest = Arc::clone(&self.latest);
        let read = self
            .at_once(move |conn| {
                // One read transaction for them all: one consistent view, and one take of
                // SQLite's read lock instead of two per swap.
                let tx = conn.transaction().map_err(backend)?;
                let version = data_version(&tx)?;
                let out = owned
                    .iter()
                    .map(|id| load_latest(&tx, key.as_deref(), &records, &latest, version, id))
                    .collect::<Vec<_>>();
                tx.finish().map_err(backend)?;
                Ok(out)
            })
            .await;
        match read {
            Ok(out) => out,
            Err(e) => {
                let text = e.to_string();
                ids.iter()
                    .map(|_| Err(StoreError::Backend(text.clone())))
                    .collect()
            }
        }
    }

    async fn load_entry(&self, id: &SwapId) -> Result<(SwapRecord, StateEntry), StoreError> {
        let id = *id;
        let key = self.key.clone();
        let records = Arc::clone(&self.records);
        let latest = Arc::clone(&self.latest);
        self.at_once(move |conn| {
            // The swap's row and its latest state from one view.
            let tx = conn.transaction().map_err(backend)?;
            let version = data_version(&tx)?;
            let out = load_latest(&tx, key.as_deref(), &records, &latest, version, &id);
            tx.finish().map_err(backend)?;
            out
        })
        .await
    }

    async fn history(&self, id: &SwapId) -> Result<Vec<StateEntry>, StoreError> {
        let id = *id;
        let key = self.key.clone();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, entered_at, state_json FROM swap_states
                     WHERE swap_id = ?1 ORDER BY seq",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![&id.0[..]], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, at, json) = row.map_err(backend)?;
                out.push(read_entry(key.as_deref(), &id.0, seq, at, &json)?);
            }
            if out.is_empty() {
                return Err(StoreError::UnknownSwap(id));
            }
            Ok(out)
        })
        .await
    }

    async fn to_lock(&self, chain: ChainId, asset: &Asset) -> Result<u128, StoreError> {
        let on = lock_on(chain, asset)?;
        self.at_once(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT lock_amount FROM swaps WHERE lock_ahead = 1 AND lock_on = ?1",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([on], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            let mut sum = 0u128;
            for amount in rows {
                let amount = amount.map_err(backend)?;
                sum = sum.saturating_add(parse_lock_amount(&amount)?);
            }
            Ok(sum)
        })
        .await
    }

    async fn unfinished(
        &self,
    ) -> Result<Vec<Result<(SwapRecord, SwapState), StoreError>>, StoreError> {
        let key = self.key.clone();
        let records = Arc::clone(&self.records);
        self.with(move |conn| {
            let ids = id_column(
                conn,
                "SELECT id FROM swaps WHERE finished = 0 ORDER BY created_at, rowid",
            )?;
            Ok(ids
                .iter()
                .map(|id| load_one(conn, key.as_deref(), &records, id))
                .collect())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<SwapId>, StoreError> {
        self.with(|conn| {
            let ids = id_column(
                conn,
                "SELECT id FROM swaps ORDER BY created_at DESC, rowid DESC",
            )?;
            ids.iter().map(|b| read_id(b)).collect()
        })
        .await
    }

    async fn record_tx(&self, id: &SwapId, tx: &super::SentTx) -> Result<(), StoreError> {
        let id = *id;
        let (json, leg, kind, txref) = sent_tx_row(tx)?;
        self.at_once(move |conn| {
            require_swap(conn, id)?;
            conn.execute_cached(
                "INSERT OR IGNORE INTO swap_txs(swap_id, tx_json, leg, kind, txref)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&id.0[..], json, leg, kind, txref],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn txs(&self, id: &SwapId) -> Result<Vec<super::SentTx>, StoreError> {
        let id = *id;
        self.with(move |conn| {
            require_swap(conn, id)?;
            let mut stmt = conn
                .prepare_cached("SELECT tx_json FROM swap_txs WHERE swap_id = ?1 ORDER BY seq")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![&id.0[..]], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let json = row.map_err(backend)?;
                out.push(read_sent_tx(&id, &json)?);
            }
            Ok(out)
        })
        .await
    }

    async fn hashlock_in_use(&self, hashlock: &crate::types::Hashlock) -> Result<bool, StoreError> {
        let h = hashlock.to_string();
        self.at_once(move |conn| {
            conn.query_row_cached(
                "SELECT 1 FROM swaps WHERE hashlock = ?1 LIMIT 1",
                params![h],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(backend)
        })
        .await
    }

    /// From the block of indexes reserved last; when it is used up, the next
    /// [`KEY_INDEX_BLOCK`] are reserved in the file (the counter moves past them in one
    /// transaction, so another process on the same file, or this one after a restart, never
    /// gets them again).
    async fn allocate_key_index(&self) -> Result<u32, StoreError> {
        let keys = Arc::clone(&self.keys);
        self.at_once(move |conn| {
            // Under the connection's lock: two callers never both find the block used up.
            let mut keys = keys
                .lock()
                .map_err(|_| backend("key block mutex poisoned"))?;
            if let Some(k) = keys.next() {
                return Ok(k);
            }
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let first: i64 = tx
                .query_row_cached(
                    "UPDATE counters SET value = value + ?1 WHERE name = 'key_index'
                     RETURNING value - ?1",
                    [i64::from(KEY_INDEX_BLOCK)],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            let block = u32::try_from(first)
                .ok()
                .and_then(|a| Some(a..a.checked_add(KEY_INDEX_BLOCK)?))
                .ok_or_else(|| corrupt("-", "key index out of range"))?;
            tx.commit().map_err(backend)?;
            *keys = block;
            keys.next()
                .ok_or_else(|| corrupt("-", "empty key index block"))
        })
        .await
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sqlite_seal_tests.rs"]
mod seal_tests;
