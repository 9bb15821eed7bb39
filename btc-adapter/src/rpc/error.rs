//! What a node call can fail with, and what that means for retrying: the one place where the
//! node's error texts are read (where Bitcoin Core gives no specific code).

use super::*;

/// An RPC failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// Could not reach the node, or it did not answer in time.
    #[error("transport: {0}")]
    Transport(String),
    /// The cookie file could not be read (node not started yet).
    #[error("cookie: {0}")]
    Cookie(String),
    /// An HTTP error without a JSON-RPC body.
    #[error("http {status}: {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("rpc error {code}: {message}")]
    Rpc {
        /// Bitcoin Core's error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer did not have the expected shape.
    #[error("unexpected answer to {method}: {detail}")]
    Decode {
        /// The method called.
        method: String,
        /// What did not fit.
        detail: String,
    },
}

impl RpcError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            RpcError::Transport(_) | RpcError::Cookie(_) => true,
            // A full work queue is 503 on recent Core and 500 on 0.21 (litecoind): both pass.
            RpcError::Http { status, body } => {
                *status == 503 || (*status == 500 && body.contains("Work queue depth exceeded"))
            }
            RpcError::Rpc { code, .. } => *code == RPC_IN_WARMUP,
            RpcError::Decode { .. } => false,
        }
    }

    /// The JSON-RPC error code, if the node sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            RpcError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when a submitted transaction is already in the mempool or the chain.
    pub fn is_already_known(&self) -> bool {
        match self {
            RpcError::Rpc { code, message } => {
                *code == RPC_VERIFY_ALREADY_IN_CHAIN
                    || ((*code == RPC_VERIFY_REJECTED || *code == RPC_VERIFY_ERROR)
                        && (message.contains("already") || message.contains("txn-already")))
            }
            _ => false,
        }
    }

    /// True when a transaction was rejected for being non-final (timelock not reached yet).
    pub fn is_non_final(&self) -> bool {
        matches!(self, RpcError::Rpc { message, .. } if message.contains("non-final"))
    }
}

impl RpcError {
    /// The chain-independent cause (which decides whether to retry). Node texts are read only
    /// here and in the `is_*` checks above, where Bitcoin Core gives no specific code.
    pub fn cause(&self) -> Cause {
        match self {
            RpcError::Rpc { .. } if self.is_non_final() => Cause::NotReady { until: None },
            _ if self.is_transient() => Cause::Unavailable,
            RpcError::Rpc { code, .. } => Cause::Rejected { code: Some(*code) },
            RpcError::Http { .. } => Cause::Rejected { code: None },
            RpcError::Transport(_) | RpcError::Cookie(_) => Cause::Unavailable,
            RpcError::Decode { .. } => Cause::Other {
                kind: swap_core::ErrorKind::Permanent,
            },
        }
    }
}

impl From<RpcError> for ChainError {
    fn from(e: RpcError) -> Self {
        ChainError::new(e.cause(), e)
    }
}
pub(super) fn rpc_error(err: &Value) -> RpcError {
    RpcError::Rpc {
        code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }
}
