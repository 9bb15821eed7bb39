//! Both regtest chains with the HTLC contract deployed: the same set-up as
//! `xswap_cli::regtest::Nodes` (kept here so the bench does not depend on the CLI crate).

use anyhow::anyhow;
use btc_adapter::regtest::RegtestNode;
use eth_adapter::devnet::Devnet;
use swap_core::{Asset, ChainFamily, ChainId, ChainParams, Network};

/// litecoind (or bitcoind with `BITCOIND_EXE`) regtest and anvil, the HTLC contract deployed.
pub(crate) struct Nodes {
    /// The Bitcoin-family node.
    pub(crate) btc: RegtestNode,
    /// anvil.
    pub(crate) eth: Devnet,
    /// The deployed HTLC contract.
    pub(crate) htlc: alloy::primitives::Address,
}

impl Nodes {
    /// Starts both nodes (in parallel) and deploys the HTLC contract.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let (btc, eth) = tokio::join!(RegtestNode::start(), Devnet::start());
        let htlc = eth_adapter::deploy_htlc(&eth.url(), eth.signer(0))
            .await
            .map_err(|e| anyhow!("deploying the HTLC contract: {e}"))?;
        Ok(Self { btc, eth, htlc })
    }

    /// Parameters of the Bitcoin-family chain.
    pub(crate) fn btc_params(&self) -> ChainParams {
        ChainParams::for_chain(self.btc.chain_id())
    }

    /// Parameters of the Ethereum dev chain.
    pub(crate) fn eth_params(&self) -> ChainParams {
        ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest))
    }

    /// The Bitcoin-family chain's coin.
    pub(crate) fn btc_asset(&self) -> Asset {
        match self.btc.chain_id().family {
            ChainFamily::Litecoin => Asset::Ltc,
            _ => Asset::Btc,
        }
    }

    /// Lets `n` Bitcoin-family block intervals pass on both chains: `n` blocks there, the same
    /// time and one block on anvil.
    pub(crate) async fn advance(&self, n: u64) {
        self.btc.mine(n).await;
        self.eth
            .advance_time(n * self.btc_params().block_interval)
            .await;
    }
}
