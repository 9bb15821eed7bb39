//! Versioned migrations: from an empty database, from an older schema with its data, workers
//! starting together, and a newer schema refused untouched.

use futures::future::join_all;
use pg_store::testkit::TestCluster;
use pg_store::{migrate_to, PgStore, MIGRATIONS};
use swap_core::store::conformance::sample_record;
use swap_core::store::rows::new_swap_row;
use swap_core::store::{Outbox, SendKey, SignedTx};
use swap_core::{Role, StoreError, SwapRecord, SwapState, SwapStore, TxKind, TxRef};

fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Writes `rec` with its first state, then `later` states, as a build before secrets were
/// sealed did (schema 1 to 3): its secrets in clear.
pub(crate) async fn insert_as_before(
    c: &tokio_postgres::Client,
    rec: &SwapRecord,
    later: &[SwapState],
) {
    let row = new_swap_row(None, rec, &SwapState::initial(rec.role)).unwrap();
    c.execute(
        "INSERT INTO swaps(id, role, record_json, secret, created_at, hashlock, lock_on,
                           lock_amount, lock_ahead)
         VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8)",
        &[
            &row.id,
            &row.role,
            &row.record_json,
            &row.secret,
            &row.hashlock,
            &row.lock_on,
            &row.lock_amount,
            &row.lock_ahead,
        ],
    )
    .await
    .unwrap();
    let states = std::iter::once(row.state_json.clone())
        .chain(later.iter().map(|s| serde_json::to_string(s).unwrap()));
    for (seq, json) in (1i64..).zip(states) {
        c.execute(
            "INSERT INTO swap_states(swap_id, seq, entered_at, state_json) VALUES ($1, $2, 0, $3)",
            &[&row.id, &seq, &json],
        )
        .await
        .unwrap();
    }
}

async fn versions(c: &tokio_postgres::Client) -> Vec<i32> {
    c.query(
        "SELECT version FROM schema_migrations ORDER BY version",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_from_empty_from_older_and_newer_refused() {
    let pg = TestCluster::shared();
    assert!(latest() >= 2, "the older-schema test needs two migrations");

    // From an empty database, by several workers starting together: each migration once.
    let url = pg.create_database("fresh").await;
    let stores = join_all((0..4).map(|_| PgStore::connect(&url))).await;
    for s in &stores {
        assert_eq!(
            s.as_ref().unwrap().schema_version().await.unwrap(),
            latest()
        );
    }
    let c = pg.connect("fresh").await;
    assert_eq!(
        versions(&c).await,
        (1..=latest() as i32).collect::<Vec<_>>()
    );
    let stamped: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM schema_migrations WHERE applied_at <= now()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stamped, latest());

    // From an older schema: what a build with migration 1 only left, with a swap in it.
    let url = pg.create_database("older").await;
    let mut c = pg.connect("older").await;
    assert_eq!(migrate_to(&mut c, 1).await.unwrap(), 1);
    assert_eq!(versions(&c).await, vec![1]);
    let rec = sample_record(7, Role::Initiator);
    insert_as_before(&c, &rec, &[]).await;
    let outbox_before: bool = c
        .query_one("SELECT to_regclass('outbox') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!outbox_before);
    let store = PgStore::connect(&url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), latest());
    assert_eq!(
        versions(&c).await,
        (1..=latest() as i32).collect::<Vec<_>>()
    );
    // The swap is kept, secret included, and takes new states; the new tables work.
    let (loaded, entry) = store.load_entry(&rec.id()).await.unwrap();
    assert_eq!(loaded, rec);
    assert_eq!(entry.seq, 1);
    assert!(store.hashlock_in_use(&rec.terms.hashlock).await.unwrap());
    assert_eq!(
        store
            .to_lock(rec.terms.x.params.chain, &rec.terms.x.asset)
            .await
            .unwrap(),
        rec.terms.x.amount.base_units()
    );
    assert_eq!(
        store
            .append_state(&rec.id(), 1, &SwapState::initial(Role::Initiator))
            .await
            .unwrap(),
        2
    );
    let key = SendKey {
        swap: rec.id(),
        rail: rec.terms.x.params.rail(),
        kind: TxKind::Lock,
    };
    let tx = SignedTx {
        txref: TxRef("ab".repeat(32)),
        raw: vec![1],
    };
    store.record_signed(&[key], &tx).await.unwrap();
    assert_eq!(store.signed(&key).await.unwrap(), Some(tx));

    // A database a newer build migrated further is refused, and left as it is.
    c.execute(
        "INSERT INTO schema_migrations(version) VALUES ($1)",
        &[&(latest() as i32 + 1)],
    )
    .await
    .unwrap();
    match PgStore::connect(&url).await {
        Err(StoreError::UnsupportedVersion { found, supported }) => {
            assert_eq!((found, supported), (latest() + 1, latest()));
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
    assert_eq!(
        versions(&c).await,
        (1..=latest() as i32 + 1).collect::<Vec<_>>()
    );
    assert_eq!(store.list().await.unwrap(), vec![rec.id()]);
}
