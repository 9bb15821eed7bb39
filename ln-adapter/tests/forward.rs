//! A swap's Lightning leg through one intermediary: `a` has a channel to `c` only, `c` one to
//! `b`; the payee's route hints (its unannounced channel from `c`) let `a` route through `c`,
//! which forwards for its fee. The payee holds exactly the agreed amount at exactly the agreed
//! CLTV; the payer pays amount + fee; the intermediary earns the fee; the payer learns the
//! preimage when the payee claims. A payer whose terms budget no route blocks pays only
//! directly.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ln_adapter::{LnEvent, LnNode, LnRail};
use swap_core::{
    Amount, Asset, ChainFamily, Expiry, Height, HtlcParams, HtlcStatus, Preimage, Rail, RailBody,
    Sats, SwapId,
};

use crate::common::*;

fn outbound_to(n: &LnNode, peer: &LnNode) -> u64 {
    n.channels()
        .iter()
        .filter(|c| c.counterparty == peer.node_id())
        .map(|c| c.outbound_msat)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_through_a_forwarding_node_pays_its_fee() {
    init_tracing();
    let node = devnet::regtest::RegtestNode::start().await;
    for name in ["a", "b", "c"] {
        let w = wallet(&node, name).await;
        if name != "b" {
            let addr = w.get_new_address("bech32").await.unwrap();
            node.send(&addr, 5_0000_0000).await;
        }
    }
    node.mine(1).await;
    let dirs = tempfile::tempdir().unwrap();
    let a = Arc::new(start_ln(&node, "a", 1, &dirs.path().join("a")).await);
    let b = Arc::new(start_ln(&node, "b", 2, &dirs.path().join("b")).await);
    let c = Arc::new(start_ln(&node, "c", 3, &dirs.path().join("c")).await);
    a.connect(c.node_id(), c.listen_addr()).await.unwrap();
    c.connect(b.node_id(), b.listen_addr()).await.unwrap();
    open_between(&node, &a, &c, 600_000).await;
    open_between(&node, &c, &b, 600_000).await;
    assert!(
        !a.is_connected(&b.node_id()),
        "no direct link between payer and payee"
    );
    // The payer's terms budget blocks for the route (at least c's CLTV delta, LDK's default
    // 72); the payee's need none. A budget of 80 to 151 blocks once found no route through a
    // hop of 72: LDK's router keeps 80 blocks of such a budget for its random offset.
    let rb = LnRail::new(Arc::clone(&b));
    let direct_only = LnRail::new(Arc::clone(&a));
    let mut params = *direct_only.params();
    params.route_blocks = 100;
    let ra = LnRail::new(Arc::clone(&a)).with_params(params).unwrap();

    // The payee's hint names its channel from `c` (once `c` told it its forwarding terms).
    let started = Instant::now();
    while rb.route_hints().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "no route hint");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let amount = 70_000u64;
    let preimage = Preimage::random().unwrap();
    let hashlock = preimage.hashlock();
    let rail_data = rb.receive(hashlock, Sats(amount)).unwrap();
    let RailBody::Lightning { route_hints, .. } = &rail_data.body else {
        unreachable!()
    };
    assert_eq!(route_hints.len(), 1);
    let hint = route_hints[0];
    assert_eq!(hint.src_node_id.0, c.node_id().serialize());
    let tip = node.height().await;
    let htlc = HtlcParams {
        swap_id: SwapId::random().unwrap(),
        key_index: 0,
        hashlock,
        asset: match node.chain_id().family {
            ChainFamily::Litecoin => Asset::Ltc,
            _ => Asset::Btc,
        },
        amount: Amount::Sats(Sats(amount)),
        sender: ra.me(),
        recipient: rb.me(),
        expiry: Expiry::Height(Height(tip + 300)),
        watch_from: Height(tip),
        rail_data: Some(rail_data),
    };
    let a_before = outbound_to(&a, &c);
    let c_out_before = outbound_to(&c, &b);
    let mut a_rx = a.subscribe();
    // A payer whose terms budget no route blocks cannot pay through `c` (its CLTV delta
    // would make the secret visible later than the terms allow): nothing is sent.
    let mut other = htlc.clone();
    other.swap_id = SwapId::random().unwrap();
    other.hashlock = Preimage::random().unwrap().hashlock();
    other.rail_data = Some(rb.receive(other.hashlock, Sats(amount)).unwrap());
    let refused = direct_only.lock(&other).await.unwrap_err();
    assert_eq!(refused.cause, swap_core::Cause::Unavailable, "{refused}");
    assert_eq!(
        direct_only.htlc_status(&other).await.unwrap(),
        HtlcStatus::Absent
    );
    ra.lock(&htlc).await.unwrap();

    let started = Instant::now();
    let lock = loop {
        if let HtlcStatus::Funded { lock, .. } = rb.htlc_status(&htlc).await.unwrap() {
            break lock;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        lock.amount, htlc.amount,
        "the payee holds exactly the amount"
    );
    assert_eq!(lock.expiry, htlc.expiry, "at exactly the agreed CLTV");

    rb.claim(&htlc, &preimage).await.unwrap();
    let sent = wait_event(
        &mut a_rx,
        "payment sent",
        |e| matches!(e, LnEvent::PaymentSent { hashlock: h, .. } if *h == hashlock),
    )
    .await;
    let LnEvent::PaymentSent { fee_paid_msat, .. } = sent else {
        unreachable!()
    };
    let amount_msat = amount * 1_000;
    let fee = u64::from(hint.fee_base_msat)
        + amount_msat * u64::from(hint.fee_proportional_millionths) / 1_000_000;
    assert!(fee > 0);
    assert_eq!(
        fee_paid_msat,
        Some(fee),
        "the intermediary's advertised fee"
    );
    assert!(matches!(
        ra.htlc_status(&htlc).await.unwrap(),
        HtlcStatus::Claimed { preimage: ref p, .. } if *p == preimage
    ));
    // The payer paid amount + fee, the intermediary passed the amount on: it kept the fee.
    // (Its side of the payer's channel is below its reserve, so it is not compared.)
    wait_until("all settled", || {
        outbound_to(&a, &c) == a_before - amount_msat - fee
            && outbound_to(&c, &b) == c_out_before - amount_msat
    })
    .await;
    for n in [&a, &b, &c] {
        n.stop().await.unwrap();
    }
}
