//! How every xswap SQLite file is opened and migrated (the swap store, the outbox, the
//! channel and Lightning node stores): connection settings, cached statements, versioned
//! migrations. Re-exported from [`super::sqlite`].

use rusqlite::Connection;

/// Sets up a connection as every xswap SQLite file is used: WAL for concurrent readers (a
/// checkpoint every [`WAL_AUTOCHECKPOINT_PAGES`]), FULL sync so that a committed row survives
/// power loss, foreign keys on, and waiting up to `busy` for another process's write lock.
pub fn configure(conn: &Connection, busy: std::time::Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    conn.pragma_update(None, "foreign_keys", "ON")
}

/// Pages the write-ahead log grows to before a commit copies them into the database file
/// (SQLite's default is 1,000, ~4 MB). A channel swap commits a few pages a dozen times to
/// its stores, many of them the same pages (a table's last page, a counter); each checkpoint
/// copies every page the log holds once, so a longer log copies the pages written again and
/// again less often: ~2-3 % more channel swaps per second in the bench (README). The log file
/// keeps its largest size, ~40 MB per store under load.
pub const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Statements an xswap store runs again and again: [`configure`] gives each connection room
/// for this many prepared statements ([`CachedSql`]).
pub const STATEMENT_CACHE: usize = 128;

/// `execute` and `query_row` through the connection's prepared-statement cache: a store's
/// statement is parsed and planned once per connection, not at each call (parsing and planning
/// were about 7 % of the CPU of a channel swap before).
pub trait CachedSql {
    /// [`Connection::execute`], with the statement cached.
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// [`Connection::query_row`], with the statement cached.
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl CachedSql for Connection {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Why [`migrate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Migration {
    /// The file was written by a newer build (more migrations applied than this one knows).
    #[error("schema version {found} is newer than this build ({supported})")]
    Newer {
        /// Migrations applied to the file.
        found: i64,
        /// Migrations this build has.
        supported: i64,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies the `migrations` not applied yet, in order, each in its own transaction;
/// `PRAGMA user_version` is the number applied (one numbering per file: a file holds one
/// migrated schema).
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), Migration> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = migrations.len() as i64;
    if found > supported {
        return Err(Migration::Newer { found, supported });
    }
    for (i, sql) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        // IMMEDIATE, and the version read again inside: of two processes opening an old
        // database at once, one migrates and the other finds it done.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now > i as i64 {
            tx.commit()?;
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
