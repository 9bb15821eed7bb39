//! A leg's status as the node's channels and the payment records tell it: the payer's
//! view and the payee's, read against one [`Snapshot`] of the channels per round.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use lightning::ln::channel_state::{InboundHTLCStateDetails, OutboundHTLCStateDetails};
use lightning::ln::channelmanager::{RecentPaymentDetails, MIN_FINAL_CLTV_EXPIRY_DELTA};
use swap_core::params::Finality;
use swap_core::rail::{Cause, ChainError, HtlcParams, HtlcStatus, ObservedLock};
use swap_core::types::{Amount, Expiry, Height, Sats};

use super::{invalid, ln_err, txref, LnRail};
use crate::ledger::{self, SentState};

/// What the node's channels hold now, read once for a round of status reads.
#[derive(Default)]
pub(super) struct Snapshot {
    /// Payment hashes of HTLCs offered to us and not being failed.
    inbound: HashSet<[u8; 32]>,
    /// HTLCs we offered, per payment hash: committed or not.
    outbound: HashMap<[u8; 32], Vec<bool>>,
    /// The ids of the payments LDK has pending, read when a status first needs them: LDK
    /// lists every payment it remembers (each it sent in the last 7-8 minutes), so this is
    /// the one read of the snapshot whose cost grows with the payment rate.
    pending: OnceCell<HashSet<[u8; 32]>>,
    height: u32,
}

impl LnRail {
    pub(super) fn snapshot(&self, height: u32) -> Snapshot {
        let mut s = Snapshot {
            height,
            ..Snapshot::default()
        };
        for c in self.node.channel_manager.list_channels() {
            for h in &c.pending_inbound_htlcs {
                if h.state != Some(InboundHTLCStateDetails::AwaitingRemoteRevokeToRemoveFail) {
                    s.inbound.insert(h.payment_hash.0);
                }
            }
            for h in &c.pending_outbound_htlcs {
                let committed = matches!(
                    h.state,
                    Some(
                        OutboundHTLCStateDetails::Committed
                            | OutboundHTLCStateDetails::AwaitingRemoteRevokeToRemoveSuccess
                            | OutboundHTLCStateDetails::AwaitingRemoteRevokeToRemoveFailure
                    )
                );
                s.outbound
                    .entry(h.payment_hash.0)
                    .or_default()
                    .push(committed);
            }
        }
        s
    }

    /// Whether LDK has payment `id` pending, as `snap` saw it.
    fn pending(&self, snap: &Snapshot, id: &[u8; 32]) -> bool {
        snap.pending
            .get_or_init(|| {
                self.node
                    .channel_manager
                    .list_recent_payments()
                    .into_iter()
                    .filter_map(|p| match p {
                        RecentPaymentDetails::Pending { payment_id, .. } => Some(payment_id.0),
                        _ => None,
                    })
                    .collect()
            })
            .contains(id)
    }

    fn lock_of(&self, htlc: &HtlcParams, amount: Amount, cltv: u32) -> ObservedLock {
        ObservedLock {
            txref: txref(&htlc.hashlock),
            asset: htlc.asset.clone(),
            amount,
            sender: htlc.sender,
            recipient: htlc.recipient,
            hashlock: htlc.hashlock,
            expiry: Expiry::Height(Height(u64::from(cltv))),
        }
    }

    /// The payer's view of a leg.
    fn sent_status(&self, htlc: &HtlcParams, snap: &Snapshot) -> Result<HtlcStatus, ChainError> {
        let h = &htlc.hashlock;
        let records = ledger::records(&self.node.store, h).map_err(ln_err)?;
        if let Some(preimage) = records.preimage().map_err(ln_err)? {
            return Ok(HtlcStatus::Claimed {
                preimage,
                txref: txref(h),
                finality: Finality::Irrevocable,
            });
        }
        if records.pay_failed().map_err(ln_err)? {
            return Ok(HtlcStatus::Refunded {
                txref: txref(h),
                finality: Finality::Irrevocable,
            });
        }
        let Some(sent) = records.sent().map_err(ln_err)? else {
            return Ok(HtlcStatus::Absent);
        };
        let lock = self.lock_of(
            htlc,
            Amount::Sats(Sats(sent.amount_msat / 1_000)),
            sent.cltv_expiry,
        );
        if let Some(htlcs) = snap.outbound.get(&h.0) {
            let finality = if htlcs.iter().all(|c| *c) {
                Finality::Irrevocable
            } else {
                Finality::Mempool
            };
            return Ok(HtlcStatus::Funded { lock, finality });
        }
        // Failed for want of a route, none of it out: it is sent again (`LnRail::pay`).
        if records.sent_unrouted().map_err(ln_err)? {
            return Ok(HtlcStatus::Absent);
        }
        match (self.pending(snap, &sent.payment_id), sent.state) {
            // Pending, no HTLC in an open channel: it is in a closing channel's commitment.
            (true, _) => Ok(HtlcStatus::Funded {
                lock,
                finality: Finality::Irrevocable,
            }),
            (_, SentState::Sending | SentState::Cancelled) => Ok(HtlcStatus::Absent),
            // LDK took it and has no HTLC of it any more: it ended, and its event (the
            // preimage, or the failure) is not recorded yet. Ask again in a moment.
            (_, SentState::Sent) => Err(ChainError::new(
                Cause::Inconsistent,
                "the payment ended and its outcome is not recorded yet",
            )),
        }
    }

    /// The payee's view of a leg.
    fn received_status(
        &self,
        htlc: &HtlcParams,
        snap: &Snapshot,
    ) -> Result<HtlcStatus, ChainError> {
        let h = &htlc.hashlock;
        let records = ledger::records(&self.node.store, h).map_err(ln_err)?;
        let failed = records.receive_failed().map_err(ln_err)?;
        let held = records.held().map_err(ln_err)?;
        let deadline_passed = held
            .and_then(|held| held.claim_deadline)
            .is_some_and(|d| snap.height >= d);
        let refunded = Ok(HtlcStatus::Refunded {
            txref: txref(h),
            finality: Finality::Irrevocable,
        });
        if let Some(preimage) = records.claiming().map_err(ln_err)? {
            let claimed = records.claimed().map_err(ln_err)?;
            // Our claim never took (LDK failed the payment back at its deadline first, or
            // the claim came too late): nothing of it is left in a channel.
            if !claimed && (failed || deadline_passed) && !snap.inbound.contains(&h.0) {
                return refunded;
            }
            return Ok(HtlcStatus::Claimed {
                preimage,
                txref: txref(h),
                finality: if claimed {
                    Finality::Irrevocable
                } else {
                    Finality::Mempool
                },
            });
        }
        let Some(held) = held else {
            return Ok(HtlcStatus::Absent);
        };
        if failed || deadline_passed {
            return refunded;
        }
        // Held: committed in the channel (LDK holds only committed HTLCs), or in a closing
        // channel's commitment, ours to claim until the deadline either way. Its CLTV is the
        // held HTLCs' earliest, which LDK's deadline is a fixed buffer before; other HTLCs to
        // the same hash (never held) do not count.
        let fail_back_buffer = u32::from(MIN_FINAL_CLTV_EXPIRY_DELTA) - 3;
        let Some(cltv) = held
            .claim_deadline
            .map(|d| d.saturating_add(fail_back_buffer))
        else {
            return Err(ChainError::new(
                Cause::Inconsistent,
                "a held payment without a claim deadline",
            ));
        };
        Ok(HtlcStatus::Funded {
            lock: self.lock_of(htlc, Amount::Sats(Sats(held.amount_msat / 1_000)), cltv),
            finality: Finality::Irrevocable,
        })
    }

    pub(super) fn status_in(
        &self,
        htlc: &HtlcParams,
        snap: &Snapshot,
    ) -> Result<HtlcStatus, ChainError> {
        self.check_asset(htlc)?;
        let me = self.me();
        if htlc.sender == me && htlc.recipient != me {
            self.sent_status(htlc, snap)
        } else if htlc.recipient == me && htlc.sender != me {
            self.received_status(htlc, snap)
        } else {
            Err(invalid("a Lightning leg between this node and another"))
        }
    }
}
