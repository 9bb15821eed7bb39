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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lightning_ltc_for_eth_on_chain_through_two_engines() {
    let nodes = start_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let tina = ln_node(&nodes, "tina", 0x71, dir.path()).await;
    let mark = ln_node(&nodes, "mark", 0x72, dir.path()).await;
    // The taker funds and opens a channel to the maker.
    let addr = nodes
        .btc
        .rpc()
        .with_wallet("tina")
        .unwrap()
        .get_new_address("bech32")
        .await
        .unwrap();
    nodes.btc.send(&addr, 5_000_000).await;
    nodes.btc.mine(1).await;
    tina.connect(mark.node_id(), mark.listen_addr())
        .await
        .unwrap();
    let mut rx = tina.subscribe();
    tina.open_channel(mark.node_id(), 2_000_000, 0).unwrap();
    loop {
        if let Ok(LnEvent::ChannelPending { .. }) = rx.recv().await {
            break;
        }
    }
    let started = Instant::now();
    while !(tina.channels().iter().any(|c| c.usable) && mark.channels().iter().any(|c| c.usable)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "channel never usable"
        );
        nodes.btc.mine(1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let height_after_open = nodes.btc.height().await;

    let (taker, taker_eth) = engine(&nodes, "tina", &tina, 3, dir.path()).await;
    let (maker, maker_eth) = engine(&nodes, "mark", &mark, 4, dir.path()).await;
    let ltc = nodes.btc.chain_id();
    let eth_chain = ChainId::new(ChainFamily::Ethereum, Network::Regtest);
    // The maker sells ETH on chain for LTC over Lightning: 10 gwei per satoshi.
    let offer = maker.offer(
        "maker.example:7700".into(),
        OfferLeg {
            chain: eth_chain,
            rail: RailKind::OnChain,
            asset: Asset::Eth,
            max: Amount::Wei(Wei(10u128.pow(18))),
            min: Amount::Wei(Wei(10u128.pow(12))),
        },
        OfferLeg {
            chain: ltc,
            rail: RailKind::Lightning,
            asset: ltc.family.native_asset(),
            max: Amount::Sats(Sats(1_000_000)),
            min: Amount::Sats(Sats(1_000)),
        },
        (10_000_000_000, 1),
        Timestamp(Timestamp::now().0 + 3600),
    );
    let tina_eth0 = nodes.eth_bal(taker_eth.address()).await;
    let mark_eth0 = nodes.eth_bal(maker_eth.address()).await;
    let tina_out0: u64 = tina.channels().iter().map(|c| c.outbound_msat).sum();
    let give = 500_000u64;
    let handler = maker.maker(Arc::new(vec![offer.clone()]), Arc::new(OfferRates));
    let peer = Peer {
        key: taker.identity.public(),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let id = taker
        .take_via(&mut Direct::new(handler, peer), &offer, u128::from(give))
        .await
        .unwrap();
    let (record, _) = taker.driver.store().load(&id).await.unwrap();
    assert_eq!(record.terms.x.params.kind, RailKind::Lightning);
    assert!(
        matches!(
            record.terms.x.rail_data.as_ref().map(|d| &d.body),
            Some(RailBody::Lightning { .. })
        ),
        "the maker's hold invoice is in the terms"
    );

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
    assert_eq!(
        (t.unwrap(), m.unwrap()),
        (Outcome::Swapped, Outcome::Swapped)
    );

    // The taker paid exactly the amount over Lightning (a direct channel: no fee) ...
    let tina_out: u64 = tina.channels().iter().map(|c| c.outbound_msat).sum();
    assert_eq!(tina_out0 - tina_out, give * 1_000);
    // ... and got the ETH less its claim's gas (under 0.0001 ETH here); the maker gave it
    // plus its lock's gas.
    let want = U256::from(u128::from(give) * 10_000_000_000);
    let tina_gain = nodes.eth_bal(taker_eth.address()).await - tina_eth0;
    assert!(
        tina_gain <= want && tina_gain > want - U256::from(10u128.pow(14)),
        "tina got {tina_gain} of {want}"
    );
    let mark_spent = mark_eth0 - nodes.eth_bal(maker_eth.address()).await;
    assert!(
        mark_spent >= want && mark_spent < want + U256::from(10u128.pow(14)),
        "mark spent {mark_spent} for {want}"
    );
    // Nothing happened on the Bitcoin-family chain since the channel opened.
    assert_eq!(nodes.btc.height().await, height_after_open);
    tina.stop().await.unwrap();
    mark.stop().await.unwrap();
}
