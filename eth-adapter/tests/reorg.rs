//! A lock whose block is reorged out is Absent again; the adapter then broadcasts the same
//! signed lock again (from its outbox), never a second one.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use swap_core::rail::{HtlcStatus, Rail};
use swap_core::Finality;

#[tokio::test]
async fn reorged_lock_is_absent_and_can_be_redone() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    let first = e.alice.lock(&p).await.unwrap();
    e.net.mine(1).await;
    match e.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { finality, .. } => assert_eq!(finality, Finality::confirmations(2)),
        other => panic!("expected funded, got {other:?}"),
    }
    // Replace the lock's block and the one after it with empty blocks.
    e.net.reorg(2).await;
    assert_eq!(e.bob.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);
    assert_eq!(e.alice.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);

    // The sender's adapter notices its lock is gone and broadcasts the recorded one again.
    let second = e.alice.lock(&p).await.unwrap();
    assert_eq!(first, second);
    assert!(matches!(
        e.bob.htlc_status(&p).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
    e.bob.claim(&p, &pre).await.unwrap();
    assert!(matches!(
        e.alice.htlc_status(&p).await.unwrap(),
        HtlcStatus::Claimed { .. }
    ));
}

#[tokio::test]
async fn reorged_claim_makes_the_swap_funded_again() {
    let e = common::env().await;
    let (p, pre) = common::eth_swap(&e.net, 0, 1, 10u128.pow(17), 3600).await;
    e.alice.lock(&p).await.unwrap();
    e.net.mine(2).await;
    e.bob.claim(&p, &pre).await.unwrap();
    assert!(matches!(
        e.alice.htlc_status(&p).await.unwrap(),
        HtlcStatus::Claimed { .. }
    ));
    // Only the claim's block is replaced: the lock stays, the claim is gone.
    e.net.reorg(1).await;
    match e.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { finality, .. } => assert_eq!(finality, Finality::confirmations(4)),
        other => panic!("expected funded again, got {other:?}"),
    }
    // Bob claims again (his adapter forgets the dropped claim).
    e.bob.claim(&p, &pre).await.unwrap();
    assert!(matches!(
        e.alice.htlc_status(&p).await.unwrap(),
        HtlcStatus::Claimed { .. }
    ));
}
