//! The payee stops while it holds a payment and starts again from its data directory: the
//! HTLC is still held (with its CLTV), and claiming it then pays the payer, who learns the
//! preimage.

use ln_adapter::LnEvent;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_restarted_while_holding_then_claims() {
    let mut p = pair().await;
    open_channel(&p, 500_000).await;
    let mut a_rx = p.a.subscribe();
    let preimage = pay_held(&p.a, &p.b, 40_000_000).await;
    let hashlock = preimage.hashlock();
    let held = |n: &ln_adapter::LnNode| {
        n.channels()
            .iter()
            .flat_map(|c| c.inbound_htlcs.clone())
            .find(|h| h.hashlock == hashlock)
    };
    let before = held(&p.b).expect("held before the restart");

    p.b.stop().await.unwrap();
    p.node.mine(2).await;
    p.b = start_ln(&p.node, "b", 2, &p.dirs.path().join("b")).await;
    assert_eq!(held(&p.b), Some(before), "still held after the restart");
    p.b.connect(p.a.node_id(), p.a.listen_addr()).await.unwrap();
    wait_until("channel usable again", || {
        p.a.channels().iter().any(|c| c.usable) && p.b.channels().iter().any(|c| c.usable)
    })
    .await;
    let mut b_rx = p.b.subscribe();
    p.b.claim(&preimage).await.unwrap();
    let sent = wait_event(
        &mut a_rx,
        "payment sent",
        |e| matches!(e, LnEvent::PaymentSent { hashlock: h, .. } if *h == hashlock),
    )
    .await;
    let LnEvent::PaymentSent { preimage: got, .. } = sent else {
        unreachable!()
    };
    assert_eq!(got, preimage);
    wait_event(
        &mut b_rx,
        "payment claimed",
        |e| matches!(e, LnEvent::PaymentClaimed { hashlock: h, .. } if *h == hashlock),
    )
    .await;
}
