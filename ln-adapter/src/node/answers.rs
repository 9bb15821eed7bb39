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

impl ChannelMessageHandler for Answering {
    fn handle_open_channel(&self, their_node_id: PublicKey, msg: &OpenChannel) {
        self.manager.handle_open_channel(their_node_id, msg)
    }
    fn handle_open_channel_v2(&self, their_node_id: PublicKey, msg: &OpenChannelV2) {
        self.manager.handle_open_channel_v2(their_node_id, msg)
    }
    fn handle_accept_channel(&self, their_node_id: PublicKey, msg: &AcceptChannel) {
        self.manager.handle_accept_channel(their_node_id, msg)
    }
    fn handle_accept_channel_v2(&self, their_node_id: PublicKey, msg: &AcceptChannelV2) {
        self.manager.handle_accept_channel_v2(their_node_id, msg)
    }
    fn handle_funding_created(&self, their_node_id: PublicKey, msg: &FundingCreated) {
        self.manager.handle_funding_created(their_node_id, msg)
    }
    fn handle_funding_signed(&self, their_node_id: PublicKey, msg: &FundingSigned) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_funding_signed(their_node_id, msg)
    }
    fn handle_channel_ready(&self, their_node_id: PublicKey, msg: &ChannelReady) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_channel_ready(their_node_id, msg)
    }
    fn handle_peer_storage(&self, their_node_id: PublicKey, msg: PeerStorage) {
        self.manager.handle_peer_storage(their_node_id, msg)
    }
    fn handle_peer_storage_retrieval(&self, their_node_id: PublicKey, msg: PeerStorageRetrieval) {
        self.manager
            .handle_peer_storage_retrieval(their_node_id, msg)
    }
    fn handle_shutdown(&self, their_node_id: PublicKey, msg: &Shutdown) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_shutdown(their_node_id, msg)
    }
    fn handle_closing_signed(&self, their_node_id: PublicKey, msg: &ClosingSigned) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_closing_signed(their_node_id, msg)
    }
    fn handle_stfu(&self, their_node_id: PublicKey, msg: &Stfu) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_stfu(their_node_id, msg)
    }
    fn handle_splice_init(&self, their_node_id: PublicKey, msg: &SpliceInit) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_splice_init(their_node_id, msg)
    }
    fn handle_splice_ack(&self, their_node_id: PublicKey, msg: &SpliceAck) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_splice_ack(their_node_id, msg)
    }
    fn handle_splice_locked(&self, their_node_id: PublicKey, msg: &SpliceLocked) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_splice_locked(their_node_id, msg)
    }
    fn handle_tx_add_input(&self, their_node_id: PublicKey, msg: &TxAddInput) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_add_input(their_node_id, msg)
    }
    fn handle_tx_add_output(&self, their_node_id: PublicKey, msg: &TxAddOutput) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_add_output(their_node_id, msg)
    }
    fn handle_tx_remove_input(&self, their_node_id: PublicKey, msg: &TxRemoveInput) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_remove_input(their_node_id, msg)
    }
    fn handle_tx_remove_output(&self, their_node_id: PublicKey, msg: &TxRemoveOutput) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_remove_output(their_node_id, msg)
    }
    fn handle_tx_complete(&self, their_node_id: PublicKey, msg: &TxComplete) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_complete(their_node_id, msg)
    }
    fn handle_tx_signatures(&self, their_node_id: PublicKey, msg: &TxSignatures) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_signatures(their_node_id, msg)
    }
    fn handle_tx_init_rbf(&self, their_node_id: PublicKey, msg: &TxInitRbf) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_init_rbf(their_node_id, msg)
    }
    fn handle_tx_ack_rbf(&self, their_node_id: PublicKey, msg: &TxAckRbf) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_ack_rbf(their_node_id, msg)
    }
    fn handle_tx_abort(&self, their_node_id: PublicKey, msg: &TxAbort) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_tx_abort(their_node_id, msg)
    }
    fn handle_update_add_htlc(&self, their_node_id: PublicKey, msg: &UpdateAddHTLC) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_update_add_htlc(their_node_id, msg)
    }
    fn handle_update_fulfill_htlc(&self, their_node_id: PublicKey, msg: UpdateFulfillHTLC) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_update_fulfill_htlc(their_node_id, msg)
    }
    fn handle_update_fail_htlc(&self, their_node_id: PublicKey, msg: &UpdateFailHTLC) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_update_fail_htlc(their_node_id, msg)
    }
    fn handle_update_fail_malformed_htlc(
        &self,
        their_node_id: PublicKey,
        msg: &UpdateFailMalformedHTLC,
    ) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager
            .handle_update_fail_malformed_htlc(their_node_id, msg)
    }
    fn handle_commitment_signed(&self, their_node_id: PublicKey, msg: &CommitmentSigned) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_commitment_signed(their_node_id, msg)
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
    fn handle_revoke_and_ack(&self, their_node_id: PublicKey, msg: &RevokeAndACK) {
        self.answers.answer_begun(their_node_id, msg.channel_id);
        ChannelMessageHandler::handle_revoke_and_ack(&*self.manager, their_node_id, msg);
        self.answers.answer_done(their_node_id, msg.channel_id);
    }
    fn handle_update_fee(&self, their_node_id: PublicKey, msg: &UpdateFee) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager.handle_update_fee(their_node_id, msg)
    }
    fn handle_announcement_signatures(
        &self,
        their_node_id: PublicKey,
        msg: &AnnouncementSignatures,
    ) {
        self.answers.heard(their_node_id, msg.channel_id);
        self.manager
            .handle_announcement_signatures(their_node_id, msg)
    }
    fn handle_channel_reestablish(&self, their_node_id: PublicKey, msg: &ChannelReestablish) {
        self.answers.answer_begun(their_node_id, msg.channel_id);
        ChannelMessageHandler::handle_channel_reestablish(&*self.manager, their_node_id, msg);
        self.answers.answer_done(their_node_id, msg.channel_id);
    }
    fn handle_channel_update(&self, their_node_id: PublicKey, msg: &ChannelUpdate) {
        self.manager.handle_channel_update(their_node_id, msg)
    }
    fn handle_error(&self, their_node_id: PublicKey, msg: &ErrorMessage) {
        self.manager.handle_error(their_node_id, msg)
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
