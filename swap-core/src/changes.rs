//! What a rail tells the runtime of the changes it learns of itself (a channel peer's update, a
//! Lightning payment event), and for which swaps: the runtime then steps only the swaps whose
//! hashlock the change concerns, not every swap with a leg on the rail.
//!
//! A rail holds one [`ChangeFeed`]; each runtime that drives legs on it holds one
//! [`ChangeSubscription`]. The producer says [`ChangeFeed::touch`] (these hashlocks' legs may
//! have changed) or [`ChangeFeed::touch_all`] (anything may have: a channel opened or closed).
//! Changes told while nobody looked are kept and told together, once.
//!
//! A change the producer fails to tell is still found at the swap's next poll: the feed makes
//! swaps fast, the poll keeps them safe.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Notify;

use crate::types::Hashlock;

/// The most hashlocks a subscription keeps apart before it tells "anything may have changed"
/// instead (a runtime that stopped looking must not make its rail's memory grow).
pub const MAX_TOUCHED: usize = 4_096;

/// What changed since a subscription last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// The legs with one of these hashlocks.
    Locks(HashSet<Hashlock>),
    /// Any leg on the rail.
    All,
}

impl Changed {
    /// Whether a leg with `hashlock` may have changed.
    pub fn concerns(&self, hashlock: &Hashlock) -> bool {
        match self {
            Changed::All => true,
            Changed::Locks(locks) => locks.contains(hashlock),
        }
    }

    /// Adds `other` to what changed.
    pub fn merge(&mut self, other: Changed) {
        match (&mut *self, other) {
            (Changed::All, _) => {}
            (_, Changed::All) => *self = Changed::All,
            (Changed::Locks(mine), Changed::Locks(theirs)) => {
                mine.extend(theirs);
                if mine.len() > MAX_TOUCHED {
                    *self = Changed::All;
                }
            }
        }
    }
}

/// One subscriber's changes not looked at yet.
#[derive(Default)]
struct Sub {
    touched: Mutex<Option<Changed>>,
    notify: Notify,
}

impl Sub {
    fn add(&self, change: Changed) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            match touched.as_mut() {
                Some(t) => t.merge(change),
                None => *touched = Some(change),
            }
        }
        self.notify.notify_one();
    }
}

/// The producer's side: a rail tells its changes here.
#[derive(Clone, Default)]
pub struct ChangeFeed {
    subs: Arc<Mutex<Vec<Weak<Sub>>>>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// A feed nobody listens to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new listener: it is told the changes from now on.
    pub fn subscribe(&self) -> ChangeSubscription {
        let sub = Arc::new(Sub::default());
        self.subs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&sub));
        ChangeSubscription { sub }
    }

    /// How many listeners it has (those dropped no longer count).
    pub fn listeners(&self) -> usize {
        self.subs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|s| s.strong_count() > 0)
            .count()
    }

    /// The legs with these hashlocks may have changed (none given: nothing is told).
    pub fn touch(&self, hashlocks: impl IntoIterator<Item = Hashlock>) {
        let locks: HashSet<Hashlock> = hashlocks.into_iter().collect();
        if locks.is_empty() {
            return;
        }
        self.tell(&Changed::Locks(locks));
    }

    /// Any leg on the rail may have changed.
    pub fn touch_all(&self) {
        self.tell(&Changed::All);
    }

    fn tell(&self, change: &Changed) {
        let mut subs = self.subs.lock().unwrap_or_else(PoisonError::into_inner);
        subs.retain(|s| match s.upgrade() {
            Some(sub) => {
                sub.add(change.clone());
                true
            }
            None => false,
        });
    }
}

/// A listener's side: what changed since it last looked.
pub struct ChangeSubscription {
    sub: Arc<Sub>,
}

impl std::fmt::Debug for ChangeSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSubscription").finish_non_exhaustive()
    }
}

impl ChangeSubscription {
    /// Waits until something was told since the last call, and says what (everything told
    /// meanwhile, once).
    pub async fn next(&mut self) -> Changed {
        loop {
            self.sub.notify.notified().await;
            if let Some(changed) = self.take() {
                return changed;
            }
        }
    }

    /// What was told since the last look, without waiting.
    pub fn take(&mut self) -> Option<Changed> {
        self.sub
            .touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Hashlock {
        Hashlock([b; 32])
    }

    #[tokio::test]
    async fn changes_told_meanwhile_come_together_once_to_each_subscriber() {
        let feed = ChangeFeed::new();
        let mut a = feed.subscribe();
        let mut b = feed.subscribe();
        feed.touch([h(1)]);
        feed.touch([h(2), h(1)]);
        feed.touch([]);
        let got = a.next().await;
        assert_eq!(got, Changed::Locks([h(1), h(2)].into_iter().collect()));
        assert!(got.concerns(&h(2)) && !got.concerns(&h(3)));
        assert_eq!(a.take(), None, "told once");
        feed.touch_all();
        feed.touch([h(3)]);
        assert_eq!(a.next().await, Changed::All);
        // `b` did not look yet: it has everything since it subscribed, merged.
        assert_eq!(b.next().await, Changed::All);
        // A listener gone is forgotten; the others still hear.
        drop(b);
        feed.touch([h(4)]);
        assert_eq!(feed.subs.lock().unwrap().len(), 1);
        assert_eq!(a.next().await, Changed::Locks([h(4)].into_iter().collect()));
    }

    #[tokio::test]
    async fn a_waiting_listener_wakes_and_too_many_locks_become_all() {
        let feed = ChangeFeed::new();
        let mut sub = feed.subscribe();
        let waiting = tokio::spawn(async move { (sub.next().await, sub) });
        tokio::task::yield_now().await;
        feed.touch([h(9)]);
        let (got, mut sub) = waiting.await.unwrap();
        assert_eq!(got, Changed::Locks([h(9)].into_iter().collect()));
        for i in 0..=MAX_TOUCHED {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            feed.touch([Hashlock(b)]);
        }
        assert_eq!(sub.take(), Some(Changed::All));
    }
}
