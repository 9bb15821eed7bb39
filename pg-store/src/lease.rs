//! Leases: several workers on one database, each unfinished swap worked on by one of them.
//!
//! A worker takes a swap's lease ([`PgStore::lease`]) for a time to live, keeps it with
//! [`PgStore::heartbeat`] well within that time, and gives it back with [`PgStore::release`].
//! A lease is taken only when the swap has none, or its lease has expired (by the database's
//! clock, so the workers' clocks do not matter): a worker that died or stalled loses its swaps
//! to another within the time to live.
//!
//! Each lease taken gets a fencing token, greater than every token handed out before. A
//! worker writes the swap's states with [`PgStore::append_state_fenced`] under its token: once
//! another worker took the swap over, the stalled worker's writes are refused with
//! [`StoreError::Fenced`], so no swap is acted on by two workers at once even when the first
//! one wakes up after its lease expired. (A lease that expired but was not taken over keeps
//! its token: its holder's writes are still the only ones.)
//!
//! Worker ids name a process for logs and for [`PgStore::lease`]'s renewal; a worker that
//! restarts should take a new one (a renewal keeps the token).

use std::time::Duration;

use swap_core::store::rows::{self, corrupt, read_id};
use swap_core::{StoreError, SwapId, SwapState};
use tokio_postgres::error::SqlState;

use crate::{append_in, db, PgStore};

/// A time to live in milliseconds, as the SQL below takes it.
fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn token_of(id: &SwapId, t: i64) -> Result<u64, StoreError> {
    u64::try_from(t).map_err(|_| corrupt(id, "negative lease token"))
}

/// Checks, inside the transaction `tx`, that `token` is the swap's current lease, and keeps
/// the lease from being taken over until `tx` ends (a takeover waits, then sees this write).
pub(crate) async fn check_fence(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &SwapId,
    token: u64,
) -> Result<(), StoreError> {
    let current = tx
        .query_opt(
            "SELECT token FROM swap_leases WHERE swap_id = $1 FOR SHARE",
            &[&&id.0[..]],
        )
        .await
        .map_err(db)?;
    let current: Option<i64> = current
        .map(|r| r.try_get(0).map_err(|e| corrupt(id, e)))
        .transpose()?;
    match current {
        Some(t) if u64::try_from(t).ok() == Some(token) => Ok(()),
        _ => Err(StoreError::Fenced { swap: *id, token }),
    }
}

/// The end of a lease's insert: a swap with a lease is taken when the lease expired (a new
/// token), renewed when `worker` holds it (the same token), left alone otherwise.
macro_rules! take_or_renew {
    () => {
        "ON CONFLICT (swap_id) DO UPDATE SET
             token = CASE WHEN swap_leases.expires_at > clock_timestamp()
                          THEN swap_leases.token ELSE EXCLUDED.token END,
             worker = EXCLUDED.worker,
             expires_at = EXCLUDED.expires_at
         WHERE swap_leases.expires_at <= clock_timestamp()
            OR swap_leases.worker = EXCLUDED.worker
         RETURNING swap_id, token"
    };
}

impl PgStore {
    /// Takes the swap's lease for `worker` for `ttl`, when the swap has no lease or its lease
    /// expired; answers the lease's fencing token, or `None` when another worker holds it.
    /// When `worker` holds it already (not expired), the lease is renewed and keeps its token.
    pub async fn lease(
        &self,
        id: &SwapId,
        worker: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                concat!(
                    "INSERT INTO swap_leases(swap_id, worker, token, expires_at)
                     VALUES ($1, $2, nextval('swap_lease_tokens'),
                             clock_timestamp() + $3::BIGINT * INTERVAL '1 millisecond') ",
                    take_or_renew!()
                ),
                &[&&id.0[..], &worker, &ttl_ms(ttl)],
            )
            .await;
        match row {
            Ok(Some(r)) => token_of(id, r.try_get(1).map_err(db)?).map(Some),
            Ok(None) => Ok(None),
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::UnknownSwap(*id))
            }
            Err(e) => Err(db(e)),
        }
    }

    /// [`PgStore::lease`] for many swaps in one statement: answers the swaps leased (or
    /// renewed) for `worker`, each with its token; those another worker holds, and unknown
    /// ids, are left out. Workers leasing overlapping sets together each get a part, never
    /// the same swap.
    pub async fn lease_many(
        &self,
        ids: &[SwapId],
        worker: &str,
        ttl: Duration,
    ) -> Result<Vec<(SwapId, u64)>, StoreError> {
        // One order for every worker (rows are locked in it: no deadlock), each id once (a
        // statement may not update a row twice).
        let mut ids: Vec<&[u8]> = ids.iter().map(|id| &id.0[..]).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = client
            .query(
                concat!(
                    "INSERT INTO swap_leases(swap_id, worker, token, expires_at)
                     SELECT s.id, $2, nextval('swap_lease_tokens'),
                            clock_timestamp() + $3::BIGINT * INTERVAL '1 millisecond'
                     FROM unnest($1::BYTEA[]) WITH ORDINALITY AS u(id, n)
                     JOIN swaps s ON s.id = u.id ORDER BY u.n ",
                    take_or_renew!()
                ),
                &[&ids, &worker, &ttl_ms(ttl)],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let id = read_id(r.try_get(0).map_err(|e| corrupt("?", e))?)?;
                Ok((id, token_of(&id, r.try_get(1).map_err(db)?)?))
            })
            .collect()
    }

    /// Extends the lease held under `token` to `ttl` from now. [`StoreError::Fenced`] when the
    /// swap's lease is no longer `token` (taken over, or released).
    pub async fn heartbeat(
        &self,
        id: &SwapId,
        token: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let token_sql =
            i64::try_from(token).map_err(|_| StoreError::Fenced { swap: *id, token })?;
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE swap_leases SET expires_at = clock_timestamp() + $3::BIGINT * INTERVAL '1 millisecond'
                 WHERE swap_id = $1 AND token = $2",
                &[&&id.0[..], &token_sql, &ttl_ms(ttl)],
            )
            .await
            .map_err(db)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Fenced { swap: *id, token })
        }
    }

    /// [`PgStore::heartbeat`] for many leases in one statement: extends each `(swap, token)`
    /// still held under its token to `ttl` from now, and answers those swaps; a swap left out
    /// of the answer was taken over or released (its holder must stop working on it).
    pub async fn heartbeat_many(
        &self,
        held: &[(SwapId, u64)],
        ttl: Duration,
    ) -> Result<Vec<SwapId>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        // A token beyond i64 was never handed out: it cannot be held.
        let (ids, tokens): (Vec<&[u8]>, Vec<i64>) = held
            .iter()
            .filter_map(|(id, t)| Some((&id.0[..], i64::try_from(*t).ok()?)))
            .unzip();
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE swap_leases l
                 SET expires_at = clock_timestamp() + $3::BIGINT * INTERVAL '1 millisecond'
                 FROM unnest($1::BYTEA[], $2::BIGINT[]) AS h(swap_id, token)
                 WHERE l.swap_id = h.swap_id AND l.token = h.token
                 RETURNING l.swap_id",
                &[&ids, &tokens, &ttl_ms(ttl)],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| read_id(r.try_get(0).map_err(|e| corrupt("?", e))?))
            .collect()
    }

    /// Gives back the lease held under `token` (the swap is free for any worker at once);
    /// answers whether it was still held under that token.
    pub async fn release(&self, id: &SwapId, token: u64) -> Result<bool, StoreError> {
        let Ok(token) = i64::try_from(token) else {
            return Ok(false);
        };
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM swap_leases WHERE swap_id = $1 AND token = $2",
                &[&&id.0[..], &token],
            )
            .await
            .map_err(db)?;
        Ok(n == 1)
    }

    /// [`SwapStore::append_state`](swap_core::SwapStore::append_state) under the lease
    /// `token`: in one transaction, refused with [`StoreError::Fenced`] unless `token` is the
    /// swap's current lease, then with [`StoreError::Conflict`] unless `expected` is its
    /// latest state.
    pub async fn append_state_fenced(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
        token: u64,
    ) -> Result<u64, StoreError> {
        let json = rows::state_json(self.key(), id, state)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        crate::seal::refuse_if_sealed(&*tx, self.key()).await?;
        check_fence(&tx, id, token).await?;
        let seq = append_in(&tx, id, expected, state, &json).await?;
        tx.commit().await.map_err(db)?;
        Ok(seq)
    }

    /// Up to `limit` unfinished swaps that no worker holds (no lease, or an expired one),
    /// oldest first: what a worker looks for to lease.
    pub async fn unleased(&self, limit: u32) -> Result<Vec<SwapId>, StoreError> {
        let client = self.client().await?;
        let found = client
            .query(
                "SELECT s.id FROM swaps s LEFT JOIN swap_leases l ON l.swap_id = s.id
                 WHERE NOT s.finished AND (l.swap_id IS NULL OR l.expires_at <= clock_timestamp())
                 ORDER BY s.created_at, s.n LIMIT $1",
                &[&i64::from(limit)],
            )
            .await
            .map_err(db)?;
        found
            .iter()
            .map(|r| read_id(r.try_get(0).map_err(|e| corrupt("?", e))?))
            .collect()
    }
}
