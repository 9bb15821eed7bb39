//! Local regtest chains for the demo and the integration tests: a Bitcoin-family node
//! (litecoind, or bitcoind when `BITCOIND_EXE` is set) and anvil, with the HTLC contract
//! deployed. Missing binaries fail loudly with the install command.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use btc_adapter::regtest::RegtestNode;
use eth_adapter::devnet::Devnet;
use swap_core::{Asset, ChainFamily, ChainId, ChainParams, Network};

/// Both regtest chains, the HTLC contract deployed.
pub struct Nodes {
    /// The Bitcoin-family node.
    pub btc: RegtestNode,
    /// anvil.
    pub eth: Devnet,
    /// The deployed HTLC contract.
    pub htlc: Address,
}

impl Nodes {
    /// Starts both nodes (in parallel) and deploys the HTLC contract.
    pub async fn start() -> anyhow::Result<Self> {
        let (btc, eth) = tokio::join!(RegtestNode::start(), Devnet::start());
        let htlc = eth_adapter::deploy_htlc(&eth.url(), eth.signer(0))
            .await
            .map_err(|e| anyhow::anyhow!("deploying the HTLC contract: {e}"))?;
        Ok(Self { btc, eth, htlc })
    }

    /// Parameters of the Bitcoin-family chain.
    pub fn btc_params(&self) -> ChainParams {
        ChainParams::for_chain(self.btc.chain_id())
    }

    /// Parameters of the Ethereum dev chain.
    pub fn eth_params(&self) -> ChainParams {
        ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest))
    }

    /// The Bitcoin-family chain's coin.
    pub fn btc_asset(&self) -> Asset {
        match self.btc.chain_id().family {
            ChainFamily::Litecoin => Asset::Ltc,
            _ => Asset::Btc,
        }
    }

    /// Lets `n` Bitcoin-family block intervals pass on both chains: `n` blocks there, the same
    /// time (and a block) on Ethereum, so both clocks move together as on a real network.
    pub async fn advance(&self, n: u64) {
        self.btc.mine(n).await;
        self.eth
            .advance_time(n * self.btc_params().block_interval)
            .await;
    }

    /// Ether balance of an address.
    pub async fn eth_balance(&self, who: Address) -> anyhow::Result<U256> {
        Ok(self.eth.provider().get_balance(who).await?)
    }
}
