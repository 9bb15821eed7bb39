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

/// Per channel, how many revocations and reestablishments its peer sent that LDK handled.
#[derive(Debug, Default)]
pub(crate) struct Answers(Mutex<HashMap<ChannelId, u64>>);

impl Answers {
    fn answered(&self, channel: ChannelId) {
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(channel)
            .or_default() += 1;
    }

    /// The count for `channel` (0 before its first answer).
    pub(crate) fn of(&self, channel: &ChannelId) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .copied()
            .unwrap_or(0)
    }
}

/// LDK's channel manager as the peer manager's channel message handler, counting
/// [`Answers`]; everything else is passed through as is.
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
        self.manager.handle_funding_signed(their_node_id, msg)
    }
    fn handle_channel_ready(&self, their_node_id: PublicKey, msg: &ChannelReady) {
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
        self.manager.handle_shutdown(their_node_id, msg)
    }
    fn handle_closing_signed(&self, their_node_id: PublicKey, msg: &ClosingSigned) {
        self.manager.handle_closing_signed(their_node_id, msg)
    }
    fn handle_stfu(&self, their_node_id: PublicKey, msg: &Stfu) {
        self.manager.handle_stfu(their_node_id, msg)
    }
    fn handle_splice_init(&self, their_node_id: PublicKey, msg: &SpliceInit) {
        self.manager.handle_splice_init(their_node_id, msg)
    }
    fn handle_splice_ack(&self, their_node_id: PublicKey, msg: &SpliceAck) {
        self.manager.handle_splice_ack(their_node_id, msg)
    }
    fn handle_splice_locked(&self, their_node_id: PublicKey, msg: &SpliceLocked) {
        self.manager.handle_splice_locked(their_node_id, msg)
    }
    fn handle_tx_add_input(&self, their_node_id: PublicKey, msg: &TxAddInput) {
        self.manager.handle_tx_add_input(their_node_id, msg)
    }
    fn handle_tx_add_output(&self, their_node_id: PublicKey, msg: &TxAddOutput) {
        self.manager.handle_tx_add_output(their_node_id, msg)
    }
    fn handle_tx_remove_input(&self, their_node_id: PublicKey, msg: &TxRemoveInput) {
        self.manager.handle_tx_remove_input(their_node_id, msg)
    }
    fn handle_tx_remove_output(&self, their_node_id: PublicKey, msg: &TxRemoveOutput) {
        self.manager.handle_tx_remove_output(their_node_id, msg)
    }
    fn handle_tx_complete(&self, their_node_id: PublicKey, msg: &TxComplete) {
        self.manager.handle_tx_complete(their_node_id, msg)
    }
    fn handle_tx_signatures(&self, their_node_id: PublicKey, msg: &TxSignatures) {
        self.manager.handle_tx_signatures(their_node_id, msg)
    }
    fn handle_tx_init_rbf(&self, their_node_id: PublicKey, msg: &TxInitRbf) {
        self.manager.handle_tx_init_rbf(their_node_id, msg)
    }
    fn handle_tx_ack_rbf(&self, their_node_id: PublicKey, msg: &TxAckRbf) {
        self.manager.handle_tx_ack_rbf(their_node_id, msg)
    }
    fn handle_tx_abort(&self, their_node_id: PublicKey, msg: &TxAbort) {
        self.manager.handle_tx_abort(their_node_id, msg)
    }
    fn handle_update_add_htlc(&self, their_node_id: PublicKey, msg: &UpdateAddHTLC) {
        self.manager.handle_update_add_htlc(their_node_id, msg)
    }
    fn handle_update_fulfill_htlc(&self, their_node_id: PublicKey, msg: UpdateFulfillHTLC) {
        self.manager.handle_update_fulfill_htlc(their_node_id, msg)
    }
    fn handle_update_fail_htlc(&self, their_node_id: PublicKey, msg: &UpdateFailHTLC) {
        self.manager.handle_update_fail_htlc(their_node_id, msg)
    }
    fn handle_update_fail_malformed_htlc(
        &self,
        their_node_id: PublicKey,
        msg: &UpdateFailMalformedHTLC,
    ) {
        self.manager
            .handle_update_fail_malformed_htlc(their_node_id, msg)
    }
    fn handle_commitment_signed(&self, their_node_id: PublicKey, msg: &CommitmentSigned) {
        self.manager.handle_commitment_signed(their_node_id, msg)
    }
    fn handle_commitment_signed_batch(
        &self,
        their_node_id: PublicKey,
        channel_id: ChannelId,
        batch: Vec<CommitmentSigned>,
    ) {
        self.manager
            .handle_commitment_signed_batch(their_node_id, channel_id, batch)
    }
    fn handle_revoke_and_ack(&self, their_node_id: PublicKey, msg: &RevokeAndACK) {
        ChannelMessageHandler::handle_revoke_and_ack(&*self.manager, their_node_id, msg);
        self.answers.answered(msg.channel_id);
    }
    fn handle_update_fee(&self, their_node_id: PublicKey, msg: &UpdateFee) {
        self.manager.handle_update_fee(their_node_id, msg)
    }
    fn handle_announcement_signatures(
        &self,
        their_node_id: PublicKey,
        msg: &AnnouncementSignatures,
    ) {
        self.manager
            .handle_announcement_signatures(their_node_id, msg)
    }
    fn handle_channel_reestablish(&self, their_node_id: PublicKey, msg: &ChannelReestablish) {
        ChannelMessageHandler::handle_channel_reestablish(&*self.manager, their_node_id, msg);
        self.answers.answered(msg.channel_id);
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
