//! Leases between two workers (two stores on one database): one's lease expires, the other
//! takes the swap over, and the stale worker's writes are refused.

use std::time::Duration;

use futures::future::join_all;
use pg_store::testkit::TestCluster;
use pg_store::PgStore;
use swap_core::store::conformance::sample_record;
use swap_core::{initiator, Role, StoreError, SwapId, SwapState, SwapStore};

fn locking() -> SwapState {
    SwapState::Initiator(initiator::State::Locking)
}

fn fenced(r: &Result<impl std::fmt::Debug, StoreError>, stale: u64) -> bool {
    matches!(r, Err(StoreError::Fenced { token, .. }) if *token == stale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_workers_swap_is_taken_over_and_its_writes_are_fenced() {
    let pg = TestCluster::shared();
    let url = pg.create_database("leases").await;
    let (a, b) = (
        PgStore::connect(&url).await.unwrap(),
        PgStore::connect(&url).await.unwrap(),
    );
    let rec = sample_record(1, Role::Initiator);
    let id = rec.id();
    a.create(&rec, &SwapState::initial(Role::Initiator))
        .await
        .unwrap();
    let ttl = Duration::from_millis(400);
    assert_eq!(a.unleased(10).await.unwrap(), vec![id]);

    // A takes it; B cannot while A's lease runs; A renewing keeps its token.
    let t1 = a
        .lease(&id, "a", ttl)
        .await
        .unwrap()
        .expect("a free swap is leased");
    assert_eq!(b.lease(&id, "b", ttl).await.unwrap(), None);
    assert_eq!(a.lease(&id, "a", ttl).await.unwrap(), Some(t1));
    assert!(b.unleased(10).await.unwrap().is_empty());
    a.heartbeat(&id, t1, ttl).await.unwrap();
    assert_eq!(
        a.append_state_fenced(&id, 1, &locking(), t1).await.unwrap(),
        2
    );
    // Fencing does not replace the sequence check.
    assert!(matches!(
        a.append_state_fenced(&id, 1, &locking(), t1).await,
        Err(StoreError::Conflict { .. })
    ));

    // A stalls past its lease; B takes the swap over with a greater token.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(b.unleased(10).await.unwrap(), vec![id]);
    let t2 = b
        .lease(&id, "b", ttl)
        .await
        .unwrap()
        .expect("an expired lease is taken");
    assert!(t2 > t1, "{t2} > {t1}");

    // A wakes up: its write, heartbeat and release under the old token are refused, and
    // change nothing.
    let stale = a.append_state_fenced(&id, 2, &locking(), t1).await;
    assert!(fenced(&stale, t1), "{stale:?}");
    assert_eq!(a.history(&id).await.unwrap().len(), 2);
    let beat = a.heartbeat(&id, t1, ttl).await;
    assert!(fenced(&beat, t1), "{beat:?}");
    assert!(!a.release(&id, t1).await.unwrap());
    assert_eq!(
        a.lease(&id, "a", ttl).await.unwrap(),
        None,
        "B still holds it"
    );

    // B writes under its own token.
    assert_eq!(
        b.append_state_fenced(&id, 2, &locking(), t2).await.unwrap(),
        3
    );
    b.heartbeat(&id, t2, ttl).await.unwrap();
    // B gives it back: A leases it at once with a newer token; B's token is fenced now.
    assert!(b.release(&id, t2).await.unwrap());
    let t3 = a
        .lease(&id, "a", ttl)
        .await
        .unwrap()
        .expect("a released swap is free");
    assert!(t3 > t2);
    let late = b.append_state_fenced(&id, 3, &locking(), t2).await;
    assert!(fenced(&late, t2), "{late:?}");
    assert_eq!(
        a.append_state_fenced(&id, 3, &locking(), t3).await.unwrap(),
        4
    );
    // A write under no lease at all is fenced too.
    let other = sample_record(2, Role::Initiator);
    a.create(&other, &SwapState::initial(Role::Initiator))
        .await
        .unwrap();
    let unleased = a.append_state_fenced(&other.id(), 1, &locking(), t3).await;
    assert!(fenced(&unleased, t3), "{unleased:?}");
    assert!(matches!(
        a.lease(&SwapId([0xee; 16]), "a", ttl).await,
        Err(StoreError::UnknownSwap(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_workers_leasing_one_free_swap_together_one_gets_it() {
    let pg = TestCluster::shared();
    let url = pg.create_database("lease_race").await;
    let workers = join_all((0..4).map(|_| PgStore::connect(&url))).await;
    let workers: Vec<PgStore> = workers.into_iter().map(|w| w.unwrap()).collect();
    for n in 1..=5u8 {
        let rec = sample_record(n, Role::Initiator);
        workers[0]
            .create(&rec, &SwapState::initial(Role::Initiator))
            .await
            .unwrap();
        let id = rec.id();
        let names: Vec<String> = (0..workers.len()).map(|i| format!("w{i}")).collect();
        let got = join_all(
            workers
                .iter()
                .zip(&names)
                .map(|(w, name)| w.lease(&id, name, Duration::from_secs(30))),
        )
        .await;
        let tokens: Vec<u64> = got.iter().filter_map(|r| *r.as_ref().unwrap()).collect();
        assert_eq!(tokens.len(), 1, "{got:?}");
        // And a write racing the holder under a guessed older token is fenced.
        let r = workers[1]
            .append_state_fenced(&rec.id(), 1, &locking(), tokens[0] - 1)
            .await;
        assert!(fenced(&r, tokens[0] - 1), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_heartbeat_renews_the_leases_still_held_and_leaves_out_the_lost_ones() {
    let pg = TestCluster::shared();
    let url = pg.create_database("heartbeat_many").await;
    let (a, b) = (
        PgStore::connect(&url).await.unwrap(),
        PgStore::connect(&url).await.unwrap(),
    );
    let ttl = Duration::from_millis(600);
    let mut held = Vec::new();
    for n in 1..=3u8 {
        let rec = sample_record(n, Role::Initiator);
        a.create(&rec, &SwapState::initial(Role::Initiator))
            .await
            .unwrap();
        let t = a.lease(&rec.id(), "a", ttl).await.unwrap().unwrap();
        held.push((rec.id(), t));
    }
    assert!(a.heartbeat_many(&[], ttl).await.unwrap().is_empty());
    // Renewed together, past the time to live: still A's.
    for _ in 0..3 {
        tokio::time::sleep(ttl / 2).await;
        let mut kept = a.heartbeat_many(&held, ttl).await.unwrap();
        kept.sort();
        let mut want: Vec<SwapId> = held.iter().map(|(id, _)| *id).collect();
        want.sort();
        assert_eq!(kept, want);
        assert!(b.unleased(10).await.unwrap().is_empty());
    }
    // One is released (taken by B), one heartbeat names a stale token: both left out, and
    // neither B's lease nor the stale token's expiry moved.
    let (gone, t_gone) = held[0];
    assert!(a.release(&gone, t_gone).await.unwrap());
    let t_b = b.lease(&gone, "b", ttl).await.unwrap().unwrap();
    let (kept_id, t_kept) = held[1];
    let stale = vec![
        (gone, t_gone),
        (kept_id, t_kept),
        (held[2].0, held[2].1 + 1000),
    ];
    assert_eq!(a.heartbeat_many(&stale, ttl).await.unwrap(), vec![kept_id]);
    let beat = b.heartbeat(&gone, t_b, ttl).await;
    assert!(beat.is_ok(), "{beat:?}");
    // Token beyond what the database can hold: simply not held.
    assert!(a
        .heartbeat_many(&[(kept_id, u64::MAX)], ttl)
        .await
        .unwrap()
        .is_empty());
    // The held ones renewed again halfway, the third not since the stale heartbeat.
    for _ in 0..2 {
        tokio::time::sleep(ttl * 3 / 4).await;
        assert_eq!(
            a.heartbeat_many(&[(kept_id, t_kept)], ttl).await.unwrap(),
            vec![kept_id]
        );
        b.heartbeat(&gone, t_b, ttl).await.unwrap();
    }
    assert_eq!(
        b.unleased(10).await.unwrap(),
        vec![held[2].0],
        "the third lease was not renewed by the stale heartbeat: it expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_leasing_overlapping_sets_together_split_them() {
    let pg = TestCluster::shared();
    let url = pg.create_database("lease_many").await;
    let workers = join_all((0..3).map(|_| PgStore::connect(&url))).await;
    let workers: Vec<PgStore> = workers.into_iter().map(|w| w.unwrap()).collect();
    let mut ids = Vec::new();
    for n in 1..=40u8 {
        let rec = sample_record(n, Role::Initiator);
        workers[0]
            .create(&rec, &SwapState::initial(Role::Initiator))
            .await
            .unwrap();
        ids.push(rec.id());
    }
    let ttl = Duration::from_secs(30);
    // Each asks for all of them (in its own order, one id twice, one unknown id).
    let asks: Vec<Vec<SwapId>> = (0..workers.len())
        .map(|w| {
            let mut a = ids.clone();
            a.rotate_left(w * 13);
            a.push(ids[w]);
            a.push(SwapId([0xee; 16]));
            a
        })
        .collect();
    let names: Vec<String> = (0..workers.len()).map(|i| format!("w{i}")).collect();
    let got = join_all(
        workers
            .iter()
            .zip(&asks)
            .zip(&names)
            .map(|((w, ask), name)| w.lease_many(ask, name, ttl)),
    )
    .await;
    let got: Vec<Vec<(SwapId, u64)>> = got.into_iter().map(|r| r.unwrap()).collect();
    let mut all: Vec<SwapId> = got.iter().flatten().map(|(id, _)| *id).collect();
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want, "every swap leased once, the unknown one never");
    // Renewing its own keeps each token; another worker's swaps stay out.
    let mine = &got[0];
    let again = workers[0].lease_many(&ids, "w0", ttl).await.unwrap();
    let mut mine_sorted = mine.clone();
    mine_sorted.sort();
    let mut again_sorted = again.clone();
    again_sorted.sort();
    assert_eq!(again_sorted, mine_sorted);
    assert!(workers[0]
        .lease_many(&[], "w0", ttl)
        .await
        .unwrap()
        .is_empty());
    for (id, token) in mine {
        workers[0]
            .append_state_fenced(id, 1, &locking(), *token)
            .await
            .unwrap();
    }
}
