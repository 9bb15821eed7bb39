//! The initiator waits until just before its claim deadline on Y (ETH, timestamp expiry) to
//! claim, while both chains keep moving at their nominal pace: the responder still learns the
//! secret and claims its BTC in time (rule 2).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::providers::Provider;
use serde_json::json;
use swap_core::*;
use xswap_tests::*;

async fn eth_time(nodes: &Nodes) -> u64 {
    nodes
        .eth
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_in_the_last_allowed_moments_still_lets_the_responder_claim() {
    let nodes = start_nodes().await;
    let alice = Party::new(&nodes, "alice", 0xa1, 1).await;
    let bob = Party::new(&nodes, "bob", 0xb0, 2).await;
    fund_btc(&nodes, &alice, 2 * SATS).await;
    let deal = agree(&nodes, &alice, &bob, Deal::BtcForEth).await;

    // Run until Alice has seen Bob's lock confirmed and is about to claim.
    let mut ready = false;
    for _ in 0..30 {
        let (_, state) = alice.driver.store().load(&deal.id).await.unwrap();
        if matches!(
            state,
            SwapState::Initiator(initiator::State::CounterLockValid)
        ) {
            ready = true;
            break;
        }
        // One state at a time: `step` would go on from a valid counter-lock to the claim.
        alice.step_one(&deal.id).await;
        bob.step(&deal.id).await;
        nodes.advance(1).await;
    }
    assert!(ready, "alice never saw a valid counter-lock");

    // Let time pass, both chains at their nominal pace, to 30 s before Alice's deadline.
    let deadline = match deal.terms.y.params.claim_deadline(deal.terms.y.expiry) {
        Expiry::Time(t) => t.0,
        _ => unreachable!(),
    };
    let interval = nodes.btc_params().block_interval;
    let now = eth_time(&nodes).await;
    let blocks = (deadline - 30 - now) / interval;
    nodes.advance(blocks).await;
    nodes
        .eth
        .rpc("evm_setNextBlockTimestamp", json!([deadline - 30]))
        .await;
    nodes.eth.mine(1).await;
    // Bob keeps watching meanwhile (his refund is not due yet).
    assert_eq!(bob.step(&deal.id).await, None);

    // Alice claims now; Bob must still be able to claim after seeing it.
    assert_eq!(alice.step(&deal.id).await, None);
    let (_, state) = alice.driver.store().load(&deal.id).await.unwrap();
    // The claim reached the node (recorded: the secret is public from here on).
    assert!(
        matches!(state, SwapState::Initiator(initiator::State::ClaimSent)),
        "{state:?}"
    );
    let out = run(&nodes, &[&alice, &bob], &deal.id, 30, 1).await;
    assert_eq!(out, vec![Some(Outcome::Swapped), Some(Outcome::Swapped)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_deadline_the_initiator_keeps_its_secret_and_refunds() {
    let nodes = start_nodes().await;
    let alice = Party::new(&nodes, "alice", 0xa1, 1).await;
    let bob = Party::new(&nodes, "bob", 0xb0, 2).await;
    fund_btc(&nodes, &alice, 2 * SATS).await;
    let deal = agree(&nodes, &alice, &bob, Deal::BtcForEth).await;
    for _ in 0..30 {
        let (_, state) = alice.driver.store().load(&deal.id).await.unwrap();
        if matches!(
            state,
            SwapState::Initiator(initiator::State::CounterLockValid)
        ) {
            break;
        }
        // One state at a time: `step` would go on from a valid counter-lock to the claim.
        alice.step_one(&deal.id).await;
        bob.step(&deal.id).await;
        nodes.advance(1).await;
    }
    let deadline = match deal.terms.y.params.claim_deadline(deal.terms.y.expiry) {
        Expiry::Time(t) => t.0,
        _ => unreachable!(),
    };
    nodes
        .eth
        .rpc("evm_setNextBlockTimestamp", json!([deadline + 1]))
        .await;
    nodes.eth.mine(1).await;
    assert_eq!(alice.step(&deal.id).await, None);
    let (_, state) = alice.driver.store().load(&deal.id).await.unwrap();
    assert!(
        matches!(
            state,
            SwapState::Initiator(initiator::State::AwaitRefund { .. })
        ),
        "{state:?}"
    );
    // Both get their own back.
    let out = run(&nodes, &[&alice, &bob], &deal.id, 60, 25).await;
    assert_eq!(out, vec![Some(Outcome::Refunded), Some(Outcome::Refunded)]);
}
