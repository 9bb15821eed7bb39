//! Channel funding from a wallet that holds legacy coins beside segwit ones: LDK needs a
//! funding transaction whose txid no signature can change, so only segwit coins may fund it.

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
