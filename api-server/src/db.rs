//! The API's tables on the swap store's PostgreSQL database (migration `0001_api.sql`): API
//! keys (hashed) with their shared rate-limit buckets, idempotency keys, the numbered event
//! log; and the read queries of the swaps the API shows (never the secret column).
//!
//! Everything a server keeps between requests is here, not in the process: several servers
//! behind one load balancer answer alike, and a client's retry may reach another server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use swap_core::store::rows::read_state;
use swap_core::store::{StoreKey, StoredRecord, SwapRecord, SwapState};
use swap_core::{Outcome, SwapId};
use tokio_postgres::NoTls;

use crate::metrics::Metrics;

/// The API's migrations, in order (version = position + 1).
pub const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_api.sql")];

/// Advisory lock held while migrating (other servers starting meanwhile wait).
const MIGRATION_LOCK: i64 = 7_363_411_000;

/// A database failure, kept for logs only: the API answers `database_unavailable`, never this
/// text. PostgreSQL's detail (which may quote a row) is left out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DbError(String);

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(d) => DbError(format!(
                "postgres: {} (SQLSTATE {})",
                d.message(),
                d.code().code()
            )),
            None => DbError(format!("postgres: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => DbError(format!("postgres pool: {other}")),
        }
    }
}

/// What an `Authorization` header's key turned out to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyCheck {
    /// No such key (or revoked).
    Unknown,
    /// A valid key whose bucket is empty: try again after this many seconds.
    Limited {
        /// Seconds until a token is back.
        retry_after: u64,
    },
    /// A valid key, one token taken.
    Allowed {
        /// The key's row id.
        key_id: i64,
    },
}

/// Where an idempotency key stands when a creation starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemStart {
    /// First use: the caller creates the swap, then [`ApiDb::idem_finish`] (or
    /// [`ApiDb::idem_abandon`] when nothing was created).
    New,
    /// Used before with another body.
    OtherBody,
    /// Used before with this body, its swap created.
    Done(SwapId),
    /// Used before with this body, its creation still under way (or its server died while
    /// creating: the key stays blocked, a second swap is never made for it).
    InProgress,
}

/// A swap as the API shows it (no secret).
#[derive(Debug, Clone)]
pub struct SwapRow {
    /// Insertion order (the list cursor).
    pub n: i64,
    /// The record (its secret left out).
    pub record: SwapRecord,
    /// Latest state's number.
    pub seq: u64,
    /// Latest state.
    pub state: SwapState,
    /// When the swap was stored (Unix seconds).
    pub created_at: u64,
    /// When the latest state was entered (Unix seconds).
    pub updated_at: u64,
}

/// One state change of the event log.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// The event id (increasing in commit order).
    pub n: i64,
    /// The swap.
    pub swap_id: SwapId,
    /// The state's number in the swap's history.
    pub seq: u64,
    /// The state.
    pub state: SwapState,
    /// When it was entered (Unix seconds).
    pub entered_at: u64,
}

/// The API state of a swap's state: the outcome once it has finished (`swapped`, `refunded`,
/// `aborted`, `cancelled`, `lost`), the engine's state name before.
pub fn api_state(state: &SwapState) -> &'static str {
    match swap_core::driver::final_outcome(state) {
        Some(Outcome::Swapped) => "swapped",
        Some(Outcome::Refunded) => "refunded",
        Some(Outcome::Aborted {
            reason: swap_core::GiveUpReason::Cancelled,
        }) => "cancelled",
        Some(Outcome::Aborted { .. }) => "aborted",
        Some(Outcome::Lost) => "lost",
        None => swap_core::driver::state_name(state),
    }
}

/// The same as [`api_state`], in SQL over a `state_json` column (for filters and counts).
const API_STATE_SQL: &str = "COALESCE(
    CASE WHEN st.state_json::jsonb #>> '{state,outcome,reason,reason}' = 'cancelled'
         THEN 'cancelled' END,
    st.state_json::jsonb #>> '{state,outcome,outcome}',
    st.state_json::jsonb #>> '{state,state}')";

const SWAP_SELECT: &str = "SELECT s.n, s.id, s.record_json, s.created_at, st.seq, st.entered_at,
        st.state_json
     FROM swaps s JOIN LATERAL (
         SELECT seq, entered_at, state_json FROM swap_states
         WHERE swap_id = s.id ORDER BY seq DESC LIMIT 1
     ) st ON TRUE";

fn secs(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A swap row read back; a preimage in its state (sealed with `key` in a sealed store) is
/// opened, never shown.
fn read_swap(key: Option<&StoreKey>, row: &tokio_postgres::Row) -> Result<SwapRow, DbError> {
    let bad = |what: &str| DbError(format!("unreadable swap row: {what}"));
    let n: i64 = row.try_get(0)?;
    let id: Vec<u8> = row.try_get(1)?;
    let record_json: &str = row.try_get(2)?;
    let stored: StoredRecord = serde_json::from_str(record_json).map_err(|_| bad("record"))?;
    let record = stored.into_record(None);
    if record.id().0.as_slice() != id.as_slice() {
        return Err(bad("id"));
    }
    let state_json: &str = row.try_get(6)?;
    Ok(SwapRow {
        n,
        record,
        created_at: secs(row.try_get(3)?),
        seq: u64::try_from(row.try_get::<_, i64>(4)?).map_err(|_| bad("seq"))?,
        updated_at: secs(row.try_get(5)?),
        state: read_state(key, &id, state_json).map_err(|_| bad("state"))?,
    })
}

/// The API's connection pool and queries.
#[derive(Clone)]
pub struct ApiDb {
    pool: Pool,
    metrics: Arc<Metrics>,
    /// The swap store's key (states read here may hold sealed preimages).
    key: Option<Arc<StoreKey>>,
}

impl std::fmt::Debug for ApiDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDb").finish_non_exhaustive()
    }
}

/// A fresh API key: `xsk_` and 64 hex digits (32 random bytes).
pub fn new_key() -> Result<String, DbError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| DbError(format!("random: {e}")))?;
    Ok(format!("xsk_{}", hex::encode(bytes)))
}

/// SHA-256 of a key, as stored.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiDb {
    /// Connects to `url` (a libpq connection string or `postgresql://` URL) with at most
    /// `pool_size` connections, and applies the API's pending migrations. The swap store's own
    /// migrations must be applied first (`PgStore::connect` does).
    pub async fn connect(
        url: &str,
        pool_size: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DbError> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|_| DbError("the database URL cannot be parsed".into()))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        if pg.get_application_name().is_none() {
            pg.application_name("xswap-server");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = Some(Duration::from_secs(10));
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| DbError(format!("postgres pool: {e}")))?;
        let db = Self {
            pool,
            metrics,
            key: None,
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Reads the swap store's states with its key (the one the store was connected with:
    /// `PgOptions::key`), without which a state holding a sealed preimage is unreadable.
    pub fn with_key(mut self, key: Option<StoreKey>) -> Self {
        self.key = key.map(Arc::new);
        self
    }

    async fn client(&self) -> Result<Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// Runs `f` and records its duration as a store call named `op`.
    async fn timed<T, F>(&self, op: &'static str, f: F) -> Result<T, DbError>
    where
        F: std::future::Future<Output = Result<T, DbError>>,
    {
        let t = Instant::now();
        let out = f.await;
        self.metrics.store_call(op, t.elapsed(), out.is_ok());
        out
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS api_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        let have: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM api_migrations", &[])
            .await?
            .try_get(0)?;
        let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        if have > known {
            return Err(DbError(format!(
                "the API tables are at version {have}, newer than this server knows ({known})"
            )));
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(have).unwrap_or(0))
        {
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO api_migrations(version) VALUES ($1)",
                &[&version],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.timed("ping", async {
            self.client().await?.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
        .await
    }

    /// Creates an API key named `name`; answers its row id and the key (shown once: only its
    /// hash is stored).
    pub async fn create_key(&self, name: &str) -> Result<(i64, String), DbError> {
        let key = new_key()?;
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO api_keys(name, key_sha256) VALUES ($1, $2) RETURNING id",
                &[&name, &&key_hash(&key)[..]],
            )
            .await?;
        Ok((row.try_get(0)?, key))
    }

    /// Revokes the key with row id `id`; answers whether it existed.
    pub async fn revoke_key(&self, id: i64) -> Result<bool, DbError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(n > 0)
    }

    /// Checks a presented key and takes one token of its bucket (`rate` tokens a second, at
    /// most `burst`), in one statement: every server shares the bucket.
    pub async fn check_key(&self, key: &str, rate: f64, burst: f64) -> Result<KeyCheck, DbError> {
        let hash = key_hash(key);
        self.timed("check_key", async {
            let row = self
                .client()
                .await?
                .query_opt(
                    "WITH k AS (
                         SELECT id, LEAST($2::float8, tokens
                             + EXTRACT(EPOCH FROM (now() - refilled_at))::float8 * $3::float8)
                             AS avail
                         FROM api_keys WHERE key_sha256 = $1 AND revoked_at IS NULL
                         FOR UPDATE)
                     UPDATE api_keys a SET
                         tokens = CASE WHEN k.avail >= 1 THEN k.avail - 1 ELSE k.avail END,
                         refilled_at = now()
                     FROM k WHERE a.id = k.id
                     RETURNING a.id, a.key_sha256, k.avail",
                    &[&&hash[..], &burst, &rate],
                )
                .await?;
            let Some(row) = row else {
                return Ok(KeyCheck::Unknown);
            };
            let stored: &[u8] = row.try_get(1)?;
            if !bool::from(stored.ct_eq(&hash[..])) {
                return Ok(KeyCheck::Unknown);
            }
            let avail: f64 = row.try_get(2)?;
            if avail >= 1.0 {
                Ok(KeyCheck::Allowed {
                    key_id: row.try_get(0)?,
                })
            } else {
                let wait = if rate > 0.0 {
                    (1.0 - avail) / rate
                } else {
                    60.0
                };
                Ok(KeyCheck::Limited {
                    retry_after: wait.ceil().clamp(1.0, 3600.0) as u64,
                })
            }
        })
        .await
    }

    /// Claims idempotency key `idem` of API key `key_id` for a body with hash `body`, or says
    /// what it was used for.
    pub async fn idem_begin(
        &self,
        key_id: i64,
        idem: &str,
        body: &[u8; 32],
    ) -> Result<IdemStart, DbError> {
        self.timed("idem_begin", async {
            let client = self.client().await?;
            let inserted = client
                .execute(
                    "INSERT INTO api_idempotency(key_id, idem_key, body_sha256)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&key_id, &idem, &&body[..]],
                )
                .await?;
            if inserted == 1 {
                return Ok(IdemStart::New);
            }
            let row = client
                .query_one(
                    "SELECT body_sha256, swap_id FROM api_idempotency
                     WHERE key_id = $1 AND idem_key = $2",
                    &[&key_id, &idem],
                )
                .await?;
            let stored: &[u8] = row.try_get(0)?;
            if stored != &body[..] {
                return Ok(IdemStart::OtherBody);
            }
            let swap: Option<&[u8]> = row.try_get(1)?;
            Ok(match swap {
                Some(bytes) => match <[u8; 16]>::try_from(bytes) {
                    Ok(id) => IdemStart::Done(SwapId(id)),
                    Err(_) => return Err(DbError("unreadable idempotency row".into())),
                },
                None => IdemStart::InProgress,
            })
        })
        .await
    }

    /// Records the swap created under an idempotency key.
    pub async fn idem_finish(&self, key_id: i64, idem: &str, swap: &SwapId) -> Result<(), DbError> {
        self.timed("idem_finish", async {
            self.client()
                .await?
                .execute(
                    "UPDATE api_idempotency SET swap_id = $3 WHERE key_id = $1 AND idem_key = $2",
                    &[&key_id, &idem, &&swap.0[..]],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Frees an idempotency key whose creation made no swap (the client may retry with it).
    pub async fn idem_abandon(&self, key_id: i64, idem: &str) -> Result<(), DbError> {
        self.timed("idem_abandon", async {
            self.client()
                .await?
                .execute(
                    "DELETE FROM api_idempotency
                     WHERE key_id = $1 AND idem_key = $2 AND swap_id IS NULL",
                    &[&key_id, &idem],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// One swap, or `None`.
    pub async fn swap(&self, id: &SwapId) -> Result<Option<SwapRow>, DbError> {
        self.timed("get_swap", async {
            let row = self
                .client()
                .await?
                .query_opt(&format!("{SWAP_SELECT} WHERE s.id = $1"), &[&&id.0[..]])
                .await?;
            row.as_ref()
                .map(|r| read_swap(self.key.as_deref(), r))
                .transpose()
        })
        .await
    }

    /// Up to `limit` swaps, newest first, stored before the one at cursor `before` (all when
    /// `None`), in API state `state` (any when `None`).
    pub async fn list(
        &self,
        state: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SwapRow>, DbError> {
        self.timed("list_swaps", async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "{SWAP_SELECT} WHERE ($1::text IS NULL OR {API_STATE_SQL} = $1::text)
                           AND ($2::bigint IS NULL OR s.n < $2::bigint)
                         ORDER BY s.n DESC LIMIT $3"
                    ),
                    &[&state, &before, &limit],
                )
                .await?;
            rows.iter()
                .map(|r| read_swap(self.key.as_deref(), r))
                .collect()
        })
        .await
    }

    /// Up to `limit` events after event id `after`, oldest first (of swap `swap` only when
    /// given).
    pub async fn events_after(
        &self,
        after: i64,
        swap: Option<&SwapId>,
        limit: i64,
    ) -> Result<Vec<EventRow>, DbError> {
        let swap = swap.map(|s| s.0.to_vec());
        self.timed("events", async {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT e.n, e.swap_id, e.seq, st.entered_at, st.state_json
                     FROM api_events e
                     JOIN swap_states st ON st.swap_id = e.swap_id AND st.seq = e.seq
                     WHERE e.n > $1 AND ($2::bytea IS NULL OR e.swap_id = $2::bytea)
                     ORDER BY e.n LIMIT $3",
                    &[&after, &swap, &limit],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let bad = |w: &str| DbError(format!("unreadable event row: {w}"));
                    let id: &[u8] = r.try_get(1)?;
                    let json: &str = r.try_get(4)?;
                    Ok(EventRow {
                        n: r.try_get(0)?,
                        swap_id: SwapId(<[u8; 16]>::try_from(id).map_err(|_| bad("id"))?),
                        seq: u64::try_from(r.try_get::<_, i64>(2)?).map_err(|_| bad("seq"))?,
                        entered_at: secs(r.try_get(3)?),
                        state: read_state(self.key.as_deref(), id, json)
                            .map_err(|_| bad("state"))?,
                    })
                })
                .collect()
        })
        .await
    }

    /// The latest event id (0 when there is none).
    pub async fn last_event(&self) -> Result<i64, DbError> {
        self.timed("last_event", async {
            Ok(self
                .client()
                .await?
                .query_one("SELECT COALESCE(MAX(n), 0) FROM api_events", &[])
                .await?
                .try_get(0)?)
        })
        .await
    }

    /// How many swaps are in each API state.
    pub async fn counts_by_state(&self) -> Result<Vec<(String, i64)>, DbError> {
        self.timed("count_swaps", async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT {API_STATE_SQL} AS state, COUNT(*) FROM swaps s JOIN LATERAL (
                             SELECT state_json FROM swap_states WHERE swap_id = s.id
                             ORDER BY seq DESC LIMIT 1) st ON TRUE
                         GROUP BY 1 ORDER BY 1"
                    ),
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
                        r.try_get(1)?,
                    ))
                })
                .collect()
        })
        .await
    }
}
