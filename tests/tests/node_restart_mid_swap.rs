//! The Bitcoin-family node stops right after the initiator's lock and comes back later: the
//! engines see transient errors meanwhile, lose nothing, and the swap completes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use swap_core::*;
use xswap_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_completes_across_a_node_restart() {
    let mut nodes = start_nodes().await;
    let alice = Party::new(&nodes, "alice", 0xa1, 1).await;
    let bob = Party::new(&nodes, "bob", 0xb0, 2).await;
    fund_btc(&nodes, &alice, 2 * SATS).await;
    let deal = agree(&nodes, &alice, &bob, Deal::BtcForEth).await;

    // Alice locks.
    alice.step(&deal.id).await;
    let (_, before) = alice.driver.store().load(&deal.id).await.unwrap();
    assert!(matches!(
        before,
        SwapState::Initiator(initiator::State::Locking)
    ));

    // The node goes down: every step fails transiently and changes nothing.
    nodes.btc.stop().await;
    for p in [&alice, &bob] {
        match p.driver.step(&deal.id).await {
            Err(e) => assert!(e.is_transient(), "{}: {e}", p.name),
            Ok(r) => panic!(
                "{}: step succeeded with the node down: {:?}",
                p.name, r.state
            ),
        }
    }
    let (_, during) = alice.driver.store().load(&deal.id).await.unwrap();
    assert_eq!(during, before, "no state change while the node is down");

    // It comes back; the swap goes on to the end.
    nodes.btc.start_again().await;
    nodes.btc.wait_ready().await.unwrap();
    let out = run(&nodes, &[&alice, &bob], &deal.id, 60, 1).await;
    assert_eq!(out, vec![Some(Outcome::Swapped), Some(Outcome::Swapped)]);
}
