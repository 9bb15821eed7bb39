//! Tests of the SQLite store beyond the conformance suite.

use super::*;
use crate::store::conformance;
use crate::store::{Role, StoredRecord};

#[tokio::test]
async fn sqlite_store_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    conformance::run(&SqliteStore::open(&path).unwrap()).await;
    // The outbox, from two handles on one file (two processes on one store).
    let (a, b) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    conformance::run_outbox(&a, &b).await;
    // Everything survives reopening the file.
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert!(!reopened.list().await.unwrap().is_empty());
    // A backup is a whole, readable copy, private to its owner, like the store itself.
    let copy = dir.path().join("backup.sqlite");
    reopened.backup_to(&copy).await.unwrap();
    let restored = SqliteStore::open(&copy).unwrap();
    assert_eq!(
        restored.list().await.unwrap(),
        reopened.list().await.unwrap()
    );
    #[cfg(unix)]
    for file in [&path, &copy] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    assert!(reopened.backup_to(&copy).await.is_err(), "never overwrites");
}

#[tokio::test]
async fn corrupt_rows_are_typed_errors_and_hide_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    let good = conformance::sample_record(1, Role::Initiator);
    let bad = conformance::sample_record(2, Role::Responder);
    let bad2 = conformance::sample_record(3, Role::Responder);
    for r in [&good, &bad, &bad2] {
        store.create(r, &SwapState::initial(r.role)).await.unwrap();
    }
    // Damage two swaps behind the store's back: garbage state, garbage record.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO swap_states(swap_id, entered_at, state_json) VALUES (?1, 0, '{\"role\":\"responder\",\"state\":{\"state\":\"no_such_state\"}}')",
            params![&bad.id().0[..]],
        )
        .unwrap();
        conn.execute(
            "UPDATE swaps SET record_json = 'not json' WHERE id = ?1",
            params![&bad2.id().0[..]],
        )
        .unwrap();
    }
    let all = store.unfinished().await.unwrap();
    assert_eq!(all.len(), 3);
    let ok: Vec<_> = all.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].0.id(), good.id());
    for err in all.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
    assert!(matches!(
        store.load(&bad.id()).await,
        Err(StoreError::Corrupt { .. })
    ));
    // The good swap still loads and takes new states.
    store
        .append_state(
            &good.id(),
            store.load_entry(&good.id()).await.unwrap().1.seq,
            &SwapState::initial(Role::Initiator),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_version_1_database_is_migrated_with_its_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let rec = conformance::sample_record(7, Role::Initiator);
    {
        // What version 1 of this program wrote.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let json = serde_json::to_string(&StoredRecord::from_record(&rec)).unwrap();
        conn.execute(
            "INSERT INTO swaps(id, role, record_json, secret, created_at) VALUES (?1, 'initiator', ?2, ?3, 0)",
            params![&rec.id().0[..], json, rec.secret.as_ref().unwrap().as_bytes().to_vec()],
        )
        .unwrap();
        let state = serde_json::to_string(&SwapState::initial(Role::Initiator)).unwrap();
        conn.execute(
            "INSERT INTO swap_states(swap_id, entered_at, state_json) VALUES (?1, 0, ?2)",
            params![&rec.id().0[..], state],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(store.load(&rec.id()).await.unwrap().0, rec);
    assert!(store.hashlock_in_use(&rec.terms.hashlock).await.unwrap());
    // Its lock, still ahead, is reserved (the columns of migration 5 filled at open).
    assert_eq!(
        store
            .to_lock(rec.terms.x.params.chain, &rec.terms.x.asset)
            .await
            .unwrap(),
        rec.terms.x.amount.base_units()
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::UnsupportedVersion { found: 99, .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

#[tokio::test]
async fn not_a_database_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Backend(_))
    ));
}

/// The bundled SQLite is compiled as `.cargo/config.toml` says: one page cache per connection
/// (not one shared behind a global mutex) and no allocation statistics (another global
/// mutex). The workers of a loaded engine queued on both before.
#[test]
fn sqlite_is_built_without_its_global_memory_locks() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
    let options: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "allocation statistics on: {options:?}"
    );
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "one shared page cache: {options:?}"
    );
    assert!(options.iter().any(|o| o == "THREADSAFE=1"), "{options:?}");
}

/// The latest entries a handle keeps (`sqlite_read::LatestCache`) answer exactly as the
/// database does: after the whole conformance suite through one handle (appends one by one
/// and in batches, refused rows, two writers at once, sent actions moving states, the same
/// swap twice in one batch), with sealed secrets in states, every swap's latest entry from
/// that handle equals a fresh handle's.
#[tokio::test]
async fn kept_latest_entries_answer_as_the_database_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let key = || super::seal::StoreKey::from_bytes(&[7; 32]);
    let store = SqliteStore::open_with_key(&path, key()).unwrap();
    conformance::run(&store).await;
    conformance::write_secrets(&store, 40).await;
    let ids = store.list().await.unwrap();
    assert!(ids.len() > 6, "{}", ids.len());
    // Read once through the handle (kept), then once more (answered from what it keeps).
    let first = store.load_entries(&ids).await;
    let kept = store.load_entries(&ids).await;
    let fresh = SqliteStore::open_with_key(&path, key())
        .unwrap()
        .load_entries(&ids)
        .await;
    for ((id, a), (b, c)) in ids.iter().zip(&first).zip(kept.iter().zip(&fresh)) {
        let (a, b, c) = (
            a.as_ref().unwrap(),
            b.as_ref().unwrap(),
            c.as_ref().unwrap(),
        );
        assert_eq!(a, c, "{id:?}");
        assert_eq!(b, c, "{id:?}");
        let history = store.history(id).await.unwrap();
        assert_eq!(history.last(), Some(&c.1), "{id:?}");
    }
}

/// What another connection writes (another handle or process, a repair by hand, damage) is
/// read at once by a handle that kept the swap's entry: a state appended, a garbage state
/// (corrupt), a garbage record (corrupt). Its own writes after a refused one go on from the
/// database's state.
#[tokio::test]
async fn a_kept_entry_gives_way_to_what_another_connection_wrote() {
    use crate::machine::initiator;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let (store, other) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    let rs: Vec<_> = (1..=3)
        .map(|n| conformance::sample_record(n, Role::Initiator))
        .collect();
    for r in &rs {
        store.create(r, &SwapState::initial(r.role)).await.unwrap();
    }
    let ids: Vec<_> = rs.iter().map(SwapRecord::id).collect();
    let locking = SwapState::Initiator(initiator::State::Locking);
    // Kept by `store`, then moved on by the other handle.
    let seq = store.load_entry(&ids[0]).await.unwrap().1.seq;
    let theirs = other.append_state(&ids[0], seq, &locking).await.unwrap();
    let (_, entry) = store.load_entry(&ids[0]).await.unwrap();
    assert_eq!((entry.seq, &entry.state), (theirs, &locking));
    // Its own write from the stale entry is refused; from the fresh one it goes on.
    assert!(matches!(
        store.append_state(&ids[0], seq, &locking).await,
        Err(StoreError::Conflict { .. })
    ));
    let claiming = SwapState::Initiator(initiator::State::Claiming);
    let mine = store
        .append_state(&ids[0], theirs, &claiming)
        .await
        .unwrap();
    let (_, entry) = store.load_entry(&ids[0]).await.unwrap();
    assert_eq!((entry.seq, &entry.state), (mine, &claiming));
    assert_eq!(other.load_entry(&ids[0]).await.unwrap().1, entry);
    // Kept, then damaged behind both handles' backs.
    assert_eq!(store.load_entries(&ids).await.len(), 3);
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO swap_states(swap_id, entered_at, state_json) VALUES (?1, 0, 'garbage')",
            params![&ids[1].0[..]],
        )
        .unwrap();
        conn.execute(
            "UPDATE swaps SET record_json = 'not json' WHERE id = ?1",
            params![&ids[2].0[..]],
        )
        .unwrap();
    }
    let read = store.load_entries(&ids).await;
    assert!(read[0].is_ok(), "{:?}", read[0]);
    for r in &read[1..] {
        assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    }
    assert!(matches!(
        store.load_entry(&ids[1]).await,
        Err(StoreError::Corrupt { .. })
    ));
    // A swap this handle created is kept as a read of it finds it; what the other handle
    // then wrote is what this one's record of a sent claim moves on from.
    let r4 = conformance::sample_record(4, Role::Initiator);
    store
        .create(&r4, &SwapState::initial(Role::Initiator))
        .await
        .unwrap();
    let fresh = SqliteStore::open(&path).unwrap();
    let (kept, read) = (
        store.load_entry(&r4.id()).await.unwrap(),
        fresh.load_entry(&r4.id()).await.unwrap(),
    );
    assert_eq!((kept.0.id(), &kept.1), (read.0.id(), &read.1));
    other
        .append_state(&r4.id(), kept.1.seq, &claiming)
        .await
        .unwrap();
    let claim = crate::machine::Action::Claim {
        leg: crate::terms::Leg::Y,
        preimage: crate::types::Preimage::from_bytes([4; 32]),
    };
    let answers = store
        .record_sent(&[SentAction {
            id: r4.id(),
            tx: None,
            action: claim,
        }])
        .await;
    let claim_sent = SwapState::Initiator(initiator::State::ClaimSent);
    assert_eq!(
        answers[0].state.as_ref().unwrap(),
        &Some(claim_sent.clone())
    );
    assert_eq!(
        fresh.load_entry(&r4.id()).await.unwrap().1.state,
        claim_sent
    );
}

#[tokio::test]
async fn key_indexes_are_reserved_in_blocks_and_never_handed_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swaps.sqlite");
    let counter = |path: &std::path::Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT value FROM counters WHERE name = 'key_index'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let block = i64::from(KEY_INDEX_BLOCK);
    let mut seen = std::collections::HashSet::new();
    // Two handles on one file (two processes), a block and a bit each.
    let (a, b) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    let first = a.allocate_key_index().await.unwrap();
    assert_eq!(counter(&path), block, "one block reserved at the first");
    for _ in 1..KEY_INDEX_BLOCK {
        assert!(seen.insert(a.allocate_key_index().await.unwrap()));
    }
    assert!(seen.insert(first));
    assert_eq!(
        counter(&path),
        block,
        "the rest of the block needs no write"
    );
    for _ in 0..KEY_INDEX_BLOCK + 3 {
        assert!(seen.insert(b.allocate_key_index().await.unwrap()));
        assert!(seen.insert(a.allocate_key_index().await.unwrap()));
    }
    assert_eq!(counter(&path), 5 * block);
    // Concurrent callers on one handle.
    let many = futures::future::join_all((0..100).map(|_| a.allocate_key_index())).await;
    for k in many {
        assert!(seen.insert(k.unwrap()));
    }
    // After a restart the unused rest of the blocks is skipped, never handed out again.
    drop((a, b));
    let reopened = SqliteStore::open(&path).unwrap();
    let before = counter(&path);
    let k = reopened.allocate_key_index().await.unwrap();
    assert_eq!(i64::from(k), before);
    assert!(seen.insert(k));
    assert_eq!(counter(&path), before + block);
}
