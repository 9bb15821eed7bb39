//! What a [`Node`] checks before countersigning a cancel, and the clock it judges expiries by.
//!
//! A `CancelExpired` returns a lock to its sender. The contract pays a lock to its receiver
//! when its secret was revealed on chain before the lock's expiry, judged by *block time*; a
//! co-signed cancel (a higher version) replaces any closing state that holds the lock. So a
//! receiver countersigning a cancel gives the lock up, whatever the chain says later. The
//! node refuses to countersign the cancel of a lock:
//! - whose preimage we know and whose receiver we are ([`RejectCode::SecretKnown`]): from a
//!   [`Secrets`] source ([`Node::add_secrets`]: the rail's claims, the watcher's secrets) or a
//!   claim proposal of ours (pending or abandoned). Our reveal may be in flight: checking the
//!   chain's registry alone races with it;
//! - whose secret the chain's registry shows revealed before its expiry
//!   ([`RejectCode::SecretRevealed`]), whichever side we are;
//! - not expired by the chain's time ([`RejectCode::LockNotExpired`], from the rules), never
//!   by the local clock: [`Node::chain_now`] is the latest block timestamp the node saw.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use alloy::primitives::B256;
use eth_adapter::channel::ChannelRef;

use crate::msg::{Proposal, RejectCode, UpdateKind};
use crate::session::{lock, Node, SessionError};
use crate::Secrets;

/// What to do with a proposal.
pub(crate) enum Verdict {
    /// Refuse it with this code and text.
    Refuse(RejectCode, &'static str),
    /// Hand it to the party, with this time as now.
    Go {
        /// Seconds: the chain's time for a cancel, the local clock otherwise.
        now: u64,
    },
}

impl Node {
    /// Adds a source of the preimages of locks we receive: the node never countersigns the
    /// cancel of a lock whose preimage one of them knows. Give it the rail's and the
    /// watcher's sources.
    pub fn add_secrets(&self, secrets: Arc<dyn Secrets>) -> Result<(), SessionError> {
        lock(&self.inner.secrets)?.push(secrets);
        Ok(())
    }

    /// The chain's time: the latest block timestamp this node saw (read now; never less than
    /// one read before).
    pub async fn chain_now(&self) -> Result<u64, SessionError> {
        let t = self.inner.chain.chain_time().await?;
        let seen = self.inner.chain_seen.fetch_max(t, Ordering::SeqCst);
        Ok(seen.max(t))
    }

    /// The time a change of `kind` is judged at: the chain's for a cancel, the local clock's
    /// otherwise.
    pub(crate) async fn now_for(&self, kind: Option<&UpdateKind>) -> Result<u64, SessionError> {
        let cancels = kind.is_some_and(|k| {
            k.parts()
                .iter()
                .any(|p| matches!(p, UpdateKind::CancelExpired { .. }))
        });
        if cancels {
            self.chain_now().await
        } else {
            Ok(self.inner.chain.now())
        }
    }

    /// Whether we know the preimage of `hashlock` (channel `id`): a secrets source, or a
    /// claim of ours, pending or abandoned.
    pub(crate) fn knows_preimage(&self, id: B256, hashlock: B256) -> Result<bool, SessionError> {
        let sources: Vec<Arc<dyn Secrets>> = lock(&self.inner.secrets)?.clone();
        if sources.iter().any(|s| {
            s.preimage(&hashlock)
                .is_some_and(|p| crate::hashlock_of(&p) == hashlock)
        }) {
            return Ok(true);
        }
        // A claim alone or in a batch.
        let is_claim = |k: &UpdateKind| {
            k.parts().iter().any(|k| {
                matches!(k, UpdateKind::Claim { hashlock: h, preimage }
                    if *h == hashlock && crate::hashlock_of(preimage) == hashlock)
            })
        };
        let pending = self.with_party(id, |p| p.pending().is_some_and(|p| is_claim(&p.kind)))?;
        Ok(pending
            || self
                .inner
                .store
                .abandoned_proposals(id)?
                .iter()
                .any(|(_, k)| is_claim(k)))
    }

    /// The verdict on the peer's proposal `p` in channel `chan` (see the module docs).
    pub(crate) async fn cancel_guard(
        &self,
        id: B256,
        chan: &ChannelRef,
        p: &Proposal,
    ) -> Result<Verdict, SessionError> {
        // Cancels are never batched (the rules refuse it): refused here too, before any rule,
        // so that no batch ever skips this guard.
        if matches!(&p.kind, UpdateKind::Batch { changes }
            if changes.iter().any(|c| matches!(c, UpdateKind::CancelExpired { .. })))
        {
            return Ok(Verdict::Refuse(RejectCode::Rules, "a cancel in a batch"));
        }
        let UpdateKind::CancelExpired { hashlock } = &p.kind else {
            return Ok(Verdict::Go {
                now: self.inner.chain.now(),
            });
        };
        let hashlock = *hashlock;
        let (me, lock) = self.with_party(id, |party| {
            let me = party.channel().party(party.side());
            let l = party
                .latest()
                .locks
                .iter()
                .find(|l| l.hashlock == hashlock)
                .cloned();
            (me, l)
        })?;
        let ours_to_receive = lock.as_ref().is_some_and(|l| l.from != me);
        if ours_to_receive && self.knows_preimage(id, hashlock)? {
            return Ok(Verdict::Refuse(
                RejectCode::SecretKnown,
                "we hold the lock's secret: it is not cancelled",
            ));
        }
        // The time first, then the registry: a reveal mined after the time read is in a
        // later block, so at or after that time.
        let now = self.chain_now().await?;
        if let Some(at) = self.inner.chain.revealed_at(chan, hashlock).await? {
            if lock.as_ref().is_none_or(|l| at < l.expiry) {
                return Ok(Verdict::Refuse(
                    RejectCode::SecretRevealed,
                    "the lock's secret was revealed on chain before its expiry",
                ));
            }
        }
        Ok(Verdict::Go { now })
    }
}
