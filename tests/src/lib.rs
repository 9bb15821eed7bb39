//! Harness for xswap's integration tests: real nodes (litecoind or bitcoind regtest, anvil),
//! two parties with their own keys, wallets, stores and drivers. A missing node binary is a
//! loud failure naming its install step, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use btc_adapter::regtest::RegtestNode;
use btc_adapter::{BtcChain, BtcConfig};
use eth_adapter::devnet::Devnet;
use eth_adapter::{EthChain, EthConfig};
use swap_core::store::SqliteStore;
use swap_core::*;

/// Both regtest chains, the HTLC contract deployed.
pub struct Nodes {
    pub btc: RegtestNode,
    pub eth: Devnet,
    pub htlc: Address,
}

impl Nodes {
    pub async fn start() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let (btc, eth) = tokio::join!(RegtestNode::start(), Devnet::start());
        let htlc = eth_adapter::deploy_htlc(&eth.url(), eth.signer(0))
            .await
            .expect("deploy htlc");
        Self { btc, eth, htlc }
    }

    pub fn btc_params(&self) -> ChainParams {
        ChainParams::for_chain(self.btc.chain_id())
    }

    pub fn eth_params(&self) -> ChainParams {
        ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest))
    }

    /// Lets `n` Bitcoin-family block intervals pass on both chains: `n` blocks there, the same
    /// time (and a block) on Ethereum, so both chains' clocks move together as on mainnet.
    pub async fn advance(&self, n: u64) {
        self.btc.mine(n).await;
        self.eth
            .advance_time(n * self.btc_params().block_interval)
            .await;
    }

    pub async fn eth_balance(&self, who: Address) -> U256 {
        self.eth.provider().get_balance(who).await.unwrap()
    }
}

/// One party: its keys, wallets, store and driver.
pub struct Party {
    pub name: &'static str,
    pub btc: Arc<BtcChain>,
    pub eth: Arc<EthChain>,
    pub wallet: String,
    pub driver: Arc<Driver>,
    pub db: tempfile::TempDir,
}

impl Party {
    /// A party with its own seed, its own node wallet named `name`, and anvil account
    /// `eth_account`.
    pub async fn new(nodes: &Nodes, name: &'static str, seed_byte: u8, eth_account: usize) -> Self {
        nodes.btc.rpc().create_or_load_wallet(name).await.unwrap();
        let btc = Arc::new(
            BtcChain::new(
                BtcConfig::new(nodes.btc.chain_id(), nodes.btc.rpc_config(Some(name))),
                &[seed_byte; 64],
            )
            .unwrap(),
        );
        let eth = Arc::new(
            EthChain::new(
                EthConfig::new(nodes.eth.url(), nodes.htlc, nodes.eth_params()),
                nodes.eth.signer(eth_account),
            )
            .unwrap(),
        );
        let db = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(db.path().join("swaps.sqlite")).unwrap());
        let driver = Arc::new(Driver::new(
            store,
            [btc.clone() as Arc<dyn Chain>, eth.clone() as Arc<dyn Chain>],
            DriverConfig::default(),
        ));
        Self {
            name,
            btc,
            eth,
            wallet: name.to_owned(),
            driver,
            db,
        }
    }

    pub fn btc_account(&self, key_index: u32) -> Account {
        Account::PublicKey(self.btc.swap_public_key(key_index).unwrap())
    }

    pub fn eth_account(&self) -> Account {
        self.eth.account()
    }

    pub async fn btc_balance(&self, nodes: &Nodes) -> u64 {
        nodes
            .btc
            .rpc()
            .with_wallet(&self.wallet)
            .unwrap()
            .get_balance()
            .await
            .unwrap()
    }

    /// One driver step; returns the outcome once the swap is done.
    pub async fn step(&self, id: &SwapId) -> Option<Outcome> {
        match self.driver.step(id).await {
            Ok(r) => swap_core::driver::final_outcome(&r.state),
            Err(e) if e.is_transient() => None,
            Err(e) => panic!("{}: {e}", self.name),
        }
    }
}

/// Sends `sats` from the node's mining wallet to a party's wallet and confirms it.
pub async fn fund_btc(nodes: &Nodes, party: &Party, sats: u64) {
    let rpc = nodes.btc.rpc().with_wallet(&party.wallet).unwrap();
    let addr = rpc.get_new_address("bech32").await.unwrap();
    nodes.btc.send(&addr, sats).await;
    nodes.btc.mine(1).await;
}

/// The asset of the Bitcoin-family regtest chain.
pub fn btc_asset(nodes: &Nodes) -> Asset {
    match nodes.btc.chain_id().family {
        ChainFamily::Litecoin => Asset::Ltc,
        _ => Asset::Btc,
    }
}

/// Both tips now.
pub async fn tips(x: &dyn Chain, y: &dyn Chain) -> Tips {
    Tips {
        x: x.tip().await.unwrap(),
        y: y.tip().await.unwrap(),
    }
}

/// Records for both parties of one swap.
pub fn records(
    terms: SwapTerms,
    secret: Preimage,
    i_key: u32,
    r_key: u32,
    watch_from: Tips,
) -> (SwapRecord, SwapRecord) {
    (
        SwapRecord {
            terms: terms.clone(),
            role: Role::Initiator,
            secret: Some(secret),
            key_index: i_key,
            watch_from,
        },
        SwapRecord {
            terms,
            role: Role::Responder,
            secret: None,
            key_index: r_key,
            watch_from,
        },
    )
}
