//! The node's channel message handler: LDK's channel manager, counting per channel the
//! messages from its peer that end LDK's wait for an answer (see `ticker.rs`).
//!
//! LDK marks, at each timer tick, every channel whose connected peer owes it a message, and
//! disconnects the peer at the next tick if the channel is still marked; a revocation or a
//! reestablishment from the peer clears the mark. The ticker takes its quick ticks only once
//! every channel a tick may have marked had such an answer, which it reads here: the count
//! moves after LDK handled the message, so a count seen moved means the mark is cleared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bitcoin::constants::ChainHash;
use bitcoin::secp256k1::PublicKey;
use lightning::ln::msgs::{
    AcceptChannel, AcceptChannelV2, AnnouncementSignatures, BaseMessageHandler,
    ChannelMessageHandler, ChannelReady, ChannelReestablish, ChannelUpdate, ClosingSigned,
    CommitmentSigned, ErrorMessage, FundingCreated, FundingSigned, Init, MessageSendEvent,
    OpenChannel, OpenChannelV2, PeerStorage, PeerStorageRetrieval, RevokeAndACK, Shutdown,
    SpliceAck, SpliceInit, SpliceLocked, Stfu, TxAbort, TxAckRbf, TxAddInput, TxAddOutput,
    TxComplete, TxInitRbf, TxRemoveInput, TxRemoveOutput, TxSignatures, UpdateAddHTLC,
    UpdateFailHTLC, UpdateFailMalformedHTLC, UpdateFee, UpdateFulfillHTLC,
};
use lightning::ln::types::ChannelId;
use lightning::types::features::{InitFeatures, NodeFeatures};

use crate::types::ChannelManager;

/// What the node heard from each channel's peer, for the channels LDK lists (the ticker
/// tracks them at each look; messages about a channel not tracked, or from a node that is not
/// its peer, change nothing).
#[derive(Debug, Default)]
pub(crate) struct Answers(Mutex<HashMap<(PublicKey, ChannelId), Heard>>);

/// What was heard from a channel's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heard {
    /// Its answers (revocations, reestablishments) whose handling began.
    pub(crate) begun: u64,
    /// Its answers LDK handled: each cleared LDK's mark on the channel (messages from one
    /// peer are handled one at a time, so an answer counted here after `begun` was read
    /// began after that read).
    pub(crate) done: u64,
    /// When it last sent a message about the channel (taken before LDK handles it).
    pub(crate) last: Instant,
}

impl Heard {
    /// Nothing heard yet, counted as heard at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            begun: 0,
            done: 0,
            last: now,
        }
    }
}

impl Answers {
    fn with(&self, peer: PublicKey, channel: ChannelId, f: impl FnOnce(&mut Heard)) {
        if let Some(heard) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&(peer, channel))
        {
            f(heard);
        }
    }

    /// A message about `channel` from `peer`, before LDK handles it.
    fn heard(&self, peer: PublicKey, channel: ChannelId) {
        self.with(peer, channel, |h| h.last = Instant::now());
    }

    /// `peer` connected: each of its channels waits for its reestablishment from now.
    fn connected(&self, peer: PublicKey) {
        let now = Instant::now();
        for ((p, _), heard) in self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
        {
            if *p == peer {
                heard.last = now;
            }
        }
    }

    /// An answer about `channel` from `peer`, before LDK handles it.
    fn answer_begun(&self, peer: PublicKey, channel: ChannelId) {
        self.with(peer, channel, |h| {
            h.begun += 1;
            h.last = Instant::now();
        });
    }

    /// An answer LDK handled.
    fn answer_done(&self, peer: PublicKey, channel: ChannelId) {
        self.with(peer, channel, |h| h.done += 1);
    }

    /// Tracks exactly `channels` (each with its peer), as LDK lists them now, and tells what
    /// was heard of each. A channel tracked from now on counts as heard from now.
    pub(crate) fn track(&self, channels: &[(PublicKey, ChannelId)], now: Instant) -> Vec<Heard> {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|k, _| channels.contains(k));
        channels
            .iter()
            .map(|k| *all.entry(*k).or_insert(Heard::new(now)))
            .collect()
    }
}

/// LDK's channel manager as the peer manager's channel message handler, telling
/// [`Answers`] of what each channel's peer sends; everything is passed on as is.
pub(crate) struct Answering {
    pub(crate) manager: Arc<ChannelManager>,
    pub(crate) answers: Arc<Answers>,
}

impl BaseMessageHandler for Answering {
    fn get_and_clear_pending_msg_events(&self) -> Vec<MessageSendEvent> {
        self.manager.get_and_clear_pending_msg_events()
    }
    fn peer_disconnected(&self, their_node_id: PublicKey) {
        self.manager.peer_disconnected(their_node_id)
    }
    fn provided_node_features(&self) -> NodeFeatures {
        self.manager.provided_node_features()
    }
    fn provided_init_features(&self, their_node_id: PublicKey) -> InitFeatures {
        self.manager.provided_init_features(their_node_id)
    }
    fn peer_connected(
        &self,
        their_node_id: PublicKey,
        msg: &Init,
        inbound: bool,
    ) -> Result<(), ()> {
        // Until the peer reestablishes them, LDK counts its channels as waiting on it (a
        // wait the channel list does not tell from a channel not yet ready): heard now.
        self.answers.connected(their_node_id);
        self.manager.peer_connected(their_node_id, msg, inbound)
    }
}

/// Handlers that pass a peer's message on to LDK as it is.
macro_rules! passed {
    ($($name:ident($msg:ty);)*) => {$(
        fn $name(&self, their_node_id: PublicKey, msg: $msg) {
            self.manager.$name(their_node_id, msg)
        }
    )*};
}

/// Handlers that note the peer heard on the message's channel, then pass it on.
macro_rules! heard {
    ($($name:ident($msg:ty);)*) => {$(
        fn $name(&self, their_node_id: PublicKey, msg: $msg) {
            self.answers.heard(their_node_id, msg.channel_id);
            self.manager.$name(their_node_id, msg)
        }
    )*};
}

/// Handlers of the peer's answers (they clear LDK's mark): counted begun before LDK handles
/// them, done after.
macro_rules! answer {
    ($($name:ident($msg:ty);)*) => {$(
        fn $name(&self, their_node_id: PublicKey, msg: $msg) {
            self.answers.answer_begun(their_node_id, msg.channel_id);
            ChannelMessageHandler::$name(&*self.manager, their_node_id, msg);
            self.answers.answer_done(their_node_id, msg.channel_id);
        }
    )*};
}

impl ChannelMessageHandler for Answering {
    passed! {
        handle_open_channel(&OpenChannel);
        handle_open_channel_v2(&OpenChannelV2);
        handle_accept_channel(&AcceptChannel);
        handle_accept_channel_v2(&AcceptChannelV2);
        handle_funding_created(&FundingCreated);
        handle_peer_storage(PeerStorage);
        handle_peer_storage_retrieval(PeerStorageRetrieval);
        handle_channel_update(&ChannelUpdate);
        handle_error(&ErrorMessage);
    }
    heard! {
        handle_funding_signed(&FundingSigned);
        handle_channel_ready(&ChannelReady);
        handle_shutdown(&Shutdown);
        handle_closing_signed(&ClosingSigned);
        handle_stfu(&Stfu);
        handle_splice_init(&SpliceInit);
        handle_splice_ack(&SpliceAck);
        handle_splice_locked(&SpliceLocked);
        handle_tx_add_input(&TxAddInput);
        handle_tx_add_output(&TxAddOutput);
        handle_tx_remove_input(&TxRemoveInput);
        handle_tx_remove_output(&TxRemoveOutput);
        handle_tx_complete(&TxComplete);
        handle_tx_signatures(&TxSignatures);
        handle_tx_init_rbf(&TxInitRbf);
        handle_tx_ack_rbf(&TxAckRbf);
        handle_tx_abort(&TxAbort);
        handle_update_add_htlc(&UpdateAddHTLC);
        handle_update_fulfill_htlc(UpdateFulfillHTLC);
        handle_update_fail_htlc(&UpdateFailHTLC);
        handle_update_fail_malformed_htlc(&UpdateFailMalformedHTLC);
        handle_commitment_signed(&CommitmentSigned);
        handle_update_fee(&UpdateFee);
        handle_announcement_signatures(&AnnouncementSignatures);
    }
    answer! {
        handle_revoke_and_ack(&RevokeAndACK);
        handle_channel_reestablish(&ChannelReestablish);
    }
    fn handle_commitment_signed_batch(
        &self,
        their_node_id: PublicKey,
        channel_id: ChannelId,
        batch: Vec<CommitmentSigned>,
    ) {
        self.answers.heard(their_node_id, channel_id);
        self.manager
            .handle_commitment_signed_batch(their_node_id, channel_id, batch)
    }
    fn get_chain_hashes(&self) -> Option<Vec<ChainHash>> {
        self.manager.get_chain_hashes()
    }
    fn message_received(&self) {
        self.manager.message_received()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use std::time::Duration;

    fn node(n: u8) -> PublicKey {
        let secret = SecretKey::from_slice(&[n; 32]).expect("a valid key");
        PublicKey::from_secret_key(&Secp256k1::new(), &secret)
    }

    #[test]
    fn only_a_tracked_channels_own_peer_is_heard_and_tracking_follows_ldks_list() {
        let answers = Answers::default();
        let (peer, other) = (node(1), node(2));
        let (ch, stranger) = (
            ChannelId::from_bytes([1; 32]),
            ChannelId::from_bytes([9; 32]),
        );
        let t0 = Instant::now();
        assert_eq!(answers.track(&[(peer, ch)], t0), vec![Heard::new(t0)]);
        // Another node naming the channel, or a channel LDK does not list: nothing.
        answers.answer_begun(other, ch);
        answers.answer_done(other, ch);
        answers.heard(other, ch);
        answers.answer_begun(peer, stranger);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(answers.track(&[(peer, ch)], later), vec![Heard::new(t0)]);
        assert_eq!(answers.0.lock().unwrap().len(), 1, "nothing else kept");
        // Its peer: an answer begun, then handled; any message is heard.
        answers.answer_begun(peer, ch);
        let begun = answers.track(&[(peer, ch)], later)[0];
        assert_eq!((begun.begun, begun.done), (1, 0));
        assert!(begun.last >= t0);
        answers.answer_done(peer, ch);
        answers.heard(peer, ch);
        let heard = answers.track(&[(peer, ch)], later)[0];
        assert_eq!((heard.begun, heard.done), (1, 1));
        assert!(heard.last >= begun.last);
        // Its peer connecting again counts as heard (its reestablishment is awaited).
        let before = answers.track(&[(peer, ch)], later)[0].last;
        answers.connected(other);
        assert_eq!(answers.track(&[(peer, ch)], later)[0].last, before);
        answers.connected(peer);
        assert!(answers.track(&[(peer, ch)], later)[0].last > before);
        // A channel LDK no longer lists is dropped; listed again, it starts over.
        assert!(answers.track(&[], later).is_empty());
        assert_eq!(answers.track(&[(peer, ch)], later), vec![Heard::new(later)]);
    }
}
