//! What the store says about one leg's lock: when it entered the co-signed states, how it
//! left them, and our proposals that may still put it in force.

use alloy::primitives::{Address, B256};
use eth_adapter::channel::{ChannelRef, Lock};
use swap_core::rail::{Cause, ChainError, ErrorKind};

use std::collections::HashMap;

use super::{session_err, ChannelRail};
use crate::hashlock_of;
use crate::msg::{UpdateKind, WireLock};
use crate::store::ChannelStore;

/// One leg, checked against its channel.
pub(super) struct Leg {
    pub(super) id: B256,
    pub(super) chan: ChannelRef,
    pub(super) sender: Address,
    pub(super) recipient: Address,
    pub(super) hashlock: B256,
    pub(super) amount: u128,
    pub(super) expiry: u64,
}

/// How a lock ended in the co-signed history.
#[derive(Clone)]
pub(super) enum End {
    Claimed(B256),
    Cancelled,
}

/// What the store says about one lock.
pub(super) struct Trace {
    /// The version whose state first held the lock, and the lock.
    pub(super) added: Option<(u64, Lock)>,
    /// The version that removed it, and how.
    pub(super) ended: Option<(u64, End)>,
    /// Our pending proposal's version and kind.
    pub(super) pending: Option<(u64, UpdateKind)>,
    /// Our abandoned proposals above the latest co-signed state (the peer may still
    /// countersign one until a higher version is co-signed).
    pub(super) abandoned: Vec<(u64, UpdateKind)>,
}

impl Trace {
    /// Our proposal (pending, or abandoned but still completable by the peer) that would put
    /// `leg`'s lock in force: its version and the lock.
    pub(super) fn proposed_lock(&self, leg: &Leg) -> Option<(u64, &WireLock)> {
        self.pending
            .iter()
            .chain(self.abandoned.iter())
            .find_map(|(v, kind)| {
                kind.parts().iter().find_map(|k| match k {
                    UpdateKind::Lock { lock } if leg.is(&Lock::from(lock)) => Some((*v, lock)),
                    _ => None,
                })
            })
    }
}

impl Leg {
    /// Whether `l` is this leg's lock: hashlock, amount, expiry and direction (a lock on the
    /// same hashlock with other terms is not this leg's, whatever it holds).
    pub(super) fn is(&self, l: &Lock) -> bool {
        key_of(l) == self.key()
    }

    /// This leg's lock identity in the history (see [`History`]).
    fn key(&self) -> LockKey {
        (self.hashlock, self.sender, self.amount, self.expiry)
    }
}

/// A lock's identity in the history: hashlock, sender, amount, expiry (see [`Leg::is`]).
type LockKey = (B256, Address, u128, u64);

fn key_of(l: &Lock) -> LockKey {
    (l.hashlock, l.from, l.amount, l.expiry)
}

/// What one channel's co-signed history says of each lock, read once and then only as new
/// states are co-signed: a leg's trace reads no more than the states since the last one.
/// (Reading the whole history for every leg at every step cost each swap more than the last.)
/// Co-signed states never change, so this is a cache of the store that is never stale. It
/// keeps about a hundred bytes per lock until the lock has left the states and its swap is
/// finished ([`History::evict`]), then 8 (a hash of its identity): a lock asked for again
/// after that has the history read anew, never called absent from the cache.
#[derive(Default)]
pub(super) struct History {
    /// The next version to read.
    next: u64,
    /// The locks of the last state read.
    locks: Vec<Lock>,
    /// Each lock held and not evicted: when it entered the states (first time), how it left
    /// them.
    seen: HashMap<LockKey, Seen>,
    /// Hashes of the evicted locks' identities (a collision costs a read of the history,
    /// never a wrong answer).
    evicted: std::collections::HashSet<u64>,
    hasher: std::collections::hash_map::RandomState,
}

struct Seen {
    added: (u64, Lock),
    /// How it left: the version and the end, or why the history cannot say.
    ended: Option<Result<(u64, End), (Cause, String)>>,
}

/// How the change `kind` of version `v` removed `lock`.
fn end_of(kind: Option<&UpdateKind>, lock: &Lock, v: u64) -> Result<(u64, End), (Cause, String)> {
    // The change of a batch that names the lock's hashlock (a batch names it at most once:
    // the lock leaves the state with the first).
    let part = kind.and_then(|k| {
        k.parts().iter().find(|p| {
            matches!(p, UpdateKind::Claim { hashlock, .. } | UpdateKind::CancelExpired { hashlock }
                if *hashlock == lock.hashlock)
        })
    });
    match part {
        Some(UpdateKind::Claim { hashlock, preimage }) if *hashlock == lock.hashlock => {
            if hashlock_of(preimage) != lock.hashlock {
                return Err((
                    Cause::Inconsistent,
                    format!("claim at version {v} does not match its hashlock"),
                ));
            }
            Ok((v, End::Claimed(*preimage)))
        }
        Some(UpdateKind::CancelExpired { hashlock }) if *hashlock == lock.hashlock => {
            Ok((v, End::Cancelled))
        }
        _ => Err((
            Cause::Other {
                kind: ErrorKind::Permanent,
            },
            format!("the lock left the state at version {v} without a recorded claim or cancel"),
        )),
    }
}

impl History {
    /// Forgets the lock `key` once it has left the states (a swap finished with it): its
    /// entry goes, and the history remembers that it let one go.
    pub(super) fn evict(&mut self, key: &LockKey) {
        if self.seen.get(key).is_some_and(|s| s.ended.is_some()) {
            self.seen.remove(key);
            self.evicted.insert(self.hash(key));
        }
    }

    fn hash(&self, key: &LockKey) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    /// The lock `key`'s entry, with the history read anew first when it was evicted.
    fn seen(
        &mut self,
        store: &dyn ChannelStore,
        id: B256,
        key: &LockKey,
    ) -> Result<Option<&Seen>, ChainError> {
        if !self.seen.contains_key(key) && self.evicted.remove(&self.hash(key)) {
            let (evicted, hasher) = (
                std::mem::take(&mut self.evicted),
                std::mem::take(&mut self.hasher),
            );
            *self = History {
                evicted,
                hasher,
                ..History::default()
            };
            self.catch_up(store, id)?;
        }
        Ok(self.seen.get(key))
    }

    /// Reads the states co-signed since the last call.
    fn catch_up(&mut self, store: &dyn ChannelStore, id: B256) -> Result<(), ChainError> {
        let updates = store
            .updates_from(id, self.next)
            .map_err(|e| ChainError::transient(format!("channel store: {e}")))?;
        for (cs, kind) in &updates {
            let v = cs.state.version;
            if v < self.next {
                continue;
            }
            let now: Vec<LockKey> = cs.locks.iter().map(key_of).collect();
            for l in &self.locks {
                if now.contains(&key_of(l)) {
                    continue;
                }
                if let Some(seen) = self.seen.get_mut(&key_of(l)) {
                    if seen.ended.is_none() {
                        seen.ended = Some(end_of(kind.as_ref(), l, v));
                    }
                }
            }
            for l in &cs.locks {
                let key = key_of(l);
                // An evicted lock read again (the history read anew for another) stays out.
                if !self.seen.contains_key(&key) && !self.evicted.contains(&self.hash(&key)) {
                    self.seen.insert(
                        key,
                        Seen {
                            added: (v, l.clone()),
                            ended: None,
                        },
                    );
                }
            }
            self.locks = cs.locks.clone();
            self.next = v.saturating_add(1);
        }
        Ok(())
    }
}

impl ChannelRail {
    /// Lets the history cache drop a finished swap's lock (see [`History`]).
    pub(super) fn evict(&self, htlc: &swap_core::HtlcParams) {
        let Ok(leg) = self.leg(htlc) else {
            return;
        };
        if let Ok(mut h) = self.history.lock() {
            if let Some(history) = h.get_mut(&leg.id) {
                history.evict(&leg.key());
            }
        }
    }

    pub(super) fn trace(&self, leg: &Leg) -> Result<Trace, ChainError> {
        let pending = self
            .node
            .with_party(leg.id, |p| {
                p.pending().map(|p| (p.state.version, p.kind.clone()))
            })
            .map_err(|e| session_err(e, leg.expiry))?;
        let abandoned = self
            .store
            .abandoned_proposals(leg.id)
            .map_err(|e| ChainError::transient(format!("channel store: {e}")))?;
        let mut trace = Trace {
            added: None,
            ended: None,
            pending,
            abandoned,
        };
        let mut histories = self
            .history
            .lock()
            .map_err(|_| ChainError::transient("channel history: poisoned lock"))?;
        let history = histories.entry(leg.id).or_default();
        history.catch_up(&*self.store, leg.id)?;
        let key = leg.key();
        if let Some(seen) = history.seen(&*self.store, leg.id, &key)? {
            trace.added = Some(seen.added.clone());
            match &seen.ended {
                None => {}
                Some(Ok(end)) => trace.ended = Some(end.clone()),
                Some(Err((cause, text))) => {
                    return Err(ChainError::new(cause.clone(), text.clone()))
                }
            }
        }
        Ok(trace)
    }
}
