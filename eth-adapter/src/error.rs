//! The adapter's error type and its mapping onto [`swap_core::rail::ChainError`].

use swap_core::rail::{Cause, ChainError};

/// What can go wrong in the Ethereum adapter.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EthError {
    /// The node could not be reached or answered with a transport error (retry).
    #[error("rpc: {0}")]
    Rpc(String),
    /// The node rejected the request (bad transaction, not enough funds, ...).
    #[error("node rejected request: {0}")]
    Rejected(String),
    /// The node answered a request with a JSON-RPC error (its code kept).
    #[error("node rejected request (code {code}): {message}")]
    RejectedWithCode {
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message (URLs scrubbed).
        message: String,
    },
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
    WouldRevert(crate::htlc::Revert),
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
    /// The configured HTLC address does not hold this crate's HTLC contract: nothing is sent
    /// there (funds sent to it could not be claimed or refunded).
    #[error(
        "the code at {address} is not the xswap HTLC contract: refusing to send anything to it \
         (check the configured HTLC address)"
    )]
    NotHtlcContract {
        /// The configured address.
        address: String,
    },
    /// The node is on another chain than the configuration expects.
    #[error("the node is on chain {node}, expected {expected}: refusing to send anything")]
    WrongChain {
        /// What the node reports.
        node: u64,
        /// What the configuration expects.
        expected: u64,
    },
}

impl EthError {
    /// True when retrying later may help.
    pub fn is_transient(&self) -> bool {
        self.cause().kind() == swap_core::ErrorKind::Transient
    }
}

impl EthError {
    /// The chain-independent cause (which decides whether to retry).
    pub fn cause(&self) -> Cause {
        use crate::bindings::HTLC::HTLCErrors as H;
        use crate::htlc::Revert;
        match self {
            EthError::Rpc(_) | EthError::Timeout(_) => Cause::Unavailable,
            EthError::FeeCap { .. } => Cause::FeeCapped,
            EthError::NotReady(_) => Cause::NotReady { until: None },
            EthError::Inconsistent(_) => Cause::Inconsistent,
            EthError::Impossible(_) => Cause::AlreadySpent,
            EthError::InvalidParams(_)
            | EthError::NotHtlcContract { .. }
            | EthError::WrongChain { .. } => Cause::Invalid,
            EthError::WouldRevert(Revert::Htlc(H::NotExpired(_))) => {
                Cause::NotReady { until: None }
            }
            EthError::RejectedWithCode { code, .. } => Cause::Rejected { code: Some(*code) },
            EthError::Rejected(_) | EthError::Reverted { .. } | EthError::WouldRevert(_) => {
                Cause::Rejected { code: None }
            }
        }
    }
}

impl From<EthError> for ChainError {
    fn from(e: EthError) -> Self {
        ChainError::new(e.cause(), e)
    }
}

/// Classifies an alloy transport error: error responses from the node are rejections (unless
/// they carry revert data), everything else (connection refused, timeouts, bad HTTP) is
/// transient.
pub fn rpc_err(e: alloy::transports::TransportError) -> EthError {
    use alloy::transports::RpcError;
    match &e {
        RpcError::ErrorResp(payload) => {
            if let Some(data) = payload.as_revert_data() {
                EthError::WouldRevert(crate::htlc::decode_revert(&data))
            } else {
                // Ethereum nodes give no stable code for nonce races, "already known" or an
                // underpriced replacement: this is the one place their text is read. All three
                // are retryable.
                let msg = payload.message.to_lowercase();
                if msg.contains("nonce")
                    || msg.contains("already known")
                    || msg.contains("underpriced")
                {
                    EthError::Rpc(scrub_urls(&payload.to_string()))
                } else {
                    EthError::RejectedWithCode {
                        code: payload.code,
                        message: scrub_urls(&payload.message),
                    }
                }
            }
        }
        _ => EthError::Rpc(scrub_urls(&e.to_string())),
    }
}

/// Replaces every URL in `s` by its scheme and host: transport errors quote the request URL,
/// whose path or query often carries an API key.
pub fn scrub_urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let url = &tail[..end];
        let shown = match url.split_once("://") {
            Some((scheme, after)) => {
                let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
                let host = authority.rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host}")
            }
            None => "<url>".to_string(),
        };
        out.push_str(&shown);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::scrub_urls;

    #[test]
    fn urls_lose_path_query_and_credentials() {
        assert_eq!(
            scrub_urls(
                "error sending request for url (https://user:pw@mainnet.example.io/v3/KEY?x=1)"
            ),
            "error sending request for url (https://mainnet.example.io)"
        );
        assert_eq!(scrub_urls("no url here"), "no url here");
        assert_eq!(
            scrub_urls("a http://h:8545/k b ws://x/y"),
            "a http://h:8545 b ws://x"
        );
    }
}
