//! The store conformance suite on PostgreSQL, and the same races between two workers (two
//! stores, each with its own connections, on one database).

use futures::future::join_all;
use pg_store::testkit::TestCluster;
use pg_store::{PgStore, MIGRATIONS};
use swap_core::store::conformance::{run, run_outbox, sample_record};
use swap_core::store::{Outbox, SendKey, SignedTx};
use swap_core::{initiator, Role, StoreError, SwapState, SwapStore, TxKind, TxRef};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_conformance() {
    let pg = TestCluster::shared();
    let url = pg.create_database("conformance").await;
    let store = PgStore::connect(&url).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        MIGRATIONS.len() as i64
    );
    run(&store).await;
    // The outbox from two workers on one database.
    let (a, b) = (
        PgStore::connect(&url).await.unwrap(),
        PgStore::connect(&url).await.unwrap(),
    );
    run_outbox(&a, &b).await;
    // Another worker starting later finds everything, migrations not applied twice.
    let later = PgStore::connect(&url).await.unwrap();
    assert_eq!(later.list().await.unwrap(), store.list().await.unwrap());
    let (ids, n): (i64, i64) = {
        let c = pg.connect("conformance").await;
        let r = c
            .query_one(
                "SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((ids, n), (MIGRATIONS.len() as i64, MIGRATIONS.len() as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_workers_appending_after_one_state_exactly_one_wins() {
    let pg = TestCluster::shared();
    let url = pg.create_database("race").await;
    let workers: Vec<PgStore> = futures_join(4, || PgStore::connect(&url)).await;
    let rec = sample_record(9, Role::Initiator);
    workers[0]
        .create(&rec, &SwapState::initial(Role::Initiator))
        .await
        .unwrap();
    let id = rec.id();
    for round in 0..5u64 {
        let seq = workers[1].load_entry(&id).await.unwrap().1.seq;
        assert_eq!(seq, round + 1, "states are numbered 1, 2, ... per swap");
        let state = SwapState::Initiator(initiator::State::Locking);
        let results = join_all(workers.iter().map(|w| w.append_state(&id, seq, &state))).await;
        let won: Vec<u64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(won, vec![seq + 1], "{results:?}");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(r, StoreError::Conflict { expected, found, .. } if *expected == seq && *found == seq + 1),
                "{r}"
            );
        }
    }
    assert_eq!(workers[2].history(&id).await.unwrap().len(), 6);
    // A sequence number ahead of the latest is a conflict too, never a gap.
    assert!(matches!(
        workers[3]
            .append_state(&id, 100, &SwapState::Initiator(initiator::State::Locking))
            .await,
        Err(StoreError::Conflict { found: 6, .. })
    ));
    assert!(matches!(
        workers[3]
            .append_state(
                &id,
                u64::MAX,
                &SwapState::Initiator(initiator::State::Locking)
            )
            .await,
        Err(StoreError::Conflict { found: 6, .. })
    ));

    // Of workers recording their own transaction for one send, exactly one is recorded, and
    // every worker then reads that one.
    let rail = rec.terms.x.params.rail();
    let key = SendKey {
        swap: id,
        rail,
        kind: TxKind::Lock,
    };
    let other = SendKey {
        swap: rec.id(),
        rail,
        kind: TxKind::Refund,
    };
    let built: Vec<SignedTx> = (0..workers.len())
        .map(|i| SignedTx {
            txref: TxRef(format!("{i:02x}").repeat(32)),
            raw: vec![i as u8; 10],
        })
        .collect();
    // Half the workers name the sends in the other order: no deadlock, one winner.
    let results = join_all(workers.iter().zip(&built).enumerate().map(|(i, (w, tx))| {
        let keys = if i % 2 == 0 {
            [key, other]
        } else {
            [other, key]
        };
        async move { w.record_signed(&keys, tx).await }
    }))
    .await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, StoreError::AlreadyRecorded { .. }), "{r}");
    }
    for w in &workers {
        assert_eq!(
            w.signed(&key).await.unwrap(),
            Some(built[winners[0]].clone())
        );
        assert_eq!(
            w.signed(&other).await.unwrap(),
            Some(built[winners[0]].clone())
        );
    }
}

async fn futures_join<T, F: std::future::Future<Output = Result<T, StoreError>>>(
    n: usize,
    make: impl Fn() -> F,
) -> Vec<T> {
    join_all((0..n).map(|_| make()))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_workers_creating_swaps_with_one_hashlock_together_one_succeeds() {
    let pg = TestCluster::shared();
    let url = pg.create_database("hashlock").await;
    let workers: Vec<PgStore> = futures_join(4, || PgStore::connect(&url)).await;
    // Four swaps (four ids) with the same hashlock, as four takers might propose at once.
    let base = sample_record(5, Role::Responder);
    let records: Vec<_> = (0..workers.len())
        .map(|i| {
            let mut r = base.clone();
            r.terms.id = swap_core::SwapId([0x50 + i as u8; 16]);
            r
        })
        .collect();
    let initial = SwapState::initial(Role::Responder);
    let results = join_all(
        workers
            .iter()
            .zip(&records)
            .map(|(w, r)| w.create(r, &initial)),
    )
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, StoreError::Invalid { .. }), "{r}");
    }
    assert_eq!(workers[0].list().await.unwrap().len(), 1);
    assert!(workers[1]
        .hashlock_in_use(&base.terms.hashlock)
        .await
        .unwrap());
}
