//! How to reach the node and which contract to use.

use super::*;

/// How to reach the node and which contract to use.
///
/// `Debug` shows only the scheme and host of `rpc_url` (provider URLs often carry an API key).
#[derive(Clone)]
pub struct EthConfig {
    /// HTTP JSON-RPC endpoint.
    pub rpc_url: String,
    /// The deployed HTLC contract.
    pub htlc: Address,
    /// The chain parameters the engine's expiry rules use.
    pub params: ChainParams,
    /// Never pay more than this per gas (wei). Sending fails transiently while the base fee is
    /// above it.
    pub max_fee_per_gas: u128,
    /// Upper bound for the priority fee (wei per gas).
    pub max_priority_fee_per_gas: u128,
    /// How long to wait for a receipt before reporting a (transient) timeout.
    pub receipt_timeout: Duration,
    /// How often to poll for receipts.
    pub poll_interval: Duration,
    /// Largest block range per `eth_getLogs` request.
    pub log_chunk: u64,
    /// Look for pending claims in the node's mempool (`txpool_content`) to learn a preimage
    /// before the claim is mined (reported as `Claimed` with 0 confirmations). Off by default:
    /// on a mainnet node the whole txpool is megabytes per status poll; turn it on for a node
    /// with a small pool (or a private one) when learning the secret one block earlier matters.
    pub mempool_preimages: bool,
    /// The numeric chain id the node must report (checked by [`EthChain::connect`]); `None`
    /// accepts any.
    pub expected_chain_id: Option<u64>,
}

/// `scheme://host[:port]` of a URL, without path, query or credentials.
pub(super) fn redact_url(url: &str) -> String {
    match url.parse::<alloy::transports::http::reqwest::Url>() {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<unparsable url>".into(),
    }
}

impl std::fmt::Debug for EthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthConfig")
            .field("rpc_url", &redact_url(&self.rpc_url))
            .field("htlc", &self.htlc)
            .field("params", &self.params)
            .field("max_fee_per_gas", &self.max_fee_per_gas)
            .field("max_priority_fee_per_gas", &self.max_priority_fee_per_gas)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("log_chunk", &self.log_chunk)
            .field("mempool_preimages", &self.mempool_preimages)
            .field("expected_chain_id", &self.expected_chain_id)
            .finish()
    }
}

/// The EIP-155 chain id of a public network (`None` for a local chain, whose id varies).
pub fn known_chain_id(network: swap_core::Network) -> Option<u64> {
    match network {
        swap_core::Network::Mainnet => Some(1),
        swap_core::Network::Sepolia => Some(11_155_111),
        _ => None,
    }
}

impl EthConfig {
    /// A configuration with defaults: the chain id of a public network expected of the node,
    /// fee cap 500 gwei, priority fee cap 3 gwei, receipt timeout 10 minutes, 1 s polling, 10,000-block log ranges, mempool preimage extraction off.
    pub fn new(rpc_url: impl Into<String>, htlc: Address, params: ChainParams) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            htlc,
            params,
            max_fee_per_gas: 500_000_000_000,
            max_priority_fee_per_gas: 3_000_000_000,
            receipt_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            log_chunk: 10_000,
            mempool_preimages: false,
            expected_chain_id: known_chain_id(params.chain.network),
        }
    }
}
