//! A transaction that is mined but reverts is an error (with its reason), never a success:
//! a claim estimated one second before expiry lands in a block at the expiry.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use swap_core::rail::{HtlcStatus, Rail};
use swap_core::types::Expiry;

#[tokio::test]
async fn mined_revert_is_an_error() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 100).await;
    e.alice.lock(&p).await.unwrap();
    let Expiry::Time(expiry) = p.expiry else {
        unreachable!()
    };
    // Latest block one second before the expiry; the claim's block exactly at it.
    e.net
        .rpc(
            "evm_setNextBlockTimestamp",
            serde_json::json!([expiry.0 - 1]),
        )
        .await;
    e.net.mine(1).await;
    e.net
        .rpc("evm_setNextBlockTimestamp", serde_json::json!([expiry.0]))
        .await;
    let err = e.bob.claim(&p, &pre).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.message.contains("reverted"), "{err}");
    assert!(err.message.contains("Expired"), "{err}");
    assert!(matches!(
        e.bob.htlc_status(&p).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
    // And the sender can refund.
    e.alice.refund(&p).await.unwrap();
}
