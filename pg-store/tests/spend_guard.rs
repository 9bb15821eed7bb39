//! The outbox's spend guard on PostgreSQL: a session advisory lock that another worker on the
//! database cannot take while it is held, released when the guard is dropped, and never left
//! behind on a pooled connection by a caller that gave up while waiting.

use std::time::{Duration, Instant};

use pg_store::testkit::TestCluster;
use pg_store::PgStore;
use swap_core::store::Outbox;

const TRY: &str = "SELECT pg_try_advisory_lock(hashtext('xswap-spend-guard:' || $1))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtext('xswap-spend-guard:' || $1))";

/// Another worker's session on the database.
async fn session(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn try_take(client: &tokio_postgres::Client, wallet: &str) -> bool {
    client.query_one(TRY, &[&wallet]).await.unwrap().get(0)
}

/// Waits (5 s at most) until the other session can take the guard's lock, and releases it.
async fn free_soon(client: &tokio_postgres::Client, wallet: &str) {
    let started = Instant::now();
    while !try_take(client, wallet).await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the lock of {wallet} was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: bool = client.query_one(UNLOCK, &[&wallet]).await.unwrap().get(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spend_guard_excludes_other_workers_until_dropped() {
    let pg = TestCluster::shared();
    let url = pg.create_database("spend_guard").await;
    let store = PgStore::connect(&url).await.unwrap();
    let other = session(&url).await;

    let guard = store.spend_guard("wallet a").await.unwrap();
    assert!(!try_take(&other, "wallet a").await, "held by the guard");
    // Another wallet's guard is another lock.
    assert!(try_take(&other, "wallet b").await);
    let _: bool = other
        .query_one(UNLOCK, &[&"wallet b"])
        .await
        .unwrap()
        .get(0);
    drop(guard);
    free_soon(&other, "wallet a").await;

    // A caller that gives up while the other worker holds the lock: once that worker lets go,
    // the lock is not kept by the connection the caller waited on (back in the pool).
    assert!(try_take(&other, "wallet a").await);
    let waited =
        tokio::time::timeout(Duration::from_millis(300), store.spend_guard("wallet a")).await;
    assert!(waited.is_err(), "it waited for the other worker");
    let _: bool = other
        .query_one(UNLOCK, &[&"wallet a"])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    free_soon(&other, "wallet a").await;
    // And the store's next guard is taken at once.
    let next = tokio::time::timeout(Duration::from_secs(5), store.spend_guard("wallet a"))
        .await
        .expect("the guard is free")
        .unwrap();
    assert!(!try_take(&other, "wallet a").await);
    drop(next);
    free_soon(&other, "wallet a").await;
}
