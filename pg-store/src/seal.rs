//! The store's key on PostgreSQL (see [`swap_core::store::seal`]): the key check in
//! `store_meta`, and sealing a database's clear secrets in place the first time a worker
//! connects with a key.

use swap_core::store::seal::{self, KeyState};
use swap_core::store::StoreKey;
use swap_core::StoreError;
use tokio_postgres::GenericClient;
use zeroize::Zeroizing;

use crate::db;

/// The advisory lock key that serializes sealing ("xswap_sl").
const LOCK_KEY: i64 = 0x7873_7761_705f_736c;

async fn key_check(client: &impl GenericClient) -> Result<Option<Vec<u8>>, StoreError> {
    client
        .query_opt("SELECT value FROM store_meta WHERE name = 'key_check'", &[])
        .await
        .map_err(db)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db)
}

/// Checks `key` against the database's key check, and with a key for a database that has
/// none yet seals every clear secret and writes the key check, in one transaction under an
/// advisory lock (of several workers connecting at once, one seals, the others find it done).
/// Old row versions holding the clear secrets stay on disk until PostgreSQL vacuums them
/// (`VACUUM FULL swaps, swap_states` rewrites both tables at once).
pub(crate) async fn at_connect(
    client: &mut tokio_postgres::Client,
    key: Option<&StoreKey>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(db)?;
    let state = seal::open_store(key, key_check(&tx).await?.as_deref())?;
    let (KeyState::ToSeal, Some(key)) = (state, key) else {
        return tx.commit().await.map_err(db);
    };
    let mut sealed = 0usize;
    for row in tx
        .query(
            "SELECT id, secret FROM swaps WHERE secret IS NOT NULL FOR UPDATE",
            &[],
        )
        .await
        .map_err(db)?
    {
        let id: Vec<u8> = row.try_get(0).map_err(db)?;
        let secret = Zeroizing::new(row.try_get::<_, Vec<u8>>(1).map_err(db)?);
        if let Some(new) = seal::reseal_secret(key, &id, &secret)? {
            tx.execute("UPDATE swaps SET secret = $2 WHERE id = $1", &[&id, &new])
                .await
                .map_err(db)?;
            sealed += 1;
        }
    }
    for row in tx
        .query(
            "SELECT swap_id, seq, state_json FROM swap_states
             WHERE state_json LIKE '%\"preimage\"%' FOR UPDATE",
            &[],
        )
        .await
        .map_err(db)?
    {
        let id: Vec<u8> = row.try_get(0).map_err(db)?;
        let seq: i64 = row.try_get(1).map_err(db)?;
        let json: &str = row.try_get(2).map_err(db)?;
        if let Some(new) = seal::reseal_state(key, &id, json)? {
            tx.execute(
                "UPDATE swap_states SET state_json = $3 WHERE swap_id = $1 AND seq = $2",
                &[&id, &seq, &new],
            )
            .await
            .map_err(db)?;
            sealed += 1;
        }
    }
    tx.execute(
        "INSERT INTO store_meta(name, value) VALUES ('key_check', $1)",
        &[&key.key_check()?],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    tracing::info!(secrets = sealed, "sealed the store's secrets with its key");
    Ok(())
}

/// A write of secrets by a store without a key, to a database sealed meanwhile (by a worker
/// connected with one): refused, never written in clear.
pub(crate) async fn refuse_if_sealed(
    client: &impl GenericClient,
    key: Option<&StoreKey>,
) -> Result<(), StoreError> {
    match key {
        None if key_check(client).await?.is_some() => Err(StoreError::KeyRequired),
        _ => Ok(()),
    }
}
