//! Legs whose payment found no channel with room for it, woken as soon as an HTLC leaves a
//! channel instead of at their retry's backoff.
//!
//! LDK refuses a payment no usable channel can carry *now* (`RouteNotFound` at send: the
//! channel's capacity, its cap on HTLCs in flight or on dust exposure, taken by HTLCs that
//! are still in it), and the swap rail answers that as a transient error: the runtime tries
//! again after its backoff (a quarter of a second and more). Room comes back when an HTLC of
//! ours leaves a channel, which LDK tells once the removal is committed (a path of a
//! payment of ours fulfilled or failed), or when a channel becomes usable; each such event
//! wakes the legs refused meanwhile, and their swaps step at once (one that still finds no
//! room waits for the next). Room a payment *to* us frees on our side (our balance grows
//! once the claim is committed) has no event of its own: legs waiting for that are tried
//! again at their backoff, as before.
//!
//! A refusal races the event that frees room: the rail reads [`Room::freed_count`] before
//! it hands the payment to LDK and, refused, registers with [`Room::wait`], which says when
//! room was freed since (the leg is then woken at once rather than registered).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use swap_core::types::Hashlock;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// (events that freed room so far, the legs waiting for the next).
    state: Mutex<(u64, HashSet<Hashlock>)>,
}

impl Room {
    /// How many times room was freed so far.
    pub(crate) fn freed_count(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// Registers `hashlock`'s leg, refused for want of room, to be woken when room is next
    /// freed; `false` (nothing registered) if room was freed since the count was `seen`.
    pub(crate) fn wait(&self, hashlock: Hashlock, seen: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.0 != seen {
            return false;
        }
        s.1.insert(hashlock);
        true
    }

    /// Room was freed: the legs waiting for it, which no longer wait.
    pub(crate) fn freed(&self) -> Vec<Hashlock> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 += 1;
        s.1.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_leg_is_woken_once_by_the_next_freeing() {
        let room = Room::default();
        let seen = room.freed_count();
        assert!(room.wait(Hashlock([1; 32]), seen));
        assert!(room.wait(Hashlock([2; 32]), seen));
        let mut woken = room.freed();
        woken.sort_by_key(|h| h.0);
        assert_eq!(woken, vec![Hashlock([1; 32]), Hashlock([2; 32])]);
        assert!(room.freed().is_empty(), "woken once");
    }

    #[test]
    fn room_freed_between_the_read_and_the_refusal_is_not_waited_for() {
        let room = Room::default();
        let seen = room.freed_count();
        room.freed();
        assert!(!room.wait(Hashlock([1; 32]), seen), "try again at once");
        assert!(room.freed().is_empty(), "nothing registered");
        let seen = room.freed_count();
        assert!(room.wait(Hashlock([1; 32]), seen));
    }
}
