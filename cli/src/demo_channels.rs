//! The demo's channel act: one Lightning channel (on the Bitcoin-family node) and one
//! Ethereum payment channel between the maker and the taker, a batch of channel-linked swaps
//! through them (LTC over Lightning for ETH in the channel, some of them below the chain's
//! dust limit, which no on-chain swap can do), then both channels closed cooperatively. It
//! counts the on-chain transactions: the opens and closes only, none per swap.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::Provider;
use anyhow::{ensure, Context};
use ln_adapter::LnRail;
use swap_core::store::SqliteStore;
use swap_core::*;
use swap_net::OfferLeg;
use tokio::net::TcpListener;

use crate::engine::Engine;
use crate::regtest::Nodes;
use crate::regtest_channels::{close_ln_channels, ln_node, open_eth_channel, open_ln_channel};

/// Anvil accounts of the channel act's maker and taker (the on-chain act uses others).
const MAKER_ACCOUNT: usize = 5;
const TAKER_ACCOUNT: usize = 6;
/// The Lightning channel's capacity (the taker's side: it pays over Lightning).
const LN_CAPACITY: u64 = 2_000_000;
/// What each side puts in the Ethereum channel.
const ETH_DEPOSIT: u128 = 10u128.pow(18);
/// The rate: wei per satoshi (0.01 coin for 0.1 ETH).
pub const WEI_PER_SAT: u128 = 10_000_000_000;

/// What the channel act did, for the demo's summary.
pub struct ChannelAct {
    /// Swaps run.
    pub swaps: usize,
    /// Of which below the chain's dust limit.
    pub micro: usize,
    /// Seconds from the first proposal to the last swap settled.
    pub seconds: f64,
    /// On-chain transactions during the swaps (none expected).
    pub txs_during_swaps: u64,
    /// On-chain transactions to open and close the channels.
    pub txs_open_close: u64,
}

/// Transactions of the node wallets `wallets` (sent or received) in blocks after height
/// `from` or in the mempool, each counted once.
pub async fn btc_txs_since(nodes: &Nodes, wallets: &[&str], from: u64) -> anyhow::Result<u64> {
    let rpc = nodes.btc.rpc();
    let hash: String = rpc.call("getblockhash", vec![from.into()]).await?;
    let mut txids = std::collections::BTreeSet::new();
    for w in wallets {
        let since: serde_json::Value = rpc
            .with_wallet(w)?
            .wallet_call("listsinceblock", vec![hash.clone().into()])
            .await?;
        for t in since["transactions"].as_array().into_iter().flatten() {
            if let Some(id) = t["txid"].as_str() {
                txids.insert(id.to_owned());
            }
        }
    }
    Ok(txids.len() as u64)
}

/// Transactions sent so far by `accounts` on Ethereum (their nonces).
pub async fn eth_txs(nodes: &Nodes, accounts: &[Address]) -> anyhow::Result<u64> {
    let mut n = 0;
    for a in accounts {
        n += nodes.eth.provider().get_transaction_count(*a).await?;
    }
    Ok(n)
}

/// An engine named `name` over a Lightning rail on `ln` and the Ethereum channel rail
/// `chan`, its store in `dir`, polling as `driver` says.
pub fn channel_engine(
    name: &str,
    dir: &Path,
    ln: Arc<ln_adapter::LnNode>,
    chan: &eth_channel::ChannelRail,
    driver: DriverConfig,
) -> anyhow::Result<Arc<Engine>> {
    // The store's secrets sealed with a key of this engine's own (random), as every
    // installation's are.
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(key.as_mut()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Arc::new(SqliteStore::open_with_key(
        dir.join(format!("{name}-channels.sqlite")),
        swap_core::store::StoreKey::from_bytes(&key),
    )?);
    Ok(Engine::new(
        name,
        store,
        [
            Arc::new(LnRail::new(ln)) as Arc<dyn Rail>,
            Arc::new(chan.clone()) as Arc<dyn Rail>,
        ],
        swap_net::Identity::generate()?,
        driver,
    ))
}

/// The maker's offer of the channel act and the channel bench: ETH in the Ethereum channel
/// for LTC (the regtest node's coin) over Lightning at `WEI_PER_SAT`, at most `max` (wei,
/// sats) a swap, from 1 sat.
pub fn channel_offer(
    maker: &Engine,
    nodes: &Nodes,
    addr: String,
    max: (u128, u64),
    expires: Timestamp,
) -> swap_net::Offer {
    let ltc = nodes.btc.chain_id();
    maker.offer(
        addr,
        OfferLeg {
            rail: RailKind::EvmChannel,
            chain: nodes.eth_params().chain,
            asset: Asset::Eth,
            max: Amount::Wei(Wei(max.0)),
            min: Amount::Wei(Wei(WEI_PER_SAT)),
        },
        OfferLeg {
            rail: RailKind::Lightning,
            chain: ltc,
            asset: ltc.family.native_asset(),
            max: Amount::Sats(Sats(max.1)),
            min: Amount::Sats(Sats(1)),
        },
        (WEI_PER_SAT, 1),
        expires,
    )
}

/// The demo's polling: fast, for swaps that settle in milliseconds.
const FAST: DriverConfig = DriverConfig {
    poll_interval: Duration::from_millis(50),
    max_backoff: Duration::from_millis(500),
};

/// Runs the channel act on `nodes` (no miner running), its files in `dir`.
pub async fn run(nodes: &Nodes, dir: &Path) -> anyhow::Result<ChannelAct> {
    crate::say!(
        "==> channel act: a Lightning channel and an Ethereum channel between taker and maker"
    );
    // Whatever the on-chain act left in the mempool is mined first: not this act's.
    nodes.btc.mine(1).await;
    let btc0 = nodes.btc.height().await;
    let wallets = ["taker-ln", "maker-ln"];
    let accounts = [
        nodes.eth.address(MAKER_ACCOUNT),
        nodes.eth.address(TAKER_ACCOUNT),
    ];
    let eth0 = eth_txs(nodes, &accounts).await?;
    let taker_ln = ln_node(nodes, "taker-ln", [0x7a; 32], dir).await?;
    let maker_ln = ln_node(nodes, "maker-ln", [0x6b; 32], dir).await?;
    open_ln_channel(nodes, "taker-ln", (&taker_ln, &maker_ln), LN_CAPACITY).await?;
    let (maker_chan, taker_chan, chan, _) = open_eth_channel(
        nodes,
        (MAKER_ACCOUNT, TAKER_ACCOUNT),
        (ETH_DEPOSIT, ETH_DEPOSIT),
    )
    .await?;
    // The coins sent to the wallet that funds the channel are not the channel's.
    let opened_btc = btc_txs_since(nodes, &wallets[..], btc0)
        .await?
        .saturating_sub(1);
    let opened_eth = eth_txs(nodes, &accounts).await? - eth0;
    crate::say!(
        "    Lightning channel of {} sats open ({opened_btc} transaction); Ethereum channel of \
         1 ETH a side open ({opened_eth} transactions: contract and two deposits)",
        LN_CAPACITY
    );
    let taker = channel_engine("taker", dir, taker_ln.clone(), &taker_chan.rail, FAST)?;
    let maker = channel_engine("maker", dir, maker_ln.clone(), &maker_chan.rail, FAST)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let offer = channel_offer(
        &maker,
        nodes,
        addr,
        (10u128.pow(17), 100_000),
        Timestamp(Timestamp::now().0 + 3600),
    );
    crate::say!(
        "    maker's channel offer ({} characters): {}",
        offer.encode().len(),
        offer.encode()
    );
    let server = tokio::spawn(maker.clone().serve(listener, vec![offer.clone()]));

    // Half of them below the dust limit of an on-chain output (294-546 sats).
    let sizes: Vec<u64> = (0..20u64)
        .map(|i| {
            if i % 2 == 0 {
                50_000 + i * 100
            } else {
                100 + i * 10
            }
        })
        .collect();
    let micro = sizes.iter().filter(|s| **s < 546).count();
    let (out0, btc1, eth1) = (
        taker_ln
            .channels()
            .iter()
            .map(|c| c.outbound_msat)
            .sum::<u64>(),
        nodes.btc.height().await,
        eth_txs(nodes, &accounts).await?,
    );
    let started = Instant::now();
    let mut ids = Vec::new();
    for s in &sizes {
        ids.push(
            taker
                .take(&offer, u128::from(*s))
                .await
                .context("taking the channel offer")?,
        );
    }
    for id in &ids {
        let both = async { anyhow::Ok((taker.wait(id).await?, maker.wait(id).await?)) };
        let (a, b) = tokio::time::timeout(Duration::from_secs(120), both)
            .await
            .context("a channel swap did not finish in 120 s")??;
        ensure!(
            a == Outcome::Swapped && b == Outcome::Swapped,
            "channel swap {id} ended {} / {}",
            a.name(),
            b.name()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    server.abort();
    let paid: u64 = sizes.iter().sum();
    let out1: u64 = taker_ln.channels().iter().map(|c| c.outbound_msat).sum();
    ensure!(
        out0 - out1 == paid * 1_000,
        "the taker paid {} msat over Lightning for {paid} sats",
        out0 - out1
    );
    let (ours, _) = taker_chan.balances(&chan)?;
    ensure!(
        ours == ETH_DEPOSIT + u128::from(paid) * WEI_PER_SAT,
        "the taker holds {ours} wei in the channel"
    );
    let during =
        btc_txs_since(nodes, &wallets[..], btc1).await? + (eth_txs(nodes, &accounts).await? - eth1);
    crate::say!(
        "    {} swaps ({micro} below the dust limit, {} sats in all) settled in {seconds:.2} s: \
         every one swapped, {during} on-chain transactions",
        sizes.len(),
        paid
    );

    crate::say!("==> closing both channels cooperatively");
    let (btc2, eth2) = (nodes.btc.height().await, eth_txs(nodes, &accounts).await?);
    maker_chan.close(nodes, MAKER_ACCOUNT, &chan).await?;
    close_ln_channels(nodes, &taker_ln, &maker_ln).await?;
    let closed =
        btc_txs_since(nodes, &wallets[..], btc2).await? + (eth_txs(nodes, &accounts).await? - eth2);
    crate::say!("    closed ({closed} transactions: one per channel)");
    taker_ln.stop().await?;
    maker_ln.stop().await?;
    Ok(ChannelAct {
        swaps: sizes.len(),
        micro,
        seconds,
        txs_during_swaps: during,
        txs_open_close: opened_btc + opened_eth + closed,
    })
}
