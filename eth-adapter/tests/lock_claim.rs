//! ETH swap: lock, observe, claim, preimage visible to the sender; every action idempotent.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use swap_core::chain::{Chain, HtlcStatus};

#[tokio::test]
async fn eth_lock_then_claim() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(18), 3600).await;

    assert_eq!(e.alice.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);
    let lock_tx = e.alice.lock(&p).await.unwrap();
    // Idempotent: a second lock returns the first funding.
    assert_eq!(e.alice.lock(&p).await.unwrap(), lock_tx);

    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded {
            lock,
            confirmations,
        } => {
            assert_eq!(lock.txref, lock_tx);
            assert_eq!(lock.amount, p.amount);
            assert_eq!(lock.hashlock, p.hashlock);
            assert_eq!(lock.expiry, p.expiry);
            assert_eq!(lock.sender, p.sender);
            assert_eq!(lock.recipient, p.recipient);
            assert_eq!(confirmations, 1);
        }
        other => panic!("expected funded, got {other:?}"),
    }
    e.net.mine(2).await;
    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { confirmations, .. } => assert_eq!(confirmations, 3),
        other => panic!("expected funded, got {other:?}"),
    }

    let bob_addr = e.net.address(1);
    let before = common::balance(&e.net, bob_addr).await;
    let claim_tx = e.bob.claim(&p, &pre).await.unwrap();
    let after = common::balance(&e.net, bob_addr).await;
    assert!(after > before, "recipient was paid");
    // Idempotent claim: already claimed is success with the same transaction.
    assert_eq!(e.bob.claim(&p, &pre).await.unwrap(), claim_tx);
    // Lock after claim does not lock again.
    assert_eq!(e.alice.lock(&p).await.unwrap(), lock_tx);

    // The sender learns the preimage from the chain.
    match e.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage, txref, ..
        } => {
            assert_eq!(preimage, pre);
            assert_eq!(txref, claim_tx);
        }
        other => panic!("expected claimed, got {other:?}"),
    }
    // Refund of a claimed swap is a permanent error.
    let err = e.alice.refund(&p).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
}
