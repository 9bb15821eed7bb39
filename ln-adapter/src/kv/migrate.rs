//! What an earlier build left in the node's directory, brought into the current store at
//! its open: a `kv` table of the first schema, and LDK's files (see `kv.rs`).

use std::path::{Path, PathBuf};

use lightning::io;
use rusqlite::{params, Connection, OptionalExtension};
use swap_core::store::sqlite::CachedSql;

use super::{sql_err, valid, DB_FILE, KV_COLUMNS};

/// Moves the rows of a `kv` table of the first schema (`WITHOUT ROWID`) into one of
/// [`KV_COLUMNS`], in one transaction (a crash leaves the old table whole).
pub(super) fn values_apart_from_keys(conn: &mut Connection) -> Result<(), io::Error> {
    // The schema is read inside the (write) transaction: a second opener waits, then finds
    // the table already moved.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql_err("schema", e))?;
    let sql: String = tx
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'kv'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| sql_err("schema", e))?;
    if !sql.to_ascii_uppercase().contains("WITHOUT ROWID") {
        return Ok(());
    }
    tx.execute_batch(&format!(
        "CREATE TABLE kv_rows ({KV_COLUMNS});
         INSERT INTO kv_rows (primary_ns, secondary_ns, key, value)
             SELECT primary_ns, secondary_ns, key, value FROM kv;
         DROP TABLE kv;
         ALTER TABLE kv_rows RENAME TO kv;"
    ))
    .map_err(|e| sql_err("schema", e))?;
    tx.commit().map_err(|e| sql_err("schema", e))
}

/// The values of LDK's file layout under `dir` (not the database's own files, not LDK's
/// unfinished `.tmp` and `.trash` files, which are returned apart), as paths and their place.
type Found = (Vec<(PathBuf, (String, String, String))>, Vec<PathBuf>);

fn files_in(dir: &Path) -> Result<Found, io::Error> {
    let mut found = (vec![], vec![]);
    walk(dir, &[], &mut found)?;
    Ok(found)
}

/// Collects the values under `dir`, whose namespaces so far are `names` (at most two levels
/// of namespaces, as LDK's layout has).
fn walk(dir: &Path, names: &[String], found: &mut Found) -> Result<(), io::Error> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let Some(n) = p.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if names.is_empty() && n.starts_with(DB_FILE) {
            continue;
        }
        if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("tmp" | "trash")
        ) {
            found.1.push(p);
        } else if !valid(&n) {
            continue;
        } else if p.is_file() {
            let place = match names {
                [] => (String::new(), String::new(), n),
                [a] => (a.clone(), String::new(), n),
                [a, b, ..] => (a.clone(), b.clone(), n),
            };
            found.0.push((p, place));
        } else if p.is_dir() && names.len() < 2 {
            let mut deeper = names.to_vec();
            deeper.push(n);
            walk(&p, &deeper, found)?;
        }
    }
    Ok(())
}

/// Moves LDK's files under `dir` into the database (see the module's documentation).
pub(super) fn move_files_in(conn: &mut Connection, dir: &Path) -> Result<(), io::Error> {
    let (values, leftovers) = files_in(dir)?;
    // Whether the move was done, read in the move's own (write) transaction: a second process
    // opening the directory at once waits for the first's move, then sees it done.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql_err("move", e))?;
    let moved: Option<String> = tx
        .query_row_cached(
            "SELECT value FROM meta WHERE name = 'files_moved'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sql_err("read", e))?;
    if moved.is_none() {
        for (path, (p, s, k)) in &values {
            let value = zeroize::Zeroizing::new(std::fs::read(path)?);
            tx.execute_cached(
                "INSERT OR REPLACE INTO kv (primary_ns, secondary_ns, key, value)
                 VALUES (?1, ?2, ?3, ?4)",
                params![p, s, k, value.as_slice()],
            )
            .map_err(|e| sql_err("move", e))?;
        }
        tx.execute_cached(
            "INSERT INTO meta (name, value) VALUES ('files_moved', ?1)",
            params![values.len().to_string()],
        )
        .map_err(|e| sql_err("move", e))?;
        tx.commit().map_err(|e| sql_err("move", e))?;
        if !values.is_empty() {
            tracing::info!(
                values = values.len(),
                "the node's files moved into its database"
            );
        }
    } else {
        tx.commit().map_err(|e| sql_err("move", e))?;
    }
    // Moved: the files go (the database holds each, byte for byte), then LDK's unfinished
    // files, then the directories left empty. A file found after an earlier open's move goes
    // only when the database holds the same bytes under its key (a removal cut short); any
    // other (a backup restored into the directory, a file written by an older build since)
    // stops the node: never deleted, never silently ignored.
    for (path, (p, s, k)) in &values {
        let stored: Option<Vec<u8>> = conn
            .query_row_cached(
                "SELECT value FROM kv WHERE primary_ns = ?1 AND secondary_ns = ?2 AND key = ?3",
                params![p, s, k],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_err("read", e))?;
        let same = stored.is_some_and(|v| {
            std::fs::read(path).is_ok_and(|f| zeroize::Zeroizing::new(f).as_slice() == v.as_slice())
        });
        if !same {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "node store: {} is a value in LDK's file layout that the node's database \
                     ({DB_FILE}) does not hold: move it out of the directory (or, to use it, \
                     into a copy of the directory without {DB_FILE}) before starting the node",
                    path.display()
                ),
            ));
        }
    }
    for (path, _) in &values {
        std::fs::remove_file(path)?;
    }
    if moved.is_none() {
        for path in &leftovers {
            let _ = std::fs::remove_file(path);
        }
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(valid) {
            if let Ok(inner) = std::fs::read_dir(&p) {
                for e in inner.flatten() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::*;
    use lightning::util::persist::{KVStoreSync, MigratableKVStore};
    use lightning_persister::fs_store::FilesystemStore;
    use rusqlite::Connection;

    #[test]
    fn a_store_of_the_first_schema_keeps_its_values_in_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE kv (
                     primary_ns TEXT NOT NULL, secondary_ns TEXT NOT NULL, key TEXT NOT NULL,
                     value BLOB NOT NULL, PRIMARY KEY (primary_ns, secondary_ns, key)
                 ) WITHOUT ROWID;
                 INSERT INTO kv VALUES ('', '', 'manager', x'0102');
                 INSERT INTO kv VALUES ('monitors', '', 'chan', zeroblob(5000));",
            )
            .unwrap();
        }
        let schema = |kv: &SqliteKv| -> String {
            kv.conn()
                .query_row("SELECT sql FROM sqlite_master WHERE name = 'kv'", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        for _ in 0..2 {
            let kv = SqliteKv::open(dir.path()).unwrap();
            assert!(!schema(&kv).contains("WITHOUT ROWID"), "{}", schema(&kv));
            assert_eq!(
                KVStoreSync::read(&kv, "", "", "manager").unwrap(),
                vec![1, 2]
            );
            assert_eq!(
                KVStoreSync::read(&kv, "monitors", "", "chan").unwrap(),
                vec![0; 5000]
            );
            KVStoreSync::write(&kv, "", "", "manager", vec![3]).unwrap();
            assert_eq!(KVStoreSync::read(&kv, "", "", "manager").unwrap(), vec![3]);
            KVStoreSync::write(&kv, "", "", "manager", vec![1, 2]).unwrap();
            assert_eq!(kv.list_all_keys().unwrap().len(), 2);
        }
    }

    #[test]
    fn an_earlier_builds_files_are_moved_in_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let fs = FilesystemStore::new(dir.path().to_path_buf());
            KVStoreSync::write(&fs, "", "", "manager", vec![1, 2]).unwrap();
            KVStoreSync::write(&fs, "monitors", "", "m1", vec![3]).unwrap();
            KVStoreSync::write(&fs, "updates", "m1", "7", vec![4]).unwrap();
        }
        std::fs::write(dir.path().join("monitors").join("m2.tmp"), b"half").unwrap();
        let kv = SqliteKv::open(dir.path()).unwrap();
        assert_eq!(kv.read("", "", "manager").unwrap(), vec![1, 2]);
        assert_eq!(kv.read("monitors", "", "m1").unwrap(), vec![3]);
        assert_eq!(kv.read("updates", "m1", "7").unwrap(), vec![4]);
        assert_eq!(kv.list_all_keys().unwrap().len(), 3);
        // Only the database is left.
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(DB_FILE))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        kv.write("monitors", "", "m1", vec![5]).unwrap();
        drop(kv);
        // A file left by a removal cut short (the same bytes as the database holds) goes.
        std::fs::create_dir_all(dir.path().join("updates").join("m1")).unwrap();
        std::fs::write(dir.path().join("updates").join("m1").join("7"), [4]).unwrap();
        let kv = SqliteKv::open(dir.path()).unwrap();
        assert!(!dir.path().join("updates").exists());
        drop(kv);
        // Any other file in LDK's layout (an old backup restored over the directory) stops
        // the node, and is neither moved in nor deleted.
        let stale = dir.path().join("monitors").join("m1");
        std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
        std::fs::write(&stale, [3]).unwrap();
        let e = SqliteKv::open(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&stale).unwrap(), vec![3]);
        std::fs::remove_file(&stale).unwrap();
        let kv = SqliteKv::open(dir.path()).unwrap();
        assert_eq!(kv.read("monitors", "", "m1").unwrap(), vec![5]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(DB_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the database is the owner's only");
    }
}
