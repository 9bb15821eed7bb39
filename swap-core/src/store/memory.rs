//! An in-memory store, for tests and for embedding where persistence is handled elsewhere.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{check_record, now, SentTx, StateEntry, StoreError, SwapRecord, SwapState, SwapStore};
use crate::types::SwapId;

#[derive(Default)]
struct Inner {
    swaps: HashMap<SwapId, (SwapRecord, Vec<StateEntry>)>,
    order: Vec<SwapId>,
    seq: u64,
    next_key: u32,
    txs: HashMap<SwapId, Vec<SentTx>>,
}

/// A [`SwapStore`] in memory. Loses everything when dropped.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store poisoned".into()))
    }
}

#[async_trait]
impl SwapStore for MemoryStore {
    async fn create(&self, record: &SwapRecord, initial: &SwapState) -> Result<(), StoreError> {
        check_record(record, initial)?;
        let mut inner = self.lock()?;
        let id = record.id();
        if inner.swaps.contains_key(&id) {
            return Err(StoreError::Duplicate(id));
        }
        inner.seq += 1;
        let entry = StateEntry {
            seq: inner.seq,
            entered_at: now(),
            state: initial.clone(),
        };
        inner.swaps.insert(id, (record.clone(), vec![entry]));
        inner.order.push(id);
        Ok(())
    }

    async fn append_state(
        &self,
        id: &SwapId,
        expected: u64,
        state: &SwapState,
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock()?;
        let seq = inner.seq + 1;
        let (record, history) = inner
            .swaps
            .get_mut(id)
            .ok_or(StoreError::UnknownSwap(*id))?;
        if state.role() != record.role {
            return Err(StoreError::Invalid {
                swap: *id,
                detail: "state is for the other role".into(),
            });
        }
        let found = history.last().map_or(0, |e| e.seq);
        if found != expected {
            return Err(StoreError::Conflict {
                swap: *id,
                expected,
                found,
            });
        }
        history.push(StateEntry {
            seq,
            entered_at: now(),
            state: state.clone(),
        });
        inner.seq = seq;
        Ok(seq)
    }

    async fn load_entry(&self, id: &SwapId) -> Result<(SwapRecord, StateEntry), StoreError> {
        let inner = self.lock()?;
        let (record, history) = inner.swaps.get(id).ok_or(StoreError::UnknownSwap(*id))?;
        let last = history.last().ok_or_else(|| StoreError::Corrupt {
            swap: id.to_string(),
            detail: "no state".into(),
        })?;
        Ok((record.clone(), last.clone()))
    }

    async fn history(&self, id: &SwapId) -> Result<Vec<StateEntry>, StoreError> {
        let inner = self.lock()?;
        let (_, history) = inner.swaps.get(id).ok_or(StoreError::UnknownSwap(*id))?;
        Ok(history.clone())
    }

    async fn unfinished(
        &self,
    ) -> Result<Vec<Result<(SwapRecord, SwapState), StoreError>>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .order
            .iter()
            .filter_map(|id| inner.swaps.get(id))
            .filter_map(|(record, history)| {
                let last = history.last()?;
                (!last.state.is_final()).then(|| Ok((record.clone(), last.state.clone())))
            })
            .collect())
    }

    async fn list(&self) -> Result<Vec<SwapId>, StoreError> {
        let inner = self.lock()?;
        Ok(inner.order.iter().rev().copied().collect())
    }

    async fn hashlock_in_use(&self, hashlock: &crate::types::Hashlock) -> Result<bool, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .swaps
            .values()
            .any(|(r, _)| r.terms.hashlock == *hashlock))
    }

    async fn allocate_key_index(&self) -> Result<u32, StoreError> {
        let mut inner = self.lock()?;
        let k = inner.next_key;
        inner.next_key = k
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("key indexes exhausted".into()))?;
        Ok(k)
    }

    async fn record_tx(&self, id: &SwapId, tx: &SentTx) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if !inner.swaps.contains_key(id) {
            return Err(StoreError::UnknownSwap(*id));
        }
        let list = inner.txs.entry(*id).or_default();
        if !list
            .iter()
            .any(|t| (t.leg, t.kind, &t.txref) == (tx.leg, tx.kind, &tx.txref))
        {
            list.push(tx.clone());
        }
        Ok(())
    }

    async fn txs(&self, id: &SwapId) -> Result<Vec<SentTx>, StoreError> {
        let inner = self.lock()?;
        if !inner.swaps.contains_key(id) {
            return Err(StoreError::UnknownSwap(*id));
        }
        Ok(inner.txs.get(id).cloned().unwrap_or_default())
    }
}
