//! What the store says about one leg's lock: when it entered the co-signed states, how it
//! left them, and our proposals that may still put it in force.

use alloy::primitives::{Address, B256};
use eth_adapter::channel::{ChannelRef, Lock};
use swap_core::rail::{Cause, ChainError};

use super::{session_err, ChannelRail};
use crate::hashlock_of;
use crate::msg::{UpdateKind, WireLock};
use crate::store::CoSigned;

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
            .find_map(|(v, kind)| match kind {
                UpdateKind::Lock { lock } if leg.is(&Lock::from(lock)) => Some((*v, lock)),
                _ => None,
            })
    }
}

impl Leg {
    /// Whether `l` is this leg's lock: hashlock, amount, expiry and direction (a lock on the
    /// same hashlock with other terms is not this leg's, whatever it holds).
    pub(super) fn is(&self, l: &Lock) -> bool {
        l.hashlock == self.hashlock
            && l.from == self.sender
            && l.amount == self.amount
            && l.expiry == self.expiry
    }
}

impl ChannelRail {
    pub(super) fn trace(&self, leg: &Leg) -> Result<Trace, ChainError> {
        let pending = self
            .node
            .with_party(leg.id, |p| {
                p.pending().map(|p| (p.state.version, p.kind.clone()))
            })
            .map_err(|e| session_err(e, leg.expiry))?;
        let updates = self
            .store
            .updates(leg.id)
            .map_err(|e| ChainError::transient(format!("channel store: {e}")))?;
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
        for (cs, kind) in &updates {
            let v = cs.state.version;
            let held = find(cs, leg);
            match (&trace.added, held) {
                (None, Some(l)) => trace.added = Some((v, l.clone())),
                (Some(_), None) => {
                    let end = match kind {
                        Some(UpdateKind::Claim { hashlock, preimage })
                            if *hashlock == leg.hashlock =>
                        {
                            if hashlock_of(preimage) != leg.hashlock {
                                return Err(ChainError::new(
                                    Cause::Inconsistent,
                                    format!("claim at version {v} does not match its hashlock"),
                                ));
                            }
                            End::Claimed(*preimage)
                        }
                        Some(UpdateKind::CancelExpired { hashlock })
                            if *hashlock == leg.hashlock =>
                        {
                            End::Cancelled
                        }
                        _ => {
                            return Err(ChainError::permanent(format!(
                                "the lock left the state at version {v} without a recorded \
                                 claim or cancel"
                            )))
                        }
                    };
                    trace.ended = Some((v, end));
                    break;
                }
                _ => {}
            }
        }
        Ok(trace)
    }
}

fn find<'a>(cs: &'a CoSigned, leg: &Leg) -> Option<&'a Lock> {
    cs.locks.iter().find(|l| leg.is(l))
}
