//! Reads of a wallet's funds shared by the checks that ask together.
//!
//! A liquidity check reads what unfinished swaps reserve, then the wallet's balance; the
//! balance must be read after the reservation (a lock sent in between is then either still
//! reserved or already gone from the balance, never counted as available twice). Many takes
//! at once each asked the node for the balance, and a wallet's balance costs the node a walk
//! over the wallet's transactions: at 10,000 swaps the reads queued behind each other. Here a
//! read that started at or after a check asked serves that check, so the checks that wait
//! together share the next read, and the order above still holds for each of them.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

/// One shared read per key at a time; see the module documentation.
pub(crate) struct SharedReads<K, V> {
    slots: std::sync::Mutex<HashMap<K, Slot<V>>>,
}

type Slot<V> = Arc<tokio::sync::Mutex<Option<(Instant, V)>>>;

impl<K: Eq + Hash + Clone, V: Clone> SharedReads<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The value of `key` as read by a read that started at or after `asked`: the last one if
    /// it did, otherwise a new one (`read`), which later askers share.
    pub(crate) async fn since<E, F, Fut>(&self, key: &K, asked: Instant, read: F) -> Result<V, E>
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
