//! What a channel step leaves to do after its lock is released: re-proposing a change
//! requeued after a lost crossing, and sending again a proposal the peer answered busy.

use std::time::Duration;

use alloy::primitives::B256;
use swap_net::PeerKey;
use tracing::warn;

use super::{lock, Node, SessionError, MAX_REPROPOSE_WAIT};
use crate::machine::PartyError;
use crate::msg::{RejectCode, UpdateKind};

impl Node {
    pub(super) fn follow_up(&self, id: B256, follow: FollowUp) {
        let node = self.clone();
        match follow {
            FollowUp::None => {}
            FollowUp::Repropose => {
                tokio::spawn(async move { node.repropose(id, 0).await });
            }
            FollowUp::CrossingTimer => {
                tokio::spawn(async move {
                    if node
                        .sleep_unless_stopped(node.inner.cfg.crossing_wait)
                        .await
                    {
                        node.repropose(id, 0).await;
                    }
                });
            }
            FollowUp::Resend(Some((version, streak))) => {
                // Doubling from `busy_retry` while the peer keeps answering busy, up to
                // MAX_REPROPOSE_WAIT: a peer whose chain is down is not asked 5 times a second.
                let wait = node
                    .inner
                    .cfg
                    .busy_retry
                    .saturating_mul(1 << streak.min(16))
                    .min(MAX_REPROPOSE_WAIT.max(node.inner.cfg.busy_retry));
                tokio::spawn(async move {
                    if !node.sleep_unless_stopped(wait).await {
                        return;
                    }
                    // Only the latest busy answer's resend goes out: one answered busy since
                    // (to a resend of the timer, of a new connection or of the rail) has
                    // scheduled its own, so resends never pile up.
                    let again = lock(&node.inner.chans).ok().and_then(|c| {
                        let s = c.get(&id)?;
                        s.party
                            .pending()
                            .filter(|p| p.state.version == version && s.busy == (version, streak))
                            .and(s.party.resend().map(|b| (s.peer, b)))
                    });
                    if let Some((peer, bytes)) = again {
                        node.send_to(peer, bytes);
                    }
                });
            }
            FollowUp::Resend(None) => {}
        }
    }

    /// Side B after a lost crossing: proposes the abandoned change again (once; whoever
    /// comes first of A's countersigned re-proposal and the timer). A chain that cannot be read
    /// postpones it (`attempt` counts the postponements): it is tried again later, waits
    /// doubling from `busy_retry` up to [`MAX_REPROPOSE_WAIT`], for as long as it is requeued
    /// (until then the channel refuses new proposals of ours as busy).
    fn repropose(
        &self,
        id: B256,
        attempt: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let node = self.clone();
        Box::pin(async move { node.repropose_now(id, attempt).await })
    }

    async fn repropose_now(&self, id: B256, attempt: u32) {
        // The channel and the change requeued (nothing to do without one), as they are now.
        let Some((chan, kind, deposits)) = lock(&self.inner.chans).ok().and_then(|c| {
            let s = c.get(&id)?;
            let kind = s.requeue.clone()?;
            let deposits = super::batch::deposits_after(&s.party, &kind);
            Some((s.party.channel().clone(), kind, deposits))
        }) else {
            return;
        };
        let read = match self.inner.chain.on_chain_covering(&chan, deposits).await {
            Ok(c) => self.now_for(Some(&kind)).await.map(|now| (c, now)),
            Err(e) => Err(e),
        };
        let (chain, now) = match read {
            Ok(r) => r,
            Err(e) => {
                let wait = self
                    .inner
                    .cfg
                    .busy_retry
                    .max(Duration::from_millis(10))
                    .saturating_mul(1 << attempt.min(16))
                    .min(MAX_REPROPOSE_WAIT);
                if attempt == 0 || wait == MAX_REPROPOSE_WAIT {
                    warn!(channel = %id, error = %e, retry_in = ?wait, "chain unreadable: re-proposal postponed");
                }
                let node = self.clone();
                tokio::spawn(async move {
                    if node.sleep_unless_stopped(wait).await {
                        node.repropose(id, attempt.saturating_add(1)).await;
                    }
                });
                return;
            }
        };
        let sent = (|| -> Result<Option<(PeerKey, Vec<u8>)>, SessionError> {
            let mut chans = lock(&self.inner.chans)?;
            // Checked under the channels' lock, which `shutdown` takes after setting it.
            if self.is_stopped() {
                return Ok(None);
            }
            let slot = chans.get_mut(&id).ok_or(SessionError::UnknownChannel(id))?;
            if slot.party.pending().is_some() {
                return Ok(None);
            }
            let Some(kind) = slot.requeue.take() else {
                return Ok(None);
            };
            // A batch crossed on a channel since found to take one change at a time (the
            // peer cannot read batches): refused here as the peer would, so its caller
            // proposes each change alone, rather than sent to be refused.
            if matches!(kind, UpdateKind::Batch { .. }) && (slot.singles || !self.inner.cfg.batches)
            {
                if let Some(w) = slot.waiter.take() {
                    let _ = w.send(Err(SessionError::Refused {
                        code: RejectCode::Malformed,
                        text: "the peer cannot read batched updates: one change at a time".into(),
                    }));
                }
                return Ok(None);
            }
            let step = match slot.party.propose(kind, now, &chain) {
                Ok(s) => s,
                Err(e) => {
                    if let Some(w) = slot.waiter.take() {
                        let _ = w.send(Err(match e {
                            PartyError::Invalid(r) => SessionError::Dropped(r),
                            e => e.into(),
                        }));
                    }
                    return Ok(None);
                }
            };
            let bytes = slot.party.commit(step, &*self.inner.store)?;
            Ok(bytes.map(|b| (slot.peer, b)))
        })();
        match sent {
            Ok(Some((peer, bytes))) => {
                self.send_to(peer, bytes);
            }
            Ok(None) => {}
            Err(e) => warn!(channel = %id, error = %e, "re-proposal failed"),
        }
    }

    /// Sends our pending proposal on channel `id` again (the same signed state), if there is
    /// one and a connection to its peer is up: whether it went out. Its completion then shows
    /// in the party's latest state.
    pub fn resend_pending(&self, id: B256) -> Result<bool, SessionError> {
        let (peer, bytes) = {
            let chans = lock(&self.inner.chans)?;
            let slot = chans.get(&id).ok_or(SessionError::UnknownChannel(id))?;
            match slot.party.resend() {
                Some(b) => (slot.peer, b),
                None => return Ok(false),
            }
        };
        Ok(self.send_to(peer, bytes))
    }
}

pub(super) enum FollowUp {
    None,
    Repropose,
    CrossingTimer,
    /// Our pending proposal (version, times in a row answered busy) to send again.
    Resend(Option<(u64, u32)>),
}
