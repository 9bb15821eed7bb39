//! A [`SwapStore`] that records the latency of every call of the engine into [`Metrics`]
//! (`xswap_api_store_seconds{op="swap_store_..."}`), around the PostgreSQL store; for a
//! worker's driver, its state writes go through the lease fence ([`TimedStore::fenced`]).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use swap_core::store::{SentTx, StateEntry, SwapRecord, SwapState, SwapStore};
use swap_core::{Asset, ChainId, Hashlock, StoreError, SwapId};

use crate::metrics::Metrics;
use crate::worker::Fence;

/// The engine's store, timed.
pub struct TimedStore {
    inner: Arc<dyn SwapStore>,
    metrics: Arc<Metrics>,
    fence: Option<Arc<Fence>>,
}

impl TimedStore {
    /// Times the calls to `inner`.
    pub fn new(inner: Arc<dyn SwapStore>, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            metrics,
            fence: None,
        }
    }

    /// Writes every state through `fence` (the leases of a worker) instead of `inner`.
    pub fn fenced(mut self, fence: Arc<Fence>) -> Self {
        self.fence = Some(fence);
        self
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let t = Instant::now();
        let out = f.await;
        self.metrics.store_call(op, t.elapsed(), out.is_ok());
        out
    }
}

#[async_trait]
impl SwapStore for TimedStore {
    async fn create(&self, record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError> {
        self.timed("swap_store_create", self.inner.create(record, initial))
            .await
    }

    async fn append_state(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<u64, StoreError> {
        match &self.fence {
            Some(fence) => {
                self.timed(
                    "swap_store_append_state_fenced",
                    fence.append_state(id, expected, state),
                )
                .await
            }
            None => {
                self.timed(
                    "swap_store_append_state",
                    self.inner.append_state(id, expected, state),
                )
                .await
            }
        }
    }

    async fn load_entry(&self, id: &SwapId) -> Result<(SwapRecord, StateEntry), StoreError> {
        self.timed("swap_store_load", self.inner.load_entry(id))
            .await
    }

    async fn load(&self, id: &SwapId) -> Result<(SwapRecord, SwapState), StoreError> {
        self.timed("swap_store_load", self.inner.load(id)).await
    }

    async fn history(&self, id: &SwapId) -> Result<Vec<StateEntry>, StoreError> {
        self.timed("swap_store_history", self.inner.history(id))
            .await
    }

    async fn unfinished(
        &self,
    ) -> Result<Vec<Result<(SwapRecord, SwapState), StoreError>>, StoreError> {
        self.timed("swap_store_unfinished", self.inner.unfinished())
            .await
    }

    async fn to_lock(&self, chain: ChainId, asset: &Asset) -> Result<u128, StoreError> {
        self.timed("swap_store_to_lock", self.inner.to_lock(chain, asset))
            .await
    }

    async fn list(&self) -> Result<Vec<SwapId>, StoreError> {
        self.timed("swap_store_list", self.inner.list()).await
    }

    async fn allocate_key_index(&self) -> Result<u32, StoreError> {
        self.timed(
            "swap_store_allocate_key_index",
            self.inner.allocate_key_index(),
        )
        .await
    }

    async fn hashlock_in_use(&self, hashlock: &Hashlock) -> Result<bool, StoreError> {
        self.timed(
            "swap_store_hashlock_in_use",
            self.inner.hashlock_in_use(hashlock),
        )
        .await
    }

    async fn record_tx(&self, id: &SwapId, tx: &SentTx) -> Result<(), StoreError> {
        self.timed("swap_store_record_tx", self.inner.record_tx(id, tx))
            .await
    }

    async fn txs(&self, id: &SwapId) -> Result<Vec<SentTx>, StoreError> {
        self.timed("swap_store_txs", self.inner.txs(id)).await
    }
}
