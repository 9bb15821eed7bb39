//! A lock paid from an external wallet: the adapter gives the address, the exact amount and a
//! BIP-21 URI, and detects the payment by its block scan, whoever sent it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use swap_core::Finality;
use swap_core::{Amount, HtlcStatus, Preimage, Rail, Sats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_from_any_wallet_is_detected() {
    let env = common::env().await;
    let amount = 2_500_000u64;
    let secret = Preimage::random().unwrap();
    let p = env.params(amount, 60, &secret).await;
    let req = env.alice.payment_request(&p).unwrap();
    assert_eq!(req.sats, amount);
    assert_eq!(req.address, env.alice.htlc_address(&p).unwrap());
    let scheme = match env.node.chain_id().family {
        swap_core::ChainFamily::Litecoin => "litecoin:",
        _ => "bitcoin:",
    };
    assert!(
        req.uri
            .starts_with(&format!("{scheme}{}?amount=0.02500000", req.address)),
        "{}",
        req.uri
    );
    assert_eq!(env.bob.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);

    // Paid by the node's mining wallet, a wallet the adapter knows nothing about.
    env.node.send(&req.address, req.sats).await;
    env.node.mine(1).await;
    match env.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { lock, finality } => {
            assert_eq!(lock.amount, Amount::Sats(Sats(amount)));
            assert!(finality.reaches(Finality::Depth(1)));
        }
        other => panic!("{other:?}"),
    }
    // And Bob can claim it like any lock.
    env.bob.claim(&p, &secret).await.unwrap();
    env.node.mine(1).await;
    assert!(matches!(
        env.bob.htlc_status(&p).await.unwrap(),
        HtlcStatus::Claimed { .. }
    ));
}
