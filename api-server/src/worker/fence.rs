//! The store a worker's driver writes through: every state written for a swap goes through the
//! fence of the lease this worker holds on it ([`PgStore::append_state_fenced`]), so a worker
//! that stalled past its lease and wakes up after another took the swap over cannot write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use pg_store::PgStore;
use swap_core::store::{SentTx, StateEntry, SwapRecord, SwapState, SwapStore};
use swap_core::{Asset, ChainId, Hashlock, StoreError, SwapId};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// The leases a worker holds: each swap's fencing token. A swap that is not here is not this
/// worker's to write.
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<SwapId, u64>>);

impl Tokens {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SwapId, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token this worker holds `id` under.
    pub fn get(&self, id: &SwapId) -> Option<u64> {
        self.map().get(id).copied()
    }

    /// Records that `id` is held under `token`.
    pub fn insert(&self, id: SwapId, token: u64) {
        self.map().insert(id, token);
    }

    /// Forgets `id` when it is still held under `token`; answers whether it was.
    pub fn remove(&self, id: &SwapId, token: u64) -> bool {
        let mut m = self.map();
        if m.get(id) == Some(&token) {
            m.remove(id);
            true
        } else {
            false
        }
    }

    /// Every held lease.
    pub fn all(&self) -> Vec<(SwapId, u64)> {
        self.map().iter().map(|(id, t)| (*id, *t)).collect()
    }

    /// How many leases are held.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A write refused by the fence: the swap and the stale token.
pub type Refused = (SwapId, u64);

/// A [`SwapStore`] whose state writes are fenced by the leases in [`Tokens`]; everything else
/// goes to `inner`. A write for a swap this worker does not hold is refused with
/// [`StoreError::Fenced`] (token 0) without asking the database; a write the database fences
/// is reported on `refused` so the worker stops running the swap at once.
pub struct FencedStore {
    pg: Arc<PgStore>,
    inner: Arc<dyn SwapStore>,
    tokens: Arc<Tokens>,
    refused: mpsc::UnboundedSender<Refused>,
    metrics: Arc<Metrics>,
}

impl FencedStore {
    /// Fences the state writes of `inner` (a view of `pg`) with `tokens`.
    pub fn new(
        pg: Arc<PgStore>,
        inner: Arc<dyn SwapStore>,
        tokens: Arc<Tokens>,
        refused: mpsc::UnboundedSender<Refused>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pg,
            inner,
            tokens,
            refused,
            metrics,
        }
    }
}

#[async_trait]
impl SwapStore for FencedStore {
    async fn create(&self, record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError> {
        self.inner.create(record, initial).await
    }

    async fn append_state(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<u64, StoreError> {
        let Some(token) = self.tokens.get(id) else {
            return Err(StoreError::Fenced {
                swap: *id,
                token: 0,
            });
        };
        let t = Instant::now();
        let out = self
            .pg
            .append_state_fenced(id, expected, state, token)
            .await;
        self.metrics
            .store_call("swap_store_append_state_fenced", t.elapsed(), out.is_ok());
        if let Err(StoreError::Fenced { .. }) = &out {
            self.metrics.lease_event("fenced_write");
            tracing::warn!(swap_id = %id, token, "write refused: the swap's lease is another worker's now");
            let _ = self.refused.send((*id, token));
        }
        out
    }

    async fn load_entry(&self, id: &SwapId) -> Result<(SwapRecord, StateEntry), StoreError> {
        self.inner.load_entry(id).await
    }

    async fn history(&self, id: &SwapId) -> Result<Vec<StateEntry>, StoreError> {
        self.inner.history(id).await
    }

    async fn unfinished(
        &self,
    ) -> Result<Vec<Result<(SwapRecord, SwapState), StoreError>>, StoreError> {
        self.inner.unfinished().await
    }

    async fn to_lock(&self, chain: ChainId, asset: &Asset) -> Result<u128, StoreError> {
        self.inner.to_lock(chain, asset).await
    }

    async fn list(&self) -> Result<Vec<SwapId>, StoreError> {
        self.inner.list().await
    }

    async fn allocate_key_index(&self) -> Result<u32, StoreError> {
        self.inner.allocate_key_index().await
    }

    async fn hashlock_in_use(&self, hashlock: &Hashlock) -> Result<bool, StoreError> {
        self.inner.hashlock_in_use(hashlock).await
    }

    async fn record_tx(&self, id: &SwapId, tx: &SentTx) -> Result<(), StoreError> {
        self.inner.record_tx(id, tx).await
    }

    async fn txs(&self, id: &SwapId) -> Result<Vec<SentTx>, StoreError> {
        self.inner.txs(id).await
    }
}
