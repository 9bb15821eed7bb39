//! How an exchange embeds xswap as a library: an [`Engine`] per side over its own store and
//! rails, the exchange's offer served by the engine's maker (its policy, quote bounds,
//! liquidity reservation and every rule check), and the customer's messages carried by whatever
//! channel the exchange already has: here handed over in-process ([`Direct`]), where a server
//! would take them from its HTTP API.
//!
//! The exchange sells ETH and the customer sells BTC (litecoind regtest stands in for Bitcoin,
//! see shared/notes/nodes.md). Run with:
//!
//! ```sh
//! npm install && cargo run -p swap-engine --example exchange
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use btc_adapter::{BtcChain, BtcConfig};
use devnet::anvil::Devnet;
use devnet::regtest::RegtestNode;
use eth_adapter::{EthChain, EthConfig};
use swap_core::store::SqliteStore;
use swap_core::*;
use swap_engine::{Direct, Engine, OfferRates};
use swap_net::{Identity, Offer, OfferLeg, Peer};

/// One side: its own keys, node wallet, Ethereum account and SQLite store, in one engine.
async fn side(
    btc_node: &RegtestNode,
    eth_node: &Devnet,
    htlc: alloy::primitives::Address,
    wallet: &str,
    seed: u8,
    account: usize,
    db: &std::path::Path,
) -> Arc<Engine> {
    btc_node.rpc().create_or_load_wallet(wallet).await.unwrap();
    let store = Arc::new(SqliteStore::open(db).unwrap());
    let btc = BtcChain::new(
        BtcConfig::new(btc_node.chain_id(), btc_node.rpc_config(Some(wallet))),
        &[seed; 64],
    )
    .unwrap()
    .with_outbox(store.clone());
    let eth_params = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest));
    let eth = EthChain::new(
        EthConfig::new(eth_node.url(), htlc, eth_params),
        eth_node.signer(account),
    )
    .unwrap()
    .with_outbox(store.clone());
    // Open quotes in the same database file: several workers on it serve the same quotes.
    let quotes = Arc::new(swap_engine::SqliteQuotes::open(db).unwrap());
    Engine::with_quotes(
        wallet,
        store,
        [
            Arc::new(btc) as Arc<dyn Rail>,
            Arc::new(eth) as Arc<dyn Rail>,
        ],
        Identity::generate().unwrap(),
        DriverConfig {
            poll_interval: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        },
        quotes,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (btc_node, eth_node) = tokio::join!(RegtestNode::start(), Devnet::start());
    let htlc = eth_adapter::deploy_htlc(&eth_node.url(), eth_node.signer(0)).await?;
    let dir = tempfile::tempdir()?;
    let exchange = side(
        &btc_node,
        &eth_node,
        htlc,
        "exchange",
        1,
        1,
        &dir.path().join("exchange.sqlite"),
    )
    .await;
    let customer = side(
        &btc_node,
        &eth_node,
        htlc,
        "customer",
        2,
        2,
        &dir.path().join("customer.sqlite"),
    )
    .await;
    let addr = btc_node
        .rpc()
        .with_wallet("customer")?
        .get_new_address("bech32")
        .await?;
    btc_node.send(&addr, 2_000_000).await;
    btc_node.mine(1).await;

    // 1. The exchange's offer: 25 gwei per satoshi, 0.0001 to 0.1 coin.
    let (coin, eth) = (
        btc_node.chain_id(),
        ChainId::new(ChainFamily::Ethereum, Network::Regtest),
    );
    let coin_asset = coin.family.native_asset();
    let offer: Offer = exchange.offer(
        "exchange.example:7700".into(),
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: eth,
            asset: Asset::Eth,
            max: Amount::Wei(Wei(25 * 10u128.pow(16))),
            min: Amount::Wei(Wei(25 * 10u128.pow(13))),
        },
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: coin,
            asset: coin_asset,
            max: Amount::Sats(Sats(10_000_000)),
            min: Amount::Sats(Sats(10_000)),
        },
        (25_000_000_000, 1),
        Timestamp(Timestamp::now().0 + 3600),
    );
    // 2. The customer takes it: 0.01 coin for 0.25 ETH. Its quote request and proposal reach
    //    the exchange's maker through the exchange's own channel (here: in-process); the maker
    //    checks them exactly as it would over the network.
    let maker = exchange.maker(Arc::new(vec![offer.clone()]), Arc::new(OfferRates));
    let peer = Peer {
        key: customer.identity.public(),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let id = customer
        .take_via(&mut Direct::new(maker, peer), &offer, 1_000_000)
        .await?;
    println!("swap {id} agreed; both engines run it");

    // 3. Both engines run the swap from their stores. Regtest blocks: one every 300 ms on both
    //    chains (a real deployment just waits).
    let waits = {
        let (c, e) = (customer.clone(), exchange.clone());
        tokio::spawn(async move { tokio::join!(c.wait(&id), e.wait(&id)) })
    };
    while !waits.is_finished() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        btc_node.mine(1).await;
        eth_node.advance_time(150).await;
    }
    let (c, e) = waits.await?;
    println!("customer: {}, exchange: {}", c?, e?);
    // 4. The history of every swap stays in the store, for audits and support.
    for entry in exchange.driver.store().history(&id).await? {
        println!(
            "  exchange #{} {}",
            entry.seq,
            swap_core::driver::state_name(&entry.state)
        );
    }
    Ok(())
}
