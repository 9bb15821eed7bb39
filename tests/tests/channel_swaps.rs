//! Channel-linked swaps through two engines, one leg or both in a channel.
//!
//! Lightning x Ethereum on chain (both directions): the payee's hold invoice for the swap's
//! hashlock is in the terms; the payer pays once the other side's lock is final; claiming the
//! held payment reveals the secret. Lightning x Ethereum channel (both directions): after the
//! channels are open, a swap touches neither chain: the Ethereum leg is a lock in the
//! channel between the two parties, named by the payee in the terms, and the secret
//! travels in the channels' claims.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use eth_adapter::EthChain;
use ln_adapter::{LnNode, LnRail};
use swap_core::store::SqliteStore;
use swap_core::*;
use swap_engine::{Direct, Engine, OfferRates};
use swap_net::{Identity, OfferLeg, Peer};
use xswap_tests::regtest_channels::{ln_node, open_eth_channel, open_ln_channel, ChannelSide};
use xswap_tests::*;

async fn engine(
    nodes: &Nodes,
    name: &str,
    ln: &Arc<LnNode>,
    eth_account: usize,
    dir: &std::path::Path,
) -> (Arc<Engine>, Arc<EthChain>) {
    let (_, mut eth_cfg) = nodes
        .adapter_configs(name, Duration::from_millis(20))
        .await
        .unwrap();
    eth_cfg.receipt_timeout = Duration::from_secs(60);
    let store = Arc::new(SqliteStore::open(dir.join(format!("{name}.sqlite"))).unwrap());
    let eth = Arc::new(
        EthChain::new(eth_cfg, nodes.eth.signer(eth_account))
            .unwrap()
            .with_outbox(store.clone()),
    );
    let rails = vec![
        Arc::new(LnRail::new(Arc::clone(ln))) as Arc<dyn Rail>,
        eth.clone() as Arc<dyn Rail>,
    ];
    (engine_with(name, store, rails), eth)
}

/// An engine over `rails` and `store`, stepping every 100 ms.
fn engine_with(name: &str, store: Arc<SqliteStore>, rails: Vec<Arc<dyn Rail>>) -> Arc<Engine> {
    engine_polling(name, store, rails, Duration::from_millis(100))
}

/// An engine over `rails` and `store`, stepping every `poll`.
fn engine_polling(
    name: &str,
    store: Arc<SqliteStore>,
    rails: Vec<Arc<dyn Rail>>,
    poll: Duration,
) -> Arc<Engine> {
    Engine::new(
        name,
        store,
        rails,
        Identity::generate().unwrap(),
        DriverConfig {
            poll_interval: poll,
            max_backoff: Duration::from_secs(1),
        },
    )
}

/// Runs both engines' swap `id` to its end (ETH blocks every 200 ms); returns the outcomes.
async fn finish(
    nodes: &Nodes,
    taker: &Arc<Engine>,
    maker: &Arc<Engine>,
    id: SwapId,
) -> (Outcome, Outcome) {
    finish_mining(nodes, taker, maker, id, false).await
}

/// [`finish`], also mining a Bitcoin-family block every second when `mine_btc`.
async fn finish_mining(
    nodes: &Nodes,
    taker: &Arc<Engine>,
    maker: &Arc<Engine>,
    id: SwapId,
    mine_btc: bool,
) -> (Outcome, Outcome) {
    let waits = {
        let (t, m) = (taker.clone(), maker.clone());
        tokio::spawn(async move { tokio::join!(t.wait(&id), m.wait(&id)) })
    };
    let started = Instant::now();
    let mut rounds = 0u32;
    while !waits.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "swap not done in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        nodes.eth.advance_time(12).await;
        rounds += 1;
        if mine_btc && rounds.is_multiple_of(5) {
            nodes.btc.mine(1).await;
        }
    }
    let (t, m) = waits.await.unwrap();
    (t.unwrap(), m.unwrap())
}

/// Two parties, each with a Lightning node and an engine over it and an Ethereum account,
/// and one channel between them.
struct Sides {
    _dir: tempfile::TempDir,
    tina: Arc<LnNode>,
    mark: Arc<LnNode>,
    taker: Arc<Engine>,
    taker_eth: Arc<EthChain>,
    maker: Arc<Engine>,
    maker_eth: Arc<EthChain>,
    height_after_open: u64,
}

/// Lightning nodes for the taker `tina` and the maker `mark` (data in the returned directory)
/// with a channel of 2,000,000 sats opened by the taker when it pays over Lightning, else by
/// the maker.
async fn ln_pair(
    nodes: &Nodes,
    seeds: (u8, u8),
    taker_pays: bool,
) -> (tempfile::TempDir, Arc<LnNode>, Arc<LnNode>) {
    let dir = tempfile::tempdir().unwrap();
    let tina = ln_node(nodes, "tina", [seeds.0; 32], dir.path())
        .await
        .unwrap();
    let mark = ln_node(nodes, "mark", [seeds.1; 32], dir.path())
        .await
        .unwrap();
    let (wallet, payer, payee) = if taker_pays {
        ("tina", &tina, &mark)
    } else {
        ("mark", &mark, &tina)
    };
    open_ln_channel(nodes, wallet, (payer, payee), 2_000_000)
        .await
        .unwrap();
    (dir, tina, mark)
}

/// The taker `tina` and the maker `mark`; the channel is opened by the taker when it pays
/// over Lightning, else by the maker.
async fn sides(
    nodes: &Nodes,
    seeds: (u8, u8),
    accounts: (usize, usize),
    taker_pays: bool,
) -> Sides {
    let (dir, tina, mark) = ln_pair(nodes, seeds, taker_pays).await;
    let height_after_open = nodes.btc.height().await;
    let (taker, taker_eth) = engine(nodes, "tina", &tina, accounts.0, dir.path()).await;
    let (maker, maker_eth) = engine(nodes, "mark", &mark, accounts.1, dir.path()).await;
    Sides {
        _dir: dir,
        tina,
        mark,
        taker,
        taker_eth,
        maker,
        maker_eth,
        height_after_open,
    }
}

/// An offer side: LTC over Lightning on the regtest node's chain.
fn ln_leg(nodes: &Nodes) -> OfferLeg {
    let ltc = nodes.btc.chain_id();
    OfferLeg {
        chain: ltc,
        rail: RailKind::Lightning,
        asset: ltc.family.native_asset(),
        max: Amount::Sats(Sats(1_000_000)),
        min: Amount::Sats(Sats(1_000)),
    }
}

/// An offer side: ETH on chain.
fn eth_leg() -> OfferLeg {
    OfferLeg {
        chain: ChainId::new(ChainFamily::Ethereum, Network::Regtest),
        rail: RailKind::OnChain,
        asset: Asset::Eth,
        max: Amount::Wei(Wei(10u128.pow(18))),
        min: Amount::Wei(Wei(10u128.pow(12))),
    }
}

/// The taker takes `give` of the maker's offer (`sell` for `buy` at `rate`), in process.
async fn take(
    taker: &Arc<Engine>,
    maker: &Arc<Engine>,
    (sell, buy): (OfferLeg, OfferLeg),
    rate: (u128, u128),
    give: u128,
) -> SwapId {
    let offer = maker.offer(
        "maker.example:7700".into(),
        sell,
        buy,
        rate,
        Timestamp(Timestamp::now().0 + 3600),
    );
    let handler = maker.maker(Arc::new(vec![offer.clone()]), Arc::new(OfferRates));
    let peer = Peer {
        key: taker.identity.public(),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    taker
        .take_via(&mut Direct::new(handler, peer), &offer, give)
        .await
        .unwrap()
}

fn outbound(n: &LnNode) -> u64 {
    n.channels().iter().map(|c| c.outbound_msat).sum()
}

/// Gas allowance in the balance checks (anvil's fees vary with its base fee).
const GAS: u128 = 10u128.pow(14);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lightning_ltc_for_eth_on_chain_through_two_engines() {
    let nodes = start_nodes().await;
    let s = sides(&nodes, (0x71, 0x72), (3, 4), true).await;
    let tina_eth0 = nodes.eth_bal(s.taker_eth.address()).await;
    let mark_eth0 = nodes.eth_bal(s.maker_eth.address()).await;
    let tina_out0 = outbound(&s.tina);
    // The maker sells ETH on chain for LTC over Lightning: 10 gwei per satoshi.
    let give = 500_000u64;
    let id = take(
        &s.taker,
        &s.maker,
        (eth_leg(), ln_leg(&nodes)),
        (10_000_000_000, 1),
        u128::from(give),
    )
    .await;
    let (record, _) = s.taker.driver.store().load(&id).await.unwrap();
    assert_eq!(record.terms.x.params.kind, RailKind::Lightning);
    assert!(
        matches!(
            record.terms.x.rail_data.as_ref().map(|d| &d.body),
            Some(RailBody::Lightning { node_id, .. }) if node_id.0 == s.mark.node_id().serialize()
        ),
        "the maker's hold invoice is in the terms"
    );
    assert_eq!(
        finish(&nodes, &s.taker, &s.maker, id).await,
        (Outcome::Swapped, Outcome::Swapped)
    );
    // The taker paid exactly the amount over Lightning (a direct channel: no fee), and got
    // the ETH less its claim's gas; the maker gave it plus its lock's gas.
    assert_eq!(tina_out0 - outbound(&s.tina), give * 1_000);
    let want = U256::from(u128::from(give) * 10_000_000_000);
    let tina_gain = nodes.eth_bal(s.taker_eth.address()).await - tina_eth0;
    assert!(
        tina_gain <= want && tina_gain > want - U256::from(GAS),
        "tina got {tina_gain} of {want}"
    );
    let mark_spent = mark_eth0 - nodes.eth_bal(s.maker_eth.address()).await;
    assert!(
        mark_spent >= want && mark_spent < want + U256::from(GAS),
        "mark spent {mark_spent} for {want}"
    );
    // Nothing happened on the Bitcoin-family chain since the channel opened.
    assert_eq!(nodes.btc.height().await, s.height_after_open);
    s.tina.stop().await.unwrap();
    s.mark.stop().await.unwrap();
}

/// The other direction (submarine-style): the taker locks ETH on chain and receives LTC over
/// Lightning from the maker. The taker's hold invoice is in the terms; the maker pays it only
/// once the taker's ETH lock is final; the taker claims the held payment with the secret (a
/// channel claim reveals it to the maker's node), and the maker claims the ETH with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_on_chain_for_lightning_ltc_through_two_engines() {
    let nodes = start_nodes().await;
    let s = sides(&nodes, (0x81, 0x82), (5, 6), false).await;
    let tina_eth0 = nodes.eth_bal(s.taker_eth.address()).await;
    let mark_eth0 = nodes.eth_bal(s.maker_eth.address()).await;
    let mark_out0 = outbound(&s.mark);
    // The maker sells LTC over Lightning for ETH on chain: 1 sat per 10 gwei.
    let give_wei = 5 * 10u128.pow(15);
    let sats = 500_000u64;
    let id = take(
        &s.taker,
        &s.maker,
        (ln_leg(&nodes), eth_leg()),
        (1, 10_000_000_000),
        give_wei,
    )
    .await;
    let (record, _) = s.taker.driver.store().load(&id).await.unwrap();
    assert_eq!(record.terms.y.params.kind, RailKind::Lightning);
    assert_eq!(record.terms.y.amount, Amount::Sats(Sats(sats)));
    assert!(
        matches!(
            record.terms.y.rail_data.as_ref().map(|d| &d.body),
            Some(RailBody::Lightning { node_id, .. }) if node_id.0 == s.tina.node_id().serialize()
        ),
        "the taker's hold invoice is in the terms"
    );
    assert_eq!(
        finish(&nodes, &s.taker, &s.maker, id).await,
        (Outcome::Swapped, Outcome::Swapped)
    );
    // The maker paid exactly the amount over Lightning; the taker gave the ETH (plus gas)
    // and the maker got it (less gas).
    assert_eq!(mark_out0 - outbound(&s.mark), sats * 1_000);
    let want = U256::from(give_wei);
    let tina_spent = tina_eth0 - nodes.eth_bal(s.taker_eth.address()).await;
    assert!(
        tina_spent >= want && tina_spent < want + U256::from(GAS),
        "tina spent {tina_spent} for {want}"
    );
    let mark_gain = nodes.eth_bal(s.maker_eth.address()).await - mark_eth0;
    assert!(
        mark_gain <= want && mark_gain > want - U256::from(GAS),
        "mark got {mark_gain} of {want}"
    );
    assert_eq!(nodes.btc.height().await, s.height_after_open);
    s.tina.stop().await.unwrap();
    s.mark.stop().await.unwrap();
}

/// An offer side: ETH in an Ethereum channel.
fn eth_channel_leg() -> OfferLeg {
    OfferLeg {
        rail: RailKind::EvmChannel,
        ..eth_leg()
    }
}

/// Transactions sent so far by `who` on the Ethereum chain (its nonce).
async fn eth_nonce(nodes: &Nodes, who: alloy::primitives::Address) -> u64 {
    use alloy::providers::Provider;
    nodes
        .eth
        .provider()
        .get_transaction_count(who)
        .await
        .unwrap()
}

/// Both channel-linked directions between Lightning and an Ethereum channel: `tina` takes,
/// `mark` makes; each has a Lightning node and an Ethereum channel node. The Lightning
/// channel is opened by whoever pays over Lightning; the Ethereum channel by the maker
/// (party A) with both sides funded, so either can pay in it.
struct ChannelSides {
    _dir: tempfile::TempDir,
    tina: Arc<LnNode>,
    mark: Arc<LnNode>,
    tina_chan: ChannelSide,
    mark_chan: ChannelSide,
    chan: eth_adapter::channel::ChannelRef,
    taker: Arc<Engine>,
    maker: Arc<Engine>,
}

async fn channel_sides(
    nodes: &Nodes,
    seeds: (u8, u8),
    accounts: (usize, usize),
    taker_pays_ln: bool,
) -> ChannelSides {
    channel_sides_polling(
        nodes,
        seeds,
        accounts,
        taker_pays_ln,
        Duration::from_millis(100),
    )
    .await
}

/// [`channel_sides`] with the taker's engine stepping every `taker_poll`.
async fn channel_sides_polling(
    nodes: &Nodes,
    seeds: (u8, u8),
    accounts: (usize, usize),
    taker_pays_ln: bool,
    taker_poll: Duration,
) -> ChannelSides {
    let (dir, tina, mark) = ln_pair(nodes, seeds, taker_pays_ln).await;
    let (mark_chan, tina_chan, chan, _) =
        open_eth_channel(nodes, (accounts.1, accounts.0), (ETH_DEPOSIT, ETH_DEPOSIT))
            .await
            .unwrap();
    let store = |name: &str| Arc::new(SqliteStore::open(dir.path().join(name)).unwrap());
    let taker = engine_polling(
        "tina",
        store("tina.sqlite"),
        vec![
            Arc::new(LnRail::new(Arc::clone(&tina))) as Arc<dyn Rail>,
            Arc::new(tina_chan.rail.clone()) as Arc<dyn Rail>,
        ],
        taker_poll,
    );
    let maker = engine_with(
        "mark",
        store("mark.sqlite"),
        vec![
            Arc::new(LnRail::new(Arc::clone(&mark))) as Arc<dyn Rail>,
            Arc::new(mark_chan.rail.clone()) as Arc<dyn Rail>,
        ],
    );
    ChannelSides {
        _dir: dir,
        tina,
        mark,
        tina_chan,
        mark_chan,
        chan,
        taker,
        maker,
    }
}

/// What each side holds in the Ethereum channel.
const ETH_DEPOSIT: u128 = 10u128.pow(18);

/// The taker pays LTC over Lightning and gets ETH in the Ethereum channel; then, on the same
/// channels, a second swap the other way round is refused while the maker's Lightning side
/// cannot pay (the channel was opened by the taker: the maker has no outbound capacity yet).
/// Neither chain sees a transaction after the channels are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lightning_ltc_for_eth_in_a_channel() {
    let nodes = start_nodes().await;
    let s = channel_sides(&nodes, (0x91, 0x92), (3, 4), true).await;
    let height = nodes.btc.height().await;
    let nonces = (
        eth_nonce(&nodes, s.tina_chan.addr).await,
        eth_nonce(&nodes, s.mark_chan.addr).await,
    );
    let tina_out0 = outbound(&s.tina);
    let give = 500_000u64;
    let wei = u128::from(give) * 10_000_000_000;
    let id = take(
        &s.taker,
        &s.maker,
        (eth_channel_leg(), ln_leg(&nodes)),
        (10_000_000_000, 1),
        u128::from(give),
    )
    .await;
    let (record, _) = s.taker.driver.store().load(&id).await.unwrap();
    assert_eq!(record.terms.y.params.kind, RailKind::EvmChannel);
    assert!(
        matches!(
            record.terms.y.rail_data.as_ref().map(|d| &d.body),
            Some(RailBody::EvmChannel { channel_id }) if *channel_id == s.chan.id().0
        ),
        "the taker named the channel between the two parties"
    );
    assert_eq!(
        finish(&nodes, &s.taker, &s.maker, id).await,
        (Outcome::Swapped, Outcome::Swapped)
    );
    // Exact: the taker paid the amount over Lightning (direct channel, no fee) and holds the
    // ETH in the channel; no lock is left in it.
    assert_eq!(tina_out0 - outbound(&s.tina), give * 1_000);
    assert_eq!(
        s.tina_chan.balances(&s.chan).unwrap(),
        (ETH_DEPOSIT + wei, ETH_DEPOSIT - wei)
    );
    assert_eq!(
        s.mark_chan.balances(&s.chan).unwrap(),
        (ETH_DEPOSIT - wei, ETH_DEPOSIT + wei)
    );
    assert_eq!(s.tina_chan.locks(&s.chan).unwrap(), 0);
    assert_eq!(nodes.btc.height().await, height);
    assert_eq!(
        (
            eth_nonce(&nodes, s.tina_chan.addr).await,
            eth_nonce(&nodes, s.mark_chan.addr).await
        ),
        nonces,
        "no Ethereum transaction"
    );
    s.tina.stop().await.unwrap();
    s.mark.stop().await.unwrap();
}

/// The taker pays ETH in the Ethereum channel and gets LTC over Lightning (the maker's
/// channel): the maker pays the taker's hold invoice once the channel lock is irrevocable;
/// the taker claims it with the secret; the maker learns it from its payment and claims the
/// channel lock. A leg naming a channel that is not between the two parties is refused
/// before anything is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_in_a_channel_for_lightning_ltc() {
    let nodes = start_nodes().await;
    let s = channel_sides(&nodes, (0xa1, 0xa2), (3, 4), false).await;
    let height = nodes.btc.height().await;
    let mark_out0 = outbound(&s.mark);
    let give_wei = 5 * 10u128.pow(15);
    let sats = 500_000u64;
    let id = take(
        &s.taker,
        &s.maker,
        (ln_leg(&nodes), eth_channel_leg()),
        (1, 10_000_000_000),
        give_wei,
    )
    .await;
    let (record, _) = s.maker.driver.store().load(&id).await.unwrap();
    assert_eq!(record.terms.x.params.kind, RailKind::EvmChannel);
    assert_eq!(record.terms.y.amount, Amount::Sats(Sats(sats)));
    assert_eq!(
        finish(&nodes, &s.taker, &s.maker, id).await,
        (Outcome::Swapped, Outcome::Swapped)
    );
    assert_eq!(mark_out0 - outbound(&s.mark), sats * 1_000);
    assert_eq!(
        s.tina_chan.balances(&s.chan).unwrap(),
        (ETH_DEPOSIT - give_wei, ETH_DEPOSIT + give_wei)
    );
    assert_eq!(s.mark_chan.locks(&s.chan).unwrap(), 0);
    assert_eq!(nodes.btc.height().await, height);
    // The maker's Ethereum channel rail refuses to name a channel with a stranger.
    let stranger = Account::Evm(EvmAddress(nodes.eth.address(5).0 .0));
    let err = s
        .mark_chan
        .rail
        .prepare_receive(
            &Preimage::from_bytes([7; 32]).hashlock(),
            &Asset::Eth,
            &Amount::Wei(Wei(1)),
            &stranger,
        )
        .await
        .unwrap_err();
    assert_eq!(err.cause, Cause::Invalid, "{err}");
    s.tina.stop().await.unwrap();
    s.mark.stop().await.unwrap();
}

/// Bitcoin-family on chain for an Ethereum channel: the taker locks LTC on chain and gets ETH
/// in the channel (named by the taker, the payee, in the terms); its channel claim reveals
/// the secret to the maker, which claims the LTC on chain. Then back: ETH in the channel for
/// LTC on chain. No Ethereum transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltc_on_chain_for_eth_in_a_channel_and_back() {
    let nodes = start_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let (mark_chan, tina_chan, chan, _) =
        open_eth_channel(&nodes, (4, 3), (ETH_DEPOSIT, ETH_DEPOSIT))
            .await
            .unwrap();
    let mut engines = Vec::new();
    for (name, seed, side) in [("tina", 0xb1u8, &tina_chan), ("mark", 0xb2, &mark_chan)] {
        let (btc_cfg, _) = nodes
            .adapter_configs(name, Duration::from_millis(20))
            .await
            .unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join(format!("{name}.sqlite"))).unwrap());
        let btc = Arc::new(
            btc_adapter::BtcChain::new(btc_cfg, &[seed; 64])
                .unwrap()
                .with_outbox(store.clone()),
        );
        let rails = vec![
            btc as Arc<dyn Rail>,
            Arc::new(side.rail.clone()) as Arc<dyn Rail>,
        ];
        engines.push(engine_with(name, store, rails));
    }
    let (taker, maker) = (engines[0].clone(), engines[1].clone());
    let wallet = |w: &str| nodes.btc.rpc().with_wallet(w).unwrap();
    let addr = wallet("tina").get_new_address("bech32").await.unwrap();
    nodes.btc.send(&addr, 2_000_000).await;
    nodes.btc.mine(1).await;
    let mark_ltc0 = wallet("mark").get_balance().await.unwrap();
    let nonces = (
        eth_nonce(&nodes, tina_chan.addr).await,
        eth_nonce(&nodes, mark_chan.addr).await,
    );
    let give = 500_000u64;
    let wei = u128::from(give) * 10_000_000_000;
    let ltc_on_chain = OfferLeg {
        rail: RailKind::OnChain,
        ..ln_leg(&nodes)
    };
    let id = take(
        &taker,
        &maker,
        (eth_channel_leg(), ltc_on_chain),
        (10_000_000_000, 1),
        u128::from(give),
    )
    .await;
    assert_eq!(
        finish_mining(&nodes, &taker, &maker, id, true).await,
        (Outcome::Swapped, Outcome::Swapped)
    );
    assert_eq!(
        tina_chan.balances(&chan).unwrap(),
        (ETH_DEPOSIT + wei, ETH_DEPOSIT - wei)
    );
    assert_eq!(mark_chan.locks(&chan).unwrap(), 0);
    // The maker claimed the LTC on chain, less its claim's fee.
    nodes.btc.mine(1).await;
    let gained = wallet("mark").get_balance().await.unwrap() - mark_ltc0;
    assert!(
        gained <= give && gained > give - 20_000,
        "mark got {gained} of {give} sats"
    );
    assert_eq!(
        (
            eth_nonce(&nodes, tina_chan.addr).await,
            eth_nonce(&nodes, mark_chan.addr).await
        ),
        nonces,
        "no Ethereum transaction"
    );

    // The other direction on the same channel: the taker pays ETH in the channel (named by
    // the maker, its payee) and gets LTC on chain.
    let addr = wallet("mark").get_new_address("bech32").await.unwrap();
    nodes.btc.send(&addr, 2_000_000).await;
    nodes.btc.mine(1).await;
    let tina_ltc0 = wallet("tina").get_balance().await.unwrap();
    let sats = 300_000u64;
    let give_wei = u128::from(sats) * 10_000_000_000;
    let ltc_on_chain = OfferLeg {
        rail: RailKind::OnChain,
        ..ln_leg(&nodes)
    };
    let id = take(
        &taker,
        &maker,
        (ltc_on_chain, eth_channel_leg()),
        (1, 10_000_000_000),
        give_wei,
    )
    .await;
    assert_eq!(
        finish_mining(&nodes, &taker, &maker, id, true).await,
        (Outcome::Swapped, Outcome::Swapped)
    );
    assert_eq!(
        tina_chan.balances(&chan).unwrap(),
        (ETH_DEPOSIT + wei - give_wei, ETH_DEPOSIT - wei + give_wei)
    );
    assert_eq!(tina_chan.locks(&chan).unwrap(), 0);
    nodes.btc.mine(1).await;
    let gained = wallet("tina").get_balance().await.unwrap() - tina_ltc0;
    assert!(
        gained <= sats && gained > sats - 20_000,
        "tina got {gained} of {sats} sats"
    );
    assert_eq!(
        (
            eth_nonce(&nodes, tina_chan.addr).await,
            eth_nonce(&nodes, mark_chan.addr).await
        ),
        nonces,
        "still no Ethereum transaction"
    );
}

/// The maker vanishes right after its lock in the Ethereum channel (its channel node
/// unreachable, its Lightning node stopped): the taker's claim is never countersigned, so its
/// watcher reveals the secret on chain before the lock's expiry, closes the channel with the
/// latest co-signed state and settles it after the challenge period. The taker ends whole:
/// swapped, with its channel balance plus the swap's ETH paid out on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maker_vanishes_after_its_channel_lock_and_the_taker_enforces_on_chain() {
    use alloy::providers::Provider;
    let nodes = start_nodes().await;
    // The taker steps slowly: the maker vanishes before the taker sees its lock.
    let s = channel_sides_polling(
        &nodes,
        (0xc1, 0xc2),
        (3, 4),
        true,
        Duration::from_millis(400),
    )
    .await;
    let mut watcher = eth_channel::Watcher::new(
        nodes.eth.provider().clone(),
        nodes.eth.signer(3),
        s.tina_chan.store.clone(),
        Arc::new(s.tina_chan.rail.secrets()),
        eth_channel::WatchConfig {
            claim_window: s.tina_chan.rail.min_claim_window(),
            ..eth_channel::WatchConfig::default()
        },
    );
    watcher.watch(s.chan.id(), 0);
    let tina_eth0 = nodes
        .eth
        .provider()
        .get_balance(s.tina_chan.addr)
        .await
        .unwrap();
    let give = 500_000u64;
    let wei = u128::from(give) * 10_000_000_000;
    let id = take(
        &s.taker,
        &s.maker,
        (eth_channel_leg(), ln_leg(&nodes)),
        (10_000_000_000, 1),
        u128::from(give),
    )
    .await;
    let started = Instant::now();
    while s.tina_chan.locks(&s.chan).unwrap() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the maker never locked"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    s.tina_chan.node.disconnect(s.mark_chan.net_id.public());
    s.mark_chan.node.disconnect(s.tina_chan.net_id.public());
    s.mark.stop().await.unwrap();
    let taker = s.taker.clone();
    let wait = tokio::spawn(async move { taker.wait(&id).await });
    // Chain time runs (2 minutes per tick) and the taker's watcher ticks until the taker's
    // swap ends: the secret revealed on chain before the lock's expiry, as deep as the
    // chain's HTLCs must be.
    let started = Instant::now();
    while !wait.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the taker's swap did not end"
        );
        let report = watcher.tick().await.unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        nodes.eth.advance_time(120).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(wait.await.unwrap().unwrap(), Outcome::Swapped);
    // The watcher goes on until the channel is settled and the taker's credit withdrawn:
    // its whole side of the latest co-signed state and the lock.
    let want = U256::from(ETH_DEPOSIT + wei);
    let started = Instant::now();
    loop {
        let got = nodes
            .eth
            .provider()
            .get_balance(s.tina_chan.addr)
            .await
            .unwrap()
            - tina_eth0;
        if got + U256::from(GAS) >= want {
            assert!(got <= want, "tina got {got} for {want}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the channel never paid the taker out: {got} of {want}"
        );
        let report = watcher.tick().await.unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        nodes.eth.advance_time(120).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.tina.stop().await.unwrap();
}
