//! Versioned schema migrations: SQL files embedded in the build, applied in order, each in its
//! own transaction together with its row in `schema_migrations (version, applied_at)`.
//!
//! Every step takes a transaction-scoped advisory lock first, so workers that start together
//! on one database apply each migration once: the others wait, then find it applied. A database
//! with a migration this build does not know (written by a newer build) is refused with
//! [`StoreError::UnsupportedVersion`], untouched.
//!
//! Never edit a migration that has shipped: append a new one.

use swap_core::StoreError;
use tokio_postgres::GenericClient;

use crate::db;

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version: its position in [`MIGRATIONS`], from 1.
    pub version: i32,
    /// What it does.
    pub name: &'static str,
    /// Its SQL (one or more statements).
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "swaps",
        sql: include_str!("../migrations/0001_swaps.sql"),
    },
    Migration {
        version: 2,
        name: "outbox",
        sql: include_str!("../migrations/0002_outbox.sql"),
    },
    Migration {
        version: 3,
        name: "leases",
        sql: include_str!("../migrations/0003_leases.sql"),
    },
    Migration {
        version: 4,
        name: "store_meta",
        sql: include_str!("../migrations/0004_store_meta.sql"),
    },
];

/// The advisory lock key that serializes migrations ("xswap_mg").
const LOCK_KEY: i64 = 0x7873_7761_705f_6d67;

/// The newest version this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Applies every pending migration; answers the version reached.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i64, StoreError> {
    migrate_to(client, latest()).await
}

/// Applies pending migrations up to `target` (for tests and tools: a database as an older build
/// left it); answers the version reached, which is higher than `target` when the database was
/// there already.
pub async fn migrate_to(
    client: &mut tokio_postgres::Client,
    target: i64,
) -> Result<i64, StoreError> {
    let target = target.min(latest());
    loop {
        let tx = client.transaction().await.map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(db)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(db)?;
        let found = version(&tx).await?;
        if found > latest() {
            return Err(StoreError::UnsupportedVersion {
                found,
                supported: latest(),
            });
        }
        if found >= target {
            tx.commit().await.map_err(db)?;
            return Ok(found);
        }
        let next = MIGRATIONS
            .get(found as usize)
            .ok_or_else(|| StoreError::Backend(format!("no migration after {found}")))?;
        tx.batch_execute(next.sql).await.map_err(|e| {
            StoreError::Backend(format!(
                "migration {} ({}): {}",
                next.version,
                next.name,
                crate::db(e)
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations(version) VALUES ($1)",
            &[&next.version],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(
            version = next.version,
            name = next.name,
            "applied migration"
        );
    }
}

/// The version of the database's schema: the migrations applied, 0 for an empty database.
/// Versions must be 1, 2, ... without a gap.
pub async fn version(client: &impl GenericClient) -> Result<i64, StoreError> {
    let exists = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(db)?
        .try_get::<_, bool>(0)
        .map_err(db)?;
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT, COUNT(*) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db)?;
    let (max, count): (i64, i64) = (row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?);
    if max != count {
        return Err(StoreError::Corrupt {
            swap: "-".into(),
            detail: format!("schema_migrations has {count} rows up to version {max}"),
        });
    }
    Ok(max)
}
