//! A held payment failed back by the payee returns the whole amount to the payer.

use std::time::Duration;

use ln_adapter::{LnEvent, PaymentTarget};
use swap_core::Preimage;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_payment_failed_back_returns_to_payer() {
    let p = pair().await;
    let (channel_id, _) = open_channel(&p, 500_000).await;
    let outbound = |n: &ln_adapter::LnNode| {
        n.channels()
            .into_iter()
            .find(|c| c.channel_id == channel_id)
            .map(|c| c.outbound_msat)
            .unwrap()
    };
    let a_outbound = outbound(&p.a);

    let preimage = Preimage::random().unwrap();
    let hashlock = preimage.hashlock();
    let amount = 30_000_000;
    let secret =
        p.b.hold_invoice(hashlock, amount, 3600, FINAL_CLTV as u16)
            .unwrap();
    let mut a_rx = p.a.subscribe();
    let mut b_rx = p.b.subscribe();
    let target = PaymentTarget {
        payee: p.b.node_id(),
        hashlock,
        payment_secret: secret,
        amount_msat: amount,
        final_cltv_delta: FINAL_CLTV,
        route_hints: vec![],
    };
    p.a.pay(&target, hashlock.0).unwrap();
    // The same payment id again is a duplicate, not a second payment.
    assert!(p.a.pay(&target, hashlock.0).is_err());
    wait_event(
        &mut b_rx,
        "payment held",
        |e| matches!(e, LnEvent::PaymentClaimable { hashlock: h, .. } if *h == hashlock),
    )
    .await;
    assert!(outbound(&p.a) <= a_outbound - amount, "the HTLC is out");

    p.b.fail_back(&hashlock).unwrap();
    let failed = wait_event(
        &mut a_rx,
        "payment failed",
        |e| matches!(e, LnEvent::PaymentFailed { hashlock: Some(h), .. } if *h == hashlock),
    )
    .await;
    let LnEvent::PaymentFailed { payment_id, .. } = failed else {
        unreachable!()
    };
    assert_eq!(payment_id, hashlock.0);
    wait_until("the amount is back", || outbound(&p.a) == a_outbound).await;
    // No preimage reached the payer, and nothing more arrives.
    assert!(tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Ok(LnEvent::PaymentSent { .. }) = a_rx.recv().await {
                return;
            }
        }
    })
    .await
    .is_err());
}
