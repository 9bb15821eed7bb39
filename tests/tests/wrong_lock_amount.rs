//! The responder locks less ETH than agreed: the initiator refuses the lock (never reveals its
//! secret), gets its BTC back after its expiry, and the responder can only refund its own lock.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use swap_core::*;
use xswap_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underfunded_counter_lock_is_refused_and_refunded() {
    let nodes = start_nodes().await;
    let alice = Party::new(&nodes, "alice", 0xa1, 1).await;
    let bob = Party::new(&nodes, "bob", 0xb0, 2).await;
    fund_btc(&nodes, &alice, 2 * SATS).await;
    let alice_btc0 = alice.btc_balance(&nodes).await;
    let deal = agree(&nodes, &alice, &bob, Deal::BtcForEth).await;

    // Alice locks; once her lock is confirmed Bob locks 1 wei less than agreed, by hand.
    let (bob_rec, _) = bob.driver.store().load(&deal.id).await.unwrap();
    let mut short = Driver::htlc(&bob_rec, Leg::Y);
    short.amount = Amount::Wei(Wei(WEI - 1));
    let mut bob_locked = false;
    let mut outcome = None;
    for _ in 0..60 {
        outcome = alice.step(&deal.id).await;
        if outcome.is_some() {
            break;
        }
        let (arec, _) = alice.driver.store().load(&deal.id).await.unwrap();
        let own = alice
            .btc
            .htlc_status(&Driver::htlc(&arec, Leg::X))
            .await
            .unwrap();
        if !bob_locked
            && matches!(own, HtlcStatus::Funded { finality, .. } if finality.depth() >= Some(1))
        {
            bob.eth.lock(&short).await.unwrap();
            bob_locked = true;
        }
        nodes.advance(25).await;
    }
    assert!(bob_locked);
    assert_eq!(outcome, Some(Outcome::Refunded));
    let states: Vec<SwapState> = alice
        .driver
        .store()
        .history(&deal.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.state)
        .collect();
    // Alice never entered a claiming state: the secret never left her engine.
    assert!(!states.iter().any(|s| matches!(
        s,
        SwapState::Initiator(initiator::State::Claiming | initiator::State::Claimed)
    )));
    let reason = states.iter().find_map(|s| match s {
        SwapState::Initiator(initiator::State::AwaitRefund { reason }) => Some(reason.clone()),
        _ => None,
    });
    println!("alice gave up: {reason:?}");
    // She says why: the amount differs from the agreed one.
    assert!(
        matches!(
            reason,
            Some(GiveUpReason::CounterLockInvalid {
                mismatch: LockMismatch::Amount { .. }
            })
        ),
        "{reason:?}"
    );
    // Nothing revealed on Bob's chain: his short lock is still his to refund, and he does.
    assert!(matches!(
        bob.eth.htlc_status(&short).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
    bob.eth.refund(&short).await.unwrap();
    assert!(matches!(
        bob.eth.htlc_status(&short).await.unwrap(),
        HtlcStatus::Refunded { .. }
    ));
    nodes.advance(1).await;
    let lost = alice_btc0 - alice.btc_balance(&nodes).await;
    assert!(lost < 10_000, "alice lost {lost} sat to fees");
}
