//! The traits chain adapters implement. swap-core never talks to a node itself.
//!
//! An adapter answers questions about one HTLC at a time ([`Chain::htlc_status`]) but is
//! expected to serve all of them from one shared view of the chain (one block scan or one log
//! filter for every watched swap), registered through [`Chain::watch`].

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::params::{ChainParams, ChainTip};
use crate::types::{Account, Amount, Asset, Expiry, Hashlock, Height, Preimage, SwapId, TxRef};

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

/// The state of one HTLC on chain. Zero confirmations means seen in the mempool only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HtlcStatus {
    /// No lock found (never made, still unpropagated, or reorged out).
    Absent,
    /// Locked and unspent.
    Funded {
        /// What the chain holds.
        lock: ObservedLock,
        /// Depth of the funding transaction (0 = mempool).
        confirmations: u32,
    },
    /// Claimed with a preimage that hashes to the lock's hashlock.
    Claimed {
        /// The revealed secret, extracted from the claim.
        preimage: Preimage,
        /// The claim transaction.
        txref: TxRef,
        /// Depth of the claim (0 = mempool).
        confirmations: u32,
    },
    /// Refunded to the sender.
    Refunded {
        /// The refund transaction.
        txref: TxRef,
        /// Depth of the refund (0 = mempool).
        confirmations: u32,
    },
}

/// One chain, as the swap engine sees it. Implemented by btc-adapter and eth-adapter.
///
/// Every action is idempotent: before sending anything the adapter checks the chain (and its
/// mempool and wallet), so an HTLC already funded is not funded twice and a claim or refund
/// already known to the node counts as success.
#[async_trait]
pub trait Chain: Send + Sync {
    /// The parameters the expiry rules use for this chain.
    fn params(&self) -> &ChainParams;

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

    /// Refunds the HTLC to the sender (only valid once its expiry allows).
    async fn refund(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError>;
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
