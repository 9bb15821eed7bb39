//! One frame from a peer handled: decoded, routed to its channel, checked (cheap checks before
//! any chain read), stepped and committed under the channel's lock, answered.

use alloy::primitives::B256;
use eth_adapter::channel::OnChain;
use swap_net::PeerKey;
use tracing::{debug, warn};

use super::follow_up::FollowUp;
use super::{lock, Node, SessionError, Slot};
use crate::guard;
use crate::machine::Event;
use crate::msg::{Message, RejectCode, RejectMsg, UpdateKind};

impl Node {
    /// Handles one frame from `peer`: the reply to send, and whether the frame was bad.
    pub(super) async fn handle(&self, peer: PeerKey, bytes: &[u8]) -> (Option<Vec<u8>>, bool) {
        if self.is_stopped() {
            return (None, false);
        }
        let reject = |channel, version, code, text: &str| {
            Some(
                Message::Reject(RejectMsg {
                    channel,
                    version,
                    code,
                    text: text.into(),
                })
                .encode(),
            )
        };
        let mut msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                debug!(%peer, error = %e, "malformed channel message");
                let text: String = e.to_string().chars().take(200).collect();
                return (reject(B256::ZERO, 0, RejectCode::Malformed, &text), true);
            }
        };
        // The peer could not read what we sent. If that was a batch, it runs a build from
        // before batches: its answer refuses our pending batch (which it cannot have signed),
        // and the channel's changes go one at a time from now on.
        if let Message::Propose(p) = &msg {
            if !self.inner.cfg.batches && matches!(p.kind, UpdateKind::Batch { .. }) {
                debug!(%peer, "a batched update, batches off: answered as unreadable");
                let text = "malformed message: unknown variant `batch`";
                return (reject(B256::ZERO, 0, RejectCode::Malformed, text), true);
            }
        }
        let rewritten;
        let bytes = match self.batch_unreadable(peer, &msg) {
            Some(refusal) => {
                rewritten = refusal.encode();
                msg = refusal;
                &rewritten[..]
            }
            None if self.requeued_batch_unreadable(peer, &msg) => return (None, false),
            None => bytes,
        };
        let id = msg.channel();
        match &msg {
            Message::Open(o) => return (Some(self.accept_open(peer, o).await.encode()), false),
            Message::Opened(_) => return (None, !self.answer_open(id, Ok(()))),
            Message::Reject(r) if r.version == 0 => {
                let refused = SessionError::Refused {
                    code: r.code,
                    text: r.text.clone(),
                };
                if self.answer_open(id, Err(refused)) {
                    return (None, false);
                }
            }
            _ => {}
        }
        let Some(chan) = self.chan_of(id, peer) else {
            debug!(%peer, channel = %id, "message for a channel we do not hold with this peer");
            return match &msg {
                Message::Propose(p) => (
                    reject(
                        id,
                        p.state.version,
                        RejectCode::WrongChannel,
                        "unknown channel",
                    ),
                    true,
                ),
                _ => (None, true),
            };
        };
        // The chain cannot be read: nothing is applied, and the message is asked for again.
        // A proposal is refused `Busy` (its proposer keeps it and sends it again after its
        // `busy_retry`); an answer to ours is had again by sending ours again.
        let unreadable = |e: SessionError| {
            warn!(channel = %id, error = %e, "message not handled");
            if !matches!(e, SessionError::Chain(_)) {
                return (None, false);
            }
            match &msg {
                Message::Propose(p) => (
                    reject(id, p.state.version, RejectCode::Busy, "chain unreadable"),
                    false,
                ),
                _ => {
                    let again = lock(&self.inner.chans)
                        .ok()
                        .and_then(|mut c| c.get_mut(&id).and_then(Slot::busy_again));
                    self.follow_up(id, FollowUp::Resend(again));
                    (None, false)
                }
            }
        };
        // A proposal we countersigned already gets the same countersignature again, whatever
        // the chain says now (a guard or a chain read must not refuse a version the peer
        // holds co-signed).
        let again = match &msg {
            Message::Propose(p) => self
                .with_party(id, |party| party.countersigned_already(p))
                .unwrap_or(false),
            _ => false,
        };
        // A proposal that fails the checks needing no chain (its channel, signature, version)
        // is refused before any chain read: garbage and replays cost the node no chain read.
        if let (Message::Propose(p), false) = (&msg, again) {
            let refusal = self
                .with_party(id, |party| party.precheck(p))
                .ok()
                .flatten();
            if let Some(r) = refusal {
                debug!(%peer, channel = %id, "proposal refused before any chain read");
                return (Some(r.encode()), false);
            }
        }
        let chain = if !again && matches!(msg, Message::Propose(_) | Message::Reject(_)) {
            // The deposits a proposal counts are read fresh when the kept read falls short.
            let deposits = match &msg {
                Message::Propose(p) => (p.state.deposit_a, p.state.deposit_b),
                _ => (0, 0),
            };
            match self.inner.chain.on_chain_covering(&chan, deposits).await {
                Ok(c) => Some(c),
                Err(e) => return unreadable(e),
            }
        } else {
            None
        };
        let chain = chain.unwrap_or_default();
        // A cancel we must not countersign (see `guard`); a cancel's expiry by chain time.
        let now = match &msg {
            Message::Propose(_) if again => self.inner.chain.now(),
            // A countersignature needs neither the chain nor its time.
            Message::Countersign(_) => self.inner.chain.now(),
            Message::Propose(p) => match self.cancel_guard(id, &chan, p).await {
                Ok(guard::Verdict::Refuse(code, text)) => {
                    return (reject(id, p.state.version, code, text), false)
                }
                Ok(guard::Verdict::Go { now }) => now,
                Err(e) => return unreadable(e),
            },
            // An answer to our proposal (a cancel re-proposed after crossing: chain time).
            _ => {
                let kind = self
                    .with_party(id, |p| p.pending().map(|p| p.kind.clone()))
                    .ok()
                    .flatten();
                match self.now_for(kind.as_ref()).await {
                    Ok(t) => t,
                    Err(e) => return unreadable(e),
                }
            }
        };
        let (reply, follow, concerned) = match self.step(id, bytes, now, &chain) {
            Ok(x) => x,
            Err(e) => {
                debug!(%peer, channel = %id, error = %e, "channel message not applied");
                return (None, false);
            }
        };
        // The swaps this message may have moved: the locks of the peer's proposal, and those
        // `step` names (ours it answered, ours abandoned that a co-signed version overtook).
        let theirs = match &msg {
            Message::Propose(p) => Some(&p.kind),
            _ => None,
        };
        let mut locks = Vec::new();
        let named = concerned.is_some_and(|kinds| {
            theirs
                .into_iter()
                .chain(kinds.iter())
                .all(|kind| lock_hashlocks(kind, &mut locks))
        });
        if named {
            self.inner.changed.touch(locks);
        } else {
            self.inner.changed.touch_all();
        }
        self.follow_up(id, follow);
        (reply, false)
    }

    /// Receives and commits under the channel's lock; tells waiters. Returns, beside the reply
    /// and what follows, the changes of ours whose locks the message may have moved: our
    /// proposal pending before (it may have answered it) and, when a new version is co-signed,
    /// our abandoned proposals above the last co-signed one (a leg counts them as sent until a
    /// co-signed version overtakes them); `None` when those could not be read (then any lock
    /// may have moved).
    fn step(
        &self,
        id: B256,
        bytes: &[u8],
        now: u64,
        chain: &OnChain,
    ) -> Result<Stepped, SessionError> {
        let mut chans = lock(&self.inner.chans)?;
        if self.is_stopped() {
            return Err(SessionError::Stopped);
        }
        let slot = chans.get_mut(&id).ok_or(SessionError::UnknownChannel(id))?;
        let mut concerned: Option<Vec<UpdateKind>> = Some(
            slot.party
                .pending()
                .map(|p| p.kind.clone())
                .into_iter()
                .collect(),
        );
        let step = slot.party.receive(bytes, now, chain)?;
        let event = step.event.clone();
        if matches!(event, Event::Countersigned(_) | Event::Completed(_)) {
            match self.inner.store.abandoned_proposals(id) {
                Ok(abandoned) => {
                    if let Some(kinds) = concerned.as_mut() {
                        kinds.extend(abandoned.into_iter().map(|(_, kind)| kind));
                    }
                }
                Err(e) => {
                    debug!(channel = %id, error = %e, "abandoned proposals unreadable");
                    concerned = None;
                }
            }
        }
        let out = slot.party.commit(step, &*self.inner.store)?;
        let mut follow = FollowUp::None;
        match event {
            Event::Completed(v) => {
                if let Some(w) = slot.waiter.take() {
                    let _ = w.send(Ok(v));
                }
            }
            Event::Countersigned(_) => {
                if slot.requeue.is_some() && slot.party.pending().is_none() {
                    follow = FollowUp::Repropose;
                }
            }
            Event::Crossed { kind, .. } => {
                slot.requeue = Some(kind);
                follow = FollowUp::CrossingTimer;
            }
            Event::Dropped { reason, .. } => {
                if let Some(w) = slot.waiter.take() {
                    let _ = w.send(Err(SessionError::Dropped(reason)));
                }
            }
            Event::PeerRefused { code, text } => {
                if code == RejectCode::Busy {
                    follow = FollowUp::Resend(slot.busy_again());
                } else {
                    slot.refused = slot.party.pending().map(|p| p.state.version);
                    if let Some(w) = slot.waiter.take() {
                        let _ = w.send(Err(SessionError::Refused { code, text }));
                    }
                }
            }
            Event::Proposed(_) | Event::Reproposed { .. } | Event::RefusedPeer(_) => {}
        }
        Ok((out, follow, concerned))
    }
}

/// What a message stepped: the reply, what follows, and the changes of ours whose locks it may
/// have moved (`None`: any).
type Stepped = (Option<Vec<u8>>, FollowUp, Option<Vec<UpdateKind>>);

/// Adds the hashlocks of the locks `kind` offers, claims or cancels to `out`; `false` when it
/// changes more than locks (a withdrawal, a top-up, the close: any swap on the channel may
/// care).
fn lock_hashlocks(kind: &UpdateKind, out: &mut Vec<swap_core::Hashlock>) -> bool {
    kind.parts().iter().all(|part| {
        let hashlock = match part {
            UpdateKind::Lock { lock } => lock.hashlock,
            UpdateKind::Claim { hashlock, .. } | UpdateKind::CancelExpired { hashlock } => {
                *hashlock
            }
            UpdateKind::Withdraw { .. }
            | UpdateKind::Close
            | UpdateKind::TopUp { .. }
            | UpdateKind::Batch { .. } => return false,
        };
        out.push(swap_core::Hashlock(hashlock.0));
        true
    })
}
