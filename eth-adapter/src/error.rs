//! The adapter's error type and its mapping onto [`swap_core::chain::ChainError`].

use swap_core::chain::ChainError;

/// What can go wrong in the Ethereum adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EthError {
    /// The node could not be reached or answered with a transport error (retry).
    #[error("rpc: {0}")]
    Rpc(String),
    /// The node rejected the request (bad transaction, not enough funds, ...).
    #[error("node rejected request: {0}")]
    Rejected(String),
    /// A transaction was mined but reverted.
    #[error("transaction {tx} reverted{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Reverted {
        /// The transaction hash.
        tx: String,
        /// The decoded reason, when known.
        reason: Option<String>,
    },
    /// A call would revert (found while estimating gas), with the decoded reason.
    #[error("would revert: {0}")]
    WouldRevert(String),
    /// No receipt within the configured timeout (the transaction may still be mined).
    #[error("transaction {0} not mined in time")]
    Timeout(String),
    /// The current base fee is above the configured cap.
    #[error("base fee {base_fee} wei above the configured cap {cap} wei")]
    FeeCap {
        /// The latest base fee.
        base_fee: u128,
        /// The configured maximum fee per gas.
        cap: u128,
    },
    /// The HTLC parameters do not describe an Ethereum HTLC this adapter can handle.
    #[error("invalid htlc parameters: {0}")]
    InvalidParams(String),
    /// The chain is in a state where the requested action cannot succeed now.
    #[error("{0}")]
    NotReady(String),
    /// The chain is in a state where the requested action can never succeed.
    #[error("{0}")]
    Impossible(String),
    /// The chain answered something inconsistent (e.g. a reorg between two reads); retry.
    #[error("inconsistent chain view: {0}")]
    Inconsistent(String),
}

impl EthError {
    /// True when retrying later may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EthError::Rpc(_)
                | EthError::Timeout(_)
                | EthError::FeeCap { .. }
                | EthError::NotReady(_)
                | EthError::Inconsistent(_)
        )
    }
}

impl From<EthError> for ChainError {
    fn from(e: EthError) -> Self {
        if e.is_transient() {
            ChainError::transient(e)
        } else {
            ChainError::permanent(e)
        }
    }
}

/// Classifies an alloy transport error: error responses from the node are rejections (unless
/// they carry revert data), everything else (connection refused, timeouts, bad HTTP) is
/// transient.
pub(crate) fn rpc_err(e: alloy::transports::TransportError) -> EthError {
    use alloy::transports::RpcError;
    match &e {
        RpcError::ErrorResp(payload) => {
            if let Some(data) = payload.as_revert_data() {
                EthError::WouldRevert(crate::htlc::decode_revert(&data))
            } else {
                let msg = payload.message.to_lowercase();
                // Nonce races and "already known" are retryable.
                if msg.contains("nonce")
                    || msg.contains("already known")
                    || msg.contains("underpriced")
                {
                    EthError::Rpc(payload.to_string())
                } else {
                    EthError::Rejected(payload.to_string())
                }
            }
        }
        _ => EthError::Rpc(e.to_string()),
    }
}
