//! A database that is down is a typed, transient error, never a panic: the same calls work
//! once it is back.

use pg_store::testkit::TestCluster;
use pg_store::PgStore;
use swap_core::store::conformance::sample_record;
use swap_core::{Role, StoreError, SwapState, SwapStore};

fn is_backend<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Backend(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_is_a_backend_error_until_it_is_back() {
    let mut pg = TestCluster::start();
    let url = pg.create_database("down").await;
    let store = PgStore::connect(&url).await.unwrap();
    let a = sample_record(1, Role::Initiator);
    store
        .create(&a, &SwapState::initial(Role::Initiator))
        .await
        .unwrap();

    pg.stop();
    let b = sample_record(2, Role::Responder);
    let load = store.load(&a.id()).await;
    assert!(is_backend(&load), "{load:?}");
    let create = store.create(&b, &SwapState::initial(Role::Responder)).await;
    assert!(is_backend(&create), "{create:?}");
    let append = store
        .append_state(&a.id(), 1, &SwapState::initial(Role::Initiator))
        .await;
    assert!(is_backend(&append), "{append:?}");
    let unfinished = store.unfinished().await;
    assert!(is_backend(&unfinished), "{:?}", unfinished.map(|v| v.len()));
    let connect = PgStore::connect(&url).await;
    assert!(is_backend(&connect), "{:?}", connect.map(|_| ()));
    // The error names the failure, not a secret.
    if let Err(e) = &load {
        let secret = hex::encode(a.secret.as_ref().unwrap().as_bytes());
        assert!(!e.to_string().contains(&secret));
    }

    pg.start_again();
    // Nothing was written while it was down; everything works again on the same store.
    let (record, entry) = store.load_entry(&a.id()).await.unwrap();
    assert_eq!((record, entry.seq), (a.clone(), 1));
    store
        .create(&b, &SwapState::initial(Role::Responder))
        .await
        .unwrap();
    assert_eq!(
        store
            .append_state(&a.id(), 1, &SwapState::initial(Role::Initiator))
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.list().await.unwrap(), vec![b.id(), a.id()]);
}
