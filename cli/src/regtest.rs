//! Local regtest chains for the demo and the integration tests: a Bitcoin-family node
//! (litecoind, or bitcoind when `BITCOIND_EXE` is set) and anvil, with the HTLC contract
//! deployed. Missing binaries fail loudly with the install command.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use devnet::anvil::Devnet;
use devnet::regtest::RegtestNode;
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
        self.btc.chain_id().family.native_asset()
    }

    /// Lets `n` Bitcoin-family block intervals pass on both chains: `n` blocks there, the same
    /// time (and a block) on Ethereum, so both clocks move together as on a real network.
    pub async fn advance(&self, n: u64) {
        self.btc.mine(n).await;
        self.eth
            .advance_time(n * self.btc_params().block_interval)
            .await;
    }

    /// The adapter settings of one party on these nodes, its node wallet `wallet` created or
    /// loaded; the Ethereum adapter polls receipts every `receipt_poll`. Adjust them, then
    /// build the adapters with the party's seed and anvil account.
    pub async fn adapter_configs(
        &self,
        wallet: &str,
        receipt_poll: std::time::Duration,
    ) -> anyhow::Result<(btc_adapter::BtcConfig, eth_adapter::EthConfig)> {
        use anyhow::Context;
        self.btc
            .rpc()
            .create_or_load_wallet(wallet)
            .await
            .with_context(|| format!("creating the {wallet} wallet"))?;
        let btc =
            btc_adapter::BtcConfig::new(self.btc.chain_id(), self.btc.rpc_config(Some(wallet)));
        let mut eth = eth_adapter::EthConfig::new(self.eth.url(), self.htlc, self.eth_params());
        eth.poll_interval = receipt_poll;
        Ok((btc, eth))
    }

    /// Ether balance of an address.
    pub async fn eth_balance(&self, who: Address) -> anyhow::Result<U256> {
        Ok(self.eth.provider().get_balance(who).await?)
    }
}

/// One engine on these nodes, as a demo or test party: its own random seed, its own node
/// wallet named `name`, anvil dev account `eth_account`, a store in `dir`.
pub struct Party {
    /// The engine.
    pub engine: std::sync::Arc<crate::engine::Engine>,
    /// Its node wallet.
    pub wallet: String,
    /// Its Ethereum address.
    pub eth: Address,
}

/// Builds a [`Party`].
pub async fn party(
    nodes: &Nodes,
    dir: &std::path::Path,
    name: &str,
    eth_account: usize,
    driver: swap_core::DriverConfig,
) -> anyhow::Result<Party> {
    use std::sync::Arc;
    let (btc_cfg, mut eth_cfg) = nodes
        .adapter_configs(name, std::time::Duration::from_millis(50))
        .await?;
    // Regtest mines every second or on demand: a receipt not there within a minute is not
    // coming, and the swap's next step looks again (the default, ten minutes, is for real
    // chains; here it would hold a stuck lock's round past a test's patience).
    eth_cfg.receipt_timeout = std::time::Duration::from_secs(60);
    let mut seed = [0u8; 64];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join(format!("{name}.sqlite"));
    // The store's secrets sealed with a key of this party's own (random, like its seed).
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(key.as_mut()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Arc::new(swap_core::store::SqliteStore::open_with_key(
        &path,
        swap_core::store::StoreKey::from_bytes(&key),
    )?);
    let btc = Arc::new(
        btc_adapter::BtcChain::new(btc_cfg, &seed)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_outbox(store.clone()),
    );
    let signer = nodes.eth.signer(eth_account);
    let eth_addr = signer.address();
    let eth = Arc::new(
        eth_adapter::EthChain::new(eth_cfg, signer)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_outbox(store.clone()),
    );
    let quotes = Arc::new(crate::engine::SqliteQuotes::open(&path)?);
    let engine = crate::engine::Engine::with_quotes(
        name,
        store,
        [
            btc as Arc<dyn swap_core::Rail>,
            eth as Arc<dyn swap_core::Rail>,
        ],
        swap_net::Identity::generate()?,
        driver,
        quotes,
    );
    Ok(Party {
        engine,
        wallet: name.to_owned(),
        eth: eth_addr,
    })
}

impl Nodes {
    /// Sends `sats` from the mining wallet to a new address of node wallet `wallet` (not
    /// mined yet).
    pub async fn send_to_wallet(&self, wallet: &str, sats: u64) -> anyhow::Result<()> {
        let addr = self
            .btc
            .rpc()
            .with_wallet(wallet)?
            .get_new_address("bech32")
            .await?;
        self.btc.send(&addr, sats).await;
        Ok(())
    }

    /// Mines one Bitcoin-family block every `every`, moving Ethereum time along by one block
    /// interval each time (as [`Nodes::advance`] does), until the task is aborted.
    pub fn spawn_miner(
        &self,
        every: std::time::Duration,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        use alloy::providers::ProviderBuilder;
        let rpc = btc_adapter::rpc::RpcClient::new(self.btc.rpc_config(None))?;
        let to = self.btc.mining_address().to_owned();
        let eth = ProviderBuilder::new().connect_http(self.eth.url().parse()?);
        let secs = self.btc_params().block_interval;
        Ok(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let _ = rpc.generate_to_address(1, &to).await;
                let _: Result<serde_json::Value, _> =
                    eth.raw_request("evm_increaseTime".into(), (secs,)).await;
                let _: Result<serde_json::Value, _> = eth.raw_request("evm_mine".into(), ()).await;
            }
        }))
    }
}
