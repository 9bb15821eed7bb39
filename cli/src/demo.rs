//! `xswap demo`: two engines, a maker and a taker, each with its own keys, wallet, store and
//! driver, agree swaps over the encrypted transport on loopback and run them to the end on
//! regtest nodes started for the occasion: BTC for ETH, then an ERC-20 token for BTC; then
//! the channel act ([`crate::demo_channels`]): swaps through a Lightning channel and an
//! Ethereum channel, none of them touching a chain.

use crate::engine::Engine;
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::ProviderBuilder;
use anyhow::Context;
use devnet::test_contracts::TestToken;
use eth_adapter::bindings::IERC20Permit;
use swap_core::*;
use swap_net::OfferLeg;
use tokio::net::TcpListener;

use crate::regtest::{party, Nodes, Party};

const BTC_SWAP: u64 = 1_000_000; // 0.01 coin
const ETH_PER_SAT: u128 = 250_000_000_000; // 0.01 coin -> 0.25 ETH
const TOKEN_SWAP: u128 = 5_000_000_000; // 5,000.000000 tokens (6 decimals)
const SATS_PER_TOKEN_UNIT_DEN: u128 = 5_000; // 5,000,000,000 units -> 1,000,000 sat

async fn btc_balance(nodes: &Nodes, wallet: &str) -> anyhow::Result<u64> {
    Ok(nodes.btc.rpc().with_wallet(wallet)?.get_balance().await?)
}

async fn token_balance(nodes: &Nodes, token: Address, who: Address) -> anyhow::Result<U256> {
    Ok(IERC20Permit::new(token, nodes.eth.provider())
        .balanceOf(who)
        .call()
        .await?)
}

/// Both parties' coins, ether and tokens: (taker coin, maker coin, taker ether, maker ether,
/// taker tokens, maker tokens).
async fn balances(
    nodes: &Nodes,
    taker: &Party,
    maker: &Party,
    token: Address,
) -> anyhow::Result<(u64, u64, U256, U256, U256, U256)> {
    Ok((
        btc_balance(nodes, &taker.wallet).await?,
        btc_balance(nodes, &maker.wallet).await?,
        nodes.eth_balance(taker.eth).await?,
        nodes.eth_balance(maker.eth).await?,
        token_balance(nodes, token, taker.eth).await?,
        token_balance(nodes, token, maker.eth).await?,
    ))
}

fn coin(sats: i128) -> String {
    format!(
        "{}{}.{:08}",
        if sats < 0 { "-" } else { "+" },
        sats.abs() / 100_000_000,
        sats.abs() % 100_000_000
    )
}

fn ether(wei: i128) -> String {
    format!(
        "{}{}.{:06}",
        if wei < 0 { "-" } else { "+" },
        wei.abs() / 10i128.pow(18),
        (wei.abs() % 10i128.pow(18)) / 10i128.pow(12)
    )
}

async fn timeline(e: &Engine, id: &SwapId, t0: Instant) -> anyhow::Result<()> {
    let _ = t0;
    for entry in e.driver.store().history(id).await? {
        let extra = match &entry.state {
            SwapState::Initiator(initiator::State::Locked { txref })
            | SwapState::Initiator(initiator::State::CounterLockSeen { txref })
            | SwapState::Responder(responder::State::Locked { txref }) => format!(" tx {txref}"),
            SwapState::Initiator(initiator::State::Done { outcome })
            | SwapState::Responder(responder::State::Done { outcome }) => {
                format!(" {}", outcome.name())
            }
            _ => String::new(),
        };
        crate::say!(
            "    {:>6} #{:<3} {}{}",
            e.name,
            entry.seq,
            swap_core::driver::state_name(&entry.state),
            extra
        );
    }
    Ok(())
}

/// Runs the demo; returns once both swaps are done and the nodes are stopped.
pub async fn run() -> anyhow::Result<()> {
    let t0 = Instant::now();
    crate::say!("xswap demo: two engines, real regtest nodes, the encrypted transport on loopback");
    crate::say!("==> starting a Bitcoin-family regtest node and anvil");
    let nodes = Nodes::start().await?;
    let tmp = tempfile::tempdir()?;
    crate::say!(
        "    {} regtest at height {}, anvil at {}, HTLC contract {}",
        nodes.btc.chain_id(),
        nodes.btc.height().await,
        nodes.eth.url(),
        nodes.htlc
    );
    let fast = DriverConfig {
        poll_interval: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
    };
    let maker = party(&nodes, tmp.path(), "maker", 2, fast).await?;
    let taker = party(&nodes, tmp.path(), "taker", 1, fast).await?;

    // Funds: the taker has coins to sell, the maker coins to buy tokens with; tokens to the taker.
    for (wallet, sats) in [(&taker.wallet, 3 * BTC_SWAP), (&maker.wallet, 3 * BTC_SWAP)] {
        nodes.send_to_wallet(wallet, sats).await?;
    }
    nodes.btc.mine(1).await;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(nodes.eth.signer(0)))
        .connect_http(nodes.eth.url().parse()?);
    let token = TestToken::deploy(&provider, "Demo USD".to_string(), 6u8).await?;
    token
        .mint(taker.eth, U256::from(2 * TOKEN_SWAP))
        .send()
        .await?
        .get_receipt()
        .await?;
    let token = *token.address();

    // The maker listens and publishes two offers.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let btc_chain = nodes.btc.chain_id();
    let eth_chain = nodes.eth_params().chain;
    let coin_asset = nodes.btc_asset();
    let token_asset = Asset::Erc20 {
        token: EvmAddress(token.into_array()),
        decimals: 6,
    };
    let expires = Timestamp(u64::MAX / 2);
    let sell_eth = maker.engine.offer(
        addr.clone(),
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: eth_chain,
            asset: Asset::Eth,
            max: Amount::Wei(Wei(10u128.pow(19))),
            min: Amount::Wei(Wei(10u128.pow(15))),
        },
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: btc_chain,
            asset: coin_asset.clone(),
            max: Amount::Sats(Sats(10 * BTC_SWAP)),
            min: Amount::Sats(Sats(10_000)),
        },
        (ETH_PER_SAT, 1),
        expires,
    );
    let buy_tokens = maker.engine.offer(
        addr.clone(),
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: btc_chain,
            asset: coin_asset.clone(),
            max: Amount::Sats(Sats(10 * BTC_SWAP)),
            min: Amount::Sats(Sats(10_000)),
        },
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: eth_chain,
            asset: token_asset.clone(),
            max: Amount::Token(TokenUnits {
                units: 10 * TOKEN_SWAP,
                decimals: 6,
            }),
            min: Amount::Token(TokenUnits {
                units: 1_000_000,
                decimals: 6,
            }),
        },
        (1, SATS_PER_TOKEN_UNIT_DEN),
        expires,
    );
    crate::say!(
        "==> maker listening on {addr}, identity {}",
        maker.engine.identity.public()
    );
    crate::say!("    offer 1 (sells ETH for coins):   {}", sell_eth.encode());
    crate::say!(
        "    offer 2 (sells coins for tokens): {}",
        buy_tokens.encode()
    );
    let server = tokio::spawn(
        maker
            .engine
            .clone()
            .serve(listener, vec![sell_eth.clone(), buy_tokens.clone()]),
    );

    // Blocks: one Bitcoin-family block every 200 ms, Ethereum time moving along with it.
    let miner = nodes.spawn_miner(Duration::from_millis(200))?;

    let before = balances(&nodes, &taker, &maker, token).await?;
    let onchain_from = (
        nodes.btc.height().await,
        crate::demo_channels::eth_txs(&nodes, &[taker.eth, maker.eth]).await?,
    );
    let onchain_t0 = Instant::now();

    let swaps = [
        (
            "swap 1: taker sells 0.01 coin for 0.25 ETH",
            &sell_eth,
            BTC_SWAP as u128,
        ),
        (
            "swap 2: taker sells 5,000 tokens for 0.01 coin",
            &buy_tokens,
            TOKEN_SWAP,
        ),
    ];
    for (title, offer, give) in swaps {
        let started = Instant::now();
        crate::say!("==> {title}");
        // A block every 200 ms here: one mined while the terms travel can leave the maker's
        // re-check of the expiry rules a block short, and it refuses. The taker asks again
        // with fresh terms at the new tip (at most 3 times).
        let mut refusals = 0;
        let id = loop {
            match taker.engine.take(offer, give).await {
                Ok(id) => break id,
                Err(crate::engine::EngineError::Rejected(why)) if refusals < 3 => {
                    refusals += 1;
                    crate::say!("    the maker refused ({why}); asking again with fresh terms");
                }
                Err(e) => return Err(e).context("taking the offer"),
            }
        };
        crate::say!("    agreed over Noise XX: swap {id}; the taker locks first");
        let both = async {
            let a = taker.engine.wait(&id).await?;
            let b = maker.engine.wait(&id).await?;
            anyhow::Ok((a, b))
        };
        let (a, b) = tokio::time::timeout(Duration::from_secs(90), both)
            .await
            .context("swap did not finish in 90 s")??;
        timeline(&taker.engine, &id, t0).await?;
        timeline(&maker.engine, &id, t0).await?;
        crate::say!(
            "    done in {:.1} s: taker {}, maker {}",
            started.elapsed().as_secs_f64(),
            a.name(),
            b.name()
        );
        anyhow::ensure!(
            a == Outcome::Swapped && b == Outcome::Swapped,
            "swap did not complete"
        );
    }
    miner.abort();
    server.abort();
    nodes.btc.mine(1).await;
    let onchain_secs = onchain_t0.elapsed().as_secs_f64();
    let onchain_txs = crate::demo_channels::btc_txs_since(
        &nodes,
        &[taker.wallet.as_str(), maker.wallet.as_str()],
        onchain_from.0,
    )
    .await?
        + crate::demo_channels::eth_txs(&nodes, &[taker.eth, maker.eth]).await?
        - onchain_from.1;

    let after = balances(&nodes, &taker, &maker, token).await?;
    let d = |a: U256, b: U256| -> i128 {
        let (a, b) = (a.to::<u128>() as i128, b.to::<u128>() as i128);
        b - a
    };
    crate::say!("==> final balances (change; fees included)");
    crate::say!(
        "    taker: coins {}  ETH {}  tokens {}",
        coin(after.0 as i128 - before.0 as i128),
        ether(d(before.2, after.2)),
        d(before.4, after.4) / 1_000_000
    );
    crate::say!(
        "    maker: coins {}  ETH {}  tokens {}",
        coin(after.1 as i128 - before.1 as i128),
        ether(d(before.3, after.3)),
        d(before.5, after.5) / 1_000_000
    );

    let act = crate::demo_channels::run(&nodes, tmp.path()).await?;
    crate::say!("==> on chain vs in channels");
    crate::say!(
        "    on chain:    {} swaps in {onchain_secs:6.1} s, {onchain_txs} on-chain transactions \
         (locks and claims on both chains)",
        swaps.len()
    );
    crate::say!(
        "    in channels: {} swaps ({} below dust) in {:6.2} s, {} on-chain transactions during \
         the swaps; {} to open and close both channels, whatever the number of swaps",
        act.swaps,
        act.micro,
        act.seconds,
        act.txs_during_swaps,
        act.txs_open_close
    );
    anyhow::ensure!(act.txs_during_swaps == 0, "channel swaps touched a chain");
    crate::say!(
        "==> stopping the nodes; demo finished in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    drop(nodes);
    Ok(())
}
