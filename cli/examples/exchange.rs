//! How an exchange embeds xswap as a library, with nothing but the public API of `swap-core`
//! and the two adapters: its own store and driver, its own chain adapters, terms agreed with a
//! customer by whatever channel the exchange already has.
//!
//! Here the exchange sells ETH and the customer sells BTC (litecoind regtest stands in for
//! Bitcoin, see shared/notes/nodes.md). Run with:
//!
//! ```sh
//! npm install && cargo run -p xswap-cli --example exchange
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use btc_adapter::regtest::RegtestNode;
use btc_adapter::{BtcChain, BtcConfig};
use eth_adapter::devnet::Devnet;
use eth_adapter::{EthChain, EthConfig};
use swap_core::store::SqliteStore;
use swap_core::*;

/// One side: adapters with its own keys and wallet, a SQLite store, a driver.
async fn side(
    btc_node: &RegtestNode,
    eth_node: &Devnet,
    htlc: alloy::primitives::Address,
    wallet: &str,
    seed: u8,
    account: usize,
    db: &std::path::Path,
) -> (Arc<BtcChain>, Arc<EthChain>, Arc<Driver>) {
    btc_node.rpc().create_or_load_wallet(wallet).await.unwrap();
    let btc = Arc::new(
        BtcChain::new(
            BtcConfig::new(btc_node.chain_id(), btc_node.rpc_config(Some(wallet))),
            &[seed; 64],
        )
        .unwrap(),
    );
    let eth_params = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest));
    let eth = Arc::new(
        EthChain::new(
            EthConfig::new(eth_node.url(), htlc, eth_params),
            eth_node.signer(account),
        )
        .unwrap(),
    );
    let store = Arc::new(SqliteStore::open(db).unwrap());
    let driver = Arc::new(Driver::new(
        store,
        [btc.clone() as Arc<dyn Rail>, eth.clone() as Arc<dyn Rail>],
        DriverConfig {
            poll_interval: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        },
    ));
    (btc, eth, driver)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (btc_node, eth_node) = tokio::join!(RegtestNode::start(), Devnet::start());
    let htlc = eth_adapter::deploy_htlc(&eth_node.url(), eth_node.signer(0)).await?;
    let dir = tempfile::tempdir()?;
    let (ex_btc, ex_eth, exchange) = side(
        &btc_node,
        &eth_node,
        htlc,
        "exchange",
        1,
        1,
        &dir.path().join("exchange.sqlite"),
    )
    .await;
    let (cu_btc, cu_eth, customer) = side(
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

    // 1. Terms: the customer (initiator) locks 0.01 coin, the exchange 0.25 ETH. Expiries are
    //    derived from the chains' tips so that the safety rules hold; `new` refuses unsafe terms.
    let secret = Preimage::random()?;
    let tips = Tips {
        x: cu_btc.tip().await?,
        y: cu_eth.tip().await?,
    };
    let key = 0;
    let terms = SwapTerms::with_default_expiries(
        SwapId::random()?,
        secret.hashlock(),
        LegTerms {
            params: *cu_btc.params(),
            asset: cu_btc.asset(),
            amount: Amount::Sats(Sats(1_000_000)),
            sender: Account::PublicKey(cu_btc.swap_public_key(key)?),
            recipient: Account::PublicKey(ex_btc.swap_public_key(key)?),
            expiry: Expiry::Height(Height(0)),
            rail_data: None,
        },
        LegTerms {
            params: *cu_eth.params(),
            asset: Asset::Eth,
            amount: Amount::Wei(Wei(250_000_000_000_000_000)),
            sender: ex_eth.account(),
            recipient: cu_eth.account(),
            expiry: Expiry::Time(Timestamp(0)),
            rail_data: None,
        },
        SafetyPolicy::default(),
        tips,
    )?;
    // 2. The exchange checks what it received exactly as a peer would (its own parameters, its
    //    own accounts, the rules at its own view of the chains).
    let terms = check_proposal(
        &terms,
        ex_btc.params(),
        ex_eth.params(),
        &terms.x.recipient,
        &ex_eth.account(),
        tips,
        &AcceptPolicy::default(),
    )?;
    // 3. Each side stores the swap (the customer with its secret) and lets its driver run it.
    let id = terms.id;
    customer
        .create(&SwapRecord {
            terms: terms.clone(),
            role: Role::Initiator,
            secret: Some(secret),
            key_index: key,
            watch_from: tips,
        })
        .await?;
    exchange
        .create(&SwapRecord {
            terms,
            role: Role::Responder,
            secret: None,
            key_index: key,
            watch_from: tips,
        })
        .await?;
    let (c, e) = (customer.clone(), exchange.clone());
    let runs = tokio::spawn(async move { tokio::join!(c.run_swap(id), e.run_swap(id)) });
    // Regtest blocks: one every 300 ms on both chains (a real deployment just waits).
    while !runs.is_finished() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        btc_node.mine(1).await;
        eth_node.advance_time(150).await;
    }
    let (c, e) = runs.await?;
    println!("customer: {:?}, exchange: {:?}", c?, e?);
    // 4. The history of every swap stays in the store, for audits and support.
    for entry in exchange.store().history(&id).await? {
        println!(
            "  exchange #{} {}",
            entry.seq,
            swap_core::driver::state_name(&entry.state)
        );
    }
    Ok(())
}
