//! Both lock, then the initiator never claims (it keeps its secret): the responder refunds its
//! ETH once E_Y passes, the initiator refunds its BTC once E_X passes. Nobody loses anything
//! but fees.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::primitives::U256;
use swap_core::*;
use xswap_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_refund_when_the_initiator_never_claims() {
    let nodes = start_nodes().await;
    let alice = Party::new(&nodes, "alice", 0xa1, 1).await;
    let bob = Party::new(&nodes, "bob", 0xb0, 2).await;
    fund_btc(&nodes, &alice, 2 * SATS).await;
    let alice_btc0 = alice.btc_balance(&nodes).await;
    let bob_eth0 = nodes.eth_bal(bob.eth.address()).await;
    let deal = agree(&nodes, &alice, &bob, Deal::BtcForEth).await;

    let mut done = (None, None);
    let mut claims_dropped = 0;
    for _ in 0..80 {
        if done.0.is_none() {
            // Alice's engine runs, but its claims are never sent.
            let adv = alice.driver.advance(&deal.id).await.unwrap();
            let kept: Vec<Action> = adv
                .actions
                .iter()
                .filter(|a| !matches!(a, Action::Claim { .. }))
                .cloned()
                .collect();
            claims_dropped += adv.actions.len() - kept.len();
            alice.driver.perform(&adv.record, &kept).await;
            done.0 = swap_core::driver::final_outcome(&adv.state);
            // Without its claim, Alice's machine sits in Claiming; her refund is done by hand
            // below, as her engine would never reach it.
        }
        if done.1.is_none() {
            done.1 = bob.step(&deal.id).await;
        }
        if done.1.is_some() {
            break;
        }
        nodes.advance(5).await;
    }
    assert!(claims_dropped > 0, "Alice's engine did try to claim");
    assert_eq!(done.1, Some(Outcome::Refunded), "bob refunds his ETH");
    let bob_eth = nodes.eth_bal(bob.eth.address()).await;
    assert!(
        bob_eth0 - bob_eth < U256::from(10u128.pow(16)),
        "bob lost only gas"
    );

    // Alice's BTC: refundable once E_X passes.
    let htlc = Driver::htlc(
        &alice.driver.store().load(&deal.id).await.unwrap().0,
        Leg::X,
    );
    let e_x = match deal.terms.x.expiry {
        Expiry::Height(h) => h.0,
        _ => unreachable!(),
    };
    let h = nodes.btc.height().await;
    if h < e_x {
        nodes.advance(e_x - h).await;
    }
    alice.btc.refund(&htlc).await.unwrap();
    nodes.advance(1).await;
    assert!(matches!(
        alice.btc.htlc_status(&htlc).await.unwrap(),
        HtlcStatus::Refunded { .. }
    ));
    let lost = alice_btc0 - alice.btc_balance(&nodes).await;
    assert!(lost < 10_000, "alice lost {lost} sat to fees");
}
