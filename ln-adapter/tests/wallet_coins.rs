//! Channel funding from a wallet that holds legacy coins beside segwit ones: LDK needs a
//! funding transaction whose txid no signature can change, so only segwit coins may fund it.
//! And the node's own invoices (`xswap ln invoice`) that lapse unpaid.

use bitcoin::Txid;
use serde_json::{json, Value};

use crate::common::*;

/// The wallet's smallest coin that covers the channel is a legacy one, which the node's own
/// coin selection picks ("lowest larger"): the channel is funded from the segwit coin instead,
/// and the legacy coin is still the wallet's, unspent and not locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_is_funded_from_segwit_coins_beside_legacy_ones() {
    init_tracing();
    let node = devnet::regtest::RegtestNode::start().await;
    let c_wallet = wallet(&node, "c").await;
    let _d_wallet = wallet(&node, "d").await;
    let legacy = c_wallet.get_new_address("legacy").await.unwrap();
    let segwit = c_wallet.get_new_address("bech32").await.unwrap();
    let legacy_txid = node.send(&legacy, 2000_0000).await;
    let segwit_txid = node.send(&segwit, 5_0000_0000).await;
    // Deep enough for the wallet's first coin-selection pass (coins from another wallet: 6).
    node.mine(6).await;
    let dirs = tempfile::tempdir().unwrap();
    let c = start_ln(&node, "c", 3, &dirs.path().join("c")).await;
    let d = start_ln(&node, "d", 4, &dirs.path().join("d")).await;
    c.connect(d.node_id(), d.listen_addr()).await.unwrap();

    let (_, funding_txid) = open_between(&node, &c, &d, 1000_0000).await;

    // The wallet's own view of its transaction, decoded (no transaction index on the node).
    let funding: Value = c_wallet
        .wallet_call(
            "gettransaction",
            vec![json!(funding_txid), json!(false), json!(true)],
        )
        .await
        .unwrap();
    let funding = &funding["decoded"];
    let spent: Vec<Txid> = funding["vin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["txid"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        spent.contains(&segwit_txid),
        "the funding spends the segwit coin: {spent:?}"
    );
    assert!(
        !spent.contains(&legacy_txid),
        "the funding spends the legacy coin: {spent:?}"
    );
    assert!(funding["vin"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i.get("txinwitness").is_some()));
    // The legacy coin is still there, and not left locked.
    let unspent: Vec<Value> = c_wallet
        .wallet_call("listunspent", vec![json!(1)])
        .await
        .unwrap();
    assert!(unspent
        .iter()
        .any(|u| u["txid"].as_str() == Some(&legacy_txid.to_string())));
    let locked: Vec<Value> = c_wallet
        .wallet_call("listlockunspent", vec![])
        .await
        .unwrap();
    assert!(
        locked
            .iter()
            .all(|l| l["txid"].as_str() != Some(&legacy_txid.to_string())),
        "the legacy coin was left locked: {locked:?}"
    );
    c.stop().await.unwrap();
    d.stop().await.unwrap();
}

/// An invoice of our own that nobody paid is settled once no payment to it can arrive: LDK
/// accepts one until the invoice's expiry plus two hours, counted from the highest block time
/// it saw (which may run two hours ahead of our clock). Until both our clock and the best
/// block's time passed that, it stays open; an invoice kept without its expiry (moved in from
/// an earlier build's file) never lapses by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_invoice_lapses_only_once_neither_clock_lets_a_payment_in() {
    init_tracing();
    let node = devnet::regtest::RegtestNode::start().await;
    let _c_wallet = wallet(&node, "c").await;
    let dirs = tempfile::tempdir().unwrap();
    let c = start_ln(&node, "c", 3, &dirs.path().join("c")).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (timed, untimed) = (
        swap_core::Preimage::random().unwrap(),
        swap_core::Preimage::random().unwrap(),
    );
    c.keep_own_invoice(&timed, 60).unwrap();
    c.keep_own_preimage(&untimed).unwrap();
    let (h, u) = (timed.hashlock(), untimed.hashlock());
    let hours = |n: u64| now + n * 3600;
    assert!(!c.own_invoice_lapsed(&h).await.unwrap());
    // Our clock past expiry + 4 hours, the chain's not: a payment may still arrive.
    assert!(!c.own_invoice_lapsed_at(&h, hours(5)).await.unwrap());
    // A block 5 hours ahead (the node's clock moved): both clocks past it.
    let _: Value = node
        .rpc()
        .call("setmocktime", vec![json!(hours(5))])
        .await
        .unwrap();
    node.mine(1).await;
    c.sync().await.unwrap();
    assert!(c.own_invoice_lapsed_at(&h, hours(5)).await.unwrap());
    // ... but not our clock: still open.
    assert!(!c.own_invoice_lapsed_at(&h, hours(3)).await.unwrap());
    assert!(!c.own_invoice_lapsed_at(&u, hours(5)).await.unwrap());
    // Both are kept (unsettled) until settled.
    assert_eq!(c.own_preimages().unwrap().len(), 2);
    c.settle_own(&h).unwrap();
    let left: Vec<_> = c
        .own_preimages()
        .unwrap()
        .iter()
        .map(swap_core::Preimage::hashlock)
        .collect();
    assert_eq!(left, vec![u]);
    let _: Value = node
        .rpc()
        .call("setmocktime", vec![json!(0)])
        .await
        .unwrap();
}
