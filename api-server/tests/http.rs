//! The API over HTTP without nodes: auth, limits, typed errors, unknown ids, pagination and
//! filters, cancel, the event stream with resumption, rate limits shared by two servers,
//! metrics, and the document itself.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use swap_core::store::conformance::sample_record;
use swap_core::store::{SwapState, SwapStore};
use swap_core::*;
use swap_net::{Offer, OfferLeg};
use xswap_api::ServerConfig;

use crate::harness::{self, read_events, without_nodes};

fn offer(expires: u64) -> Offer {
    let btc = ChainId::new(ChainFamily::Bitcoin, Network::Regtest);
    let eth = ChainId::new(ChainFamily::Ethereum, Network::Regtest);
    Offer {
        v: 1,
        addr: "127.0.0.1:1".into(),
        maker: swap_net::Identity::generate().unwrap().public(),
        sell: OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: eth,
            asset: Asset::Eth,
            max: Amount::Wei(Wei(10u128.pow(19))),
            min: Amount::Wei(Wei(10u128.pow(15))),
        },
        buy: OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: btc,
            asset: Asset::Btc,
            max: Amount::Sats(Sats(10_000_000)),
            min: Amount::Sats(Sats(10_000)),
        },
        rate_num: 250_000_000_000,
        rate_den: 1,
        expires: Timestamp(expires),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_limits_typed_errors_and_unknown_ids() {
    let api = without_nodes("auth", ServerConfig::default()).await;
    let url = |p: &str| format!("{}{p}", api.base);

    // No key, a wrong key, another scheme, a revoked key: 401 unauthorized.
    let a = api
        .call("GET", "/v1/swaps", api.client.get(url("/v1/swaps")))
        .await;
    assert_eq!((a.status, a.code()), (401, "unauthorized"));
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let wrong = xswap_api::db::new_key().unwrap();
    let a = api
        .call(
            "GET",
            "/v1/swaps",
            api.client.get(url("/v1/swaps")).bearer_auth(&wrong),
        )
        .await;
    assert_eq!((a.status, a.code()), (401, "unauthorized"));
    let a = api
        .call(
            "GET",
            "/v1/swaps",
            api.client
                .get(url("/v1/swaps"))
                .header("authorization", format!("Basic {}", api.key)),
        )
        .await;
    assert_eq!(a.status, 401);
    let (id, revoked) = api.db.create_key("to revoke").await.unwrap();
    let a = api
        .call(
            "GET",
            "/v1/swaps",
            api.client.get(url("/v1/swaps")).bearer_auth(&revoked),
        )
        .await;
    assert_eq!(a.status, 200, "a new key works: {a:?}");
    assert!(api.db.revoke_key(id).await.unwrap());
    let a = api
        .call(
            "GET",
            "/v1/swaps",
            api.client.get(url("/v1/swaps")).bearer_auth(&revoked),
        )
        .await;
    assert_eq!((a.status, a.code()), (401, "unauthorized"));
    // The key never shows in an answer.
    assert!(!a.body.to_string().contains(&revoked[4..]));

    // Bodies over 16 KiB: 413, typed.
    let big = json!({ "offer": "x".repeat(17 * 1024), "give": "1" });
    let a = api
        .call(
            "POST",
            "/v1/swaps",
            api.post("/v1/swaps")
                .header("idempotency-key", "big")
                .json(&big),
        )
        .await;
    assert_eq!((a.status, a.code()), (413, "payload_too_large"));

    // Malformed body, missing or bad idempotency key, bad offer: 400 with their codes.
    let a = api
        .call(
            "POST",
            "/v1/swaps",
            api.post("/v1/swaps")
                .header("idempotency-key", "k")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "invalid_request"));
    let body = json!({ "offer": "xswap1nope", "give": "100000" });
    let a = api
        .call("POST", "/v1/swaps", api.post("/v1/swaps").json(&body))
        .await;
    assert_eq!((a.status, a.code()), (400, "missing_idempotency_key"));
    let a = api
        .call(
            "POST",
            "/v1/swaps",
            api.post("/v1/swaps")
                .header("idempotency-key", "a b")
                .json(&body),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "invalid_idempotency_key"));
    let a = api
        .call(
            "POST",
            "/v1/swaps",
            api.post("/v1/swaps")
                .header("idempotency-key", "k1")
                .json(&body),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "invalid_offer"));

    // Quotes: a valid offer prices; out of range, expired, bad amount are 400; chains this
    // server has no node for are 422 (for a quote and a creation alike).
    let far = Timestamp::now().0 + 3600;
    let good = offer(far).encode();
    let q = |offer: &str, give: &str| {
        api.get("/v1/quote")
            .query(&[("offer", offer), ("give", give)])
    };
    let a = api.call("GET", "/v1/quote", q(&good, "1000000")).await;
    assert_eq!((a.status, a.code()), (422, "offer_not_takeable"));
    let a = api.call("GET", "/v1/quote", q(&good, "5")).await;
    assert_eq!((a.status, a.code()), (400, "amount_out_of_range"));
    let a = api.call("GET", "/v1/quote", q(&good, "12abc")).await;
    assert_eq!((a.status, a.code()), (400, "invalid_request"));
    let a = api
        .call(
            "GET",
            "/v1/quote",
            q(&offer(Timestamp::now().0 - 10).encode(), "1000000"),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "offer_expired"));
    let a = api
        .call(
            "GET",
            "/v1/quote",
            api.get("/v1/quote").query(&[("give", "1")]),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (400, "invalid_request"),
        "no offer, none configured"
    );
    let a = api
        .call(
            "POST",
            "/v1/swaps",
            api.post("/v1/swaps")
                .header("idempotency-key", "k3")
                .json(&json!({ "give": "1000000" })),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "invalid_request"));
    let a = api
        .call(
            "POST",
            "/v1/swaps",
            api.post("/v1/swaps")
                .header("idempotency-key", "k2")
                .json(&json!({ "offer": good, "give": "1000000" })),
        )
        .await;
    assert_eq!((a.status, a.code()), (422, "offer_not_takeable"));

    // Unknown and malformed swap ids: 404 unknown_swap.
    let unknown = SwapId::random().unwrap().to_string();
    for path in [format!("/v1/swaps/{unknown}"), "/v1/swaps/not-an-id".into()] {
        let a = api.call("GET", "/v1/swaps/{id}", api.get(&path)).await;
        assert_eq!((a.status, a.code()), (404, "unknown_swap"), "{path}");
    }
    let a = api
        .call(
            "POST",
            "/v1/swaps/{id}/cancel",
            api.post(&format!("/v1/swaps/{unknown}/cancel")),
        )
        .await;
    assert_eq!((a.status, a.code()), (404, "unknown_swap"));

    // The router's own errors are typed too.
    let a = api.call("GET", "/nowhere", api.get("/nowhere")).await;
    assert_eq!((a.status, a.code()), (404, "not_found"));
    let a = api
        .call(
            "DELETE",
            "/v1/swaps",
            api.client.delete(url("/v1/swaps")).bearer_auth(&api.key),
        )
        .await;
    assert_eq!((a.status, a.code()), (405, "method_not_allowed"));

    // Health and readiness (no nodes to ask here).
    let a = api
        .call("GET", "/health", api.client.get(url("/health")))
        .await;
    assert_eq!((a.status, &a.body["status"]), (200, &json!("ok")));
    let a = api
        .call("GET", "/ready", api.client.get(url("/ready")))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(api.errors_checked.load(Ordering::SeqCst) >= 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_learned_preimage_is_read_with_the_key_and_never_shown() {
    let api = without_nodes("sealed", ServerConfig::default()).await;
    let r = sample_record(9, Role::Responder);
    let learned = Preimage::random().unwrap();
    let state = SwapState::Responder(responder::State::SecretLearned {
        preimage: learned.clone(),
    });
    api.store
        .create(&r, &SwapState::initial(Role::Responder))
        .await
        .unwrap();
    api.store.append_state(&r.id(), 1, &state).await.unwrap();
    // In the database the preimage is sealed.
    let (c, conn) = tokio_postgres::connect(&api.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = c
        .query(
            "SELECT state_json FROM swap_states WHERE swap_id = $1",
            &[&&r.id().0[..]],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(!row.get::<_, &str>(0).contains(&learned.expose_hex()));
    }
    // The API reads the swap and its events (its state filter in SQL too), showing no secret.
    let path = format!("/v1/swaps/{}", r.id());
    let a = api.call("GET", "/v1/swaps/{id}", api.get(&path)).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["state"], "secret_learned");
    assert!(!a.body.to_string().contains(&learned.expose_hex()));
    let a = api
        .call(
            "GET",
            "/v1/swaps",
            api.get("/v1/swaps").query(&[("state", "secret_learned")]),
        )
        .await;
    assert_eq!(a.body["swaps"].as_array().unwrap().len(), 1, "{a:?}");
    let events = api.db.events_after(0, Some(&r.id()), 10).await.unwrap();
    assert_eq!(events.last().unwrap().state, state);
    // Without the store's key the API's tables cannot read that state.
    let keyless = xswap_api::ApiDb::connect(&api.url, 1, Default::default())
        .await
        .unwrap();
    assert!(keyless.swap(&r.id()).await.is_err());
}

async fn store_swaps(api: &harness::Api, n: u8) -> Vec<SwapId> {
    let mut ids = Vec::new();
    for k in 1..=n {
        let r = sample_record(k, Role::Initiator);
        api.store
            .create(&r, &SwapState::initial(Role::Initiator))
            .await
            .unwrap();
        ids.push(r.id());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_filters_cancel_events_and_metrics() {
    let api = without_nodes("pages", ServerConfig::default()).await;
    let ids = store_swaps(&api, 7).await;
    // Swap 3 is locking: too late to cancel.
    api.store
        .append_state(&ids[2], 1, &SwapState::Initiator(initiator::State::Locking))
        .await
        .unwrap();

    // Pages of 3, newest first, each swap once, no cursor after the last.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = api.get("/v1/swaps").query(&[("limit", "3")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let a = api.call("GET", "/v1/swaps", req).await;
        assert_eq!(a.status, 200, "{a:?}");
        pages += 1;
        for s in a.body["swaps"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_owned());
        }
        match a.body.get("next_cursor") {
            Some(Value::String(c)) => cursor = Some(c.clone()),
            None => break,
            other => panic!("next_cursor {other:?}"),
        }
        assert!(pages < 5, "pagination does not end");
    }
    let expected: Vec<String> = ids.iter().rev().map(|i| i.to_string()).collect();
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every swap once, newest first");

    // Filters.
    let list = |state: &str| api.get("/v1/swaps").query(&[("state", state)]);
    let a = api.call("GET", "/v1/swaps", list("locking")).await;
    let only: Vec<&str> = a.body["swaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(only, vec![ids[2].to_string()]);
    assert_eq!(a.body["swaps"][0]["seq"], 2);
    assert_eq!(a.body["swaps"][0]["give"]["asset"], "btc");
    assert_eq!(a.body["swaps"][0]["give"]["amount"], "50003");
    let a = api.call("GET", "/v1/swaps", list("negotiated")).await;
    assert_eq!(a.body["swaps"].as_array().unwrap().len(), 6);
    for (q, v) in [
        ("state", "bogus"),
        ("limit", "0"),
        ("limit", "201"),
        ("cursor", "zzz"),
        ("limit", "x"),
    ] {
        let a = api
            .call("GET", "/v1/swaps", api.get("/v1/swaps").query(&[(q, v)]))
            .await;
        assert_eq!((a.status, a.code()), (400, "invalid_request"), "{q}={v}");
    }

    // The event stream from the start: 7 creations and one lock, in commit order.
    let mut stream = api
        .get("/v1/events")
        .query(&[("after", "0")])
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let first = read_events(&mut stream, Duration::from_secs(20), |e| e.len() >= 8).await;
    assert_eq!(first.len(), 8);
    assert!(first.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    assert_eq!(first[7].1["swap_id"], ids[2].to_string());
    assert_eq!(first[7].1["state"], "locking");

    // Cancel: allowed before our lock (twice answers the same), refused once locking.
    let cancel = |id: &SwapId| api.post(&format!("/v1/swaps/{id}/cancel"));
    let a = api
        .call("POST", "/v1/swaps/{id}/cancel", cancel(&ids[4]))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (&a.body["state"], &a.body["final"]),
        (&json!("cancelled"), &json!(true))
    );
    let a = api
        .call("POST", "/v1/swaps/{id}/cancel", cancel(&ids[4]))
        .await;
    assert_eq!((a.status, &a.body["state"]), (200, &json!("cancelled")));
    let a = api
        .call("POST", "/v1/swaps/{id}/cancel", cancel(&ids[2]))
        .await;
    assert_eq!((a.status, a.code()), (409, "not_cancellable"));
    let (_, state) = api.store.load(&ids[2]).await.unwrap();
    assert_eq!(state, SwapState::Initiator(initiator::State::Locking));
    let a = api.call("GET", "/v1/swaps", list("cancelled")).await;
    assert_eq!(a.body["swaps"][0]["id"], ids[4].to_string());
    assert_eq!(a.body["swaps"].as_array().unwrap().len(), 1);

    // The open stream sees the cancel.
    let next = read_events(&mut stream, Duration::from_secs(20), |e| !e.is_empty()).await;
    assert_eq!(next[0].1["swap_id"], ids[4].to_string());
    assert_eq!(next[0].1["state"], "cancelled");
    assert_eq!(next[0].1["final"], true);
    assert!(next[0].0 > first[7].0);
    drop(stream);

    // Resuming after the 4th event: exactly the events after it, none missed.
    let mut resumed = api
        .get("/v1/events")
        .header("last-event-id", first[3].0.to_string())
        .send()
        .await
        .unwrap();
    let again = read_events(&mut resumed, Duration::from_secs(20), |e| e.len() >= 5).await;
    let want: Vec<i64> = first[4..].iter().chain(&next[..1]).map(|e| e.0).collect();
    let got: Vec<i64> = again.iter().map(|e| e.0).collect();
    assert_eq!(got, want);
    // One swap's events only.
    let mut one = api
        .get("/v1/events")
        .query(&[("after", "0"), ("swap_id", &ids[2].to_string())])
        .send()
        .await
        .unwrap();
    let only = read_events(&mut one, Duration::from_secs(20), |e| e.len() >= 2).await;
    assert!(only.iter().all(|e| e.1["swap_id"] == ids[2].to_string()));
    assert_eq!(
        only.iter()
            .map(|e| e.1["state"].clone())
            .collect::<Vec<_>>(),
        vec![json!("negotiated"), json!("locking")]
    );
    let a = api
        .call(
            "GET",
            "/v1/events",
            api.get("/v1/events").header("last-event-id", "yesterday"),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "invalid_request"));

    // Metrics: requests by route and status, swaps by state, store latency.
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
        "xswap_swaps{state=\"negotiated\"} 5",
        "xswap_swaps{state=\"locking\"} 1",
        "xswap_swaps{state=\"cancelled\"} 1",
        "xswap_api_requests_total{method=\"GET\",route=\"/v1/swaps\",status=\"200\"}",
        "xswap_api_requests_total{method=\"POST\",route=\"/v1/swaps/{id}/cancel\",status=\"409\"} 1",
        "xswap_api_store_seconds_count{op=\"list_swaps\"}",
        "xswap_api_database_up 1",
    ] {
        assert!(text.contains(line), "metrics lack {line}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_per_key_shared_by_servers() {
    let config = ServerConfig {
        rate_per_sec: 0.05,
        burst: 3.0,
        ..Default::default()
    };
    let api = without_nodes("rate", config.clone()).await;
    for _ in 0..3 {
        let a = api.call("GET", "/v1/swaps", api.get("/v1/swaps")).await;
        assert_eq!(a.status, 200);
    }
    let a = api.call("GET", "/v1/swaps", api.get("/v1/swaps")).await;
    assert_eq!((a.status, a.code()), (429, "rate_limited"));
    let wait: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "retry after {wait}");

    // A second server on the same database shares the bucket.
    let second = harness::serve(
        pg_store::testkit::TestCluster::shared(),
        api.url.clone(),
        api.store.clone(),
        api.engine.clone(),
        config,
    )
    .await;
    let a = second
        .call(
            "GET",
            "/v1/swaps",
            second
                .client
                .get(format!("{}/v1/swaps", second.base))
                .bearer_auth(&api.key),
        )
        .await;
    assert_eq!((a.status, a.code()), (429, "rate_limited"));
    // Another key has its own bucket.
    let (_, other) = api.db.create_key("other").await.unwrap();
    let a = api
        .call(
            "GET",
            "/v1/swaps",
            api.client
                .get(format!("{}/v1/swaps", api.base))
                .bearer_auth(&other),
        )
        .await;
    assert_eq!(a.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_describes_every_route() {
    let api = without_nodes("doc", ServerConfig::default()).await;
    let doc = &api.doc;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/quote", "get"),
        ("/v1/swaps", "post"),
        ("/v1/swaps", "get"),
        ("/v1/swaps/{id}", "get"),
        ("/v1/swaps/{id}/cancel", "post"),
        ("/v1/events", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} missing");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.contains_key("default"),
            "{method} {path}: no default error"
        );
        if path.starts_with("/v1/") {
            assert!(responses.contains_key("401") && responses.contains_key("429"));
            assert_eq!(op["security"][0]["bearer"], json!([]), "{method} {path}");
        }
    }
    let create = &paths["/v1/swaps"]["post"];
    assert!(create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header" && p["required"] == true));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The same document as the binary prints.
    let printed: Value = serde_json::from_str(&xswap_api::openapi_text()).unwrap();
    assert_eq!(&printed, doc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_in_the_database() {
    use xswap_api::db::IdemStart;
    let api = without_nodes("idem", ServerConfig::default()).await;
    let (key_id, _) = api.db.create_key("idem").await.unwrap();
    let body = [1u8; 32];
    // Eight servers claiming one key at once: exactly one creates.
    let claims =
        futures::future::join_all((0..8).map(|_| api.db.idem_begin(key_id, "order-1", &body)))
            .await;
    let new = claims
        .iter()
        .filter(|c| matches!(c, Ok(IdemStart::New)))
        .count();
    let waiting = claims
        .iter()
        .filter(|c| matches!(c, Ok(IdemStart::InProgress)))
        .count();
    assert_eq!((new, waiting), (1, 7), "{claims:?}");
    assert_eq!(
        api.db
            .idem_begin(key_id, "order-1", &[2u8; 32])
            .await
            .unwrap(),
        IdemStart::OtherBody
    );
    let id = SwapId::random().unwrap();
    api.db.idem_finish(key_id, "order-1", &id).await.unwrap();
    // Abandoning a finished key changes nothing: it keeps answering its swap.
    api.db.idem_abandon(key_id, "order-1").await.unwrap();
    assert_eq!(
        api.db.idem_begin(key_id, "order-1", &body).await.unwrap(),
        IdemStart::Done(id)
    );
    // A creation that made nothing frees its key for a retry.
    assert_eq!(
        api.db.idem_begin(key_id, "order-2", &body).await.unwrap(),
        IdemStart::New
    );
    api.db.idem_abandon(key_id, "order-2").await.unwrap();
    assert_eq!(
        api.db
            .idem_begin(key_id, "order-2", &[3u8; 32])
            .await
            .unwrap(),
        IdemStart::New
    );
    // Keys are per API key.
    let (other, _) = api.db.create_key("other").await.unwrap();
    assert_eq!(
        api.db
            .idem_begin(other, "order-1", &[9u8; 32])
            .await
            .unwrap(),
        IdemStart::New
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_the_limit_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = without_nodes("chunked", ServerConfig::default()).await;
    let addr = api.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/swaps HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Idempotency-Key: chunky\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        api.key
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // No Content-Length: the handler stops reading at the limit.
    let chunk = vec![b' '; 4096];
    for _ in 0..6 {
        let _ = s
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = s.write_all(&chunk).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    harness::check_error(&api.doc, &body);
    assert_eq!(body["code"], "payload_too_large");
}
