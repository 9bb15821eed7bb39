//! The node goes down and comes back (same chain): errors meanwhile are transient, and the
//! adapter carries on where it was.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::time::Duration;

use swap_core::rail::{HtlcStatus, Rail};

#[tokio::test]
async fn adapter_survives_node_restart() {
    let mut e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    let lock_tx = e.alice.lock(&p).await.unwrap();
    assert!(matches!(
        e.bob.htlc_status(&p).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));

    let state = e.net.stop_keeping_state().await;
    let down = e.bob.htlc_status(&p).await.unwrap_err();
    assert!(down.is_transient(), "node down must be transient: {down}");
    let down = e.bob.claim(&p, &pre).await.unwrap_err();
    assert!(down.is_transient(), "node down must be transient: {down}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    e.net.resume(state).await;
    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { lock, .. } => assert_eq!(lock.txref, lock_tx),
        other => panic!("expected funded after restart, got {other:?}"),
    }
    e.bob.claim(&p, &pre).await.unwrap();
    match e.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed { preimage, .. } => assert_eq!(preimage, pre),
        other => panic!("expected claimed, got {other:?}"),
    }
}
