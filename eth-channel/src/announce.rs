//! Announcing a new channel to its peer: `Open` / `Opened` (or a `Reject` of version 0).
//!
//! Party A, once its channel is open on chain at a final block and recorded in its own store
//! ([`Node::add_channel`]), sends [`Message::Open`] with the channel's parameters, chain id and
//! contract ([`Node::announce`]). Party B accepts only a channel whose party B is its own key,
//! on the chain and in the contract it was told to accept ([`Node::accept_opens`]), open at a
//! final block; it reads the deposits from the chain (the message carries none), records the
//! channel and the peer's transport key in its store, serves it, and answers `Opened`.
//! Anything else gets a typed reject ([`RejectCode`]) and changes nothing. An announcement of a
//! channel B already holds with the same peer is answered `Opened` again (A's first answer may
//! have been lost).

use alloy::primitives::{Address, B256};
use eth_adapter::channel::Side;
use swap_net::PeerKey;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::msg::{Message, OpenMsg, OpenedMsg, RejectCode, RejectMsg, MAX_MESSAGE_BYTES};

use crate::session::{lock, Node, SessionError};
use crate::Party;

impl Node {
    /// Accept channels announced to us on chain `chain_id` in contract `contract` (set once;
    /// until then every announcement is refused with [`RejectCode::NotAccepting`]).
    pub fn accept_opens(&self, chain_id: u64, contract: Address) -> bool {
        self.inner.accept.set((chain_id, contract)).is_ok()
    }

    /// Announces channel `id` (ours as party A, added with [`Node::add_channel`], open on
    /// chain) to its peer and waits for the answer. The peer's refusal is
    /// [`SessionError::Refused`] with its code; nothing was recorded there.
    pub async fn announce(&self, id: B256) -> Result<(), SessionError> {
        let (chan, peer, side) = {
            let chans = lock(&self.inner.chans)?;
            let slot = chans.get(&id).ok_or(SessionError::UnknownChannel(id))?;
            (slot.party.channel().clone(), slot.peer, slot.party.side())
        };
        if side != Side::A {
            return Err(SessionError::Internal("only party A announces a channel"));
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.opens)?.insert(id, tx);
        let bytes = Message::Open(OpenMsg::new(&chan)).encode();
        if bytes.len() > MAX_MESSAGE_BYTES || !self.send_to(peer, bytes) {
            lock(&self.inner.opens)?.remove(&id);
            return Err(SessionError::NotConnected { peer, version: 0 });
        }
        let out = tokio::time::timeout(self.inner.cfg.request_timeout, rx).await;
        lock(&self.inner.opens)?.remove(&id);
        match out {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(SessionError::Internal("announcement waiter dropped")),
            Err(_) => Err(SessionError::Timeout { version: 0 }),
        }
    }

    /// Gives the answer to our announcement of `id` to its waiter: false if none waits.
    pub(crate) fn answer_open(&self, id: B256, answer: Result<(), SessionError>) -> bool {
        let Ok(mut opens) = lock(&self.inner.opens) else {
            return false;
        };
        match opens.remove(&id) {
            Some(w) => {
                let _ = w.send(answer);
                true
            }
            None => false,
        }
    }

    /// Checks and records a channel `peer` announced: the answer to send.
    pub(crate) async fn accept_open(&self, peer: PeerKey, o: &OpenMsg) -> Message {
        let chan = o.channel();
        let id = chan.id();
        let reject = |code: RejectCode, text: &str| {
            debug!(%peer, channel = %id, ?code, "announced channel refused");
            Message::Reject(RejectMsg {
                channel: id,
                version: 0,
                code,
                text: text.into(),
            })
        };
        let Some(&(chain_id, contract)) = self.inner.accept.get() else {
            return reject(RejectCode::NotAccepting, "announced channels not accepted");
        };
        if o.chain_id != chain_id {
            return reject(RejectCode::WrongChain, "another chain");
        }
        if o.contract != contract {
            return reject(RejectCode::WrongContract, "another contract");
        }
        if o.b != self.inner.key.address() || o.a == o.b {
            return reject(RejectCode::NotParty, "party B is not our key");
        }
        // Held already: the same peer announcing again gets the same answer.
        match self.chan_peer(id) {
            Ok(Some(p)) if p == peer => return Message::Opened(OpenedMsg { channel: id }),
            Ok(Some(_)) => return reject(RejectCode::Exists, "held with another peer"),
            Ok(None) => {}
            Err(_) => return reject(RejectCode::Unavailable, "try again"),
        }
        match self.inner.store.load(id) {
            Ok(None) => {}
            Ok(Some(_)) => return reject(RejectCode::Exists, "recorded already"),
            Err(e) => {
                warn!(channel = %id, error = %e, "store unreadable: announcement not handled");
                return reject(RejectCode::Unavailable, "try again");
            }
        }
        // Read before the check: the channel is open at a block at or above it, so none of
        // its closings is before it (where its watcher starts).
        let from = match self.inner.chain.final_block().await {
            Ok(b) => b,
            Err(e) => {
                warn!(channel = %id, error = %e, "chain unreadable: announcement not handled");
                return reject(RejectCode::Unavailable, "try again");
            }
        };
        let on = match self.inner.chain.open_at_final(&chan).await {
            Ok(Some(on)) => on,
            Ok(None) => return reject(RejectCode::NotOpen, "not open at a final block"),
            Err(e) => {
                warn!(channel = %id, error = %e, "chain unreadable: announcement not handled");
                return reject(RejectCode::Unavailable, "try again");
            }
        };
        // Recorded under this lock, which `shutdown` waits for once it has stopped the node:
        // nothing is written once it returned.
        let Ok(_recording) = lock(&self.inner.announcing) else {
            return reject(RejectCode::Unavailable, "try again");
        };
        if self.is_stopped() {
            return reject(RejectCode::Unavailable, "shutting down");
        }
        let party = match Party::open(
            chan,
            Side::B,
            self.inner.key.clone(),
            self.inner.party_cfg,
            on.deposit_a,
            on.deposit_b,
            &*self.inner.store,
        ) {
            Ok(p) => p,
            Err(e) => {
                warn!(channel = %id, error = %e, "announced channel not recorded");
                return reject(RejectCode::Unavailable, "not recorded");
            }
        };
        if let Err(e) = self.inner.store.record_peer(id, peer.0, None) {
            // The channel is recorded without its peer: the next announcement (same peer)
            // finds it in the store and is refused `Exists` until an operator sets the peer.
            warn!(channel = %id, error = %e, "announced channel's peer not recorded");
            return reject(RejectCode::Unavailable, "peer not recorded");
        }
        if let Err(e) = self.inner.store.record_open_block(id, from) {
            // Its watcher then starts at block 0: slower, nothing missed.
            warn!(channel = %id, error = %e, "announced channel's open block not recorded");
        }
        if let Err(e) = self.insert_party(party, peer) {
            warn!(channel = %id, error = %e, "announced channel recorded but not served");
        }
        info!(%peer, channel = %id, deposit_a = on.deposit_a, deposit_b = on.deposit_b, "channel announced and recorded");
        Message::Opened(OpenedMsg { channel: id })
    }
}
