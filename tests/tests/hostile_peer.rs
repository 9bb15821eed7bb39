//! While a maker runs a real swap with an honest taker, a hostile peer hammers the maker's
//! port: raw garbage, malformed and oversized messages inside a valid Noise channel, absurd
//! quotes, proposals for unknown swaps, and proposals that tamper with a quote it obtained.
//! Every hostile request gets a reason; the maker stores nothing for it; the honest swap
//! completes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use swap_core::*;
use swap_net::{Connection, Identity, OfferLeg};
use tokio::io::AsyncWriteExt;
use xswap_cli::regtest::party;
use xswap_tests::*;

fn reason(env: &Envelope) -> String {
    match &env.body {
        Message::Reject { reason } => reason.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_cannot_disturb_a_running_swap() {
    let nodes = start_nodes().await;
    let tmp = tempfile::tempdir().unwrap();
    let fast = DriverConfig {
        poll_interval: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
    };
    let maker = party(&nodes, tmp.path(), "maker", 2, fast).await.unwrap();
    let taker = party(&nodes, tmp.path(), "taker", 1, fast).await.unwrap();
    let addr = nodes
        .btc
        .rpc()
        .with_wallet("taker")
        .unwrap()
        .get_new_address("bech32")
        .await
        .unwrap();
    nodes.btc.send(&addr, 3 * SATS).await;
    nodes.btc.mine(1).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maker_addr = listener.local_addr().unwrap().to_string();
    let offer = maker.engine.offer(
        maker_addr.clone(),
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: nodes.eth_params().chain,
            asset: Asset::Eth,
            max: Amount::Wei(Wei(10u128.pow(19))),
            min: Amount::Wei(Wei(10u128.pow(15))),
        },
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: nodes.btc.chain_id(),
            asset: nodes.btc_asset(),
            max: Amount::Sats(Sats(10 * SATS)),
            min: Amount::Sats(Sats(10_000)),
        },
        (250_000_000_000, 1),
        Timestamp(u64::MAX / 2),
    );
    let server = tokio::spawn(maker.engine.clone().serve(listener, vec![offer.clone()]));
    let miner = nodes.spawn_miner(Duration::from_millis(300)).unwrap();

    // The honest swap starts.
    let honest = taker.engine.take(&offer, SATS as u128).await.unwrap();

    // 1. Raw garbage and a bogus frame header on plain TCP.
    for junk in [
        vec![0xffu8; 64],
        vec![0xff, 0xff, 1, 2, 3],
        b"\x00\x00".to_vec(),
    ] {
        let mut raw = tokio::net::TcpStream::connect(&maker_addr).await.unwrap();
        let _ = raw.write_all(&junk).await;
    }
    // 2. A real Noise channel carrying hostile content.
    let evil = Identity::generate().unwrap();
    let mut conn = Connection::connect(&maker_addr, &evil, Some(offer.maker))
        .await
        .unwrap();
    conn.send_bytes(b"\x7b\x7b\x7b not json").await.unwrap();
    assert!(reason(&conn.recv().await.unwrap()).contains("malformed"));
    conn.send_bytes(&vec![b'{'; swap_core::messages::MAX_MESSAGE_BYTES + 1])
        .await
        .unwrap();
    assert!(reason(&conn.recv().await.unwrap()).contains("exceeds"));
    // Absurd quotes.
    let q = |give: u64, want: u128| {
        Envelope::new(
            SwapId::random().unwrap(),
            Message::QuoteRequest {
                give_chain: nodes.btc.chain_id(),
                give_asset: nodes.btc_asset(),
                give: Amount::Sats(Sats(give)),
                want_chain: nodes.eth_params().chain,
                want_asset: Asset::Eth,
                want: Amount::Wei(Wei(want)),
                give_rail: swap_core::RailKind::OnChain,
                want_rail: swap_core::RailKind::OnChain,
                hashlock: None,
                taker_x: None,
            },
        )
    };
    assert!(reason(&conn.request(&q(SATS, u128::MAX)).await.unwrap()).contains("more than"));
    assert!(reason(&conn.request(&q(u64::MAX, 1)).await.unwrap()).contains("limits"));
    assert!(reason(&conn.request(&q(1, 1)).await.unwrap()).contains("limits"));
    // A proposal for a swap it never got a quote for.
    let (_, honest_terms) = {
        let (r, s) = taker.engine.driver.store().load(&honest).await.unwrap();
        (s, r.terms)
    };
    let mut stolen = honest_terms.clone();
    stolen.id = SwapId::random().unwrap();
    let env = Envelope::new(
        stolen.id,
        Message::Proposal {
            terms: Box::new(stolen),
        },
    );
    assert!(reason(&conn.request(&env).await.unwrap()).contains("no quote"));
    // A quote obtained honestly, then a proposal that breaks rule 2 (equal expiries).
    let req = q(SATS, 250_000_000_000_000_000);
    let id = req.swap_id;
    let (maker_x, maker_y) = match conn.request(&req).await.unwrap().body {
        Message::Quote {
            maker_x, maker_y, ..
        } => (maker_x, maker_y),
        other => panic!("{other:?}"),
    };
    let mut bad = honest_terms.clone();
    bad.id = id;
    bad.x.recipient = maker_x;
    bad.y.sender = maker_y;
    // Half the agreed window: too short for the responder to react (rule 2). Relative to the
    // tip, so it holds on a chain that starts at any height.
    let tip = nodes.btc.rpc().get_block_count().await.unwrap();
    bad.x.expiry = match bad.x.expiry {
        Expiry::Height(h) => Expiry::Height(Height(tip + h.0.saturating_sub(tip) / 2)),
        e => e,
    };
    let env = Envelope::new(
        id,
        Message::Proposal {
            terms: Box::new(bad),
        },
    );
    let why = reason(&conn.request(&env).await.unwrap());
    assert!(why.contains("rule"), "{why}");
    // A valid proposal that reuses the running swap's hashlock: one ETH lock could then back
    // two of the maker's locks. Refused.
    let req = q(SATS, 250_000_000_000_000_000);
    let id2 = req.swap_id;
    let (maker_x, maker_y) = match conn.request(&req).await.unwrap().body {
        Message::Quote {
            maker_x, maker_y, ..
        } => (maker_x, maker_y),
        other => panic!("{other:?}"),
    };
    let mut twin = honest_terms.clone();
    twin.id = id2;
    twin.x.recipient = maker_x;
    twin.y.sender = maker_y;
    let env = Envelope::new(
        id2,
        Message::Proposal {
            terms: Box::new(twin),
        },
    );
    let why = reason(&conn.request(&env).await.unwrap());
    assert!(why.contains("hashlock already used"), "{why}");
    // The channel still works, and the maker is still answering after all that.
    assert!(reason(&conn.request(&q(1, 1)).await.unwrap()).contains("limits"));

    // 4. Lock-out attempts (issue 9, item 3): one key asks for many quotes; throwaway keys
    //    from another address do the same; idle connections from that address pile up. The
    //    maker bounds each, and still serves a new honest taker.
    let mut refused = 0;
    for _ in 0..10 {
        match conn.request(&q(SATS, 1)).await.unwrap().body {
            Message::Quote { .. } => {}
            Message::Reject { reason } => {
                assert!(reason.contains("too many open quotes"), "{reason}");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 6, "4 open quotes per key");
    let mut idle = Vec::new();
    for _ in 0..40 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        idle.push(socket.connect(maker_addr.parse().unwrap()).await.unwrap());
    }
    for _ in 0..10 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let stream = socket.connect(maker_addr.parse().unwrap()).await.unwrap();
        let mut c = Connection::initiate(stream, &Identity::generate().unwrap(), Some(offer.maker))
            .await
            .unwrap();
        for _ in 0..4 {
            let _ = c.request(&q(SATS, 1)).await.unwrap();
        }
    }
    let second = tokio::time::timeout(
        Duration::from_secs(60),
        taker.engine.take(&offer, SATS as u128),
    )
    .await
    .unwrap()
    .unwrap();
    drop(idle);

    // The honest swaps complete for both.
    let both = async {
        let a = taker.engine.wait(&second).await.unwrap();
        let b = maker.engine.wait(&second).await.unwrap();
        (a, b)
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(90), both)
        .await
        .unwrap();
    assert_eq!((a, b), (Outcome::Swapped, Outcome::Swapped));
    let both = async {
        let a = taker.engine.wait(&honest).await.unwrap();
        let b = maker.engine.wait(&honest).await.unwrap();
        (a, b)
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(90), both)
        .await
        .unwrap();
    assert_eq!((a, b), (Outcome::Swapped, Outcome::Swapped));
    // Nothing hostile was stored.
    let mut stored = maker.engine.driver.store().list().await.unwrap();
    stored.sort();
    let mut expected = vec![honest, second];
    expected.sort();
    assert_eq!(stored, expected);
    miner.abort();
    server.abort();
}
