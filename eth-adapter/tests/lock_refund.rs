//! ETH swap refunded after expiry (evm_increaseTime); early refund is transient, claim after
//! refund is permanent.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use swap_core::rail::{HtlcStatus, Rail};

#[tokio::test]
async fn eth_lock_then_refund_after_expiry() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 600).await;
    e.alice.lock(&p).await.unwrap();

    let early = e.alice.refund(&p).await.unwrap_err();
    assert!(
        early.is_transient(),
        "early refund must be retryable: {early}"
    );

    e.net.advance_time(601).await;
    // Expired: claiming is impossible now, permanently.
    let late = e.bob.claim(&p, &pre).await.unwrap_err();
    assert!(!late.is_transient(), "{late}");

    let refund_tx = e.alice.refund(&p).await.unwrap();
    assert_eq!(e.alice.refund(&p).await.unwrap(), refund_tx, "idempotent");
    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Refunded { txref, .. } => assert_eq!(txref, refund_tx),
        other => panic!("expected refunded, got {other:?}"),
    }
    let err = e.bob.claim(&p, &pre).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
}

#[tokio::test]
async fn anyone_can_refund_and_it_pays_the_sender() {
    let e = common::env().await;
    let (p, _pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 60).await;
    e.alice.lock(&p).await.unwrap();
    e.net.advance_time(61).await;
    let alice = e.net.address(0);
    let before = common::balance(&e.net, alice).await;
    // Bob (not the sender) sends the refund: Alice gets the money.
    e.bob.refund(&p).await.unwrap();
    let after = common::balance(&e.net, alice).await;
    assert_eq!(
        after - before,
        alloy::primitives::U256::from(10u128.pow(17))
    );
}
