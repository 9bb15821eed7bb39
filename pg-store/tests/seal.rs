//! Secrets at rest on PostgreSQL (`swap_core::store::seal`): sealed in the rows, refused
//! without the key or with another, sealed in place when an older database is connected with
//! a key, bound to their swap.

use pg_store::testkit::TestCluster;
use pg_store::{migrate_to, PgOptions, PgStore, MIGRATIONS};
use swap_core::store::conformance::{
    in_clear, moved_secrets_are_refused, run, run_outbox, sample_record, secret_swaps,
    write_secrets,
};
use swap_core::store::StoreKey;
use swap_core::{Role, StoreError, SwapId, SwapState, SwapStore};

use crate::migrations::insert_as_before;

fn key(n: u8) -> StoreKey {
    StoreKey::from_bytes(&[n; 32])
}

async fn connect(url: &str, key: Option<StoreKey>) -> Result<PgStore, StoreError> {
    PgStore::connect_with(
        url,
        PgOptions {
            key,
            ..Default::default()
        },
    )
    .await
}

/// Every swap row's and state row's columns, as the database returns them.
async fn raw_rows(c: &tokio_postgres::Client) -> Vec<u8> {
    let mut raw = Vec::new();
    for r in c
        .query(
            "SELECT convert_to(row_to_json(s)::text, 'UTF8'), secret FROM swaps s",
            &[],
        )
        .await
        .unwrap()
    {
        raw.extend(r.get::<_, Vec<u8>>(0));
        raw.extend(r.get::<_, Option<Vec<u8>>>(1).unwrap_or_default());
    }
    for r in c
        .query("SELECT state_json FROM swap_states", &[])
        .await
        .unwrap()
    {
        raw.extend(r.get::<_, String>(0).into_bytes());
    }
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_with_a_key_passes_conformance_and_keeps_no_preimage_in_clear() {
    let pg = TestCluster::shared();
    let url = pg.create_database("sealed").await;
    let store = connect(&url, Some(key(1))).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        MIGRATIONS.len() as i64
    );
    run(&store).await;
    let (a, b) = (
        connect(&url, Some(key(1))).await.unwrap(),
        connect(&url, Some(key(1))).await.unwrap(),
    );
    run_outbox(&a, &b).await;
    let secrets = write_secrets(&store, 100).await;
    let raw = raw_rows(&pg.connect("sealed").await).await;
    assert!(secrets.iter().all(|s| !in_clear(&raw, s)));
    // Without a key they are there (what this test would find if sealing did nothing).
    let url = pg.create_database("clear").await;
    let secrets = write_secrets(&connect(&url, None).await.unwrap(), 100).await;
    let raw = raw_rows(&pg.connect("clear").await).await;
    assert!(secrets.iter().all(|s| in_clear(&raw, s)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_key_or_with_another_the_database_is_refused_untouched() {
    let pg = TestCluster::shared();
    let url = pg.create_database("keys").await;
    let secrets = write_secrets(&connect(&url, Some(key(1))).await.unwrap(), 1).await;
    let c = pg.connect("keys").await;
    let before = raw_rows(&c).await;
    assert!(matches!(
        connect(&url, None).await,
        Err(StoreError::KeyRequired)
    ));
    assert!(matches!(
        connect(&url, Some(key(2))).await,
        Err(StoreError::WrongKey)
    ));
    assert_eq!(raw_rows(&c).await, before, "nothing was written");
    let store = connect(&url, Some(key(1))).await.unwrap();
    let (record, _) = store.load(&SwapId([1; 16])).await.unwrap();
    assert_eq!(record.secret.as_ref(), Some(&secrets[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_clear_secrets_is_sealed_in_place_when_connected_with_a_key() {
    let pg = TestCluster::shared();
    let url = pg.create_database("unsealed").await;
    let mut c = pg.connect("unsealed").await;
    // What the build before sealing wrote: schema 3, clear secrets in both places.
    assert_eq!(migrate_to(&mut c, 3).await.unwrap(), 3);
    let swaps = secret_swaps(1);
    let (a, b, claiming) = (&swaps.initiator, &swaps.responder, &swaps.states[1]);
    insert_as_before(&c, a, &[]).await;
    insert_as_before(&c, b, std::slice::from_ref(claiming)).await;
    let raw = raw_rows(&c).await;
    assert!(swaps.secrets.iter().all(|s| in_clear(&raw, s)));
    // A worker without a key (this build) reads it as before and migrates the schema.
    let old = connect(&url, None).await.unwrap();
    assert_eq!(&old.load(&a.id()).await.unwrap().0, a);

    // Several workers connecting with the key at once: one seals, the others find it done.
    let workers = futures::future::join_all((0..3).map(|_| connect(&url, Some(key(1))))).await;
    let workers: Vec<PgStore> = workers.into_iter().map(|w| w.unwrap()).collect();
    let store = &workers[0];
    assert_eq!(
        store.schema_version().await.unwrap(),
        MIGRATIONS.len() as i64
    );
    assert_eq!(&store.load(&a.id()).await.unwrap().0, a);
    assert_eq!(&store.load(&b.id()).await.unwrap().1, claiming);
    assert_eq!(store.history(&b.id()).await.unwrap().len(), 2);
    let raw = raw_rows(&c).await;
    assert!(swaps.secrets.iter().all(|s| !in_clear(&raw, s)));
    // The worker without a key writes no secret in clear now, and reads none.
    let more = sample_record(3, Role::Initiator);
    assert!(matches!(
        old.create(&more, &SwapState::initial(Role::Initiator))
            .await,
        Err(StoreError::KeyRequired)
    ));
    assert!(matches!(
        old.load(&a.id()).await,
        Err(StoreError::KeyRequired)
    ));
    assert!(matches!(
        connect(&url, None).await,
        Err(StoreError::KeyRequired)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_secret_copied_to_another_swap_is_refused() {
    let pg = TestCluster::shared();
    let url = pg.create_database("moved").await;
    let store = connect(&url, Some(key(1))).await.unwrap();
    write_secrets(&store, 1).await; // swap 1 (initiator), swap 2 (responder, learned)
    write_secrets(&store, 3).await; // swap 3 (initiator), swap 4 (responder, learned)
    let c = pg.connect("moved").await;
    c.execute(
        "UPDATE swaps SET secret = (SELECT secret FROM swaps WHERE id = $1) WHERE id = $2",
        &[&&[1u8; 16][..], &&[3u8; 16][..]],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE swap_states SET state_json = (SELECT state_json FROM swap_states
             WHERE swap_id = $1 ORDER BY seq DESC LIMIT 1)
         WHERE swap_id = $2 AND seq = (SELECT MAX(seq) FROM swap_states WHERE swap_id = $2)",
        &[&&[2u8; 16][..], &&[4u8; 16][..]],
    )
    .await
    .unwrap();
    moved_secrets_are_refused(&store).await;
}
