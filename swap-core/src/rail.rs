//! The rail seam: what every place an HTLC can live (on chain, in a Lightning channel, in an
//! Ethereum payment channel) implements. swap-core never talks to a node or a peer itself.
//!
//! A rail reports each leg's [`HtlcStatus`] with its [`Finality`] (in the mempool, n blocks
//! deep, or irrevocable), says how refunds happen ([`crate::RefundMode`]) and how long it needs
//! to enforce a claim on chain (`enforcement_blocks` in its [`ChainParams`]), and carries
//! rail-specific data ([`RailData`]) in the terms. The engine asks a rail about all its active
//! legs at once ([`Rail::observe`]) and hands it all the operations of a round at once
//! ([`Rail::execute`]), so an adapter serves every swap from one view of its chain or channel
//! and packs N operations into one transaction where it can.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::params::{ChainParams, ChainTip, Finality, RailId};
use crate::types::{
    Account, Amount, Asset, Expiry, Hashlock, Height, Preimage, PublicKeyBytes, SwapId, TxRef,
};

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Node down or restarting, timeout, transaction not yet propagated: retry later.
    Transient,
    /// The request itself is wrong (bad parameters, transaction rejected as invalid, not enough
    /// funds): retrying the same thing will fail the same way.
    Permanent,
}

/// What went wrong on a chain, as callers branch on it. Whether to retry follows from it
/// ([`Cause::kind`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// Not possible yet (a refund before its expiry, a spend before its lock confirms); possible
    /// from `until` when known.
    NotReady {
        /// The height or time from which it may succeed.
        until: Option<Expiry>,
    },
    /// Already spent: the HTLC was claimed or refunded (by us or the counterparty).
    AlreadySpent,
    /// The fee it needs is above the configured cap now; fees fall again.
    FeeCapped,
    /// The node refused the request; `code` is the node's error code when it gave one.
    Rejected {
        /// The node's (JSON-RPC) error code.
        code: Option<i64>,
    },
    /// The node could not be reached or did not answer in time.
    Unavailable,
    /// The node's answers disagree with each other (a reorg between two reads).
    Inconsistent,
    /// The request is wrong for this chain or adapter (bad parameters, wrong contract or chain).
    Invalid,
    /// Anything else, with its retry policy stated by the adapter.
    Other {
        /// Whether to retry.
        kind: ErrorKind,
    },
}

impl Cause {
    /// Whether retrying can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Cause::NotReady { .. }
            | Cause::FeeCapped
            | Cause::Unavailable
            | Cause::Inconsistent => ErrorKind::Transient,
            Cause::AlreadySpent | Cause::Rejected { .. } | Cause::Invalid => ErrorKind::Permanent,
            Cause::Other { kind } => *kind,
        }
    }
}

/// An error from a chain adapter: its cause (which decides whether to retry) and a message for
/// people, which never contains a secret or a private key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} chain error: {message}")]
pub struct ChainError {
    /// Whether to retry (follows from `cause`).
    pub kind: ErrorKind,
    /// What went wrong.
    pub cause: Cause,
    /// What went wrong, for people.
    pub message: String,
}

impl ChainError {
    /// An error with this cause.
    pub fn new(cause: Cause, message: impl fmt::Display) -> Self {
        Self {
            kind: cause.kind(),
            cause,
            message: message.to_string(),
        }
    }

    /// A transient error of no more specific cause: retrying later may succeed.
    pub fn transient(message: impl fmt::Display) -> Self {
        Self::new(
            Cause::Other {
                kind: ErrorKind::Transient,
            },
            message,
        )
    }

    /// A permanent error of no more specific cause: retrying the same request will not help.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self::new(
            Cause::Other {
                kind: ErrorKind::Permanent,
            },
            message,
        )
    }

    /// Not possible yet, with no known time when it will be (a timelock not reached, a
    /// transaction not seen or not final yet): the next observation decides.
    pub fn not_ready(message: impl fmt::Display) -> Self {
        Self::new(Cause::NotReady { until: None }, message)
    }

    /// True for transient errors.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

/// Everything an adapter needs to find, build, claim or refund one HTLC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcParams {
    /// The swap this HTLC belongs to (adapters derive per-swap keys from it or from `key_index`).
    pub swap_id: SwapId,
    /// Index of this swap's keys in the installation's key tree.
    pub key_index: u32,
    /// `SHA256(preimage)`.
    pub hashlock: Hashlock,
    /// What is locked.
    pub asset: Asset,
    /// How much is locked, exactly.
    pub amount: Amount,
    /// Who locks, and gets the refund.
    pub sender: Account,
    /// Who can claim with the preimage.
    pub recipient: Account,
    /// When the sender can refund.
    pub expiry: Expiry,
    /// Where to start looking for the lock (the tip when the swap was agreed).
    pub watch_from: Height,
    /// What a channel rail needs to find or make this leg's lock (a node id, a channel id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rail_data: Option<RailData>,
}

/// The version of [`RailData`] this build writes and reads.
pub const RAIL_DATA_VERSION: u16 = 1;

/// Rail-specific data of one leg, agreed in the terms, carried in the messages and stored with
/// the swap. Versioned: a party refuses a version it does not know rather than guess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailData {
    /// The format version ([`RAIL_DATA_VERSION`]).
    pub version: u16,
    /// The data.
    #[serde(flatten)]
    pub body: RailBody,
}

/// The data each kind of channel rail needs. None is secret: a Lightning payment secret is
/// shared with the payer by design (it is in every invoice), and keeps intermediaries from
/// probing the payee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rail", rename_all = "snake_case")]
pub enum RailBody {
    /// A Lightning leg: where to pay and what proves the payer knows the invoice.
    Lightning {
        /// The recipient's node id.
        node_id: PublicKeyBytes,
        /// The payment secret the recipient's node expects with the HTLC.
        #[serde(with = "hex::serde")]
        payment_secret: [u8; 32],
        /// The final CLTV delta the recipient requires (pinned: no router may add to it).
        min_final_cltv_delta: u16,
        /// The last hops to the recipient over its unannounced channels, for a payer that has
        /// no channel with it (a payment through an intermediary). Empty: pay directly.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        route_hints: Vec<RouteHintHop>,
    },
    /// A leg in a two-party Ethereum payment channel.
    EvmChannel {
        /// The channel's id in the channel contract.
        #[serde(with = "hex::serde")]
        channel_id: [u8; 32],
    },
}

/// One hop into a Lightning recipient over an unannounced channel: what a payer's router needs
/// to route a payment through the node at its source (BOLT 11's `r` field, one hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHintHop {
    /// The forwarding node (the recipient's channel peer).
    pub src_node_id: PublicKeyBytes,
    /// The channel into the recipient, as the forwarding node knows it (an alias for an
    /// unannounced channel).
    pub short_channel_id: u64,
    /// The forwarding node's base fee, in millisatoshis.
    pub fee_base_msat: u32,
    /// Its fee per million.
    pub fee_proportional_millionths: u32,
    /// The CLTV delta it adds.
    pub cltv_expiry_delta: u16,
}

impl RailData {
    /// Data of the current version.
    pub fn new(body: RailBody) -> Self {
        Self {
            version: RAIL_DATA_VERSION,
            body,
        }
    }

    /// The kind of rail this data is for.
    pub fn kind(&self) -> crate::params::RailKind {
        match self.body {
            RailBody::Lightning { .. } => crate::params::RailKind::Lightning,
            RailBody::EvmChannel { .. } => crate::params::RailKind::EvmChannel,
        }
    }
}

/// A lock as found on chain: what the chain says, to be compared with the agreed terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLock {
    /// The funding transaction.
    pub txref: TxRef,
    /// What it locks.
    pub asset: Asset,
    /// How much it locks.
    pub amount: Amount,
    /// Who can refund.
    pub sender: Account,
    /// Who can claim.
    pub recipient: Account,
    /// The hashlock in the script or contract.
    pub hashlock: Hashlock,
    /// The expiry in the script or contract.
    pub expiry: Expiry,
}

/// The state of one leg's HTLC on its rail, with how final it is. A `txref` names the
/// transaction on chain, or the channel update on a channel rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HtlcStatus {
    /// No lock found (never made, still unpropagated, or reorged out).
    Absent,
    /// Locked (offered) and neither claimed nor cancelled.
    Funded {
        /// What the rail holds.
        lock: ObservedLock,
        /// How final the lock is.
        finality: Finality,
    },
    /// Claimed (settled) with a preimage that hashes to the lock's hashlock.
    Claimed {
        /// The revealed secret, extracted from the claim.
        preimage: Preimage,
        /// The claim.
        txref: TxRef,
        /// How final the claim is.
        finality: Finality,
    },
    /// Back with the sender (cancelled): refunded on chain, or failed back in a channel.
    Refunded {
        /// The refund.
        txref: TxRef,
        /// How final the refund is.
        finality: Finality,
    },
}

impl HtlcStatus {
    /// How final the lock, claim or refund is (`None` when absent).
    pub fn finality(&self) -> Option<Finality> {
        match self {
            HtlcStatus::Absent => None,
            HtlcStatus::Funded { finality, .. }
            | HtlcStatus::Claimed { finality, .. }
            | HtlcStatus::Refunded { finality, .. } => Some(*finality),
        }
    }
}

/// One operation for a rail to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RailOp {
    /// Fund this HTLC.
    Lock(HtlcParams),
    /// Claim this HTLC with the secret.
    Claim(HtlcParams, Preimage),
    /// Refund this HTLC.
    Refund(HtlcParams),
    /// Make a lock of this HTLC that was signed but is not on chain impossible to mine
    /// ([`Rail::cancel_lock`]).
    CancelLock(HtlcParams),
}

impl RailOp {
    /// The HTLC to lock, if this is a lock (adapters pack a round's locks together).
    pub fn as_lock(&self) -> Option<&HtlcParams> {
        match self {
            RailOp::Lock(h) => Some(h),
            _ => None,
        }
    }

    /// The HTLC the operation is about.
    pub fn htlc(&self) -> &HtlcParams {
        match self {
            RailOp::Lock(h) | RailOp::Claim(h, _) | RailOp::Refund(h) | RailOp::CancelLock(h) => h,
        }
    }
}

/// What a wallet holds for locking one asset on a rail (see [`Rail::funds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funds {
    /// Base units of the asset the wallet holds.
    pub balance: u128,
    /// Base units of the asset that pays the fees (the same as `balance` when the asset pays its
    /// own fees, as BTC and ETH do).
    pub fee_balance: u128,
    /// What one lock's fees may cost, in the fee asset (with headroom).
    pub fee_allowance: u128,
    /// Whether the fees come out of the locked asset's own balance.
    pub fees_from_asset: bool,
}

impl Funds {
    /// Whether `amount` (beyond `reserved`, promised to other swaps) can be locked, fees
    /// included.
    pub fn covers(&self, amount: u128, reserved: u128) -> bool {
        let need = amount.saturating_add(reserved);
        if self.fees_from_asset {
            self.balance >= need.saturating_add(self.fee_allowance)
        } else {
            self.balance >= need && self.fee_balance >= self.fee_allowance
        }
    }
}

/// What one look at a rail found: its tip and the status of every leg asked about, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The tip of the chain under the rail.
    pub tip: ChainTip,
    /// One status (or error) per leg asked about.
    pub statuses: Vec<Result<HtlcStatus, ChainError>>,
}

/// One rail, as the swap engine sees it. Implemented by btc-adapter and eth-adapter (on
/// chain) and by channel rails.
///
/// Every action is idempotent: before sending anything the adapter checks the chain (and its
/// mempool and wallet, or the channel state), so an HTLC already funded is not funded twice and
/// a claim or refund already known counts as success.
#[async_trait]
pub trait Rail: Send + Sync {
    /// The parameters the expiry rules use for this rail (its chain, kind and delays).
    fn params(&self) -> &ChainParams;

    /// Which rail this is.
    fn id(&self) -> RailId {
        self.params().rail()
    }

    /// Our account on this rail for the swap keys at `key_index` (a public key on a Bitcoin
    /// rail, an address on Ethereum), so the engine never matches on chain families.
    async fn account(&self, key_index: u32) -> Result<Account, ChainError>;

    /// What our wallet on this rail holds of `asset`, and what one lock's fees may cost:
    /// checked before a swap is agreed, so a party that cannot fund its lock says so before the
    /// other side locks anything. A rail without a wallet (watch-only) answers an error.
    async fn funds(&self, asset: &Asset) -> Result<Funds, ChainError> {
        let _ = asset;
        Err(ChainError::new(Cause::Invalid, "this rail has no wallet"))
    }

    /// What the recipient of a leg on this rail must put in the terms before `payer` can
    /// lock it (a Lightning hold invoice for `hashlock`: the node id and payment secret; the
    /// Ethereum channel with `payer` the lock goes into), or `None` when the rail needs nothing
    /// (on chain). Called by the recipient while the swap is negotiated; a leg that is never
    /// paid costs nothing.
    async fn prepare_receive(
        &self,
        hashlock: &Hashlock,
        asset: &Asset,
        amount: &Amount,
        payer: &Account,
    ) -> Result<Option<RailData>, ChainError> {
        let _ = (hashlock, asset, amount, payer);
        Ok(None)
    }

    /// Checks, before a swap is agreed, that we can take our part in `htlc` on this rail
    /// with what its rail data names: as its sender, that the channel is ours with the
    /// recipient and our side holds the amount; as its recipient, that the channel or invoice
    /// is ours. So a leg we could never lock or claim is refused while nothing is locked. The
    /// default (on chain, where funds are checked by [`Rail::funds`]) accepts.
    async fn check_leg(&self, htlc: &HtlcParams) -> Result<(), ChainError> {
        let _ = htlc;
        Ok(())
    }

    /// Checks that this rail can move funds safely (the node is on the expected chain, the
    /// contract is ours) before a swap is agreed. Adapters check before their first send
    /// anyway; asking here makes a wrong configuration fail before anything is agreed.
    async fn verify(&self) -> Result<(), ChainError> {
        Ok(())
    }

    /// The current best block.
    async fn tip(&self) -> Result<ChainTip, ChainError>;

    /// Starts watching an HTLC (so that one shared scan covers it). Idempotent.
    async fn watch(&self, htlc: &HtlcParams) -> Result<(), ChainError> {
        let _ = htlc;
        Ok(())
    }

    /// Stops watching an HTLC whose swap has finished and drops what the adapter kept for it,
    /// so a long-running engine does not grow with every swap it ever ran. Idempotent; an
    /// adapter that keeps nothing per HTLC has nothing to do. Watching it again later (a
    /// resumed swap) finds it afresh.
    async fn forget(&self, htlc: &HtlcParams) {
        let _ = htlc;
    }

    /// Finds the HTLC and reports its state, with the secret when it has been claimed.
    async fn htlc_status(&self, htlc: &HtlcParams) -> Result<HtlcStatus, ChainError>;

    /// Funds the HTLC from this party's wallet. Does nothing (and returns the existing funding)
    /// when it is already funded or its funding is in the mempool.
    async fn lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError>;

    /// Claims the HTLC with the preimage, paying the recipient.
    async fn claim(&self, htlc: &HtlcParams, preimage: &Preimage) -> Result<TxRef, ChainError>;

    /// Refunds the HTLC to the sender (only valid once its expiry allows). Never called for
    /// a rail whose refunds are automatic.
    async fn refund(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError>;

    /// Makes sure a lock of `htlc` that this installation signed, and that is not on the rail
    /// (never broadcast, evicted, reorged out), can never land there: what it would spend goes
    /// elsewhere (an input back to the wallet, the nonce to a transfer to self). `Ok` once that
    /// is final, with the cancelling transaction, or with an empty reference when no lock was
    /// ever signed; a `NotReady` error while the cancel is not final yet; an `AlreadySpent`
    /// error when the lock itself is on chain (it is refunded instead). Called by a swap that
    /// gave up before its lock appeared. The default (a rail whose locks are applied at once or
    /// not at all, such as a channel update) has nothing to cancel.
    async fn cancel_lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        let _ = htlc;
        Ok(TxRef(String::new()))
    }

    /// One look at the rail for all the given legs: the tip and each leg's status. The default
    /// asks leg by leg; an adapter that can answer from one scan overrides it.
    async fn observe(&self, htlcs: &[HtlcParams]) -> Result<Observation, ChainError> {
        let tip = self.tip().await?;
        let mut statuses = Vec::with_capacity(htlcs.len());
        for htlc in htlcs {
            statuses.push(status_of(self, htlc).await);
        }
        Ok(Observation { tip, statuses })
    }

    /// Tells the runtime that something on this rail may have changed for some of its legs (a
    /// channel peer's update applied, a Lightning payment held, claimed or failed), and for
    /// which hashlocks, so those swaps step at once instead of at their next poll and the
    /// others are left alone (see [`crate::changes`]). `None`, the default: the rail is polled
    /// only (on chain, where new blocks and mempool entries are found by looking).
    fn changes(&self) -> Option<crate::changes::ChangeSubscription> {
        None
    }

    /// Performs a round of operations, one result per operation in order. The default sends
    /// them one by one; an adapter packs them (N locks into one funding transaction, N claims
    /// into one contract call) by overriding it.
    async fn execute(&self, ops: &[RailOp]) -> Vec<Result<TxRef, ChainError>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(perform(self, op).await);
        }
        out
    }
}

async fn status_of<R: Rail + ?Sized>(
    rail: &R,
    htlc: &HtlcParams,
) -> Result<HtlcStatus, ChainError> {
    rail.watch(htlc).await?;
    rail.htlc_status(htlc).await
}

/// One look at every leg with the rail's single-leg methods, all at once: for an adapter whose
/// status reads share one scan or log query among concurrent callers.
pub async fn observe_concurrently<R: Rail + ?Sized>(
    rail: &R,
    htlcs: &[HtlcParams],
) -> Result<Observation, ChainError> {
    let tip = rail.tip().await?;
    let statuses = futures::future::join_all(htlcs.iter().map(|htlc| status_of(rail, htlc))).await;
    Ok(Observation { tip, statuses })
}

/// Performs one operation with the rail's single-operation methods.
pub async fn perform<R: Rail + ?Sized>(rail: &R, op: &RailOp) -> Result<TxRef, ChainError> {
    match op {
        RailOp::Lock(h) => rail.lock(h).await,
        RailOp::Claim(h, p) => rail.claim(h, p).await,
        RailOp::Refund(h) => rail.refund(h).await,
        RailOp::CancelLock(h) => rail.cancel_lock(h).await,
    }
}

/// Performs a round of operations all at once: for an adapter whose single-operation methods
/// already pack concurrent calls into one transaction (one funding for N locks).
pub async fn execute_concurrently<R: Rail + ?Sized>(
    rail: &R,
    ops: &[RailOp],
) -> Vec<Result<TxRef, ChainError>> {
    futures::future::join_all(ops.iter().map(|op| perform(rail, op))).await
}

#[cfg(test)]
mod funds_tests {
    use super::Funds;

    #[test]
    fn fees_come_out_of_the_asset_only_when_it_pays_them() {
        let f = Funds {
            balance: 1_000,
            fee_balance: 1_000,
            fee_allowance: 100,
            fees_from_asset: true,
        };
        assert!(f.covers(900, 0));
        assert!(!f.covers(901, 0));
        assert!(!f.covers(800, 101));
        let token = Funds {
            fees_from_asset: false,
            ..f
        };
        assert!(token.covers(1_000, 0));
        assert!(!token.covers(1_000, 1));
        assert!(!Funds {
            fee_balance: 99,
            ..token
        }
        .covers(1, 0));
        assert!(!f.covers(u128::MAX, u128::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_policy_follows_from_the_cause() {
        let transient = [
            Cause::NotReady { until: None },
            Cause::FeeCapped,
            Cause::Unavailable,
            Cause::Inconsistent,
        ];
        for c in transient {
            assert!(ChainError::new(c.clone(), "x").is_transient(), "{c:?}");
        }
        let permanent = [
            Cause::AlreadySpent,
            Cause::Rejected { code: Some(-26) },
            Cause::Invalid,
        ];
        for c in permanent {
            assert!(!ChainError::new(c.clone(), "x").is_transient(), "{c:?}");
        }
        assert!(ChainError::transient("x").is_transient());
        assert!(!ChainError::permanent("x").is_transient());
    }
}
