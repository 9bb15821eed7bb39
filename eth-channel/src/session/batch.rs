//! A channel's proposal turns: callers of [`Node::propose`] take turns per channel, and
//! locks and claims that wait meanwhile are proposed together as one batch.

use std::sync::Arc;

use alloy::primitives::B256;
use swap_net::PeerKey;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::{lock, Answer, Node, SessionError};
use crate::machine::PartyError;
use crate::msg::{Message, RejectCode, RejectMsg, UpdateKind, MAX_MESSAGE_BYTES};

impl SessionError {
    /// Whether this is a definitive refusal of a proposal (by our own rules or the peer's),
    /// rather than a state of the channel or the connection that passes.
    fn is_refusal(&self) -> bool {
        match self {
            SessionError::Party(PartyError::Invalid(_)) | SessionError::Dropped(_) => true,
            SessionError::Refused { code, .. } => !matches!(
                code,
                RejectCode::Busy | RejectCode::Crossed | RejectCode::WrongVersion
            ),
            _ => false,
        }
    }

    /// The same error for another change of the same batch.
    fn share(&self) -> SessionError {
        match self {
            SessionError::Busy { channel, version } => SessionError::Busy {
                channel: *channel,
                version: *version,
            },
            SessionError::NotConnected { peer, version } => SessionError::NotConnected {
                peer: *peer,
                version: *version,
            },
            SessionError::Timeout { version } => SessionError::Timeout { version: *version },
            SessionError::Refused { code, text } => SessionError::Refused {
                code: *code,
                text: text.clone(),
            },
            SessionError::Dropped(r) => SessionError::Dropped(r.clone()),
            SessionError::Party(PartyError::Invalid(r)) => {
                SessionError::Party(PartyError::Invalid(r.clone()))
            }
            SessionError::Party(PartyError::Busy(v)) => SessionError::Party(PartyError::Busy(*v)),
            SessionError::UnknownChannel(id) => SessionError::UnknownChannel(*id),
            SessionError::Chain(e) => SessionError::Chain(e.clone()),
            SessionError::Internal(e) => SessionError::Internal(e),
            SessionError::Batch(e) => SessionError::Batch(e.clone()),
            other => SessionError::Batch(other.to_string()),
        }
    }
}

/// A change waiting in a channel's queue, and who waits for its answer.
pub(super) struct Queued {
    ticket: u64,
    kind: UpdateKind,
    answer: oneshot::Sender<Answer>,
}

impl Queued {
    /// Answers its caller: the node was shut down.
    pub(super) fn stopped(self) {
        let _ = self.answer.send(Err(SessionError::Stopped));
    }
}

/// A running [`Node::propose`] call's share of what our side will give (removed on drop).
struct Reserved {
    node: Node,
    id: B256,
    ticket: u64,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Ok(mut chans) = lock(&self.node.inner.chans) {
            if let Some(slot) = chans.get_mut(&self.id) {
                slot.outgoing.remove(&self.ticket);
            }
        }
    }
}

impl Node {
    /// Proposes `kind` on channel `id` and waits for the peer's countersignature: the
    /// co-signed version. After crossing proposals the change may land at a later version
    /// than first proposed. On [`SessionError::NotConnected`] and [`SessionError::Timeout`]
    /// the proposal stays pending (signed and persisted) and goes out on the next
    /// connection; its completion then shows in the party's latest state.
    ///
    /// Calls on one channel take turns: a call made while another's change is in flight waits
    /// for that change's answer (at most [`crate::SessionConfig::request_timeout`], then `Busy`), so
    /// a channel's changes follow each other without a caller's retry delay in between. Locks
    /// and claims that wait meanwhile go out together, as one [`UpdateKind::Batch`] (up to
    /// [`crate::msg::MAX_BATCH`]), whoever takes the next turn proposing them all: one round
    /// trip and one signature each way for all of them. A batch refused (by our rules or the
    /// peer's) is proposed again change by change, so each caller gets its own change's
    /// answer; any other failure is every caller's.
    pub async fn propose(&self, id: B256, kind: UpdateKind) -> Result<u64, SessionError> {
        if self.is_stopped() {
            return Err(SessionError::Stopped);
        }
        let _reserved = self.reserve(id, kind.outgoing())?;
        if !kind.batchable() || self.singles(id)? {
            let turn = self.turn_of(id)?;
            let _turn = self.take_turn(id, turn).await?;
            return self.propose_now(id, kind).await;
        }
        let ticket = self
            .inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        let turn = {
            let mut chans = lock(&self.inner.chans)?;
            let slot = chans.get_mut(&id).ok_or(SessionError::UnknownChannel(id))?;
            slot.queue.push_back(Queued {
                ticket,
                kind,
                answer: tx,
            });
            slot.turn.clone()
        };
        let turn = match self.take_turn(id, turn).await {
            Ok(t) => t,
            Err(busy) => {
                // Still queued: withdrawn, busy. Taken into a batch meanwhile: its answer.
                let withdrawn = lock(&self.inner.chans)?.get_mut(&id).is_some_and(|slot| {
                    let before = slot.queue.len();
                    slot.queue.retain(|q| q.ticket != ticket);
                    slot.queue.len() < before
                });
                if withdrawn {
                    return Err(busy);
                }
                return rx
                    .await
                    .unwrap_or(Err(SessionError::Internal("batch answer dropped")));
            }
        };
        // Our turn: propose what waits (ours in it, unless an earlier batch took it), batch
        // after batch until ours is answered.
        loop {
            if let Ok(answer) = rx.try_recv() {
                drop(turn);
                return answer;
            }
            let batch: Vec<Queued> = {
                let mut chans = lock(&self.inner.chans)?;
                let slot = chans.get_mut(&id).ok_or(SessionError::UnknownChannel(id))?;
                // A caller that stopped waiting (its future dropped) withdrew its change.
                slot.queue.retain(|q| !q.answer.is_closed());
                let most = if slot.singles {
                    1
                } else {
                    crate::msg::MAX_BATCH
                };
                let n = slot.queue.len().min(most);
                slot.queue.drain(..n).collect()
            };
            if batch.is_empty() {
                drop(turn);
                return rx
                    .await
                    .unwrap_or(Err(SessionError::Internal("batch answer dropped")));
            }
            self.propose_batch(id, batch).await;
        }
    }

    /// Proposes the queued changes `batch` as one update and answers each of them.
    async fn propose_batch(&self, id: B256, batch: Vec<Queued>) {
        let kinds: Vec<UpdateKind> = batch.iter().map(|q| q.kind.clone()).collect();
        let n = kinds.len();
        match self.propose_now(id, UpdateKind::batch(kinds)).await {
            Ok(v) => {
                for q in batch {
                    let _ = q.answer.send(Ok(v));
                }
            }
            Err(e) if n > 1 && e.is_refusal() => {
                debug!(channel = %id, changes = n, error = %e, "batch refused: each change alone");
                for q in batch {
                    let answer = self.propose_now(id, q.kind).await;
                    let _ = q.answer.send(answer);
                }
            }
            Err(e) => {
                let mut batch = batch.into_iter();
                let last = batch.next_back();
                for q in batch {
                    let _ = q.answer.send(Err(e.share()));
                }
                if let Some(q) = last {
                    let _ = q.answer.send(Err(e));
                }
            }
        }
    }

    /// The peer's answer to bytes it could not read (`Malformed`, channel and version zero)
    /// while a channel with it has a batch pending (waited for or not: one reloaded at a
    /// restart, or resent after a timeout, is answered so too): that batch's refusal, naming
    /// its channel and version, and the channel marked to propose one change at a time. A peer from before
    /// batches answers a batch so; each unreadable batch gets its own answer, so which of
    /// several pending batches one answer refuses does not matter. (A peer could refuse a
    /// batch outright as well: nothing is refused here that it could not refuse anyway.)
    pub(super) fn batch_unreadable(&self, peer: PeerKey, msg: &Message) -> Option<Message> {
        let Message::Reject(r) = msg else {
            return None;
        };
        if r.channel != B256::ZERO || r.version != 0 || !matches!(r.code, RejectCode::Malformed) {
            return None;
        }
        let mut chans = lock(&self.inner.chans).ok()?;
        let pending_batch = |s: &super::Slot| {
            s.peer == peer
                && s.party
                    .pending()
                    .is_some_and(|p| matches!(p.kind, UpdateKind::Batch { .. }))
        };
        let (id, slot) = chans.iter_mut().find(|(_, s)| pending_batch(s))?;
        let version = slot.party.pending()?.state.version;
        slot.singles = true;
        warn!(channel = %id, version, "the peer cannot read batched updates (an older build): one change at a time on this channel");
        Some(Message::Reject(RejectMsg {
            channel: *id,
            version,
            code: RejectCode::Malformed,
            text: r.text.clone(),
        }))
    }

    /// The peer's answer to bytes it could not read (as in [`Node::batch_unreadable`]) when
    /// no batch of ours to it is pending, but one lost a crossing meanwhile and waits to be
    /// proposed again: that channel goes one change at a time, and the batch is split before
    /// it goes out again (see `repropose_now`). Whether it was that (nothing else to do).
    pub(super) fn requeued_batch_unreadable(&self, peer: PeerKey, msg: &Message) -> bool {
        let Message::Reject(r) = msg else {
            return false;
        };
        if r.channel != B256::ZERO || r.version != 0 || !matches!(r.code, RejectCode::Malformed) {
            return false;
        }
        let Ok(mut chans) = lock(&self.inner.chans) else {
            return false;
        };
        let Some((id, slot)) = chans
            .iter_mut()
            .find(|(_, s)| s.peer == peer && matches!(s.requeue, Some(UpdateKind::Batch { .. })))
        else {
            return false;
        };
        slot.singles = true;
        warn!(channel = %id, "the peer cannot read batched updates (an older build): one change at a time on this channel");
        true
    }

    /// Registers what a [`Node::propose`] call's change will take from our side, for as long
    /// as the returned guard lives (see [`Node::with_party_outgoing`]).
    fn reserve(&self, id: B256, amount: u128) -> Result<Reserved, SessionError> {
        let ticket = self
            .inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if amount > 0 {
            let mut chans = lock(&self.inner.chans)?;
            let slot = chans.get_mut(&id).ok_or(SessionError::UnknownChannel(id))?;
            slot.outgoing.insert(ticket, amount);
        }
        Ok(Reserved {
            node: self.clone(),
            id,
            ticket,
        })
    }

    fn singles(&self, id: B256) -> Result<bool, SessionError> {
        let chans = lock(&self.inner.chans)?;
        let slot = chans.get(&id).ok_or(SessionError::UnknownChannel(id))?;
        Ok(slot.singles || !self.inner.cfg.batches)
    }

    fn turn_of(&self, id: B256) -> Result<Arc<tokio::sync::Mutex<()>>, SessionError> {
        let chans = lock(&self.inner.chans)?;
        let slot = chans.get(&id).ok_or(SessionError::UnknownChannel(id))?;
        Ok(slot.turn.clone())
    }

    /// Waits for channel `id`'s turn, at most the request timeout (then `Busy`).
    async fn take_turn(
        &self,
        id: B256,
        turn: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, SessionError> {
        match tokio::time::timeout(self.inner.cfg.request_timeout, turn.lock_owned()).await {
            Ok(t) => Ok(t),
            Err(_) => Err(SessionError::Busy {
                channel: id,
                version: self.with_party(id, |p| p.next_version())?,
            }),
        }
    }

    /// Proposes `kind` now (the caller holds the channel's turn) and waits for the answer.
    async fn propose_now(&self, id: B256, kind: UpdateKind) -> Result<u64, SessionError> {
        let (chan, deposits) = {
            let chans = lock(&self.inner.chans)?;
            let slot = chans.get(&id).ok_or(SessionError::UnknownChannel(id))?;
            (
                slot.party.channel().clone(),
                deposits_after(&slot.party, &kind),
            )
        };
        let chain = self.inner.chain.on_chain_covering(&chan, deposits).await?;
        let now = self.now_for(Some(&kind)).await?;
        let (tx, rx) = oneshot::channel();
        let (peer, bytes, version) = {
            let mut chans = lock(&self.inner.chans)?;
            if self.is_stopped() {
                return Err(SessionError::Stopped);
            }
            let slot = chans.get_mut(&id).ok_or(SessionError::UnknownChannel(id))?;
            if let Some(p) = slot.party.pending() {
                return Err(SessionError::Busy {
                    channel: id,
                    version: p.state.version,
                });
            }
            if slot.requeue.is_some() || slot.waiter.is_some() {
                return Err(SessionError::Busy {
                    channel: id,
                    version: slot.party.next_version(),
                });
            }
            let step = slot.party.propose(kind, now, &chain)?;
            let bytes = slot.party.commit(step, &*self.inner.store)?;
            let version = slot.party.pending().map_or(0, |p| p.state.version);
            slot.waiter = Some(tx);
            (slot.peer, bytes, version)
        };
        let Some(bytes) = bytes else {
            return Err(SessionError::Internal("a proposal without a message"));
        };
        if bytes.len() > MAX_MESSAGE_BYTES || !self.send_to(peer, bytes) {
            self.forget_waiter(id);
            return Err(SessionError::NotConnected { peer, version });
        }
        match tokio::time::timeout(self.inner.cfg.request_timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(SessionError::Internal("waiter dropped")),
            Err(_) => {
                self.forget_waiter(id);
                let version = self
                    .with_party(id, |p| p.pending().map(|p| p.state.version))?
                    .unwrap_or(version);
                Err(SessionError::Timeout { version })
            }
        }
    }

    fn forget_waiter(&self, id: B256) {
        if let Ok(mut chans) = lock(&self.inner.chans) {
            if let Some(s) = chans.get_mut(&id) {
                s.waiter = None;
            }
        }
    }
}

/// The deposits (A's, B's) the state proposing `kind` counts: the latest co-signed ones, and
/// ours topped up by a `TopUp` (read fresh from the chain when a kept read falls short).
pub(super) fn deposits_after(party: &crate::machine::Party, kind: &UpdateKind) -> (u128, u128) {
    let s = &party.latest().state;
    let (mut a, mut b) = (s.depositA, s.depositB);
    if let UpdateKind::TopUp { amount } = kind {
        match party.side() {
            eth_adapter::channel::Side::A => a = a.saturating_add(*amount),
            eth_adapter::channel::Side::B => b = b.saturating_add(*amount),
        }
    }
    (a, b)
}
