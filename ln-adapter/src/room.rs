//! Legs whose payment found no channel with room for it, woken as soon as an HTLC leaves a
//! channel instead of at their retry's backoff.
//!
//! LDK refuses a payment no usable channel can carry *now* (`RouteNotFound` at send: the
//! channel's capacity, its cap on HTLCs in flight or on dust exposure, taken by HTLCs that
//! are still in it), and the swap rail answers that as a transient error: the runtime tries
//! again after its backoff (a quarter of a second and more). Room comes back when an HTLC of
//! ours leaves a channel, which LDK tells once the removal is committed (a path of a
//! payment of ours fulfilled or failed), or when a channel becomes usable; each such event
//! wakes the legs refused meanwhile that waited longest ([`WAKE_PER_FREEING`] of them), and
//! their swaps step at once (one that still finds no room waits again). Room a payment *to* us frees on our side (our balance grows
//! once the claim is committed) has no event of its own: legs waiting for that are tried
//! again at their backoff, as before.
//!
//! A refusal races the event that frees room: the rail reads [`Room::freed_count`] before
//! it hands the payment to LDK and, refused, registers with [`Room::wait`], which says when
//! room was freed since (the leg is then woken at once rather than registered).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use swap_core::types::Hashlock;

/// The most legs one freeing wakes, the longest waiting first: an HTLC leaving makes room
/// for about one more, and each leg woken tries LDK's route again (a route search and a
/// ledger write). The others wait for the next freeing (or their backoff, as before), so a
/// channel full for a while with many legs waiting does not make every HTLC's removal a herd
/// of retries (at 64 in flight with LDK's dust cap: waking all cost ~5 % of throughput).
pub(crate) const WAKE_PER_FREEING: usize = 1;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// (events that freed room so far, the legs waiting, longest waiting first).
    state: Mutex<(u64, VecDeque<Hashlock>)>,
}

impl Room {
    /// How many times room was freed so far.
    pub(crate) fn freed_count(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// Registers `hashlock`'s leg, refused for want of room, to be woken when room is freed;
    /// `false` (nothing registered) if room was freed since the count was `seen`.
    pub(crate) fn wait(&self, hashlock: Hashlock, seen: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.0 != seen {
            return false;
        }
        if !s.1.contains(&hashlock) {
            s.1.push_back(hashlock);
        }
        true
    }

    /// Room was freed: the legs to wake ([`WAKE_PER_FREEING`] at most, the longest waiting),
    /// which no longer wait.
    pub(crate) fn freed(&self) -> Vec<Hashlock> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 += 1;
        let n = s.1.len().min(WAKE_PER_FREEING);
        s.1.drain(..n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_legs_are_woken_longest_waiting_first_a_few_per_freeing() {
        let room = Room::default();
        let seen = room.freed_count();
        let n = u8::try_from(WAKE_PER_FREEING).unwrap() * 2 + 1;
        for i in 0..n {
            assert!(room.wait(Hashlock([i; 32]), seen));
        }
        // Registered twice, waits once.
        assert!(room.wait(Hashlock([0; 32]), seen));
        let mut woken = Vec::new();
        loop {
            let now = room.freed();
            assert!(now.len() <= WAKE_PER_FREEING);
            if now.is_empty() {
                break;
            }
            woken.extend(now);
        }
        assert_eq!(woken, (0..n).map(|i| Hashlock([i; 32])).collect::<Vec<_>>());
        assert!(room.freed().is_empty(), "each woken once");
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
