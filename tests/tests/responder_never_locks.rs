//! The responder agrees, then never locks: the initiator gives up at its deadline and gets its
//! BTC back by itself once its expiry height passes (minus the lock and refund fees).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use swap_core::*;
use xswap_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiator_refunds_when_the_responder_never_locks() {
    let nodes = start_nodes().await;
    let alice = Party::new(&nodes, "alice", 0xa1, 1).await;
    let bob = Party::new(&nodes, "bob", 0xb0, 2).await;
    fund_btc(&nodes, &alice, 2 * SATS).await;
    let alice_btc0 = alice.btc_balance(&nodes).await;

    let deal = agree(&nodes, &alice, &bob, Deal::BtcForEth).await;
    // Only Alice runs. 25 blocks per round: on Litecoin regtest (150 s blocks, which may come
    // twice as fast) E_X is about 620 blocks out.
    let out = run(&nodes, &[&alice], &deal.id, 60, 25).await;
    if out[0].is_none() {
        let (rec, state) = alice.driver.store().load(&deal.id).await.unwrap();
        let snap = alice.driver.observe(&rec).await.unwrap();
        panic!(
            "not done: {state:?}\nterms {:?}\nsnapshot {snap:?}",
            rec.terms.x.expiry
        );
    }
    assert_eq!(out, vec![Some(Outcome::Refunded)]);
    let hist: Vec<_> = alice
        .driver
        .store()
        .history(&deal.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.state)
        .collect();
    assert!(hist.iter().any(|s| matches!(
        s,
        SwapState::Initiator(initiator::State::AwaitRefund {
            reason: GiveUpReason::CounterLockMissing
        })
    )));
    // The refund is mined at a height past the expiry, and the coins are back (minus fees).
    nodes.advance(1).await;
    let lost = alice_btc0 - alice.btc_balance(&nodes).await;
    assert!(lost < 10_000, "alice lost {lost} sat to fees");
}
