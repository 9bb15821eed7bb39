//! A reorg that disconnects the claim block: the claim is back in the mempool (still Claimed,
//! 0 confirmations, same secret), then confirmed again in the new chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use swap_core::Finality;
use swap_core::{HtlcStatus, Preimage, Rail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_of_claim_block() {
    let env = common::env().await;
    let s = Preimage::random().unwrap();
    let p = env.params(8_000_000, 60, &s).await;
    common::fund(&env, &p).await;
    let claim = env.bob.claim(&p, &s).await.unwrap();
    env.node.mine(1).await;
    let claimed = |confirmations: u32| HtlcStatus::Claimed {
        preimage: s.clone(),
        txref: claim.clone(),
        finality: Finality::confirmations(confirmations),
    };
    assert_eq!(env.alice.htlc_status(&p).await.unwrap(), claimed(1));
    env.node.invalidate(1).await;
    assert_eq!(env.alice.htlc_status(&p).await.unwrap(), claimed(0));
    // Disconnect the funding block too: the funding and the claim are both in the mempool.
    env.node.invalidate(1).await;
    assert_eq!(env.alice.htlc_status(&p).await.unwrap(), claimed(0));
    assert_eq!(env.bob.claim(&p, &s).await.unwrap(), claim);
    env.node.mine_fresh(3).await;
    assert_eq!(env.alice.htlc_status(&p).await.unwrap(), claimed(3));
    assert_eq!(env.bob.htlc_status(&p).await.unwrap(), claimed(3));
}
