//! LDK's events: what the node does about them, and what it tells its owner
//! ([`LnEvent`] on a broadcast channel).

use std::sync::Arc;

use bitcoin::secp256k1::PublicKey;
use bitcoin::Txid;
use btc_adapter::rpc::RpcClient;
use lightning::events::{
    Event, FundingInfo, HTLCHandlingFailureReason, HTLCHandlingFailureType, PaymentFailureReason,
    ReplayEvent,
};
use lightning::ln::types::ChannelId;
use lightning::ln::LocalHTLCFailureReason;
use swap_core::{Hashlock, Preimage};
use tokio::sync::broadcast;

use crate::io::FeeCache;
use crate::types::{ChannelManager, Sweeper};
use crate::wallet::{funding_transaction, unlock_inputs};

/// What happened on the Lightning node, for its owner. Preimages are redacted in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LnEvent {
    /// A channel's funding transaction was signed (LDK broadcasts it once the peer signed).
    ChannelPending {
        /// The channel.
        channel_id: ChannelId,
        /// The peer.
        counterparty: PublicKey,
        /// The funding transaction.
        funding_txid: Txid,
    },
    /// A channel can carry payments.
    ChannelReady {
        /// The channel.
        channel_id: ChannelId,
        /// The peer.
        counterparty: PublicKey,
    },
    /// A channel is closed (its closing transaction may still confirm).
    ChannelClosed {
        /// The channel.
        channel_id: ChannelId,
        /// The peer, when known.
        counterparty: Option<PublicKey>,
        /// LDK's reason, as text.
        reason: String,
    },
    /// A payment to one of our hold invoices arrived and is held: claim it with the preimage
    /// before `claim_deadline`, or fail it back.
    PaymentClaimable {
        /// Its payment hash.
        hashlock: Hashlock,
        /// What arrived.
        amount_msat: u64,
        /// The height by which it must be claimed.
        claim_deadline: Option<u32>,
    },
    /// A payment held for us was failed back by LDK at its claim deadline.
    PaymentFailedBack {
        /// Its payment hash.
        hashlock: Hashlock,
    },
    /// A held payment was claimed.
    PaymentClaimed {
        /// Its payment hash.
        hashlock: Hashlock,
        /// What we got.
        amount_msat: u64,
    },
    /// A payment of ours succeeded: the payee revealed the preimage.
    PaymentSent {
        /// The id we sent it with.
        payment_id: [u8; 32],
        /// Its payment hash.
        hashlock: Hashlock,
        /// The payee's preimage.
        preimage: Preimage,
        /// Routing fees paid.
        fee_paid_msat: Option<u64>,
    },
    /// A payment of ours failed for good (the HTLCs came back).
    PaymentFailed {
        /// The id we sent it with.
        payment_id: [u8; 32],
        /// Its payment hash.
        hashlock: Option<Hashlock>,
        /// LDK's reason, as text.
        reason: String,
    },
}

/// Handles LDK's events (called by the node's background loop).
pub(crate) struct EventHandler {
    pub(crate) channel_manager: Arc<ChannelManager>,
    pub(crate) rpc: Arc<RpcClient>,
    pub(crate) chain: swap_core::ChainId,
    pub(crate) fees: Arc<FeeCache>,
    pub(crate) sweeper: Arc<Sweeper>,
    pub(crate) notify: broadcast::Sender<LnEvent>,
    /// Told every event, with its payment hash when it has one ([`crate::LnNode::changes`]).
    pub(crate) changed: swap_core::ChangeFeed,
    /// Where preimages and held payments are recorded before an event counts as handled.
    pub(crate) store: Arc<crate::types::Store>,
    /// LDK's fee bumps of anchor channels' force closes, paid from the node wallet.
    pub(crate) bumper: Arc<crate::anchors::Bumper>,
    /// [`crate::LnConfig::anchor_reserve_sats`].
    pub(crate) anchor_reserve_sats: u64,
    /// The channel monitors (closed anchor channels still being claimed count for the reserve).
    pub(crate) chain_monitor: Arc<crate::types::ChainMonitor>,
    /// Told of each inbound channel request (no quick timer tick for a while after one:
    /// see `node/ticker.rs`).
    pub(crate) open_requests: Arc<crate::node::ticker::OpenRequests>,
    /// Legs waiting for room in a channel, woken by events of HTLCs leaving one.
    pub(crate) room: Arc<crate::room::Room>,
}

/// Records that payment `id` to `hashlock` failed (every HTLC of it back, or never out). If
/// it is the leg's own payment (the sent record's), the leg failed for good, or, when LDK
/// found no route for it, it is sent again ([`crate::ledger::record_unrouted`]; the
/// [`crate::rail::MOST_UNROUTED`]th such failure is for good). Another payment to the hash
/// than the leg's own (an earlier hand-over's failure told late, an extra payment by hand)
/// changes nothing of the leg; a hash no leg paid, or whose sent record cannot be read, is
/// marked failed as before (an unreadable record must not hold up every later event).
pub(crate) fn record_failed(
    store: &crate::types::Store,
    hashlock: &Hashlock,
    id: &[u8; 32],
    reason: Option<PaymentFailureReason>,
) -> Result<(), crate::LnError> {
    use crate::ledger::{self, SentState};
    // Not between `LnRail::pay`'s reading of the leg's records and its new hand-over's.
    let _legs = store
        .legs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let leg = match ledger::sent(store, hashlock) {
        Ok(leg) => leg,
        Err(crate::LnError::Decode(e)) => {
            tracing::warn!(%hashlock, error = %e, "unreadable sent record: the payment failed");
            None
        }
        Err(e) => return Err(e),
    };
    match leg {
        Some(s) if s.payment_id != *id => Ok(()),
        Some(s)
            if reason == Some(PaymentFailureReason::RouteNotFound)
                && s.state != SentState::Cancelled =>
        {
            let before = ledger::unrouted(store, hashlock).ok().flatten();
            let failures = match before {
                // Told again: recorded already.
                Some((was, _)) if was == *id => return Ok(()),
                Some((_, n)) => n.saturating_add(1),
                None => 1,
            };
            if failures >= crate::rail::MOST_UNROUTED {
                return ledger::mark(store, ledger::PAY_FAILED, hashlock);
            }
            tracing::info!(%hashlock, failures, "the payment found no route: it is sent again");
            ledger::record_unrouted(store, hashlock, id, failures)
        }
        _ => ledger::mark(store, ledger::PAY_FAILED, hashlock),
    }
}

impl EventHandler {
    fn tell(&self, event: LnEvent) {
        // Nobody listening is fine.
        let hashlock = match &event {
            LnEvent::PaymentClaimable { hashlock, .. }
            | LnEvent::PaymentFailedBack { hashlock }
            | LnEvent::PaymentClaimed { hashlock, .. }
            | LnEvent::PaymentSent { hashlock, .. } => Some(*hashlock),
            LnEvent::PaymentFailed { hashlock, .. } => *hashlock,
            LnEvent::ChannelPending { .. }
            | LnEvent::ChannelReady { .. }
            | LnEvent::ChannelClosed { .. } => None,
        };
        let _ = self.notify.send(event);
        match hashlock {
            Some(h) => self.changed.touch([h]),
            // A channel's change (or a payment LDK no longer names) may concern any leg.
            None => self.changed.touch_all(),
        }
    }

    /// See [`crate::anchors::anchor_channels`].
    fn anchor_channels(&self, channel: &ChannelId) -> (u64, bool) {
        crate::anchors::anchor_channels(&self.channel_manager, &self.chain_monitor, channel)
    }

    /// Whether the wallet can back `anchor_channels` anchor channels after paying `spending`
    /// sats (a funding): `Ok(None)` when it can, `Ok(Some(why))` when it cannot (`why` with
    /// the wallet's figures: for our log, not for the peer), `Err` when the node could not be
    /// asked now (the event is handed over again).
    async fn reserve_refusal(
        &self,
        anchor_channels: u64,
        spending: u64,
    ) -> Result<Option<String>, ReplayEvent> {
        match crate::anchors::check_reserve(
            &self.rpc,
            spending,
            anchor_channels,
            self.anchor_reserve_sats,
        )
        .await
        {
            Ok(short) => Ok(short.map(|s| s.to_string())),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "anchor reserve: node unavailable, asked again later");
                Err(ReplayEvent())
            }
            Err(e) => Ok(Some(format!("cannot read the wallet's coins: {e}"))),
        }
    }

    /// What the peer is told when an anchor channel is refused for the reserve (no figures of
    /// our wallet).
    fn reserve_message(&self) -> String {
        format!(
            "an anchor channel needs a reserve of {} sat per anchor channel in the wallet, for \
             its force-close fees, which this node lacks",
            self.anchor_reserve_sats
        )
    }

    /// Handles one event; `Err(ReplayEvent)` makes LDK hand it over again later.
    pub(crate) async fn handle(&self, event: Event) -> Result<(), ReplayEvent> {
        // Room came back for a payment refused meanwhile: an HTLC of ours left a channel
        // (LDK tells a path's success or failure once the removal is committed: `PaymentSent`
        // comes earlier, with the HTLC still in), or a channel became usable.
        if matches!(
            event,
            Event::PaymentPathSuccessful { .. }
                | Event::PaymentPathFailed { .. }
                | Event::ChannelReady { .. }
        ) {
            let woken = self.room.freed();
            if !woken.is_empty() {
                self.changed.touch(woken);
            }
        }
        match event {
            Event::FundingGenerationReady {
                temporary_channel_id,
                counterparty_node_id,
                channel_value_satoshis,
                output_script,
                ..
            } => {
                let (anchors, anchored) = self.anchor_channels(&temporary_channel_id);
                if anchored {
                    // The funding, its fee (two inputs) and the wallet's margin leave the wallet.
                    let spending = channel_value_satoshis.saturating_add(
                        crate::wallet::funding_fee_bound(self.fees.normal_sat_vb()),
                    );
                    if let Some(why) = self.reserve_refusal(anchors, spending).await? {
                        tracing::error!(channel = %temporary_channel_id, reason = %why, "anchor channel not funded");
                        let _ = self.channel_manager.force_close_broadcasting_latest_txn(
                            &temporary_channel_id,
                            &counterparty_node_id,
                            format!("funding failed: {}", self.reserve_message()),
                        );
                        return Ok(());
                    }
                }
                let tx = match funding_transaction(
                    &self.rpc,
                    self.chain,
                    output_script,
                    channel_value_satoshis,
                    self.fees.normal_sat_vb(),
                )
                .await
                {
                    Ok(tx) => tx,
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "channel funding: node unavailable, retrying");
                        return Err(ReplayEvent());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, channel = %temporary_channel_id, "channel funding failed");
                        let _ = self.channel_manager.force_close_broadcasting_latest_txn(
                            &temporary_channel_id,
                            &counterparty_node_id,
                            format!("funding failed: {e}"),
                        );
                        return Ok(());
                    }
                };
                let txid = tx.compute_txid();
                if let Err(e) = self.channel_manager.funding_transaction_generated(
                    temporary_channel_id,
                    counterparty_node_id,
                    tx.clone(),
                ) {
                    tracing::error!(error = ?e, %txid, "LDK refused the funding transaction");
                    unlock_inputs(&self.rpc, &tx).await;
                } else {
                    tracing::info!(%txid, channel_value_satoshis, "channel funding signed");
                }
            }
            Event::ChannelPending {
                channel_id,
                counterparty_node_id,
                funding_txo,
                ..
            } => {
                tracing::info!(%channel_id, funding = %funding_txo, "channel pending");
                self.tell(LnEvent::ChannelPending {
                    channel_id,
                    counterparty: counterparty_node_id,
                    funding_txid: funding_txo.txid,
                });
            }
            Event::ChannelReady {
                channel_id,
                counterparty_node_id,
                ..
            } => {
                tracing::info!(%channel_id, "channel ready");
                self.tell(LnEvent::ChannelReady {
                    channel_id,
                    counterparty: counterparty_node_id,
                });
            }
            Event::ChannelClosed {
                channel_id,
                reason,
                counterparty_node_id,
                ..
            } => {
                tracing::info!(%channel_id, %reason, "channel closed");
                self.tell(LnEvent::ChannelClosed {
                    channel_id,
                    counterparty: counterparty_node_id,
                    reason: reason.to_string(),
                });
            }
            Event::PaymentClaimable {
                payment_hash,
                amount_msat,
                claim_deadline,
                ..
            } => {
                // A hold invoice: claimed (or failed back) by the owner, never here. Recorded
                // first: LDK does not hand this event over again, not even after a restart.
                let held = crate::ledger::HeldPayment {
                    amount_msat,
                    claim_deadline,
                };
                if let Err(e) =
                    crate::ledger::record_held(&self.store, &Hashlock(payment_hash.0), held)
                {
                    tracing::error!(error = %e, "cannot record a held payment: LDK will hand it over again");
                    return Err(ReplayEvent());
                }
                tracing::info!(payment_hash = %payment_hash, amount_msat, ?claim_deadline, "payment held");
                self.tell(LnEvent::PaymentClaimable {
                    hashlock: Hashlock(payment_hash.0),
                    amount_msat,
                    claim_deadline,
                });
            }
            Event::PaymentClaimed {
                payment_hash,
                amount_msat,
                ..
            } => {
                // The preimage is in the channel monitors: the claim holds even if the payer
                // vanishes (enforced on chain).
                let hashlock = Hashlock(payment_hash.0);
                if let Err(e) = crate::ledger::mark(&self.store, crate::ledger::CLAIMED, &hashlock)
                {
                    tracing::error!(error = %e, "cannot record a claim: LDK will hand it over again");
                    return Err(ReplayEvent());
                }
                tracing::info!(payment_hash = %payment_hash, amount_msat, "payment claimed");
                self.tell(LnEvent::PaymentClaimed {
                    hashlock: Hashlock(payment_hash.0),
                    amount_msat,
                });
            }
            Event::PaymentSent {
                payment_id,
                payment_preimage,
                payment_hash,
                fee_paid_msat,
                ..
            } => {
                // The other leg of a swap depends on this preimage: recorded before LDK is told
                // the event was handled (it would not hand it over again).
                let preimage = Preimage::from_bytes(payment_preimage.0);
                if let Err(e) = crate::ledger::record_preimage(&self.store, &preimage) {
                    tracing::error!(error = %e, "cannot record a payment's preimage: LDK will hand it over again");
                    return Err(ReplayEvent());
                }
                tracing::info!(payment_hash = %payment_hash, ?fee_paid_msat, "payment sent");
                self.tell(LnEvent::PaymentSent {
                    payment_id: payment_id.map(|p| p.0).unwrap_or_default(),
                    hashlock: Hashlock(payment_hash.0),
                    preimage,
                    fee_paid_msat,
                });
            }
            Event::PaymentFailed {
                payment_id,
                payment_hash,
                reason,
            } => {
                // Every HTLC of it is back (or was never out): the leg is refunded for good,
                // unless it found no route (then it is sent again, see
                // `ledger::record_unrouted`). A failure of another payment to the hash than
                // the leg's own (an earlier attempt's, told again after a restart) changes
                // nothing.
                if let Some(hash) = payment_hash {
                    if let Err(e) =
                        record_failed(&self.store, &Hashlock(hash.0), &payment_id.0, reason)
                    {
                        tracing::error!(error = %e, "cannot record a failed payment: LDK will hand it over again");
                        return Err(ReplayEvent());
                    }
                }
                tracing::info!(?reason, "payment failed");
                self.tell(LnEvent::PaymentFailed {
                    payment_id: payment_id.0,
                    hashlock: payment_hash.map(|h| Hashlock(h.0)),
                    reason: format!("{reason:?}"),
                });
            }
            Event::SpendableOutputs {
                outputs,
                channel_id,
            } => {
                // Static outputs pay to wallet scripts already (see `WalletKeys`).
                self.sweeper
                    .track_spendable_outputs(outputs, channel_id, true, None)
                    .await
                    .map_err(|()| ReplayEvent())?;
            }
            Event::HTLCHandlingFailed {
                failure_type: HTLCHandlingFailureType::Receive { payment_hash },
                failure_reason:
                    Some(HTLCHandlingFailureReason::Local {
                        reason: LocalHTLCFailureReason::PaymentClaimBuffer,
                    }),
                ..
            } => {
                // A held payment failed back by LDK at its claim deadline. (Other receive
                // failures are HTLCs that were never held: a wrong secret or amount, or one
                // more HTLC to a hash already held; they say nothing about the held payment.
                // Failing back by the owner is recorded by `LnNode::fail_back`.)
                let hashlock = Hashlock(payment_hash.0);
                if let Err(e) =
                    crate::ledger::mark(&self.store, crate::ledger::RECEIVE_FAILED, &hashlock)
                {
                    tracing::error!(error = %e, "cannot record a failed-back payment: LDK will hand it over again");
                    return Err(ReplayEvent());
                }
                tracing::info!(%payment_hash, "payment to us failed back");
                self.tell(LnEvent::PaymentFailedBack { hashlock });
            }
            Event::DiscardFunding { funding_info, .. } => {
                if let FundingInfo::Tx { transaction } = funding_info {
                    unlock_inputs(&self.rpc, &transaction).await;
                }
            }
            Event::BumpTransaction(bump) => {
                // Failures are logged by LDK, which asks again at the next block.
                self.bumper.handle_event(&bump).await;
            }
            Event::OpenChannelRequest {
                temporary_channel_id,
                counterparty_node_id,
                funding_satoshis,
                channel_type,
                ..
            } => {
                self.open_requests.seen();
                // Only asked when anchors are on (`LnConfig::anchors`): every channel is
                // accepted, an anchor channel only with the wallet's reserve for it.
                let refusal = if channel_type.supports_anchors_zero_fee_htlc_tx() {
                    let (anchors, _) = self.anchor_channels(&temporary_channel_id);
                    self.reserve_refusal(anchors + 1, 0)
                        .await?
                        .map(|why| (why, self.reserve_message()))
                } else if channel_type.requires_zero_conf()
                    || channel_type.supports_anchor_zero_fee_commitments()
                {
                    let why = format!("channel type {channel_type} is not offered by this node");
                    Some((why.clone(), why))
                } else {
                    None
                };
                let outcome = match refusal {
                    Some((why, told)) => {
                        tracing::warn!(channel = %temporary_channel_id, peer = %counterparty_node_id, funding_satoshis, reason = %why, "inbound channel refused");
                        self.channel_manager
                            .force_close_broadcasting_latest_txn(
                                &temporary_channel_id,
                                &counterparty_node_id,
                                told,
                            )
                            .map(|_| ())
                    }
                    None => {
                        // As LDK's own acceptance does: a random id of ours.
                        let user_channel_id = u128::from_be_bytes(
                            lightning::sign::EntropySource::get_secure_random_bytes(
                                &crate::ops::RandomSource,
                            )[..16]
                                .try_into()
                                .unwrap_or_default(),
                        );
                        tracing::info!(channel = %temporary_channel_id, peer = %counterparty_node_id, funding_satoshis, anchors = channel_type.supports_anchors_zero_fee_htlc_tx(), "inbound channel accepted");
                        self.channel_manager.accept_inbound_channel(
                            &temporary_channel_id,
                            &counterparty_node_id,
                            user_channel_id,
                            None,
                        )
                    }
                };
                if let Err(e) = outcome {
                    // The peer went away meanwhile: nothing to answer.
                    tracing::warn!(channel = %temporary_channel_id, error = ?e, "inbound channel request not answered");
                }
            }
            // The variant only: some events carry secrets.
            other => tracing::debug!(event = event_name(&other), "lightning event"),
        }
        Ok(())
    }
}

/// An event's variant name, for logs (the whole event may carry a preimage).
fn event_name(event: &Event) -> String {
    let text = format!("{event:?}");
    text.split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ledger::{self, SentPayment, SentState};
    use crate::types::Store;
    use lightning::util::persist::KVStoreSync;

    /// A failure for want of a route of the leg's own payment sends it again (until
    /// [`crate::rail::MOST_UNROUTED`] such failures); any other failure of it fails the leg
    /// for good; another payment's failure (an earlier hand-over's, told late; an extra one
    /// by hand) changes nothing; a hash no leg paid, or an unreadable sent record, is marked
    /// failed.
    #[test]
    fn a_legs_payment_that_found_no_route_is_sent_again_and_other_failures_are_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::clear(dir.path().to_path_buf()).unwrap();
        let route = Some(PaymentFailureReason::RouteNotFound);
        let sent = |h: &Hashlock, id: [u8; 32], state, attempt| {
            let s = SentPayment {
                payment_id: id,
                amount_msat: 5_000,
                cltv_expiry: 600,
                state,
                attempt,
            };
            ledger::record_sent(&store, h, &s).unwrap();
        };
        let failed = |h: &Hashlock| ledger::marked(&store, ledger::PAY_FAILED, h).unwrap();

        // The leg's own payment found no route: recorded to be sent again, not failed; also
        // before the sender recorded it sent (LDK may tell first); told again, counted once.
        for (n, state) in [(1u8, SentState::Sent), (2, SentState::Sending)] {
            let h = Hashlock([n; 32]);
            sent(&h, [n; 32], state, 0);
            record_failed(&store, &h, &[n; 32], route).unwrap();
            record_failed(&store, &h, &[n; 32], route).unwrap();
            assert_eq!(ledger::unrouted(&store, &h).unwrap(), Some(([n; 32], 1)));
            assert!(!failed(&h));
        }
        // Handed over again under a new id: the first one's failure told again changes
        // nothing, nor does an extra payment's by hand; the new one's own failure for want of
        // a route is counted, for another reason it is for good.
        let h = Hashlock([1; 32]);
        sent(&h, [11; 32], SentState::Sent, 1);
        record_failed(&store, &h, &[1; 32], route).unwrap();
        let by_hand = Some(PaymentFailureReason::RetriesExhausted);
        record_failed(&store, &h, &[7; 32], by_hand).unwrap();
        assert!(!failed(&h));
        assert_eq!(ledger::unrouted(&store, &h).unwrap(), Some(([1; 32], 1)));
        record_failed(&store, &h, &[11; 32], route).unwrap();
        assert_eq!(ledger::unrouted(&store, &h).unwrap(), Some(([11; 32], 2)));
        sent(&h, [12; 32], SentState::Sent, 2);
        let rejected = Some(PaymentFailureReason::RecipientRejected);
        record_failed(&store, &h, &[12; 32], rejected).unwrap();
        assert!(failed(&h));
        // The last failure for want of a route that is allowed is for good.
        let h = Hashlock([3; 32]);
        let most = crate::rail::MOST_UNROUTED;
        ledger::record_unrouted(&store, &h, &[30; 32], most - 1).unwrap();
        sent(&h, [3; 32], SentState::Sent, 20);
        record_failed(&store, &h, &[3; 32], route).unwrap();
        assert!(failed(&h));
        // No reason given, a hash no leg paid, an unreadable sent record: failed.
        let h = Hashlock([4; 32]);
        sent(&h, [4; 32], SentState::Sent, 0);
        record_failed(&store, &h, &[4; 32], None).unwrap();
        assert!(failed(&h));
        let h = Hashlock([5; 32]);
        record_failed(&store, &h, &[5; 32], route).unwrap();
        assert!(failed(&h));
        let h = Hashlock([6; 32]);
        KVStoreSync::write(&store, "xswap", "sent", &hex::encode(h.0), vec![1; 3]).unwrap();
        record_failed(&store, &h, &[6; 32], route).unwrap();
        assert!(failed(&h));
    }
}
