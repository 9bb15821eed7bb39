//! Reads shared by the callers that ask together, none served a read older than its ask.
//!
//! A read that started at or after a caller asked serves that caller, so the callers that wait
//! together share the next read, and each still gets a value at least as fresh as a read of
//! its own. Used for a wallet's balance in liquidity checks (read after the reservation: a
//! lock sent in between is then either still reserved or already gone from the balance), a
//! chain's tip and a node's head, which many swaps or takes ask for at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

/// One shared read per key at a time; see the module documentation.
pub struct SharedReads<K, V> {
    slots: std::sync::Mutex<HashMap<K, Slot<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for SharedReads<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> std::fmt::Debug for SharedReads<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReads").finish_non_exhaustive()
    }
}

type Slot<V> = Arc<tokio::sync::Mutex<Option<(Instant, V)>>>;

impl<K: Eq + Hash + Clone, V: Clone> SharedReads<K, V> {
    /// No reads yet.
    pub fn new() -> Self {
        Self {
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The value of `key` as read by a read that started at or after `asked`: the last one if
    /// it did, otherwise a new one (`read`), which later askers share.
    pub async fn since<E, F, Fut>(&self, key: &K, asked: Instant, read: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let mut last = slot.lock().await;
        if let Some((started, v)) = last.as_ref() {
            if *started >= asked {
                return Ok(v.clone());
            }
        }
        let started = Instant::now();
        let v = read().await?;
        *last = Some((started, v.clone()));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::SharedReads;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn checks_that_wait_together_share_the_next_read_and_never_an_older_one() {
        let reads = Arc::new(SharedReads::<u8, u32>::new());
        let count = Arc::new(AtomicU32::new(0));
        let read = |count: Arc<AtomicU32>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, ()>(count.fetch_add(1, Ordering::SeqCst) + 1)
        };
        // One read in flight; eight checks ask while it runs.
        let first = {
            let (reads, count) = (reads.clone(), count.clone());
            tokio::spawn(async move { reads.since(&0, Instant::now(), || read(count)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let asked = Instant::now();
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let (reads, count) = (reads.clone(), count.clone());
                tokio::spawn(async move { reads.since(&0, asked, || read(count)).await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Ok(1));
        for w in waiting {
            // Not the read that started before they asked: the next one, shared.
            assert_eq!(w.await.unwrap(), Ok(2));
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // Another key reads on its own.
        assert_eq!(
            reads
                .since(&1, Instant::now(), || read(count.clone()))
                .await,
            Ok(3)
        );
        // A failed read is not kept.
        let failed: Result<u32, &str> = reads
            .since(&2, Instant::now(), || async { Err("down") })
            .await;
        assert_eq!(failed, Err("down"));
        assert_eq!(reads.since(&2, asked, || read(count.clone())).await, Ok(4));
    }
}
