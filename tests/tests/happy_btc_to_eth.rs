//! Happy path, BTC (litecoind regtest) -> ETH (anvil): the initiator sells BTC for ETH. Both
//! parties run the real driver against the real adapters; each ends with the other's asset.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::primitives::U256;
use swap_core::*;
use xswap_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btc_for_eth_both_parties_swap() {
    let nodes = start_nodes().await;
    let alice = Party::new(&nodes, "alice", 0xa1, 1).await; // initiator: sells BTC
    let bob = Party::new(&nodes, "bob", 0xb0, 2).await; // responder: sells ETH
    fund_btc(&nodes, &alice, 2_000_000).await;

    let sats = 1_000_000u64;
    let wei = 250_000_000_000_000_000u128; // 0.25 ETH
    let secret = Preimage::random().unwrap();
    let x = LegTerms {
        params: nodes.btc_params(),
        asset: btc_asset(&nodes),
        amount: Amount::Sats(Sats(sats)),
        sender: alice.btc_account(0),
        recipient: bob.btc_account(0),
        expiry: Expiry::Height(Height(0)),
        rail_data: None,
    };
    let y = LegTerms {
        params: nodes.eth_params(),
        asset: Asset::Eth,
        amount: Amount::Wei(Wei(wei)),
        sender: bob.eth_account(),
        recipient: alice.eth_account(),
        expiry: Expiry::Time(Timestamp(0)),
        rail_data: None,
    };
    let tips = tips(alice.btc.as_ref(), alice.eth.as_ref()).await;
    let terms = SwapTerms::with_default_expiries(
        SwapId::random().unwrap(),
        secret.hashlock(),
        x,
        y,
        SafetyPolicy::default(),
        tips,
    )
    .unwrap();
    let id = terms.id;
    let (ri, rr) = records(terms, secret, 0, 0, tips);
    alice.driver.create(&ri).await.unwrap();
    bob.driver.create(&rr).await.unwrap();

    let alice_eth0 = nodes.eth_bal(alice.eth.address()).await;
    let bob_btc0 = bob.btc_balance(&nodes).await;
    assert_eq!(bob_btc0, 0);

    let mut outcomes = (None, None);
    for round in 0..60 {
        if outcomes.0.is_none() {
            outcomes.0 = alice.step(&id).await;
        }
        if outcomes.1.is_none() {
            outcomes.1 = bob.step(&id).await;
        }
        if outcomes.0.is_some() && outcomes.1.is_some() {
            println!("both done after {round} rounds");
            break;
        }
        nodes.advance(1).await;
    }
    assert_eq!(outcomes, (Some(Outcome::Swapped), Some(Outcome::Swapped)));

    // Bob got the BTC (minus the claim's fee), Alice the ETH (minus her claim's gas).
    nodes.advance(1).await;
    let bob_btc = bob.btc_balance(&nodes).await;
    assert!(
        bob_btc < sats && bob_btc > sats - 10_000,
        "bob has {bob_btc} sat"
    );
    let alice_eth = nodes.eth_bal(alice.eth.address()).await;
    let gained = alice_eth - alice_eth0;
    assert!(
        gained < U256::from(wei) && gained > U256::from(wei - 10u128.pow(16)),
        "alice gained {gained} wei"
    );

    // The history shows each protocol step, in order, for both roles.
    let hist: Vec<&'static str> = alice
        .driver
        .store()
        .history(&id)
        .await
        .unwrap()
        .iter()
        .map(|e| swap_core::driver::state_name(&e.state))
        .collect();
    assert_eq!(hist.first(), Some(&"negotiated"));
    assert!(hist.contains(&"claiming"));
    assert_eq!(hist.last(), Some(&"done"));
}

/// The engine as a library (what an exchange embeds): the taker's quote request and proposal
/// reach the maker's engine in-process, with no network, and are checked by the maker's
/// policy exactly as over the transport; the swap then runs to the end on both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_takes_an_offer_over_any_transport() {
    use std::sync::Arc;
    use swap_net::{OfferLeg, Peer};
    use xswap_cli::engine::{Direct, EngineError, OfferRates};

    let nodes = start_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let fast = DriverConfig {
        poll_interval: std::time::Duration::from_millis(100),
        max_backoff: std::time::Duration::from_secs(1),
    };
    let party = |name, account| xswap_cli::regtest::party(&nodes, dir.path(), name, account, fast);
    let maker = party("maker", 2).await.unwrap();
    let taker = party("taker", 1).await.unwrap();
    let rpc = nodes.btc.rpc().with_wallet("taker").unwrap();
    let addr = rpc.get_new_address("bech32").await.unwrap();
    nodes.btc.send(&addr, 2_000_000).await;
    nodes.btc.mine(1).await;

    let offer = maker.engine.offer(
        "maker.example:7700".into(),
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: nodes.eth_params().chain,
            asset: Asset::Eth,
            max: Amount::Wei(Wei(10u128.pow(18))),
            min: Amount::Wei(Wei(10u128.pow(15))),
        },
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: nodes.btc_params().chain,
            asset: btc_asset(&nodes),
            max: Amount::Sats(Sats(4_000_000)),
            min: Amount::Sats(Sats(4_000)),
        },
        (250_000_000_000, 1),
        Timestamp(Timestamp::now().0 + 3600),
    );
    let handler = maker
        .engine
        .maker(Arc::new(vec![offer.clone()]), Arc::new(OfferRates));
    let mut direct = Direct::new(
        handler,
        Peer {
            key: taker.engine.identity.public(),
            ip: std::net::IpAddr::from([127, 0, 0, 1]),
        },
    );
    // Below the offer's minimum: the maker's policy refuses, nothing is stored on either side.
    match taker.engine.take_via(&mut direct, &offer, 1_000).await {
        Err(EngineError::Rejected(why)) => assert!(why.contains("limits"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(maker.engine.driver.store().list().await.unwrap().is_empty());
    assert!(taker.engine.driver.store().list().await.unwrap().is_empty());

    let id = taker
        .engine
        .take_via(&mut direct, &offer, 1_000_000)
        .await
        .unwrap();
    let waits = {
        let (t, m) = (taker.engine.clone(), maker.engine.clone());
        tokio::spawn(async move { tokio::join!(t.wait(&id), m.wait(&id)) })
    };
    let started = std::time::Instant::now();
    while !waits.is_finished() {
        assert!(started.elapsed().as_secs() < 240, "the swap never ended");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        nodes.advance(1).await;
    }
    let (t, m) = waits.await.unwrap();
    assert_eq!(t.unwrap(), Outcome::Swapped);
    assert_eq!(m.unwrap(), Outcome::Swapped);
}
