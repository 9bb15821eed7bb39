//! The node's key-value store: one SQLite file (`xswap-kv.sqlite` in the node's directory,
//! WAL journal, every write committed with `synchronous=FULL` before it returns), in place of
//! LDK's file store.
//!
//! Why: LDK writes a value per channel update (monitor updates, the channel manager, our
//! ledger), and its file store makes each write a new temporary file, two fsyncs and a rename.
//! Under load that file churn was half the engine's CPU (ext4 inode allocation in the kernel,
//! measured with `perf` in `xswap-channel-bench`); a row write is one WAL append and one fsync.
//!
//! A directory written by an earlier build (LDK's file layout: `primary/secondary/key` files)
//! is moved in at the first open: every value copied in one transaction that also records
//! the move, then the files removed. An interrupted move is redone from the files (nothing was
//! recorded), an interrupted removal is finished at the next open (a file goes only when the
//! database holds its bytes under its key: any other file in LDK's layout, such as an old
//! backup restored into the directory, refuses the open and stays). Values are copied as they
//! are (sealed ones stay sealed: a seal is bound to its namespaces and key, which do not
//! change). That move, and the first schema's table, are in `kv/migrate.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use lightning::io;
use lightning::util::persist::{KVStoreSync, MigratableKVStore, KVSTORE_NAMESPACE_KEY_MAX_LEN};
use rusqlite::{params, Connection, OptionalExtension};
use swap_core::store::sqlite::CachedSql;

mod migrate;

/// The database's file name in the node's directory (a `.` keeps it apart from LDK's names).
pub const DB_FILE: &str = "xswap-kv.sqlite";

/// The columns of the `kv` table. A table with row ids, the names in a unique index: the
/// index's cells hold only names, and a value is read only when it is asked for. (The first
/// schema was a `WITHOUT ROWID` table keyed by the names, whose cells hold whole rows: every
/// comparison of a lookup's search with a row too large for its page (a monitor update of
/// ~1.4 KB, the channel manager) read that whole value from the file, ~60 reads per swap.)
const KV_COLUMNS: &str = "primary_ns TEXT NOT NULL,
                          secondary_ns TEXT NOT NULL,
                          key TEXT NOT NULL,
                          value BLOB NOT NULL,
                          UNIQUE (primary_ns, secondary_ns, key)";

/// The key-value store in one SQLite file.
pub(crate) struct SqliteKv {
    conn: Mutex<Connection>,
    /// Lazy removals (LDK's stale monitor updates after a whole monitor was written, up to
    /// [`crate::types::MAX_PENDING_MONITOR_UPDATES`] at once) not committed yet: done in the
    /// transaction of the next write or removal, one commit for all instead of one each. Lost
    /// with the process, which LDK allows: its start removes stale updates again. Locked only
    /// while `conn` is held, or alone.
    lazy_removed: Mutex<Vec<(String, String, String)>>,
    /// Writes and removals held back in memory (see [`SqliteKv::hold`]). Locked alone, or
    /// before `conn` (a list), never after it.
    held: Mutex<Held>,
}

/// Writes and removals of some namespaces kept in memory, in order, until they are committed
/// with a later write ([`SqliteKv::commit_held_through`]). Reads and lists see them.
#[derive(Default)]
struct Held {
    /// The primary namespaces held; none until [`SqliteKv::hold`].
    primaries: &'static [&'static str],
    ops: std::collections::VecDeque<HeldOp>,
    /// The number the next op gets.
    next: u64,
}

struct HeldOp {
    seq: u64,
    names: (String, String, String),
    /// `None`: a removal.
    value: Option<Vec<u8>>,
}

impl Held {
    fn holds(&self, primary: &str) -> bool {
        self.primaries.contains(&primary)
    }

    fn push(&mut self, primary: &str, secondary: &str, key: &str, value: Option<Vec<u8>>) {
        self.ops.push_back(HeldOp {
            seq: self.next,
            names: (primary.to_owned(), secondary.to_owned(), key.to_owned()),
            value,
        });
        self.next += 1;
    }

    /// The newest held op on a key: `Some(None)` if it is a removal.
    fn get(&self, primary: &str, secondary: &str, key: &str) -> Option<Option<&[u8]>> {
        self.ops
            .iter()
            .rev()
            .find(|op| op.names.0 == primary && op.names.1 == secondary && op.names.2 == key)
            .map(|op| op.value.as_deref())
    }
}

impl Drop for SqliteKv {
    /// Commits the lazy removals still waiting (best effort: LDK removes stale updates again
    /// at start).
    fn drop(&mut self) {
        if let Err(e) = self.with_lazy_removals("remove", |_| Ok(())) {
            tracing::warn!(error = %e, "node store: lazy removals not committed at close");
        }
    }
}

impl std::fmt::Debug for SqliteKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKv").finish_non_exhaustive()
    }
}

const UPSERT_SQL: &str =
    "INSERT INTO kv (primary_ns, secondary_ns, key, value) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (primary_ns, secondary_ns, key) DO UPDATE SET value = excluded.value";
const DELETE_SQL: &str = "DELETE FROM kv WHERE primary_ns = ?1 AND secondary_ns = ?2 AND key = ?3";

fn absent(primary: &str, secondary: &str, key: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("node store: no {primary}/{secondary}/{key}"),
    )
}

fn sql_err(what: &str, e: rusqlite::Error) -> io::Error {
    io::Error::new(io::ErrorKind::Other, format!("node store, {what}: {e}"))
}

/// A character of LDK's alphabet for namespaces and keys (`KVSTORE_NAMESPACE_KEY_ALPHABET`:
/// ASCII letters, digits, `_` and `-`), without searching the alphabet for each character:
/// every store call checks its names, and the search was ~1 % of a channel swap's CPU.
fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn valid(s: &str) -> bool {
    s.len() <= KVSTORE_NAMESPACE_KEY_MAX_LEN && s.bytes().all(allowed)
}

/// LDK's rules for namespaces and keys (as its file store checks them).
fn check(primary: &str, secondary: &str, key: Option<&str>) -> Result<(), io::Error> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "node store: {primary}/{secondary}/{}: {why}",
                key.unwrap_or("")
            ),
        )
    };
    if key.is_some_and(str::is_empty) {
        return Err(bad("empty key"));
    }
    if primary.is_empty() && !secondary.is_empty() {
        return Err(bad("a secondary namespace without a primary one"));
    }
    if !valid(primary) || !valid(secondary) || !key.is_none_or(valid) {
        return Err(bad("a character or length LDK does not allow"));
    }
    Ok(())
}

impl SqliteKv {
    /// The store in `dir` (created if missing), with what an earlier build left there in
    /// files moved in.
    pub(crate) fn open(dir: &Path) -> Result<Self, io::Error> {
        std::fs::create_dir_all(dir)?;
        // Readable and writable by the owner only (SQLite gives its `-wal` and `-shm` files
        // the same mode).
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(dir.join(DB_FILE)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let mut conn = Connection::open(dir.join(DB_FILE)).map_err(|e| sql_err("open", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sql_err("open", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| sql_err("open", e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| sql_err("open", e))?;
        // As every xswap store: a checkpoint every so many pages (the channel manager, written
        // whole at each of its writes, is most of them).
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            swap_core::store::sqlite::WAL_AUTOCHECKPOINT_PAGES,
        )
        .map_err(|e| sql_err("open", e))?;
        // A value overwritten (a clear one sealed in place) is zeroed in the file.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(|e| sql_err("open", e))?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS kv ({KV_COLUMNS});
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        ))
        .map_err(|e| sql_err("schema", e))?;
        migrate::values_apart_from_keys(&mut conn)?;
        migrate::move_files_in(&mut conn, dir)?;
        Ok(Self {
            conn: Mutex::new(conn),
            lazy_removed: Mutex::new(Vec::new()),
            held: Mutex::new(Held::default()),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From now on, writes and removals under `primaries` are held in memory (reads and lists
    /// see them) and reach the file only with a later [`Self::commit_held_through`], in its
    /// transaction. Lost with the process: the file then holds what it held before them.
    pub(crate) fn hold(&self, primaries: &'static [&'static str]) {
        self.held().primaries = primaries;
    }

    /// A mark of what is held now: [`Self::commit_held_through`] with it commits exactly the
    /// writes and removals held before it.
    pub(crate) fn held_mark(&self) -> u64 {
        self.held().next
    }

    /// Whether writes or removals held before `mark` are still waiting.
    pub(crate) fn holds_before(&self, mark: u64) -> bool {
        self.held().ops.front().is_some_and(|op| op.seq < mark)
    }

    /// Writes `value` under its names, with the writes and removals held before `mark`
    /// before it, in one transaction (with the lazy removals waiting too). Returns how many
    /// held ones it committed. On an error nothing is committed and they stay held.
    pub(crate) fn commit_held_through(
        &self,
        mark: u64,
        (primary, secondary, key): (&str, &str, &str),
        value: &[u8],
    ) -> Result<usize, io::Error> {
        check(primary, secondary, Some(key))?;
        // Copied out, not locked across the commit and its fsync: LDK holds its own locks
        // while it hands over a monitor write, and would wait for the disk.
        let ops: Vec<(String, String, String, Option<Vec<u8>>)> = self
            .held()
            .ops
            .iter()
            .take_while(|op| op.seq < mark)
            .map(|op| {
                let (p, s, k) = op.names.clone();
                (p, s, k, op.value.clone())
            })
            .collect();
        self.after_lazy_removals("write", true, |tx| {
            for (p, s, k, v) in &ops {
                match v {
                    Some(v) => tx.execute_cached(UPSERT_SQL, params![p, s, k, v])?,
                    None => tx.execute_cached(DELETE_SQL, params![p, s, k])?,
                };
            }
            tx.execute_cached(UPSERT_SQL, params![primary, secondary, key, value])
        })?;
        let mut held = self.held();
        while held.ops.front().is_some_and(|op| op.seq < mark) {
            held.ops.pop_front();
        }
        Ok(ops.len())
    }

    /// Runs `op` on the connection, after the lazy removals waiting, in one transaction with
    /// them when there are any (a removal before a write of the same key: the write wins, as
    /// LDK requires). Lazy removals that fail are kept for the next time.
    fn with_lazy_removals<T>(
        &self,
        what: &str,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, io::Error> {
        self.after_lazy_removals(what, false, op)
    }

    /// [`Self::with_lazy_removals`], in a transaction even when no lazy removal waits if
    /// `transaction` (an `op` of several statements).
    fn after_lazy_removals<T>(
        &self,
        what: &str,
        transaction: bool,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, io::Error> {
        let mut conn = self.conn();
        let waiting = std::mem::take(
            &mut *self
                .lazy_removed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if waiting.is_empty() && !transaction {
            return op(&conn).map_err(|e| sql_err(what, e));
        }
        let done = (|| {
            let tx = conn.transaction()?;
            for (p, s, k) in &waiting {
                tx.execute_cached(DELETE_SQL, params![p, s, k])?;
            }
            let out = op(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        if done.is_err() {
            let mut queue = self
                .lazy_removed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let newer = std::mem::replace(&mut *queue, waiting);
            queue.extend(newer);
        }
        done.map_err(|e| sql_err(what, e))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Once every value is sealed: a value overwritten or removed is zeroed in the file only
    /// where that costs no extra write (SQLite's `secure_delete = FAST`). What it leaves in
    /// free pages is sealed, and zeroing them made each rewrite of LDK's channel manager (a
    /// blob that grows with the payments of the last minutes) read and write every page of
    /// the old value once more.
    pub(crate) fn all_sealed(&self) -> Result<(), io::Error> {
        self.conn()
            .pragma_update(None, "secure_delete", "FAST")
            .map_err(|e| sql_err("secure_delete", e))
    }

    /// Empties the write-ahead log into the database and truncates it: after values were
    /// sealed in place, no clear copy stays in the log.
    pub(crate) fn checkpoint(&self) -> Result<(), io::Error> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| sql_err("checkpoint", e))
    }
}

impl SqliteKv {
    /// The values of `key` under each of `secondaries` (in `primary`), in that order, `None`
    /// where there is none: one statement, so one read transaction and one consistent view of
    /// them all. The swap rail reads a payment's several ledger records at every step of a
    /// swap, and one read transaction each was ~7 % of a channel swap's CPU.
    pub(crate) fn read_each(
        &self,
        primary: &str,
        secondaries: &[&str],
        key: &str,
    ) -> Result<Vec<Option<Vec<u8>>>, io::Error> {
        for secondary in secondaries {
            check(primary, secondary, Some(key))?;
        }
        let mut out = vec![None; secondaries.len()];
        if secondaries.is_empty() {
            return Ok(out);
        }
        let places = (0..secondaries.len())
            .map(|i| format!("?{}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT secondary_ns, value FROM kv \
             WHERE primary_ns = ?1 AND key = ?2 AND secondary_ns IN ({places})"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| sql_err("read", e))?;
        let args = [primary, key]
            .into_iter()
            .chain(secondaries.iter().copied());
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(|e| sql_err("read", e))?;
        for row in rows {
            let (secondary, value) = row.map_err(|e| sql_err("read", e))?;
            if let Some(slot) = secondaries
                .iter()
                .position(|s| *s == secondary)
                .and_then(|i| out.get_mut(i))
            {
                *slot = Some(value);
            }
        }
        Ok(out)
    }
}

impl KVStoreSync for SqliteKv {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> Result<Vec<u8>, io::Error> {
        check(primary, secondary, Some(key))?;
        match self.held().get(primary, secondary, key) {
            Some(Some(v)) => return Ok(v.to_vec()),
            Some(None) => return Err(absent(primary, secondary, key)),
            None => {}
        }
        self.conn()
            .prepare_cached(
                "SELECT value FROM kv WHERE primary_ns = ?1 AND secondary_ns = ?2 AND key = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![primary, secondary, key], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| sql_err("read", e))?
            .ok_or_else(|| absent(primary, secondary, key))
    }

    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> Result<(), io::Error> {
        check(primary, secondary, Some(key))?;
        tracing::trace!(target: "xswap::kv", primary, secondary, key, len = buf.len(), "write");
        {
            let mut held = self.held();
            if held.holds(primary) {
                held.push(primary, secondary, key, Some(buf));
                return Ok(());
            }
        }
        self.with_lazy_removals("write", |conn| {
            conn.execute_cached(UPSERT_SQL, params![primary, secondary, key, buf])
        })?;
        Ok(())
    }

    /// A lazy removal waits for the next write or removal (see `lazy_removed`): until then
    /// the key still reads and lists, which LDK allows.
    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        lazy: bool,
    ) -> Result<(), io::Error> {
        check(primary, secondary, Some(key))?;
        {
            let mut held = self.held();
            if held.holds(primary) {
                held.push(primary, secondary, key, None);
                return Ok(());
            }
        }
        if lazy {
            self.lazy_removed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((primary.to_owned(), secondary.to_owned(), key.to_owned()));
            return Ok(());
        }
        self.with_lazy_removals("remove", |conn| {
            conn.execute_cached(DELETE_SQL, params![primary, secondary, key])
        })?;
        Ok(())
    }

    fn list(&self, primary: &str, secondary: &str) -> Result<Vec<String>, io::Error> {
        check(primary, secondary, None)?;
        // Held ops locked across the query: a commit between the two would drop ops from
        // the held list that the query did not see yet.
        let held = self.held();
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT key FROM kv WHERE primary_ns = ?1 AND secondary_ns = ?2 ORDER BY key",
            )
            .map_err(|e| sql_err("list", e))?;
        let keys: Vec<String> = s
            .query_map(params![primary, secondary], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(|e| sql_err("list", e))?;
        drop(s);
        drop(conn);
        if !held.holds(primary) || held.ops.is_empty() {
            return Ok(keys);
        }
        let mut all: BTreeSet<String> = keys.into_iter().collect();
        for op in held
            .ops
            .iter()
            .filter(|op| op.names.0 == primary && op.names.1 == secondary)
        {
            if op.value.is_some() {
                all.insert(op.names.2.clone());
            } else {
                all.remove(&op.names.2);
            }
        }
        Ok(all.into_iter().collect())
    }
}

impl MigratableKVStore for SqliteKv {
    fn list_all_keys(&self) -> Result<Vec<(String, String, String)>, io::Error> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached("SELECT primary_ns, secondary_ns, key FROM kv ORDER BY 1, 2, 3")
            .map_err(|e| sql_err("list", e))?;
        let keys = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(|e| sql_err("list", e))?;
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lightning::util::persist::KVStoreSync;
    use lightning::util::persist::KVSTORE_NAMESPACE_KEY_ALPHABET;

    #[test]
    fn the_names_allowed_are_exactly_ldks_alphabet() {
        for b in 0..=255u8 {
            let c = char::from(b);
            assert_eq!(
                allowed(b),
                b.is_ascii() && KVSTORE_NAMESPACE_KEY_ALPHABET.contains(c),
                "{b:#04x}"
            );
        }
        assert!(valid("monitor_updates") && valid("A-z_09") && valid(""));
        assert!(!valid("a/b") && !valid("é") && !valid("a b"));
        assert!(!valid(&"a".repeat(KVSTORE_NAMESPACE_KEY_MAX_LEN + 1)));
    }

    #[test]
    fn values_round_trip_and_lists_keep_to_their_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKv::open(dir.path()).unwrap();
        kv.write("a", "", "k1", vec![1]).unwrap();
        kv.write("a", "", "k2", vec![2]).unwrap();
        kv.write("a", "b", "k1", vec![3]).unwrap();
        kv.write("a", "", "k1", vec![4]).unwrap();
        assert_eq!(kv.read("a", "", "k1").unwrap(), vec![4]);
        assert_eq!(kv.list("a", "").unwrap(), vec!["k1", "k2"]);
        assert_eq!(kv.list("a", "b").unwrap(), vec!["k1"]);
        kv.remove("a", "", "k1", false).unwrap();
        assert_eq!(
            kv.read("a", "", "k1").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(kv.list_all_keys().unwrap().len(), 2);
        // LDK's rules on names.
        assert!(kv.write("a", "", "", vec![]).is_err());
        assert!(kv.write("", "b", "k", vec![]).is_err());
        assert!(kv.write("a.b", "", "k", vec![]).is_err());
        drop(kv);
        // Durable across opens.
        let kv = SqliteKv::open(dir.path()).unwrap();
        assert_eq!(kv.read("a", "b", "k1").unwrap(), vec![3]);
    }

    #[test]
    fn held_writes_read_back_and_reach_the_file_only_with_the_write_they_precede() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKv::open(dir.path()).unwrap();
        kv.write("mon", "", "a", vec![1]).unwrap();
        kv.write("mon", "", "gone", vec![9]).unwrap();
        kv.hold(&["mon"]);
        // Held: read, listed, not in the file.
        kv.write("mon", "", "a", vec![2]).unwrap();
        kv.write("mon", "", "b", vec![3]).unwrap();
        kv.remove("mon", "", "gone", true).unwrap();
        assert_eq!(kv.read("mon", "", "a").unwrap(), vec![2]);
        assert_eq!(
            kv.read("mon", "", "gone").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(kv.list("mon", "").unwrap(), vec!["a", "b"]);
        // Other namespaces are written at once.
        kv.write("other", "", "x", vec![7]).unwrap();
        let file = |k: &str| {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.query_row(
                "SELECT value FROM kv WHERE primary_ns = 'mon' AND key = ?1",
                [k],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .unwrap()
        };
        assert_eq!(file("a"), Some(vec![1]));
        assert_eq!(file("b"), None);
        assert_eq!(file("gone"), Some(vec![9]));
        let mark = kv.held_mark();
        assert!(kv.holds_before(mark));
        // Held after the mark: not committed by a write through the mark.
        kv.write("mon", "", "c", vec![4]).unwrap();
        let n = kv
            .commit_held_through(mark, ("", "", "manager"), &[5])
            .unwrap();
        assert_eq!(n, 3);
        assert!(!kv.holds_before(mark));
        assert!(kv.holds_before(kv.held_mark()));
        assert_eq!(file("a"), Some(vec![2]));
        assert_eq!(file("b"), Some(vec![3]));
        assert_eq!(file("gone"), None);
        assert_eq!(file("c"), None);
        assert_eq!(kv.read("mon", "", "c").unwrap(), vec![4]);
        assert_eq!(kv.list("mon", "").unwrap(), vec!["a", "b", "c"]);
        // A process that dies loses what is still held; the file keeps the rest.
        std::mem::forget(kv);
        let kv = SqliteKv::open(dir.path()).unwrap();
        assert_eq!(kv.read("", "", "manager").unwrap(), vec![5]);
        assert_eq!(kv.list("mon", "").unwrap(), vec!["a", "b"]);
        assert_eq!(kv.read("other", "", "x").unwrap(), vec![7]);
    }

    #[test]
    fn lazy_removals_are_committed_with_the_next_write_and_a_write_wins() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKv::open(dir.path()).unwrap();
        for k in ["1", "2", "3"] {
            kv.write("u", "m", k, vec![1]).unwrap();
        }
        kv.remove("u", "m", "1", true).unwrap();
        kv.remove("u", "m", "2", true).unwrap();
        // Not yet: still read and listed (LDK allows it).
        assert_eq!(kv.read("u", "m", "1").unwrap(), vec![1]);
        assert_eq!(kv.list("u", "m").unwrap().len(), 3);
        // A write of a key waiting for its removal wins over it.
        kv.write("u", "m", "2", vec![2]).unwrap();
        assert_eq!(
            kv.read("u", "m", "1").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(kv.read("u", "m", "2").unwrap(), vec![2]);
        assert_eq!(kv.list("u", "m").unwrap(), vec!["2", "3"]);
        // A plain removal commits the waiting ones too; durable across opens.
        kv.remove("u", "m", "2", true).unwrap();
        kv.remove("u", "m", "3", false).unwrap();
        drop(kv);
        let kv = SqliteKv::open(dir.path()).unwrap();
        assert!(kv.list("u", "m").unwrap().is_empty());
        // Committed when the store closes; lost with a process that dies (LDK removes stale
        // updates again at start).
        kv.write("u", "m", "4", vec![4]).unwrap();
        kv.write("u", "m", "5", vec![5]).unwrap();
        kv.remove("u", "m", "4", true).unwrap();
        drop(kv);
        let kv = SqliteKv::open(dir.path()).unwrap();
        assert_eq!(kv.list("u", "m").unwrap(), vec!["5"]);
        kv.remove("u", "m", "5", true).unwrap();
        std::mem::forget(kv);
        let kv = SqliteKv::open(dir.path()).unwrap();
        assert_eq!(kv.read("u", "m", "5").unwrap(), vec![5]);
    }
}
