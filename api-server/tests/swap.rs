//! One real swap created through the API on regtest nodes: the server's engine (on
//! PostgreSQL) takes a maker's offer (the maker an engine of its own on SQLite, over the
//! encrypted transport), the swap runs to `swapped`, and its state changes arrive on the event
//! stream. Idempotency on the way: the same key and body answer the same swap, another body
//! is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swap_core::*;
use swap_engine::Engine;
use swap_net::OfferLeg;
use xswap_api::ServerConfig;
use xswap_cli::regtest::{party, Nodes};

use crate::harness::{self, read_events};

const GIVE: u64 = 1_000_000; // coin base units the server gives
const WEI_PER_SAT: u128 = 250_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swap_created_through_the_api_runs_to_swapped() {
    let nodes = Nodes::start()
        .await
        .expect("regtest nodes (litecoind or bitcoind, anvil)");
    let tmp = tempfile::tempdir().unwrap();
    let fast = DriverConfig {
        poll_interval: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
    };

    // The maker: sells ether for coins, on the transport.
    let maker = party(&nodes, tmp.path(), "maker", 2, fast).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let offer = maker.engine.offer(
        addr,
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
            max: Amount::Sats(Sats(10 * GIVE)),
            min: Amount::Sats(Sats(10_000)),
        },
        (WEI_PER_SAT, 1),
        Timestamp(u64::MAX / 2),
    );
    let serving = tokio::spawn(maker.engine.clone().serve(listener, vec![offer.clone()]));

    // The server: an engine on PostgreSQL (store and outbox), node wallet "server", anvil
    // account 1.
    let (cluster, url, store) = harness::database("swap").await;
    let (btc_cfg, eth_cfg) = nodes
        .adapter_configs("server", Duration::from_millis(50))
        .await
        .unwrap();
    let btc = Arc::new(
        btc_adapter::BtcChain::new(btc_cfg, &[7u8; 64])
            .unwrap()
            .with_outbox(store.clone()),
    );
    let signer = nodes.eth.signer(1);
    let server_eth = signer.address();
    let eth = Arc::new(
        eth_adapter::EthChain::new(eth_cfg, signer)
            .unwrap()
            .with_outbox(store.clone()),
    );
    // The engine's store calls are timed into the server's metrics, as `xswap-server` does.
    let metrics = Arc::new(xswap_api::Metrics::default());
    let engine = Engine::new(
        "server",
        Arc::new(xswap_api::TimedStore::new(store.clone(), metrics.clone())),
        [btc as Arc<dyn Rail>, eth as Arc<dyn Rail>],
        swap_net::Identity::generate().unwrap(),
        fast,
    );
    let api = harness::serve_with(
        cluster,
        url,
        store,
        engine,
        ServerConfig {
            default_offer: Some(offer.encode()),
            ..Default::default()
        },
        metrics,
    )
    .await;

    // Coins for the server's wallet.
    let to = nodes
        .btc
        .rpc()
        .with_wallet("server")
        .unwrap()
        .get_new_address("bech32")
        .await
        .unwrap();
    nodes.btc.send(&to, 3 * GIVE).await;
    nodes.btc.mine(1).await;
    let miner = nodes.spawn_miner(Duration::from_millis(700)).unwrap();
    let eth_before = nodes.eth_balance(server_eth).await.unwrap();

    // Ready: the database and both nodes answer.
    let a = api
        .call(
            "GET",
            "/ready",
            api.client.get(format!("{}/ready", api.base)),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["nodes"].as_array().unwrap().len(), 2);

    // The quote.
    let encoded = offer.encode();
    let a = api
        .call(
            "GET",
            "/v1/quote",
            api.get("/v1/quote")
                .query(&[("offer", encoded.as_str()), ("give", &GIVE.to_string())]),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let want = (GIVE as u128 * WEI_PER_SAT).to_string();
    assert_eq!(a.body["get"]["amount"], want);
    assert_eq!(a.body["get"]["asset"], "eth");

    // The server's configured offer prices the same.
    let a = api
        .call(
            "GET",
            "/v1/quote",
            api.get("/v1/quote").query(&[("give", &GIVE.to_string())]),
        )
        .await;
    assert_eq!((a.status, &a.body["get"]["amount"]), (200, &json!(want)));

    // Listen before creating.
    let mut stream = api.get("/v1/events").send().await.unwrap();
    assert_eq!(stream.status(), 200);

    // Create, then the same request again: the same swap. Another body: 409.
    let body = json!({ "offer": encoded, "give": GIVE.to_string() });
    let create = |body: &Value| {
        api.post("/v1/swaps")
            .header("idempotency-key", "order-42")
            .json(body)
    };
    let a = api.call("POST", "/v1/swaps", create(&body)).await;
    assert_eq!(a.status, 201, "{a:?}");
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(a.body["role"], "initiator");
    assert_eq!(a.body["give"]["amount"], GIVE.to_string());
    assert_eq!(a.body["get"]["amount"], want);
    let again = api.call("POST", "/v1/swaps", create(&body)).await;
    assert_eq!(
        (again.status, again.body["id"].as_str()),
        (201, Some(id.as_str()))
    );
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = json!({ "offer": encoded, "give": (GIVE + 1).to_string() });
    let a = api.call("POST", "/v1/swaps", create(&other)).await;
    assert_eq!((a.status, a.code()), (409, "idempotency_key_reused"));
    let listed = api.call("GET", "/v1/swaps", api.get("/v1/swaps")).await;
    assert_eq!(
        listed.body["swaps"].as_array().unwrap().len(),
        1,
        "one swap, not two"
    );

    // It runs to `swapped`; its events arrive on the stream, in order, ending with it.
    let t0 = Instant::now();
    let events = read_events(&mut stream, Duration::from_secs(300), |e| {
        e.iter()
            .any(|(_, d)| d["swap_id"] == id && d["final"] == true)
    })
    .await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|(_, d)| d["swap_id"] == id)
        .map(|(_, d)| d)
        .collect();
    let states: Vec<&str> = mine.iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert_eq!(states.first(), Some(&"negotiated"), "{states:?}");
    assert_eq!(states.last(), Some(&"swapped"), "{states:?}");
    assert!(states.contains(&"locking"), "{states:?}");
    let seqs: Vec<u64> = mine.iter().map(|d| d["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every state, once"
    );
    eprintln!(
        "swap {id}: {} states in {:?}: {states:?}",
        states.len(),
        t0.elapsed()
    );

    let a = api
        .call("GET", "/v1/swaps/{id}", api.get(&format!("/v1/swaps/{id}")))
        .await;
    assert_eq!((a.status, &a.body["state"]), (200, &json!("swapped")));
    let a = api
        .call(
            "POST",
            "/v1/swaps/{id}/cancel",
            api.post(&format!("/v1/swaps/{id}/cancel")),
        )
        .await;
    assert_eq!((a.status, a.code()), (409, "not_cancellable"));
    // A second server on the same database: the same swap, the same events, and the same
    // idempotency key answers the same swap there too (a retry may reach any server).
    let second = harness::serve(
        pg_store::testkit::TestCluster::shared(),
        api.url.clone(),
        api.store.clone(),
        api.engine.clone(),
        ServerConfig::default(),
    )
    .await;
    let on_second = |req: reqwest::RequestBuilder| req.bearer_auth(&api.key);
    let a = second
        .call(
            "GET",
            "/v1/swaps/{id}",
            on_second(second.client.get(format!("{}/v1/swaps/{id}", second.base))),
        )
        .await;
    assert_eq!((a.status, &a.body["state"]), (200, &json!("swapped")));
    let a = second
        .call(
            "POST",
            "/v1/swaps",
            on_second(second.client.post(format!("{}/v1/swaps", second.base)))
                .header("idempotency-key", "order-42")
                .json(&body),
        )
        .await;
    assert_eq!((a.status, a.body["id"].as_str()), (201, Some(id.as_str())));
    let mut replay = on_second(second.client.get(format!("{}/v1/events", second.base)))
        .query(&[("after", "0"), ("swap_id", id.as_str())])
        .send()
        .await
        .unwrap();
    let again = read_events(&mut replay, Duration::from_secs(20), |e| {
        e.len() >= mine.len()
    })
    .await;
    let states_again: Vec<&str> = again
        .iter()
        .map(|(_, d)| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states_again, states);

    // Metrics: the engine's store latency, swaps by state, the requests.
    let text = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "xswap_api_store_seconds_count{op=\"swap_store_append_state\"}",
        "xswap_api_store_seconds_count{op=\"swap_store_create\"} 1",
        "xswap_swaps{state=\"swapped\"} 1",
        "xswap_api_requests_total{method=\"POST\",route=\"/v1/swaps\",status=\"201\"} 2",
    ] {
        assert!(text.contains(line), "metrics lack {line}:\n{text}");
    }

    // The ether arrived (0.25 ether, less the claim's gas).
    let eth_after = nodes.eth_balance(server_eth).await.unwrap();
    assert!(eth_after > eth_before, "{eth_before} -> {eth_after}");

    miner.abort();
    serving.abort();
}
