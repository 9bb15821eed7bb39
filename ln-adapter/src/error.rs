//! The crate's error type: what failed, with its cause kept.

use btc_adapter::rpc::RpcError;

/// Everything the embedded Lightning node can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LnError {
    /// The Bitcoin-family node answered with an error, or could not be reached.
    #[error("node rpc: {0}")]
    Rpc(#[from] RpcError),
    /// The node returned data that does not fit what the node must return (a block header
    /// whose hash differs, a transaction that does not parse).
    #[error("inconsistent chain data: {0}")]
    Inconsistent(String),
    /// LDK refused a call (its `APIError` or a send failure), as text.
    #[error("lightning: {0}")]
    Api(String),
    /// No usable channel or peer for the request.
    #[error("not ready: {0}")]
    NotReady(String),
    /// Reading or writing the node's data directory failed.
    #[error("store: {0}")]
    Store(#[from] std::io::Error),
    /// The data directory is sealed (see [`crate::LnConfig::store_key`]) and the node was
    /// started without a key: nothing was written.
    #[error(
        "the lightning node's data is encrypted: it must be started with the installation's key \
         (from its keystore)"
    )]
    KeyRequired,
    /// The key given does not open the data directory (sealed with another installation's
    /// key): nothing was written.
    #[error(
        "the key given does not open the lightning node's data (encrypted with another \
         installation's seed)"
    )]
    WrongKey,
    /// Persisted LDK state does not decode.
    #[error("persisted state does not decode: {0}")]
    Decode(String),
    /// The wallet could not fund or sign a transaction.
    #[error("wallet: {0}")]
    Wallet(String),
    /// Bad configuration.
    #[error("config: {0}")]
    Config(String),
    /// The peer is a Lightning node on another chain (see [`crate::handshake`]): refused in
    /// the handshake, and not kept among the peers to reconnect.
    #[error("another chain: {0}")]
    OtherChain(String),
    /// Opening this anchor channel would leave the wallet without the reserve that pays anchor
    /// channels' force-close fees: nothing was sent to the peer. Send coins to the wallet (or
    /// turn anchors off in the configuration) and open again.
    #[error("anchor channel not opened: {0}; send coins to the node wallet, or set [ln] anchors = false")]
    AnchorReserve(crate::anchors::ReserveShort),
    /// The node stopped working on its own (its channel manager could not be persisted); it
    /// must be restarted from its data directory.
    #[error("the lightning node stopped: {0}")]
    Stopped(String),
}

impl LnError {
    /// Whether trying again later may succeed (the node was unreachable, or not ready yet).
    pub fn is_transient(&self) -> bool {
        match self {
            LnError::Rpc(e) => e.is_transient(),
            LnError::NotReady(_) => true,
            _ => false,
        }
    }
}

/// Formats an LDK error value (they implement `Debug`, not always `Display`).
pub(crate) fn api<E: std::fmt::Debug>(e: E) -> LnError {
    LnError::Api(format!("{e:?}"))
}
