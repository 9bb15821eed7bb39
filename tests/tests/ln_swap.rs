//! A channel-linked swap through two engines: the taker pays LTC over Lightning (a payment to
//! the maker's hold invoice for the swap's hashlock, registered when the maker quotes) and
//! gets ETH on chain. The maker sees the payment held (irrevocable) before it locks ETH; the
//! taker claims the ETH, revealing the secret; the maker learns it from the chain and claims
//! the held payment; the taker's payment succeeds. No transaction on the Bitcoin-family chain
//! after the channel is open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use eth_adapter::EthChain;
use ln_adapter::{LnConfig, LnEvent, LnNode, LnRail, Seed};
use swap_core::store::SqliteStore;
use swap_core::*;
use swap_engine::{Direct, Engine, OfferRates};
use swap_net::{Identity, OfferLeg, Peer};
use xswap_tests::*;

async fn ln_node(nodes: &Nodes, wallet: &str, seed: u8, dir: &std::path::Path) -> Arc<LnNode> {
    nodes.btc.rpc().create_or_load_wallet(wallet).await.unwrap();
    let mut config = LnConfig::new(
        nodes.btc.chain_id(),
        nodes.btc.rpc_config(Some(wallet)),
        dir.join(wallet),
    );
    config.poll_interval = Duration::from_millis(200);
    Arc::new(LnNode::start(config, &Seed::new([seed; 32])).await.unwrap())
}

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
    let engine = Engine::new(
        name,
        store,
        [
            Arc::new(LnRail::new(Arc::clone(ln))) as Arc<dyn Rail>,
            eth.clone() as Arc<dyn Rail>,
        ],
        Identity::generate().unwrap(),
        DriverConfig {
            poll_interval: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        },
    );
    (engine, eth)
}

/// Funds `from`'s wallet, opens a channel from `from` to `to` and waits until both can use it.
async fn open_channel(nodes: &Nodes, wallet: &str, from: &LnNode, to: &LnNode) {
    let addr = nodes
        .btc
        .rpc()
        .with_wallet(wallet)
        .unwrap()
        .get_new_address("bech32")
        .await
        .unwrap();
    nodes.btc.send(&addr, 5_000_000).await;
    nodes.btc.mine(1).await;
    from.connect(to.node_id(), to.listen_addr()).await.unwrap();
    let mut rx = from.subscribe();
    from.open_channel(to.node_id(), 2_000_000, 0).unwrap();
    loop {
        if let Ok(LnEvent::ChannelPending { .. }) = rx.recv().await {
            break;
        }
    }
    let started = Instant::now();
    while !(from.channels().iter().any(|c| c.usable) && to.channels().iter().any(|c| c.usable)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "channel never usable"
        );
        nodes.btc.mine(1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs both engines' swap `id` to its end (ETH blocks every 200 ms); returns the outcomes.
async fn finish(
    nodes: &Nodes,
    taker: &Arc<Engine>,
    maker: &Arc<Engine>,
    id: SwapId,
) -> (Outcome, Outcome) {
    let waits = {
        let (t, m) = (taker.clone(), maker.clone());
        tokio::spawn(async move { tokio::join!(t.wait(&id), m.wait(&id)) })
    };
    let started = Instant::now();
    while !waits.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "swap not done in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        nodes.eth.advance_time(12).await;
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

/// The taker `tina` and the maker `mark`; the channel is opened by the taker when it pays
/// over Lightning, else by the maker.
async fn sides(
    nodes: &Nodes,
    seeds: (u8, u8),
    accounts: (usize, usize),
    taker_pays: bool,
) -> Sides {
    let dir = tempfile::tempdir().unwrap();
    let tina = ln_node(nodes, "tina", seeds.0, dir.path()).await;
    let mark = ln_node(nodes, "mark", seeds.1, dir.path()).await;
    if taker_pays {
        open_channel(nodes, "tina", &tina, &mark).await;
    } else {
        open_channel(nodes, "mark", &mark, &tina).await;
    }
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
async fn take(s: &Sides, sell: OfferLeg, buy: OfferLeg, rate: (u128, u128), give: u128) -> SwapId {
    let offer = s.maker.offer(
        "maker.example:7700".into(),
        sell,
        buy,
        rate,
        Timestamp(Timestamp::now().0 + 3600),
    );
    let handler = s
        .maker
        .maker(Arc::new(vec![offer.clone()]), Arc::new(OfferRates));
    let peer = Peer {
        key: s.taker.identity.public(),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    s.taker
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
        &s,
        eth_leg(),
        ln_leg(&nodes),
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
    let id = take(&s, ln_leg(&nodes), eth_leg(), (1, 10_000_000_000), give_wei).await;
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
