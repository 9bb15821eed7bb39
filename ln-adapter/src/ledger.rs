//! What the node learned that a swap must never lose, written to the node's store before LDK
//! is told the event was handled: the preimage of every payment we sent (from `PaymentSent`;
//! LDK does not hand a handled event over again, and what it keeps of a finished payment has
//! no preimage) and every payment held for us (from `PaymentClaimable`, which is not handed
//! over again after a restart either). The events on [`crate::LnNode::subscribe`] are a
//! notification; these records are what a swap reads ([`crate::LnNode::preimage_for`],
//! [`crate::LnNode::held_payment`]).

use lightning::util::persist::KVStoreSync;
use swap_core::{Hashlock, Preimage};

use crate::error::LnError;
use crate::types::Store;

const NAMESPACE: &str = "xswap";
const PREIMAGES: &str = "preimages";
const HELD: &str = "held";
/// Our claim of a held payment, started (the preimage handed to LDK).
const CLAIMING: &str = "claiming";
/// Markers, one per payment hash.
pub(crate) const CLAIMED: &str = "claimed";
pub(crate) const PAY_FAILED: &str = "pay_failed";
pub(crate) const RECEIVE_FAILED: &str = "receive_failed";
/// Payments a swap sent (or may have sent): see [`SentPayment`].
const SENT: &str = "sent";
/// The payment id of a swap's payment that LDK failed for want of a route (32 bytes): see
/// [`record_unrouted`].
const UNROUTED: &str = "unrouted";
/// Preimages of invoices of our own (not a swap's: `xswap ln invoice` without a hash), kept
/// until the payment is claimed or given up.
const OWN: &str = "own_invoices";
/// Marker: our own invoice of this hash is settled (claimed, cancelled or unclaimable).
const OWN_DONE: &str = "own_done";
/// When a payment to an invoice of our own can no longer be accepted by LDK at the latest
/// (unix seconds, 8 bytes big-endian), per payment hash; see [`crate::LnNode::keep_own_invoice`].
const OWN_UNTIL: &str = "own_until";
/// What LDK adds to an inbound payment's expiry (`calculate_absolute_expiry`: two hours), plus
/// the two hours a block's time may run ahead of ours (LDK counts from the highest block time
/// it saw when the invoice was made).
const LDK_EXPIRY_SLACK_SECS: u64 = 4 * 3600;

/// A payment held for us (a hold invoice's HTLCs, claimable until `claim_deadline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldPayment {
    /// What the HTLCs pay, in millisatoshis.
    pub amount_msat: u64,
    /// The height by which it must be claimed (LDK fails it back by itself near it).
    pub claim_deadline: Option<u32>,
}

fn key(hashlock: &Hashlock) -> String {
    hex::encode(hashlock.0)
}

fn store_err(what: &str, e: impl std::fmt::Display) -> LnError {
    LnError::Store(std::io::Error::other(format!("{what}: {e}")))
}

fn read(store: &Store, secondary: &str, k: &str) -> Result<Option<Vec<u8>>, LnError> {
    match KVStoreSync::read(store, NAMESPACE, secondary, k) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == lightning::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(store_err(secondary, e)),
    }
}

fn write(store: &Store, secondary: &str, k: &str, bytes: Vec<u8>) -> Result<(), LnError> {
    KVStoreSync::write(store, NAMESPACE, secondary, k, bytes).map_err(|e| store_err(secondary, e))
}

fn write_preimage(store: &Store, secondary: &str, preimage: &Preimage) -> Result<(), LnError> {
    write(
        store,
        secondary,
        &key(&preimage.hashlock()),
        preimage.as_bytes().to_vec(),
    )
}

fn read_preimage(
    store: &Store,
    secondary: &str,
    hashlock: &Hashlock,
) -> Result<Option<Preimage>, LnError> {
    decode_preimage(secondary, hashlock, read(store, secondary, &key(hashlock))?)
}

fn decode_preimage(
    secondary: &str,
    hashlock: &Hashlock,
    bytes: Option<Vec<u8>>,
) -> Result<Option<Preimage>, LnError> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| LnError::Decode(format!("{secondary}: not 32 bytes")))?;
    let preimage = Preimage::from_bytes(bytes);
    if preimage.hashlock() != *hashlock {
        return Err(LnError::Decode(format!(
            "{secondary}: the record of {} holds another hash's preimage",
            key(hashlock)
        )));
    }
    Ok(Some(preimage))
}

/// Records the preimage of a payment we sent (durable when this returns).
pub(crate) fn record_preimage(store: &Store, preimage: &Preimage) -> Result<(), LnError> {
    write_preimage(store, PREIMAGES, preimage)
}

/// The preimage of `hashlock`, if a payment of ours to it succeeded.
pub(crate) fn preimage_for(
    store: &Store,
    hashlock: &Hashlock,
) -> Result<Option<Preimage>, LnError> {
    read_preimage(store, PREIMAGES, hashlock)
}

/// Records that we started claiming the payment held on `preimage`'s hash (before LDK is
/// given the preimage).
pub(crate) fn record_claiming(store: &Store, preimage: &Preimage) -> Result<(), LnError> {
    write_preimage(store, CLAIMING, preimage)
}

/// The preimage we claim the payment held on `hashlock` with, once the claim started.
pub(crate) fn claiming(store: &Store, hashlock: &Hashlock) -> Result<Option<Preimage>, LnError> {
    read_preimage(store, CLAIMING, hashlock)
}

/// Keeps the preimage of an invoice of our own (durable when this returns).
pub(crate) fn record_own(store: &Store, preimage: &Preimage) -> Result<(), LnError> {
    write_preimage(store, OWN, preimage)
}

/// The preimages of our own invoices not settled yet. A record that cannot be read is
/// reported (logged) and left in place, never a reason to claim none of the others.
pub(crate) fn own_unsettled(store: &Store) -> Result<Vec<Preimage>, LnError> {
    let keys = KVStoreSync::list(store, NAMESPACE, OWN).map_err(|e| store_err(OWN, e))?;
    let mut out = Vec::new();
    for k in keys {
        let one = || -> Result<Option<Preimage>, LnError> {
            let hashlock = hex::decode(&k)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(Hashlock)
                .ok_or_else(|| LnError::Decode(format!("{OWN}: key {k:?} is no payment hash")))?;
            if marked(store, OWN_DONE, &hashlock)? {
                return Ok(None);
            }
            read_preimage(store, OWN, &hashlock)
        };
        match one() {
            Ok(Some(p)) => out.push(p),
            Ok(None) => {}
            Err(e) => tracing::warn!(key = %k, error = %e, "unreadable record of our own invoice"),
        }
    }
    Ok(out)
}

/// Whether `hashlock` is the hash of an invoice of our own.
pub(crate) fn is_own(store: &Store, hashlock: &Hashlock) -> Result<bool, LnError> {
    Ok(read(store, OWN, &key(hashlock))?.is_some())
}

/// Marks our own invoice of `hashlock` settled: [`own_unsettled`] skips it from then on.
pub(crate) fn settle_own(store: &Store, hashlock: &Hashlock) -> Result<(), LnError> {
    mark(store, OWN_DONE, hashlock)
}

/// Sets the marker `kind` ([`CLAIMED`], [`PAY_FAILED`], [`RECEIVE_FAILED`]) of `hashlock`.
pub(crate) fn mark(store: &Store, kind: &str, hashlock: &Hashlock) -> Result<(), LnError> {
    write(store, kind, &key(hashlock), vec![1])
}

/// Whether the marker `kind` of `hashlock` is set.
pub(crate) fn marked(store: &Store, kind: &str, hashlock: &Hashlock) -> Result<bool, LnError> {
    Ok(read(store, kind, &key(hashlock))?.is_some())
}

/// A payment a swap sends: recorded before it is handed to LDK, so that what the swap agreed
/// (its absolute CLTV) outlives LDK's memory of the payment id (dropped minutes after the
/// payment ends), and neither a payment LDK took nor a cancelled leg is ever sent again (but
/// one LDK failed for want of a route, [`record_unrouted`], under a new id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentPayment {
    /// The payment id (from the swap).
    pub payment_id: [u8; 32],
    /// What the payee gets, in millisatoshis.
    pub amount_msat: u64,
    /// The final hop's absolute CLTV expiry.
    pub cltv_expiry: u32,
    /// How far the send got.
    pub state: SentState,
    /// Which hand-over of the leg to LDK this is (0 the first): each one has a payment id of
    /// its own (`rail::attempt_id`), so that the failure of an earlier one, told late (LDK
    /// forgets a failed payment at once, and tells its failure again after a restart), is
    /// never taken for a later one's.
    pub attempt: u32,
}

/// How far a [`SentPayment`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SentState {
    /// About to be handed to LDK (a crash here may have sent nothing).
    Sending,
    /// LDK took it: it is never sent again; its outcome comes from LDK's events.
    Sent,
    /// The leg was cancelled before anything was sent: never send it.
    Cancelled,
}

const SENT_LEN_FIRST: usize = 32 + 8 + 4 + 1;
/// A sent record of a later attempt (see [`SentPayment::attempt`]); the first attempt's is
/// written as before attempts were counted, so a build from before reads it.
const SENT_LEN: usize = SENT_LEN_FIRST + 4;

/// Records (or overwrites) the sent record of `hashlock`.
pub(crate) fn record_sent(
    store: &Store,
    hashlock: &Hashlock,
    sent: &SentPayment,
) -> Result<(), LnError> {
    let mut bytes = Vec::with_capacity(SENT_LEN);
    bytes.extend_from_slice(&sent.payment_id);
    bytes.extend_from_slice(&sent.amount_msat.to_be_bytes());
    bytes.extend_from_slice(&sent.cltv_expiry.to_be_bytes());
    bytes.push(match sent.state {
        SentState::Sending => 0,
        SentState::Sent => 1,
        SentState::Cancelled => 2,
    });
    if sent.attempt > 0 {
        bytes.extend_from_slice(&sent.attempt.to_be_bytes());
    }
    write(store, SENT, &key(hashlock), bytes)
}

/// The sent record of `hashlock`, if any.
pub(crate) fn sent(store: &Store, hashlock: &Hashlock) -> Result<Option<SentPayment>, LnError> {
    decode_sent(read(store, SENT, &key(hashlock))?)
}

fn decode_sent(bytes: Option<Vec<u8>>) -> Result<Option<SentPayment>, LnError> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let bad = || LnError::Decode(format!("{SENT}: {} bytes", bytes.len()));
    if bytes.len() != SENT_LEN && bytes.len() != SENT_LEN_FIRST {
        return Err(bad());
    }
    let field = |from: usize, to: usize| bytes.get(from..to).ok_or_else(bad);
    let payment_id: [u8; 32] = field(0, 32)?.try_into().map_err(|_| bad())?;
    let amount: [u8; 8] = field(32, 40)?.try_into().map_err(|_| bad())?;
    let cltv: [u8; 4] = field(40, 44)?.try_into().map_err(|_| bad())?;
    let state = match field(44, 45)? {
        [0] => SentState::Sending,
        [1] => SentState::Sent,
        [2] => SentState::Cancelled,
        _ => return Err(bad()),
    };
    Ok(Some(SentPayment {
        payment_id,
        amount_msat: u64::from_be_bytes(amount),
        cltv_expiry: u32::from_be_bytes(cltv),
        state,
        attempt: match bytes.get(SENT_LEN_FIRST..) {
            Some(a) if a.len() == 4 => u32::from_be_bytes(a.try_into().map_err(|_| bad())?),
            _ => 0,
        },
    }))
}

/// Records that the payment `payment_id` to `hashlock` failed for want of a route
/// (`PaymentFailureReason::RouteNotFound`: none of its HTLCs is out any more, LDK tells a
/// failure only then). If it is the leg's payment of the sent record, the leg is not
/// failed for good: it is sent again, with the next attempt's id, while its lock may still
/// start (a peer that disconnects between LDK's route and its HTLC fails the payment so).
/// A separate record, not a state of [`SentPayment`]: LDK may tell the failure before the
/// sender records the payment as sent.
/// `failures` counts the leg's payments that failed so, this one included.
pub(crate) fn record_unrouted(
    store: &Store,
    hashlock: &Hashlock,
    payment_id: &[u8; 32],
    failures: u8,
) -> Result<(), LnError> {
    let mut bytes = payment_id.to_vec();
    bytes.push(failures);
    write(store, UNROUTED, &key(hashlock), bytes)
}

/// The payment to `hashlock` that last failed for want of a route, if one did, with the
/// number of the leg's payments that failed so.
pub(crate) fn unrouted(
    store: &Store,
    hashlock: &Hashlock,
) -> Result<Option<([u8; 32], u8)>, LnError> {
    decode_unrouted(read(store, UNROUTED, &key(hashlock))?)
}

fn decode_unrouted(bytes: Option<Vec<u8>>) -> Result<Option<([u8; 32], u8)>, LnError> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    match bytes.split_last() {
        Some((n, id)) if id.len() == 32 => Ok(Some((id.try_into().unwrap_or([0; 32]), *n))),
        _ => Err(LnError::Decode(format!(
            "{UNROUTED}: {} bytes",
            bytes.len()
        ))),
    }
}

/// Records a payment held for us (durable when this returns).
pub(crate) fn record_held(
    store: &Store,
    hashlock: &Hashlock,
    held: HeldPayment,
) -> Result<(), LnError> {
    let mut bytes = held.amount_msat.to_be_bytes().to_vec();
    if let Some(d) = held.claim_deadline {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    write(store, HELD, &key(hashlock), bytes)
}

/// The payment held for us on `hashlock`, if one was.
pub(crate) fn held(store: &Store, hashlock: &Hashlock) -> Result<Option<HeldPayment>, LnError> {
    decode_held(read(store, HELD, &key(hashlock))?)
}

fn decode_held(bytes: Option<Vec<u8>>) -> Result<Option<HeldPayment>, LnError> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let bad = || LnError::Decode(format!("{HELD}: {} bytes", bytes.len()));
    let amount: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let claim_deadline = match bytes.len() {
        8 => None,
        12 => Some(u32::from_be_bytes(
            bytes
                .get(8..12)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?,
        )),
        _ => return Err(bad()),
    };
    Ok(Some(HeldPayment {
        amount_msat: u64::from_be_bytes(amount),
        claim_deadline,
    }))
}

/// A payment's ledger records, read together ([`records`]): one read of the store and one
/// consistent view of them all. Each is opened and decoded when asked for, so a broken record
/// is an error only to whoever needs it.
#[derive(Debug)]
pub(crate) struct Records {
    hashlock: Hashlock,
    /// In the order of [`RECORDS`].
    values: Vec<crate::sealed::OneRead>,
}

/// What [`records`] reads.
const RECORDS: [&str; 8] = [
    PREIMAGES,
    PAY_FAILED,
    SENT,
    RECEIVE_FAILED,
    HELD,
    CLAIMING,
    CLAIMED,
    UNROUTED,
];

/// The ledger records of the payment to `hashlock`, in one read.
pub(crate) fn records(store: &Store, hashlock: &Hashlock) -> Result<Records, LnError> {
    let values = store
        .read_each(NAMESPACE, &RECORDS, &key(hashlock))
        .map_err(|e| store_err("ledger", e))?;
    Ok(Records {
        hashlock: *hashlock,
        values,
    })
}

impl Records {
    fn value(&self, secondary: &str) -> Result<Option<Vec<u8>>, LnError> {
        match RECORDS
            .iter()
            .position(|s| *s == secondary)
            .and_then(|i| self.values.get(i))
        {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(e)) => Err(store_err(secondary, e)),
            None => Err(LnError::Decode(format!("{secondary}: not read"))),
        }
    }

    /// As [`preimage_for`].
    pub(crate) fn preimage(&self) -> Result<Option<Preimage>, LnError> {
        decode_preimage(PREIMAGES, &self.hashlock, self.value(PREIMAGES)?)
    }

    /// As [`claiming`].
    pub(crate) fn claiming(&self) -> Result<Option<Preimage>, LnError> {
        decode_preimage(CLAIMING, &self.hashlock, self.value(CLAIMING)?)
    }

    /// As [`sent`].
    pub(crate) fn sent(&self) -> Result<Option<SentPayment>, LnError> {
        decode_sent(self.value(SENT)?)
    }

    /// As [`unrouted`].
    pub(crate) fn unrouted(&self) -> Result<Option<([u8; 32], u8)>, LnError> {
        decode_unrouted(self.value(UNROUTED)?)
    }

    /// Whether the leg's current payment (the sent record's) failed for want of a route:
    /// none of it is out, and it is sent again under a new id.
    pub(crate) fn sent_unrouted(&self) -> Result<bool, LnError> {
        Ok(match (self.sent()?, self.unrouted()?) {
            (Some(s), Some((id, _))) => id == s.payment_id,
            _ => false,
        })
    }

    /// As [`held`].
    pub(crate) fn held(&self) -> Result<Option<HeldPayment>, LnError> {
        decode_held(self.value(HELD)?)
    }

    /// Whether the [`CLAIMED`] marker is set.
    pub(crate) fn claimed(&self) -> Result<bool, LnError> {
        Ok(self.value(CLAIMED)?.is_some())
    }

    /// Whether the [`PAY_FAILED`] marker is set.
    pub(crate) fn pay_failed(&self) -> Result<bool, LnError> {
        Ok(self.value(PAY_FAILED)?.is_some())
    }

    /// Whether the [`RECEIVE_FAILED`] marker is set.
    pub(crate) fn receive_failed(&self) -> Result<bool, LnError> {
        Ok(self.value(RECEIVE_FAILED)?.is_some())
    }
}

/// What the node's ledger answers.
impl crate::LnNode {
    /// The preimage of `hashlock`, if a payment of ours to it succeeded (recorded before the
    /// event counted as handled: also after a restart, also when the payee claimed on chain).
    pub fn preimage_for(&self, hashlock: &Hashlock) -> Result<Option<Preimage>, LnError> {
        preimage_for(&self.store, hashlock)
    }

    /// Keeps the preimage of an invoice of our own (one no swap made: the node's user asked
    /// for an invoice and we claim what pays it) in the node's store, sealed at rest with the
    /// node's files; durable when this returns, before the invoice is handed out.
    pub fn keep_own_preimage(&self, preimage: &Preimage) -> Result<(), LnError> {
        record_own(&self.store, preimage)
    }

    /// [`crate::LnNode::keep_own_preimage`] for an invoice that expires `expiry_secs` from now, with
    /// when LDK accepts a payment to it at the latest (LDK's expiry counts from the highest
    /// block time it saw, plus two hours): once that passed unpaid,
    /// [`crate::LnNode::own_invoice_lapsed`] says so, and the claimer stops looking at it.
    pub fn keep_own_invoice(&self, preimage: &Preimage, expiry_secs: u32) -> Result<(), LnError> {
        let until = crate::node::unix_now()
            .saturating_add(u64::from(expiry_secs))
            .saturating_add(LDK_EXPIRY_SLACK_SECS);
        write(
            &self.store,
            OWN_UNTIL,
            &key(&preimage.hashlock()),
            until.to_be_bytes().to_vec(),
        )?;
        record_own(&self.store, preimage)
    }

    /// Whether no payment to our own invoice of `hashlock` can arrive any more: the latest
    /// time LDK accepts one (recorded by [`crate::LnNode::keep_own_invoice`]) is before both our
    /// clock and the time of the node's best block (LDK's own clock). False for an invoice
    /// recorded without it.
    pub async fn own_invoice_lapsed(&self, hashlock: &Hashlock) -> Result<bool, LnError> {
        self.own_invoice_lapsed_at(hashlock, crate::node::unix_now())
            .await
    }

    /// [`crate::LnNode::own_invoice_lapsed`] with our clock at `now` (unix seconds).
    pub async fn own_invoice_lapsed_at(
        &self,
        hashlock: &Hashlock,
        now: u64,
    ) -> Result<bool, LnError> {
        let Some(bytes) = read(&self.store, OWN_UNTIL, &key(hashlock))? else {
            return Ok(false);
        };
        let until = <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| LnError::Decode(format!("{OWN_UNTIL}: {} bytes", bytes.len())))?;
        if now <= until {
            return Ok(false);
        }
        let best = self.follower.best().await;
        let header = self.rpc.get_block_header(&best.block_hash).await?;
        let time = header
            .get("time")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| LnError::Decode("getblockheader: no time".into()))?;
        Ok(time > until)
    }

    /// The preimages of our own invoices whose payments are not settled yet (see
    /// [`crate::LnNode::settle_own`]).
    pub fn own_preimages(&self) -> Result<Vec<Preimage>, LnError> {
        own_unsettled(&self.store)
    }

    /// Whether `hashlock` is the hash of an invoice of our own.
    pub fn is_own_invoice(&self, hashlock: &Hashlock) -> Result<bool, LnError> {
        is_own(&self.store, hashlock)
    }

    /// Marks our own invoice of `hashlock` settled (claimed, cancelled or no longer
    /// claimable): [`crate::LnNode::own_preimages`] leaves it out from then on.
    pub fn settle_own(&self, hashlock: &Hashlock) -> Result<(), LnError> {
        settle_own(&self.store, hashlock)
    }

    /// The payment held for us on `hashlock` (a hold invoice's HTLCs), if one arrived.
    pub fn held_payment(&self, hashlock: &Hashlock) -> Result<Option<HeldPayment>, LnError> {
        held(&self.store, hashlock)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_survive_a_new_store_on_the_same_directory_and_bad_ones_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::clear(dir.path().to_path_buf()).unwrap();
        let p = Preimage::from_bytes([7; 32]);
        let h = p.hashlock();
        assert_eq!(preimage_for(&store, &h).unwrap(), None);
        record_preimage(&store, &p).unwrap();
        let held_p = HeldPayment {
            amount_msat: 40_000_000,
            claim_deadline: Some(1_500),
        };
        record_held(&store, &h, held_p).unwrap();
        let again = Store::clear(dir.path().to_path_buf()).unwrap();
        assert_eq!(preimage_for(&again, &h).unwrap(), Some(p.clone()));
        assert_eq!(held(&again, &h).unwrap(), Some(held_p));
        // A record under the wrong hash is refused, not returned.
        let other = Hashlock([9; 32]);
        KVStoreSync::write(&again, NAMESPACE, PREIMAGES, &key(&other), vec![7; 32]).unwrap();
        assert!(matches!(
            preimage_for(&again, &other),
            Err(LnError::Decode(_))
        ));
        KVStoreSync::write(&again, NAMESPACE, HELD, &key(&other), vec![1; 5]).unwrap();
        assert!(matches!(held(&again, &other), Err(LnError::Decode(_))));

        // Claims, markers and sent records.
        assert_eq!(claiming(&again, &h).unwrap(), None);
        record_claiming(&again, &p).unwrap();
        assert_eq!(claiming(&store, &h).unwrap(), Some(p));
        assert!(!marked(&again, CLAIMED, &h).unwrap());
        mark(&again, CLAIMED, &h).unwrap();
        assert!(marked(&store, CLAIMED, &h).unwrap());
        assert!(!marked(&store, PAY_FAILED, &h).unwrap());
        let s = SentPayment {
            payment_id: [3; 32],
            amount_msat: 12_345,
            cltv_expiry: 700,
            state: SentState::Sending,
            attempt: 0,
        };
        record_sent(&again, &h, &s).unwrap();
        assert_eq!(sent(&store, &h).unwrap(), Some(s));
        for state in [SentState::Sent, SentState::Cancelled] {
            record_sent(&again, &h, &SentPayment { state, ..s }).unwrap();
            assert_eq!(sent(&store, &h).unwrap().unwrap().state, state);
        }
        record_sent(
            &again,
            &h,
            &SentPayment {
                attempt: 70_000,
                ..s
            },
        )
        .unwrap();
        assert_eq!(sent(&store, &h).unwrap().unwrap().attempt, 70_000);
        // A record written before attempts were counted is the first attempt.
        let mut first = vec![3; 32];
        first.extend_from_slice(&12_345u64.to_be_bytes());
        first.extend_from_slice(&700u32.to_be_bytes());
        first.push(1);
        KVStoreSync::write(&again, NAMESPACE, SENT, &key(&other), first).unwrap();
        assert_eq!(
            sent(&store, &other).unwrap(),
            Some(SentPayment {
                state: SentState::Sent,
                ..s
            })
        );
        let mut bad = vec![0; SENT_LEN];
        bad[SENT_LEN_FIRST - 1] = 3;
        KVStoreSync::write(&again, NAMESPACE, SENT, &key(&other), bad).unwrap();
        assert!(matches!(sent(&again, &other), Err(LnError::Decode(_))));
        for len in [SENT_LEN_FIRST - 1, SENT_LEN - 1] {
            KVStoreSync::write(&again, NAMESPACE, SENT, &key(&other), vec![0; len]).unwrap();
            assert!(matches!(sent(&again, &other), Err(LnError::Decode(_))));
        }
        // The payment that failed for want of a route, read alone and with the others.
        assert_eq!(unrouted(&store, &h).unwrap(), None);
        record_unrouted(&again, &h, &[9; 32], 2).unwrap();
        assert_eq!(unrouted(&store, &h).unwrap(), Some(([9; 32], 2)));
        assert_eq!(
            records(&store, &h).unwrap().unrouted().unwrap(),
            Some(([9; 32], 2))
        );
        KVStoreSync::write(&again, NAMESPACE, UNROUTED, &key(&other), vec![9; 32]).unwrap();
        assert!(matches!(unrouted(&again, &other), Err(LnError::Decode(_))));
    }

    #[test]
    fn own_invoice_preimages_are_kept_until_settled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::clear(dir.path().to_path_buf()).unwrap();
        assert!(own_unsettled(&store).unwrap().is_empty());
        let (p, q) = (Preimage::from_bytes([1; 32]), Preimage::from_bytes([2; 32]));
        record_own(&store, &p).unwrap();
        record_own(&store, &q).unwrap();
        let again = Store::clear(dir.path().to_path_buf()).unwrap();
        let mut kept = own_unsettled(&again).unwrap();
        kept.sort_by_key(|p| *p.as_bytes());
        assert_eq!(kept, vec![p.clone(), q.clone()]);
        assert!(is_own(&again, &p.hashlock()).unwrap());
        assert!(!is_own(&again, &Hashlock([3; 32])).unwrap());
        settle_own(&again, &p.hashlock()).unwrap();
        assert_eq!(own_unsettled(&store).unwrap(), vec![q.clone()]);
        // A record under another hash's key is no preimage to claim with, and does not hide
        // the others.
        let wrong = Hashlock([4; 32]);
        KVStoreSync::write(&store, NAMESPACE, OWN, &key(&wrong), vec![2; 32]).unwrap();
        assert!(matches!(
            read_preimage(&store, OWN, &wrong),
            Err(LnError::Decode(_))
        ));
        assert_eq!(own_unsettled(&store).unwrap(), vec![q]);
    }

    #[test]
    fn a_payments_records_read_together_are_the_ones_read_one_by_one() {
        for key_given in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let k = key_given.then(|| swap_core::store::StoreKey::from_bytes(&[5; 32]));
            let store = Store::open(dir.path().to_path_buf(), k).unwrap();
            let p = Preimage::from_bytes([7; 32]);
            let h = p.hashlock();
            let none = records(&store, &h).unwrap();
            assert_eq!(none.preimage().unwrap(), None);
            assert_eq!(none.claiming().unwrap(), None);
            assert_eq!(none.sent().unwrap(), None);
            assert_eq!(none.held().unwrap(), None);
            assert!(!none.claimed().unwrap());
            assert!(!none.pay_failed().unwrap());
            assert!(!none.receive_failed().unwrap());

            record_preimage(&store, &p).unwrap();
            record_claiming(&store, &p).unwrap();
            let held_p = HeldPayment {
                amount_msat: 9_000,
                claim_deadline: Some(321),
            };
            record_held(&store, &h, held_p).unwrap();
            let s = SentPayment {
                payment_id: [3; 32],
                amount_msat: 12_345,
                cltv_expiry: 700,
                state: SentState::Sent,
                attempt: 0,
            };
            record_sent(&store, &h, &s).unwrap();
            mark(&store, CLAIMED, &h).unwrap();
            mark(&store, RECEIVE_FAILED, &h).unwrap();
            // Another payment's records are not this one's.
            let other = Hashlock([9; 32]);
            mark(&store, PAY_FAILED, &other).unwrap();
            let all = records(&store, &h).unwrap();
            assert_eq!(all.preimage().unwrap(), preimage_for(&store, &h).unwrap());
            assert_eq!(all.preimage().unwrap(), Some(p.clone()));
            assert_eq!(all.claiming().unwrap(), Some(p.clone()));
            assert_eq!(all.held().unwrap(), Some(held_p));
            assert_eq!(all.sent().unwrap(), Some(s));
            assert!(all.claimed().unwrap() && all.receive_failed().unwrap());
            assert!(!all.pay_failed().unwrap());
            assert!(records(&store, &other).unwrap().pay_failed().unwrap());

            // A broken record is an error to whoever reads it, and to no one else.
            KVStoreSync::write(&store, NAMESPACE, HELD, &key(&h), vec![1; 5]).unwrap();
            KVStoreSync::write(&store, NAMESPACE, PREIMAGES, &key(&h), vec![2; 32]).unwrap();
            let broken = records(&store, &h).unwrap();
            assert!(matches!(broken.held(), Err(LnError::Decode(_))));
            assert!(matches!(broken.preimage(), Err(LnError::Decode(_))));
            assert_eq!(broken.sent().unwrap(), Some(s));
            if key_given {
                // A sealed value that does not open (here: moved under another record's
                // key) is an error in its place only.
                let sealed_sent =
                    KVStoreSync::read(store.raw(), NAMESPACE, SENT, &key(&h)).unwrap();
                KVStoreSync::write(store.raw(), NAMESPACE, CLAIMED, &key(&h), sealed_sent).unwrap();
                // Read by a store opened afresh: this one keeps what it read and wrote, and
                // the value was written underneath it.
                let k = swap_core::store::StoreKey::from_bytes(&[5; 32]);
                let fresh = Store::open(dir.path().to_path_buf(), Some(k)).unwrap();
                let moved = records(&fresh, &h).unwrap();
                assert!(matches!(moved.claimed(), Err(LnError::Store(_))));
                assert_eq!(moved.sent().unwrap(), Some(s));
                assert!(moved.receive_failed().unwrap());
            }
        }
    }
}
