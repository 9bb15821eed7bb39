//! A damaged row is a typed error for its swap only, and names no secret.

use pg_store::testkit::TestCluster;
use pg_store::PgStore;
use swap_core::store::conformance::sample_record;
use swap_core::{Role, StoreError, SwapState, SwapStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_typed_errors_and_hide_nothing_else() {
    let pg = TestCluster::shared();
    let url = pg.create_database("corrupt").await;
    let store = PgStore::connect(&url).await.unwrap();
    let good = sample_record(1, Role::Initiator);
    let bad_state = sample_record(2, Role::Responder);
    let bad_record = sample_record(3, Role::Responder);
    let bad_secret = sample_record(4, Role::Initiator);
    for r in [&good, &bad_state, &bad_record, &bad_secret] {
        store.create(r, &SwapState::initial(r.role)).await.unwrap();
    }
    // Damage three swaps behind the store's back.
    let c = pg.connect("corrupt").await;
    c.execute(
        "INSERT INTO swap_states(swap_id, seq, entered_at, state_json)
         VALUES ($1, 2, 0, '{\"role\":\"responder\",\"state\":{\"state\":\"no_such_state\"}}')",
        &[&&bad_state.id().0[..]],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE swaps SET record_json = 'not json' WHERE id = $1",
        &[&&bad_record.id().0[..]],
    )
    .await
    .unwrap();
    // The secret of another swap: it does not match this one's hashlock.
    c.execute(
        "UPDATE swaps SET secret = (SELECT secret FROM swaps WHERE id = $2) WHERE id = $1",
        &[&&bad_secret.id().0[..], &&good.id().0[..]],
    )
    .await
    .unwrap();

    let all = store.unfinished().await.unwrap();
    assert_eq!(all.len(), 4);
    let ok: Vec<_> = all.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].0, good);
    let secrets: Vec<String> = [&good, &bad_secret]
        .iter()
        .map(|r| hex::encode(r.secret.as_ref().unwrap().as_bytes()))
        .collect();
    let mut damaged = Vec::new();
    for err in all.iter().filter_map(|r| r.as_ref().err()) {
        match err {
            StoreError::Corrupt { swap, .. } => damaged.push(swap.clone()),
            other => panic!("not a corrupt row error: {other}"),
        }
        for s in &secrets {
            assert!(!err.to_string().contains(s), "{err}");
        }
    }
    damaged.sort();
    let mut expected: Vec<String> = [&bad_state, &bad_record, &bad_secret]
        .iter()
        .map(|r| hex::encode(r.id().0))
        .collect();
    expected.sort();
    assert_eq!(damaged, expected);
    for r in [&bad_state, &bad_record, &bad_secret] {
        assert!(matches!(
            store.load(&r.id()).await,
            Err(StoreError::Corrupt { .. })
        ));
    }
    assert!(matches!(
        store.history(&bad_state.id()).await,
        Err(StoreError::Corrupt { .. })
    ));
    // The good swap still loads and takes new states; the listing still has every swap.
    let seq = store.load_entry(&good.id()).await.unwrap().1.seq;
    store
        .append_state(&good.id(), seq, &SwapState::initial(Role::Initiator))
        .await
        .unwrap();
    assert_eq!(store.list().await.unwrap().len(), 4);
}
