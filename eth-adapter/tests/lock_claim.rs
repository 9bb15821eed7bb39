//! ETH swap: lock, observe, claim, preimage visible to the sender; every action idempotent.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use swap_core::rail::{HtlcStatus, Rail};
use swap_core::Finality;

#[tokio::test]
async fn eth_lock_then_claim() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(18), 3600).await;

    assert_eq!(e.alice.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);
    let lock_tx = e.alice.lock(&p).await.unwrap();
    // Idempotent: a second lock returns the first funding.
    assert_eq!(e.alice.lock(&p).await.unwrap(), lock_tx);

    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { lock, finality } => {
            assert_eq!(lock.txref, lock_tx);
            assert_eq!(lock.amount, p.amount);
            assert_eq!(lock.hashlock, p.hashlock);
            assert_eq!(lock.expiry, p.expiry);
            assert_eq!(lock.sender, p.sender);
            assert_eq!(lock.recipient, p.recipient);
            assert_eq!(finality, Finality::confirmations(1));
        }
        other => panic!("expected funded, got {other:?}"),
    }
    e.net.mine(2).await;
    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { finality, .. } => assert_eq!(finality, Finality::confirmations(3)),
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

#[tokio::test]
async fn lock_refuses_bad_parameters() {
    let e = common::env().await;
    // Sender is not the adapter's account.
    let (p, _) = common::eth_swap(&e.net, 1, 0, 10u128.pow(17), 3600).await;
    let err = e.alice.lock(&p).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    // Expiry already reached.
    let (mut p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    p.expiry = swap_core::types::Expiry::Time(swap_core::types::Timestamp(1));
    let err = e.alice.lock(&p).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    // Height expiry on Ethereum.
    let (mut p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    p.expiry = swap_core::types::Expiry::Height(swap_core::types::Height(1_000));
    assert!(!e.alice.lock(&p).await.unwrap_err().is_transient());
    // Zero amount.
    let (mut p, _) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    p.amount = swap_core::types::Amount::Wei(swap_core::types::Wei(0));
    assert!(!e.alice.lock(&p).await.unwrap_err().is_transient());
    // Nothing was sent.
    assert_eq!(
        alloy::providers::Provider::get_transaction_count(e.net.provider(), e.net.address(0))
            .await
            .unwrap(),
        1,
        "only the deployment"
    );
}

#[tokio::test]
async fn wrong_lock_by_the_agreed_sender_is_reported_with_its_real_parameters() {
    let e = common::env().await;
    let (agreed, _pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    // The sender locks one wei too much.
    let mut wrong = agreed.clone();
    wrong.amount = swap_core::types::Amount::Wei(swap_core::types::Wei(10u128.pow(17) + 1));
    e.alice.lock(&wrong).await.unwrap();
    // Asked about the agreed terms, the adapter reports the lock the sender made instead,
    // with its real amount, so the engine refuses it and says why (rule 4).
    match e.bob.htlc_status(&agreed).await.unwrap() {
        HtlcStatus::Funded { lock, .. } => {
            assert_eq!(
                lock.amount,
                swap_core::types::Amount::Wei(swap_core::types::Wei(10u128.pow(17) + 1))
            );
            assert_eq!(lock.sender, agreed.sender);
        }
        other => panic!("{other:?}"),
    }
    // A lock under the same hashlock by anyone else is not reported for these terms.
    let mut other_sender = agreed.clone();
    other_sender.sender = agreed.recipient;
    other_sender.recipient = agreed.sender;
    assert_eq!(
        e.alice.htlc_status(&other_sender).await.unwrap(),
        HtlcStatus::Absent
    );
    // The inherent method lists every lock under the hashlock.
    let found = e
        .bob
        .locks_with_hashlock(
            alloy::primitives::B256::from(agreed.hashlock.0),
            agreed.watch_from.0,
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].locked);
    assert_eq!(
        found[0].htlc.amount,
        alloy::primitives::U256::from(10u128.pow(17) + 1)
    );
    assert_eq!(
        found[0].htlc,
        eth_adapter::EthHtlc::from_params(&wrong).unwrap()
    );
}

#[tokio::test]
async fn lock_before_watch_from_is_still_found() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    let lock_tx = e.alice.lock(&p).await.unwrap();
    e.net.mine(30).await;
    // Bob's adapter is told to watch from after the lock (a too-late watch_from).
    let mut late = p.clone();
    late.watch_from = swap_core::types::Height(common::height(&e.net).await - 2);
    let mut cfg = eth_adapter::EthConfig::new(e.net.url(), e.htlc, common::eth_params());
    cfg.log_chunk = 4; // force several backward steps
    let bob = eth_adapter::EthChain::new(cfg, e.net.signer(1)).unwrap();
    match bob.htlc_status(&late).await.unwrap() {
        HtlcStatus::Funded { lock, .. } => assert_eq!(lock.txref, lock_tx),
        other => panic!("expected funded, got {other:?}"),
    }
    let claim_tx = bob.claim(&late, &pre).await.unwrap();
    match bob.htlc_status(&late).await.unwrap() {
        HtlcStatus::Claimed {
            txref, preimage, ..
        } => {
            assert_eq!(txref, claim_tx);
            assert_eq!(preimage, pre);
        }
        other => panic!("expected claimed, got {other:?}"),
    }
}
