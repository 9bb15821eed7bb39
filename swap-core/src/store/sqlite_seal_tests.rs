//! Secrets at rest in the SQLite store (see `seal.rs`): sealed in the file, refused without
//! the key or with another, sealed in place when an older store is opened with a key, bound
//! to their swap.

use super::*;
use crate::store::conformance::{self, in_clear, write_secrets};
use crate::store::rows::new_swap_row;
use crate::store::Role;

fn key(n: u8) -> StoreKey {
    StoreKey::from_bytes(&[n; 32])
}

/// The bytes of the database file and of its write-ahead log, if any.
fn raw_file(path: &Path) -> Vec<u8> {
    let mut raw = std::fs::read(path).unwrap();
    if let Ok(wal) = std::fs::read(format!("{}-wal", path.display())) {
        raw.extend(wal);
    }
    raw
}

#[tokio::test]
async fn sqlite_store_with_a_key_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    conformance::run(&SqliteStore::open_with_key(&path, key(1)).unwrap()).await;
    let (a, b) = (
        SqliteStore::open_with_key(&path, key(1)).unwrap(),
        SqliteStore::open_with_key(&path, key(1)).unwrap(),
    );
    conformance::run_outbox(&a, &b).await;
    let reopened = SqliteStore::open_with_key(&path, key(1)).unwrap();
    for id in reopened.list().await.unwrap() {
        reopened.load(&id).await.unwrap();
    }
}

#[tokio::test]
async fn no_preimage_is_in_the_file_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    // Without a key they are (what this test would find if sealing did nothing).
    let clear = dir.path().join("clear.sqlite");
    let secrets = write_secrets(&SqliteStore::open(&clear).unwrap(), 1).await;
    let raw = raw_file(&clear);
    assert!(secrets.iter().all(|s| in_clear(&raw, s)));

    let path = dir.path().join("swaps.sqlite");
    let store = SqliteStore::open_with_key(&path, key(1)).unwrap();
    let secrets = write_secrets(&store, 1).await;
    let copy = dir.path().join("backup.sqlite");
    store.backup_to(&copy).await.unwrap();
    let raw = raw_file(&path);
    assert!(secrets.iter().all(|s| !in_clear(&raw, s)));
    drop(store);
    for file in [&path, &copy] {
        let raw = raw_file(file);
        assert!(raw.len() > 4096, "{}", file.display());
        assert!(secrets.iter().all(|s| !in_clear(&raw, s)));
    }
    // The backup reads back with the key.
    let restored = SqliteStore::open_with_key(&copy, key(1)).unwrap();
    assert_eq!(restored.list().await.unwrap().len(), 2);
    for id in restored.list().await.unwrap() {
        restored.load(&id).await.unwrap();
    }
}

#[tokio::test]
async fn without_the_key_or_with_another_the_store_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let secrets = write_secrets(&SqliteStore::open_with_key(&path, key(1)).unwrap(), 1).await;
    let before = std::fs::read(&path).unwrap();
    for _ in 0..2 {
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::KeyRequired)
        ));
        assert!(matches!(
            SqliteStore::open_with_key(&path, key(2)),
            Err(StoreError::WrongKey)
        ));
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing was written");
    let store = SqliteStore::open_with_key(&path, key(1)).unwrap();
    let ids = store.list().await.unwrap();
    assert_eq!(ids.len(), 2);
    let (record, _) = store.load(&SwapId([1; 16])).await.unwrap();
    assert_eq!(record.secret.as_ref(), Some(&secrets[0]));
    // The errors say what to do, and show no key.
    let text = StoreError::KeyRequired.to_string();
    assert!(text.contains("key"), "{text}");
}

#[tokio::test]
async fn a_store_with_clear_secrets_is_sealed_in_place_when_opened_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    // What the build before sealing wrote: schema 5, clear secrets in both places.
    let swaps = conformance::secret_swaps(1);
    let (a, b, claiming) = (&swaps.initiator, &swaps.responder, &swaps.states[1]);
    {
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn, std::time::Duration::from_secs(1)).unwrap();
        migrate(&mut conn, &MIGRATIONS[..5]).unwrap();
        for r in [a, b] {
            let row = new_swap_row(None, r, &SwapState::initial(r.role)).unwrap();
            conn.execute(
                "INSERT INTO swaps(id, role, record_json, secret, created_at, hashlock, lock_on,
                                   lock_amount, lock_ahead, lock_tracked)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, 1)",
                params![
                    row.id,
                    row.role,
                    row.record_json,
                    row.secret,
                    row.hashlock,
                    row.lock_on,
                    row.lock_amount,
                    row.lock_ahead
                ],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO swap_states(swap_id, entered_at, state_json) VALUES (?1, 0, ?2)",
                params![row.id, row.state_json],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO swap_states(swap_id, entered_at, state_json) VALUES (?1, 0, ?2)",
            params![&b.id().0[..], serde_json::to_string(claiming).unwrap()],
        )
        .unwrap();
    }
    assert!(swaps.secrets.iter().all(|s| in_clear(&raw_file(&path), s)));
    // A store opened without a key reads it as before.
    let old = SqliteStore::open(&path).unwrap();
    assert_eq!(&old.load(&a.id()).await.unwrap().0, a);
    assert_eq!(old.schema_version().unwrap(), MIGRATIONS.len() as i64);

    let store = SqliteStore::open_with_key(&path, key(1)).unwrap();
    assert_eq!(&store.load(&a.id()).await.unwrap().0, a);
    assert_eq!(&store.load(&b.id()).await.unwrap().1, claiming);
    let raw = raw_file(&path);
    assert!(
        swaps.secrets.iter().all(|s| !in_clear(&raw, s)),
        "the clear bytes are overwritten, not only the rows"
    );
    // The handle opened without a key before writes no secret in clear now, and neither does
    // a new one.
    let c = conformance::sample_record(3, Role::Initiator);
    assert!(matches!(
        old.create(&c, &SwapState::initial(Role::Initiator)).await,
        Err(StoreError::KeyRequired)
    ));
    assert!(matches!(
        old.load(&a.id()).await,
        Err(StoreError::KeyRequired)
    ));
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::KeyRequired)
    ));
    // Opening again seals nothing twice.
    drop(store);
    let again = SqliteStore::open_with_key(&path, key(1)).unwrap();
    assert_eq!(&again.load(&b.id()).await.unwrap().1, claiming);
    assert_eq!(again.history(&b.id()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_sealed_secret_copied_to_another_swap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let store = SqliteStore::open_with_key(&path, key(1)).unwrap();
    write_secrets(&store, 1).await; // swap 1 (initiator), swap 2 (responder, learned)
    write_secrets(&store, 3).await; // swap 3 (initiator), swap 4 (responder, learned)
    {
        let conn = Connection::open(&path).unwrap();
        // Swap 1's sealed secret into swap 3's row; swap 2's latest state into swap 4's.
        conn.execute(
            "UPDATE swaps SET secret = (SELECT secret FROM swaps WHERE id = ?1) WHERE id = ?2",
            params![&[1u8; 16][..], &[3u8; 16][..]],
        )
        .unwrap();
        conn.execute(
            "UPDATE swap_states SET state_json = (SELECT state_json FROM swap_states
                 WHERE swap_id = ?1 ORDER BY seq DESC LIMIT 1)
             WHERE seq = (SELECT MAX(seq) FROM swap_states WHERE swap_id = ?2)",
            params![&[2u8; 16][..], &[4u8; 16][..]],
        )
        .unwrap();
    }
    conformance::moved_secrets_are_refused(&store).await;
}
