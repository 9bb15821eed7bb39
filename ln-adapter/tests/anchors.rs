//! Anchor channels (`option_anchors_zero_fee_htlc_tx`, on by default on Bitcoin): at a force
//! close with a held payment the node wallet pays the fees: the commitment is bumped through
//! its anchor (CPFP with a wallet coin), the HTLC claimed with a wallet coin added, and the
//! payer, back online, learns the preimage from the chain. A node whose wallet lacks the
//! reserve for those fees refuses anchors (the channel is opened without them).
//!
//! The tests ask for anchors on any chain. On litecoind, the devnet's relay settings
//! (`-dustrelayfee=0.00003`, Bitcoin's dust policy) relay the 330-sat anchor outputs that
//! Litecoin's default policy refuses.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bitcoin::{OutPoint, Transaction, Txid};
use devnet::regtest::RegtestNode;
use ln_adapter::{LnError, LnNode};
use serde_json::{json, Value};

use crate::common::*;

const ANCHOR_SATS: u64 = 330;
const RESERVE_SATS: u64 = 25_000;

/// Anchor channels, with the reserve this test funds.
fn anchored(c: &mut ln_adapter::LnConfig) {
    c.anchors = true;
    c.anchor_reserve_sats = RESERVE_SATS;
}

async fn start_anchored(
    node: &RegtestNode,
    wallet: &str,
    seed: u8,
    dir: &std::path::Path,
) -> LnNode {
    start_ln_with(node, wallet, seed, dir, anchored)
        .await
        .unwrap()
}

/// The mempool's transactions spending an output of `parent`.
async fn mempool_spends(node: &RegtestNode, parent: Txid) -> Vec<Transaction> {
    let mut out = Vec::new();
    for id in node.rpc().get_raw_mempool().await.unwrap() {
        let tx: Transaction = node.rpc().get_raw_transaction(&id, None).await.unwrap();
        if tx.input.iter().any(|i| i.previous_output.txid == parent) {
            out.push(tx);
        }
    }
    out
}

/// Whether `wallet` owns the coin `outpoint` (its address is the wallet's, change too).
async fn wallet_owns(wallet: &btc_adapter::rpc::RpcClient, outpoint: OutPoint) -> bool {
    let tx: Result<Value, _> = wallet
        .wallet_call(
            "gettransaction",
            vec![json!(outpoint.txid.to_string()), json!(true), json!(true)],
        )
        .await;
    let Ok(tx) = tx else { return false };
    // `address` on current nodes, `addresses` on older ones (litecoind 0.21).
    let script = &tx["decoded"]["vout"][outpoint.vout as usize]["scriptPubKey"];
    let Some(address) = script["address"]
        .as_str()
        .or_else(|| script["addresses"][0].as_str())
        .map(str::to_owned)
    else {
        return false;
    };
    let info: Value = wallet
        .wallet_call("getaddressinfo", vec![json!(address)])
        .await
        .unwrap();
    info["ismine"].as_bool() == Some(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchor_channels_force_close_fees_come_from_the_wallet_which_must_hold_a_reserve() {
    let Pair {
        node,
        a,
        b,
        a_wallet: _,
        b_wallet,
        dirs,
    } = pair_with(anchored).await;

    // b's wallet holds its reserve in two coins: the commitment's bump and the HTLC claim each
    // take one while the other's change is unconfirmed.
    for _ in 0..2 {
        let addr = b_wallet.get_new_address("bech32").await.unwrap();
        node.send(&addr, 2 * RESERVE_SATS).await;
    }
    node.mine(1).await;
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    let (channel_id, _) = open_between(&node, &a, &b, 500_000).await;
    let funding = a.channels()[0].funding.unwrap();
    assert!(a.channels()[0].anchors && b.channels()[0].anchors);

    // A payment held at b.
    let amount_msat = 60_000_000;
    let preimage = pay_held(&a, &b, amount_msat).await;
    let hashlock = preimage.hashlock();

    // The payer goes offline; the payee claims and closes on chain.
    let a_id = a.node_id();
    a.stop().await.unwrap();
    drop(a);
    b.claim(&preimage).await.unwrap();
    b.force_close(&channel_id, &a_id).unwrap();

    // The commitment goes out with a child that spends one of its two anchors and a coin of
    // b's wallet: its fee brought to the feerate of the moment.
    let started = Instant::now();
    let (commitment, bump) = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no bumped commitment"
        );
        let spends = mempool_spends(&node, funding.txid).await;
        if let Some(commitment) = spends.first() {
            let children = mempool_spends(&node, commitment.compute_txid()).await;
            if let Some(bump) = children.into_iter().next() {
                break (commitment.clone(), bump);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let anchors: Vec<u32> = commitment
        .output
        .iter()
        .enumerate()
        .filter(|(_, o)| o.value.to_sat() == ANCHOR_SATS)
        .map(|(i, _)| i as u32)
        .collect();
    assert_eq!(anchors.len(), 2, "two anchor outputs: {commitment:?}");
    let commitment_txid = commitment.compute_txid();
    assert!(
        bump.input
            .iter()
            .any(|i| i.previous_output.txid == commitment_txid
                && anchors.contains(&i.previous_output.vout)),
        "the child spends an anchor"
    );
    let mut wallet_inputs = 0;
    for i in &bump.input {
        if wallet_owns(&b_wallet, i.previous_output).await {
            wallet_inputs += 1;
        }
    }
    assert!(
        wallet_inputs >= 1,
        "the bump is paid by b's wallet: {bump:?}"
    );

    // Once the commitment confirms, the HTLC is claimed with the preimage, its fee paid by a
    // wallet coin added to the pre-signed HTLC transaction.
    let htlc_vout = commitment
        .output
        .iter()
        .position(|o| o.value.to_sat() == amount_msat / 1000)
        .expect("the HTLC output") as u32;
    let started = Instant::now();
    let claim = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the HTLC was never claimed"
        );
        node.mine(1).await;
        b.sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let spends = mempool_spends(&node, commitment_txid).await;
        if let Some(claim) = spends.into_iter().find(|t| {
            t.input
                .iter()
                .any(|i| i.previous_output == OutPoint::new(commitment_txid, htlc_vout))
        }) {
            break claim;
        }
    };
    assert!(
        claim.input.len() >= 2,
        "a wallet coin pays the HTLC claim: {claim:?}"
    );
    let mut paid_by_wallet = false;
    for i in &claim.input {
        paid_by_wallet |= wallet_owns(&b_wallet, i.previous_output).await;
    }
    assert!(
        paid_by_wallet,
        "the HTLC claim's added input is b's: {claim:?}"
    );
    node.mine(1).await;
    b.sync().await.unwrap();
    let claim_txid = claim.compute_txid();
    // The claim spends a wallet coin: the wallet knows it and its confirmations.
    let confirmations: Value = b_wallet
        .wallet_call("gettransaction", vec![json!(claim_txid.to_string())])
        .await
        .unwrap();
    assert!(
        confirmations["confirmations"].as_u64().unwrap_or(0) >= 1,
        "the HTLC claim confirmed"
    );

    // The payer, back, learns the preimage from the chain.
    let a = start_anchored(&node, "a", 1, &dirs.path().join("a")).await;
    let started = Instant::now();
    loop {
        if a.preimage_for(&hashlock).unwrap() == Some(preimage.clone()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the payer never learned the preimage"
        );
        node.mine(1).await;
        a.sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A node whose wallet cannot pay a force close's fees refuses an anchor channel (a offers
    // anchors, as its channel to b shows); the opener (LDK) asks again without anchors, and
    // that channel is accepted.
    let c_wallet = wallet(&node, "c").await;
    assert_eq!(balance(&c_wallet).await, 0);
    let c = start_anchored(&node, "c", 3, &dirs.path().join("c")).await;
    a.connect(c.node_id(), c.listen_addr()).await.unwrap();
    let (plain, _) = open_between(&node, &a, &c, 300_000).await;
    let theirs = c.channels();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].channel_id, plain);
    assert!(!theirs[0].anchors, "without a reserve, no anchors");
    assert!(a
        .channels()
        .iter()
        .any(|ch| ch.channel_id == plain && !ch.anchors));

    // Nor does a node open an anchor channel that would leave its wallet without the reserve:
    // c could fund 290,000 sat, but would keep less than 25,000. It is refused before the peer
    // hears of it, with the figures.
    let addr = c_wallet.get_new_address("bech32").await.unwrap();
    node.send(&addr, 300_000).await;
    node.mine(1).await;
    c.sync().await.unwrap();
    b.sync().await.unwrap();
    c.connect(b.node_id(), b.listen_addr()).await.unwrap();
    let err = c.open_channel(b.node_id(), 290_000, 0).await.unwrap_err();
    let LnError::AnchorReserve(short) = &err else {
        panic!("expected the anchor reserve refusal, got {err}")
    };
    assert_eq!(short.held_sats, 300_000);
    assert_eq!(short.anchor_channels, 1, "c has no other anchor channel");
    assert_eq!(short.reserve_sats, 25_000);
    assert!(
        short.spending_sats > 290_000,
        "the funding's fee is counted"
    );
    assert_eq!(
        short.missing_sats,
        short.spending_sats + 25_000 - 300_000,
        "{short}"
    );
    assert!(err.to_string().contains("[ln] anchors = false"), "{err}");
    // A channel that leaves the reserve is opened, as an anchor channel.
    let (anchored, _) = open_between(&node, &c, &b, 200_000).await;
    assert!(c
        .channels()
        .iter()
        .any(|ch| ch.channel_id == anchored && ch.anchors));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    c.stop().await.unwrap();
}
