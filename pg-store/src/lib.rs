//! xswap's PostgreSQL store: the [`SwapStore`] and the [`Outbox`](swap_core::store::Outbox)
//! on one database that several workers (processes, machines) share, beside the embedded SQLite
//! default. It passes the same conformance suite, and writes rows in the same format (the
//! record and state JSON of [`swap_core::store::rows`]).
//!
//! - Appending a state is an optimistic write: in one transaction the swap's row is locked,
//!   the latest state number compared with the writer's, and the new state inserted under a
//!   unique `(swap_id, seq)`; another writer's state in between is a
//!   [`StoreError::Conflict`], and nothing is written.
//! - The schema is versioned ([`migrate()`]): embedded SQL migrations applied in order, one
//!   transaction each, under an advisory lock; a database written by a newer build is refused.
//! - A database that cannot be reached is a [`StoreError::Backend`] error (transient: the same
//!   call succeeds once it is back), never a panic. A damaged row is a
//!   [`StoreError::Corrupt`] for its swap only.
//! - A hashlock is unique among stored swaps (a second swap with one is
//!   [`StoreError::Invalid`]): with several workers, checking
//!   [`SwapStore::hashlock_in_use`] before creating does not exclude one made meanwhile.
//! - Errors carry PostgreSQL's message and code, never its detail (which can quote a row's
//!   values, a secret among them).
//! - Secrets are sealed with the installation's key given in [`PgOptions::key`] (see
//!   [`swap_core::store::seal`]); without one they are written in clear (tests, library users
//!   who choose so). A database whose secrets are sealed is refused without the key
//!   ([`StoreError::KeyRequired`]) or with another ([`StoreError::WrongKey`]); one with clear
//!   secrets has them sealed when first connected with a key.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use swap_core::store::rows::{
    self, corrupt, lock_on, new_swap_row, parse_lock_amount, read_entry, read_id, read_latest,
    read_record, read_sent_tx, sent_tx_row,
};
use swap_core::store::{SentTx, StateEntry, StoreKey, SwapRecord, SwapState, SwapStore};
use swap_core::{Asset, ChainId, Hashlock, StoreError, SwapId, Timestamp};

pub mod lease;
pub mod migrate;
mod outbox;
mod seal;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use migrate::{migrate, migrate_to, MIGRATIONS};

/// How a [`PgStore`] connects.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections kept at most (each worker process has its own pool); at least 2, since a
    /// Bitcoin funding holds one for its wallet's spend guard while it records on another
    /// ([`swap_core::store::Outbox::spend_guard`]).
    pub pool_size: usize,
    /// How long a call waits for a free connection, or for a new one to be made, before it
    /// fails with [`StoreError::Backend`]. Also the connect timeout unless the connection
    /// string sets one.
    pub timeout: Duration,
    /// The installation's key, which seals every secret written (`None`: in clear, for tests
    /// and library users who choose so; the API server always gives one).
    pub key: Option<StoreKey>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            timeout: Duration::from_secs(10),
            key: None,
        }
    }
}

/// A [`SwapStore`] (and outbox) on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    key: Option<std::sync::Arc<StoreKey>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .field("sealed", &self.key.is_some())
            .finish()
    }
}

/// A PostgreSQL error as a [`StoreError::Backend`]: the server's message and SQLSTATE code only
/// (its detail can quote the values of a row, a secret among them).
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => StoreError::Backend(format!(
            "postgres: {} (SQLSTATE {})",
            d.message(),
            d.code().code()
        )),
        // Connection and protocol errors name no row.
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

/// Whether `e` is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(e),
        other => StoreError::Backend(format!("postgres pool: {other}")),
    }
}

/// Seconds since the Unix epoch, as stored.
fn now() -> i64 {
    i64::try_from(Timestamp::now().0).unwrap_or(i64::MAX)
}

/// The columns [`swap_row`] reads: a swap and its latest state.
const SWAP_COLUMNS: &str =
    "s.id, s.role, s.record_json, s.secret, st.seq, st.entered_at, st.state_json
     FROM swaps s LEFT JOIN LATERAL (
         SELECT seq, entered_at, state_json FROM swap_states
         WHERE swap_id = s.id ORDER BY seq DESC LIMIT 1
     ) st ON TRUE";

/// A swap with its latest state from a row of [`SWAP_COLUMNS`], its secrets opened with `key`;
/// any damage is a [`StoreError::Corrupt`] for this swap only.
fn swap_row(key: Option<&StoreKey>, row: &Row) -> Result<(SwapRecord, StateEntry), StoreError> {
    let id: Vec<u8> = row.try_get(0).map_err(|e| corrupt("?", e))?;
    let shown = hex::encode(&id);
    let col = |e: tokio_postgres::Error| corrupt(&shown, e);
    let role: String = row.try_get(1).map_err(col)?;
    let record_json: String = row.try_get(2).map_err(col)?;
    let secret: Option<&[u8]> = row.try_get(3).map_err(col)?;
    let record = read_record(key, &id, &role, &record_json, secret)?;
    let seq: Option<i64> = row.try_get(4).map_err(col)?;
    let at: Option<i64> = row.try_get(5).map_err(col)?;
    let json: Option<String> = row.try_get(6).map_err(col)?;
    let latest = match (seq, at, json.as_deref()) {
        (Some(seq), Some(at), Some(json)) => Some((seq, at, json)),
        _ => None,
    };
    let entry = read_latest(key, &record, latest)?;
    Ok((record, entry))
}

impl PgStore {
    /// Connects to the database named by `config` (a libpq connection string,
    /// `host=… port=… user=… dbname=…`, or a `postgresql://` URL) and applies pending
    /// migrations. A database written by a newer build is refused with
    /// [`StoreError::UnsupportedVersion`]. Without a key ([`PgStore::connect_with`] gives one)
    /// secrets are written in clear.
    pub async fn connect(config: &str) -> Result<Self, StoreError> {
        Self::connect_with(config, PgOptions::default()).await
    }

    /// [`PgStore::connect`] with options. With a key, the database's key check is verified
    /// (another key: [`StoreError::WrongKey`]), and clear secrets are sealed in place the first
    /// time; without one, a database whose secrets are sealed is refused
    /// ([`StoreError::KeyRequired`]). Nothing is written when it is refused.
    pub async fn connect_with(config: &str, options: PgOptions) -> Result<Self, StoreError> {
        let store = Self::open_with(config, options)?;
        let mut client = store.client().await?;
        migrate(&mut client).await?;
        seal::at_connect(&mut client, store.key()).await?;
        drop(client);
        Ok(store)
    }

    /// Applies pending migrations (what [`PgStore::connect_with`] does first), without
    /// checking the key of the database's secrets: for tools that manage other tables on the
    /// same database and read no swap. Answers the version reached.
    pub async fn apply_migrations(&self) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        migrate(&mut client).await
    }

    /// A store on the database named by `config`, without connecting yet, without migrating,
    /// and without checking the key of its secrets (for tools and tests that manage the
    /// schema themselves).
    pub fn open_with(config: &str, options: PgOptions) -> Result<Self, StoreError> {
        let mut pg: tokio_postgres::Config = config
            .parse()
            .map_err(|e| StoreError::Backend(format!("postgres connection string: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(options.timeout);
        }
        // A server that vanished without closing the connection (a partition, a dead host)
        // is found by TCP keepalives within about a minute instead of hours, unless the
        // connection string says otherwise.
        if pg.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            pg.keepalives_idle(Duration::from_secs(30));
        }
        if pg.get_keepalives_interval().is_none() {
            pg.keepalives_interval(Duration::from_secs(10));
        }
        if pg.get_keepalives_retries().is_none() {
            pg.keepalives_retries(3);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("xswap");
        }
        // A worker stopped in the middle of a transaction (SIGSTOP, a frozen VM) would keep
        // its row locks, and every other worker's lease statement would wait behind them: the
        // server ends a transaction left idle this long, so the leases can be taken over.
        if pg.get_options().is_none() {
            pg.options("-c idle_in_transaction_session_timeout=5000");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))?;
        Ok(Self {
            pool,
            key: options.key.map(std::sync::Arc::new),
        })
    }

    /// The key that seals this store's secrets, if any.
    pub(crate) fn key(&self) -> Option<&StoreKey> {
        self.key.as_deref()
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The schema version of the database (migrations applied).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        migrate::version(&**client).await
    }

    async fn require_swap(client: &Object, id: &SwapId) -> Result<(), StoreError> {
        let found = client
            .query_opt("SELECT 1 FROM swaps WHERE id = $1", &[&&id.0[..]])
            .await
            .map_err(db)?;
        found.map(|_| ()).ok_or(StoreError::UnknownSwap(*id))
    }
}

#[async_trait]
impl SwapStore for PgStore {
    async fn create(&self, record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError> {
        let row = new_swap_row(self.key(), record, initial)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        seal::refuse_if_sealed(&*tx, self.key()).await?;
        let t = now();
        let inserted = match tx
            .execute(
                "INSERT INTO swaps(id, role, record_json, secret, created_at, finished, hashlock,
                                   lock_on, lock_amount, lock_ahead)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &row.id,
                    &row.role,
                    &row.record_json,
                    &row.secret,
                    &t,
                    &row.finished,
                    &row.hashlock,
                    &row.lock_on,
                    &row.lock_amount,
                    &row.lock_ahead,
                ],
            )
            .await
        {
            Ok(n) => n,
            Err(e)
                if is_unique_violation(&e)
                    && e.as_db_error().and_then(|d| d.constraint())
                        == Some("swaps_by_hashlock") =>
            {
                return Err(StoreError::Invalid {
                    swap: record.id(),
                    detail: "another swap has this hashlock".into(),
                })
            }
            Err(e) => return Err(db(e)),
        };
        if inserted == 0 {
            return Err(StoreError::Duplicate(record.id()));
        }
        tx.execute(
            "INSERT INTO swap_states(swap_id, seq, entered_at, state_json) VALUES ($1, 1, $2, $3)",
            &[&row.id, &t, &row.state_json],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn append_state(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<u64, StoreError> {
        let json = rows::state_json(self.key(), id, state)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        seal::refuse_if_sealed(&*tx, self.key()).await?;
        let seq = append_in(&tx, id, expected, state, &json).await?;
        tx.commit().await.map_err(db)?;
        Ok(seq)
    }

    async fn load_entry(&self, id: &SwapId) -> Result<(SwapRecord, StateEntry), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {SWAP_COLUMNS} WHERE s.id = $1"),
                &[&&id.0[..]],
            )
            .await
            .map_err(db)?;
        swap_row(self.key(), &row.ok_or(StoreError::UnknownSwap(*id))?)
    }

    async fn history(&self, id: &SwapId) -> Result<Vec<StateEntry>, StoreError> {
        let client = self.client().await?;
        let found = client
            .query(
                "SELECT seq, entered_at, state_json FROM swap_states
                 WHERE swap_id = $1 ORDER BY seq",
                &[&&id.0[..]],
            )
            .await
            .map_err(db)?;
        let shown = id.to_string();
        let out = found
            .iter()
            .map(|r| {
                let col = |e: tokio_postgres::Error| corrupt(&shown, e);
                read_entry(
                    self.key(),
                    &id.0,
                    r.try_get(0).map_err(col)?,
                    r.try_get(1).map_err(col)?,
                    r.try_get::<_, &str>(2).map_err(col)?,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            return Err(StoreError::UnknownSwap(*id));
        }
        Ok(out)
    }

    async fn unfinished(
        &self,
    ) -> Result<Vec<Result<(SwapRecord, SwapState), StoreError>>, StoreError> {
        let client = self.client().await?;
        let found = client
            .query(
                &format!("SELECT {SWAP_COLUMNS} WHERE NOT s.finished ORDER BY s.created_at, s.n"),
                &[],
            )
            .await
            .map_err(db)?;
        Ok(found
            .iter()
            .map(|r| swap_row(self.key(), r).map(|(record, e)| (record, e.state)))
            .collect())
    }

    async fn to_lock(&self, chain: ChainId, asset: &Asset) -> Result<u128, StoreError> {
        let on = lock_on(chain, asset)?;
        let client = self.client().await?;
        let found = client
            .query(
                "SELECT lock_amount FROM swaps WHERE lock_ahead AND lock_on = $1",
                &[&on],
            )
            .await
            .map_err(db)?;
        let mut sum = 0u128;
        for r in &found {
            let amount: &str = r.try_get(0).map_err(|e| corrupt("lock amount", e))?;
            sum = sum.saturating_add(parse_lock_amount(amount)?);
        }
        Ok(sum)
    }

    async fn list(&self) -> Result<Vec<SwapId>, StoreError> {
        let client = self.client().await?;
        let found = client
            .query("SELECT id FROM swaps ORDER BY created_at DESC, n DESC", &[])
            .await
            .map_err(db)?;
        found
            .iter()
            .map(|r| read_id(r.try_get(0).map_err(|e| corrupt("?", e))?))
            .collect()
    }

    async fn allocate_key_index(&self) -> Result<u32, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE counters SET value = value + 1 WHERE name = 'key_index'
                 RETURNING value - 1",
                &[],
            )
            .await
            .map_err(db)?
            .ok_or_else(|| corrupt("-", "the key index counter is missing"))?;
        let k: i64 = row.try_get(0).map_err(|e| corrupt("-", e))?;
        u32::try_from(k).map_err(|_| corrupt("-", "key index out of range"))
    }

    async fn hashlock_in_use(&self, hashlock: &Hashlock) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM swaps WHERE hashlock = $1)",
                &[&hashlock.to_string()],
            )
            .await
            .map_err(db)?;
        row.try_get(0).map_err(db)
    }

    async fn record_tx(&self, id: &SwapId, tx: &SentTx) -> Result<(), StoreError> {
        let (json, leg, kind, txref) = sent_tx_row(tx)?;
        let client = self.client().await?;
        Self::require_swap(&client, id).await?;
        client
            .execute(
                "INSERT INTO swap_txs(swap_id, tx_json, leg, kind, txref)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (swap_id, leg, kind, txref) DO NOTHING",
                &[&&id.0[..], &json, &leg, &kind, &txref],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn txs(&self, id: &SwapId) -> Result<Vec<SentTx>, StoreError> {
        let client = self.client().await?;
        Self::require_swap(&client, id).await?;
        let found = client
            .query(
                "SELECT tx_json FROM swap_txs WHERE swap_id = $1 ORDER BY n",
                &[&&id.0[..]],
            )
            .await
            .map_err(db)?;
        found
            .iter()
            .map(|r| read_sent_tx(id, r.try_get(0).map_err(|e| corrupt(id, e))?))
            .collect()
    }
}

/// [`SwapStore::append_state`] inside the transaction `tx` (which the caller commits): the
/// swap's row is locked, so of two writers that read the same state exactly one appends.
pub(crate) async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &SwapId,
    expected: u64,
    state: &SwapState,
    json: &str,
) -> Result<u64, StoreError> {
    let key = &id.0[..];
    let role = tx
        .query_opt("SELECT role FROM swaps WHERE id = $1 FOR UPDATE", &[&key])
        .await
        .map_err(db)?
        .ok_or(StoreError::UnknownSwap(*id))?;
    let role: &str = role.try_get(0).map_err(|e| corrupt(id, e))?;
    if role != rows::role_str(state.role()) {
        return Err(StoreError::Invalid {
            swap: *id,
            detail: "state is for the other role".into(),
        });
    }
    let latest: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) FROM swap_states WHERE swap_id = $1",
            &[&key],
        )
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let found = u64::try_from(latest).map_err(|_| corrupt(id, "negative state number"))?;
    if found != expected {
        return Err(StoreError::Conflict {
            swap: *id,
            expected,
            found,
        });
    }
    let seq = latest + 1;
    match tx
        .execute(
            "INSERT INTO swap_states(swap_id, seq, entered_at, state_json)
             VALUES ($1, $2, $3, $4)",
            &[&key, &seq, &now(), &json],
        )
        .await
    {
        Ok(_) => {}
        // The row lock makes this unreachable for writers going through this store; the
        // unique (swap_id, seq) still refuses a foreign one.
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict {
                swap: *id,
                expected,
                found: found + 1,
            })
        }
        Err(e) => return Err(db(e)),
    }
    tx.execute(
        "UPDATE swaps SET finished = $2, lock_ahead = $3 WHERE id = $1",
        &[&key, &state.is_final(), &state.lock_ahead()],
    )
    .await
    .map_err(db)?;
    Ok(found + 1)
}
