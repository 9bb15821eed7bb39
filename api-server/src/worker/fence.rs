//! The fence of a worker's writes: every state written for a swap goes through the lease this
//! worker holds on it ([`PgStore::append_state_fenced`]), so a worker that stalled past its
//! lease and wakes up after another took the swap over cannot write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pg_store::PgStore;
use swap_core::{StoreError, SwapId, SwapState};
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

/// The fence of a worker's state writes ([`crate::TimedStore::fenced`]): a write for a swap
/// this worker does not hold is refused with [`StoreError::Fenced`] (token 0) without asking
/// the database; one the database fences (the lease is another worker's now) is reported on
/// `refused`, so the worker stops running the swap at once.
pub struct Fence {
    pg: Arc<PgStore>,
    tokens: Arc<Tokens>,
    refused: mpsc::UnboundedSender<Refused>,
    metrics: Arc<Metrics>,
}

impl Fence {
    /// Fences writes to `pg` with the leases in `tokens`.
    pub fn new(
        pg: Arc<PgStore>,
        tokens: Arc<Tokens>,
        refused: mpsc::UnboundedSender<Refused>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pg,
            tokens,
            refused,
            metrics,
        }
    }

    /// [`swap_core::SwapStore::append_state`] under the lease this worker holds on `id`.
    pub async fn append_state(
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
        let out = self
            .pg
            .append_state_fenced(id, expected, state, token)
            .await;
        if let Err(StoreError::Fenced { .. }) = &out {
            self.metrics.lease_event("fenced_write");
            tracing::warn!(swap_id = %id, token, "write refused: the swap's lease is another worker's now");
            let _ = self.refused.send((*id, token));
        }
        out
    }
}
