//! A test hook for crash tests with real processes: with `XSWAP_TEST_ABORT_AFTER_STATES=k`,
//! the process aborts right after the k-th state change is committed to the store, before
//! the driver sends that state's actions: the harshest moment for a crash.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use swap_core::store::StateEntry;
use swap_core::{StoreError, SwapId, SwapRecord, SwapState, SwapStore};

/// A store that aborts the process after its k-th `append_state`.
pub struct AbortAfter {
    inner: Arc<dyn SwapStore>,
    after: u64,
    count: AtomicU64,
}

impl AbortAfter {
    /// Wraps `inner` when `XSWAP_TEST_ABORT_AFTER_STATES` is set; returns it unchanged otherwise.
    pub fn from_env(inner: Arc<dyn SwapStore>) -> Arc<dyn SwapStore> {
        match std::env::var("XSWAP_TEST_ABORT_AFTER_STATES")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(after) if after > 0 => Arc::new(Self {
                inner,
                after,
                count: AtomicU64::new(0),
            }),
            _ => inner,
        }
    }
}

#[async_trait]
impl SwapStore for AbortAfter {
    async fn create(&self, record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError> {
        self.inner.create(record, initial).await
    }

    async fn append_state(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<u64, StoreError> {
        let seq = self.inner.append_state(id, expected, state).await?;
        if self.count.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            eprintln!("XSWAP_TEST_ABORT_AFTER_STATES reached: aborting");
            std::process::abort();
        }
        Ok(seq)
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

    async fn list(&self) -> Result<Vec<SwapId>, StoreError> {
        self.inner.list().await
    }

    async fn allocate_key_index(&self) -> Result<u32, StoreError> {
        self.inner.allocate_key_index().await
    }

    async fn hashlock_in_use(&self, hashlock: &swap_core::Hashlock) -> Result<bool, StoreError> {
        self.inner.hashlock_in_use(hashlock).await
    }

    async fn record_tx(
        &self,
        id: &SwapId,
        tx: &swap_core::store::SentTx,
    ) -> Result<(), StoreError> {
        self.inner.record_tx(id, tx).await
    }

    async fn txs(&self, id: &SwapId) -> Result<Vec<swap_core::store::SentTx>, StoreError> {
        self.inner.txs(id).await
    }
}
