//! The payer's lock: a leg's payment handed to LDK once per attempt, recorded before it is
//! sent (see the module docs of [`super`]), and the test hook that records a send LDK
//! failed for want of a route.

use lightning::ln::channelmanager::{
    PaymentId, RecentPaymentDetails, RecipientOnionFields, Retry, RetryableSendFailure,
};
use lightning::routing::router::{PaymentParameters, RouteHint, RouteParameters};
use lightning::types::payment::{PaymentHash, PaymentSecret};
use swap_core::rail::{Cause, ChainError, HtlcParams};
use swap_core::types::{Hashlock, TxRef};

use super::{attempt_id, cltv_of, invalid, invoice_of, ln_err, not_stored, txref, Invoice, LnRail};
use crate::ledger::{self, SentPayment, SentState};
use crate::node::LnNode;

impl LnRail {
    pub(super) async fn pay(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        let amount_msat = self.check_asset(htlc)?;
        if htlc.sender != self.me() {
            return Err(invalid("we do not pay this leg"));
        }
        let Invoice {
            payee,
            payment_secret,
            min_final_cltv_delta,
            route_hints,
        } = invoice_of(htlc)?;
        let cltv_expiry = cltv_of(htlc)?;
        let store = &self.node.store;
        let h = &htlc.hashlock;
        // One hand-over at a time per leg (two calls at once would each take a new id).
        let _paying = Paying::start(&self.node, h)?;
        let (id, record) = {
            // The leg's records are read and the new hand-over recorded with no failure
            // recorded in between (`events::record_failed` takes the same lock): a failure of
            // the hand-over read here, told meanwhile, is then either seen here or ignored as
            // not the leg's current payment's. Never held across an await.
            let _legs = store
                .legs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let records = ledger::records(store, h).map_err(ln_err)?;
            if records.preimage().map_err(ln_err)?.is_some() {
                return Ok(txref(h));
            }
            if records.pay_failed().map_err(ln_err)? {
                return Err(ChainError::new(
                    Cause::AlreadySpent,
                    "the payment failed back already",
                ));
            }
            let sent = records.sent().map_err(ln_err)?;
            // The leg's payment failed for want of a route: none of it is out (LDK tells a
            // failure only once every HTLC of it is back), so it is sent again, new id.
            let again = records.sent_unrouted().map_err(ln_err)?;
            match sent {
                Some(s) if s.state == SentState::Cancelled => {
                    return Err(invalid("this leg was cancelled: it is never paid"));
                }
                Some(s)
                    if s.payment_id != attempt_id(&htlc.swap_id, s.attempt)
                        || s.cltv_expiry != cltv_expiry =>
                {
                    return Err(invalid("another payment to this hash was sent"));
                }
                // LDK took it once: never again (LDK forgets a failed payment's id at once,
                // before its failure is recorded; sending it again then would pay twice),
                // unless its failure for want of a route is recorded.
                Some(s) if s.state == SentState::Sent && !again => return Ok(txref(h)),
                _ => {}
            }
            // Only a leg recorded `Sending` can be known to LDK: that record is committed
            // before LDK is handed the payment, and ledger records are never removed. So a
            // first send skips the look, which lists every payment LDK remembers (thousands
            // under load, under the lock LDK's manager encoding and its HTLC processing take
            // too).
            match sent.filter(|s| s.state == SentState::Sending && !again) {
                Some(s) if self.ldk_knows(s.payment_id) => (None, s),
                _ => {
                    // Any other hand-over gets an id of its own: one LDK does not know may
                    // have failed already (LDK forgets a failed payment at once) with its
                    // failure still to be told (after a restart), which must not be taken
                    // for this one's; and one that failed for want of a route is sent again.
                    let attempt = match sent {
                        None => 0,
                        Some(s) => s.attempt.checked_add(1).ok_or_else(|| {
                            ChainError::permanent("the payment was handed over too often")
                        })?,
                    };
                    let id = attempt_id(&htlc.swap_id, attempt);
                    let record = SentPayment {
                        payment_id: id,
                        amount_msat,
                        cltv_expiry,
                        state: SentState::Sending,
                        attempt,
                    };
                    ledger::record_sent(store, h, &record).map_err(ln_err)?;
                    (Some(id), record)
                }
            }
        };
        let Some(id) = id else {
            // LDK has it in memory (an earlier call sent it and did not get to record it):
            // recorded as sent only once the store has it too.
            crate::gate::committed_now(store)
                .await
                .map_err(not_stored)?;
            let took = SentPayment {
                state: SentState::Sent,
                ..record
            };
            ledger::record_sent(store, h, &took).map_err(ln_err)?;
            return Ok(txref(h));
        };
        let record = |state| SentPayment { state, ..record };
        self.node.alive().map_err(ln_err)?;
        let me = self.node.node_id();
        let hints = route_hints
            .iter()
            .map(|hop| crate::ops::ldk_hint(hop).map_err(invalid))
            // A hint from our own node is our direct channel: the router has it already.
            // Terms that budget no route blocks pay directly only.
            .filter(|h: &Result<RouteHint, ChainError>| {
                self.params.route_blocks > 0
                    && h.as_ref()
                        .map_or(true, |h| h.0.iter().all(|hop| hop.src_node_id != me))
            })
            .collect::<Result<Vec<_>, ChainError>>()?;
        let min_delta = u32::from(*min_final_cltv_delta);
        let route_blocks = self.params.route_blocks;
        let manager = &self.node.channel_manager;
        // Until a committed manager has it, the payment is in LDK's memory only (its HTLC may
        // wait in the holding cell): recorded as sent only once it is in the store. Lost in a
        // crash before that, it is sent again: recorded `Sending`, unknown to LDK (a lazy
        // change: no commit is made for it alone).
        let change = store.gate().manager_change_lazy();
        // Room freed in a channel from here on wakes this leg if LDK finds none for it.
        let room_seen = self.node.room.freed_count();
        // No block is connected between reading LDK's height and sending: LDK puts the final
        // CLTV at its best height + 1 + the final delta, which is then exactly the expiry.
        let sent = self
            .node
            .follower
            .at_best(|best| {
                let height = best.height;
                let delta = cltv_expiry
                    .checked_sub(height.saturating_add(1))
                    .filter(|d| *d >= min_delta)
                    .ok_or_else(|| {
                        ChainError::new(
                            Cause::Invalid,
                            format!(
                                "too late to pay: CLTV {cltv_expiry} at height {height} is \
                                 closer than the payee's minimum delta {min_delta}"
                            ),
                        )
                    })?;
                let mut params = PaymentParameters::from_node_id(payee, delta)
                    .with_route_hints(hints)
                    .map_err(|()| invalid("route hints refused"))?;
                // The intermediaries may add at most what the terms budget (`route_blocks`).
                params.max_total_cltv_expiry_delta =
                    crate::ops::max_total_cltv(delta, route_blocks);
                let route = RouteParameters::from_payment_params_and_value(params, amount_msat);
                Ok::<_, ChainError>(manager.send_payment(
                    PaymentHash(h.0),
                    RecipientOnionFields::secret_only(PaymentSecret(*payment_secret)),
                    PaymentId(id),
                    route,
                    Retry::Attempts(0),
                ))
            })
            .await?;
        let change = change.finish();
        match sent {
            Ok(()) | Err(RetryableSendFailure::DuplicatePayment) => {
                crate::gate::committed(store, change)
                    .await
                    .map_err(not_stored)?;
                ledger::record_sent(store, h, &record(SentState::Sent)).map_err(ln_err)?;
                Ok(txref(h))
            }
            // Nothing was sent (no usable channel with the room yet): try again later, or as
            // soon as an HTLC leaves a channel (`crate::room`).
            Err(RetryableSendFailure::RouteNotFound) => {
                if !self.node.room.wait(*h, room_seen) {
                    self.node.changed.touch([*h]);
                }
                Err(ChainError::new(
                    Cause::Unavailable,
                    "no usable channel can carry the payment now",
                ))
            }
            Err(e) => Err(ChainError::permanent(format!("payment refused: {e:?}"))),
        }
    }
}

/// A leg's payment being handed to LDK ([`LnNode::paying`]), until dropped.
pub(super) struct Paying<'a> {
    node: &'a LnNode,
    hash: [u8; 32],
}

impl<'a> Paying<'a> {
    /// Refused (transient: ask again) while another call hands the leg's payment over.
    pub(super) fn start(node: &'a LnNode, hashlock: &Hashlock) -> Result<Self, ChainError> {
        let mut paying = node
            .paying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !paying.insert(hashlock.0) {
            return Err(ChainError::new(
                Cause::Unavailable,
                "this leg's payment is being handed over now",
            ));
        }
        Ok(Self {
            node,
            hash: hashlock.0,
        })
    }
}

impl Drop for Paying<'_> {
    fn drop(&mut self) {
        self.node
            .paying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.hash);
    }
}

impl LnRail {
    /// For tests only, not an API: records what LDK's failure of the leg's first send for
    /// want of a route records (sent, then failed with `RouteNotFound`), without sending it:
    /// as when the payee's node goes away between LDK's route and its HTLC, a race no test
    /// can time.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn record_first_send_unrouted(&self, htlc: &HtlcParams) -> Result<(), ChainError> {
        let amount_msat = self.check_asset(htlc)?;
        let cltv_expiry = cltv_of(htlc)?;
        let store = &self.node.store;
        if ledger::sent(store, &htlc.hashlock)
            .map_err(ln_err)?
            .is_some()
        {
            return Err(invalid("only for a leg never sent"));
        }
        let id = super::payment_id(&htlc.swap_id);
        let sent = SentPayment {
            payment_id: id,
            amount_msat,
            cltv_expiry,
            state: SentState::Sent,
            attempt: 0,
        };
        ledger::record_sent(store, &htlc.hashlock, &sent).map_err(ln_err)?;
        crate::events::record_failed(
            store,
            &htlc.hashlock,
            &id,
            Some(lightning::events::PaymentFailureReason::RouteNotFound),
        )
        .map_err(ln_err)
    }

    /// Whether LDK still knows payment `id` (pending, or ended minutes ago).
    pub(super) fn ldk_knows(&self, id: [u8; 32]) -> bool {
        self.node
            .channel_manager
            .list_recent_payments()
            .iter()
            .any(|p| recent_id(p) == Some(id))
    }
}

fn recent_id(p: &RecentPaymentDetails) -> Option<[u8; 32]> {
    match p {
        RecentPaymentDetails::Pending { payment_id, .. }
        | RecentPaymentDetails::Fulfilled { payment_id, .. }
        | RecentPaymentDetails::Abandoned { payment_id, .. }
        | RecentPaymentDetails::AwaitingInvoice { payment_id, .. } => Some(payment_id.0),
    }
}
