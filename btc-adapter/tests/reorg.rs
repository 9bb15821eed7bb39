//! A reorg that removes the funding block: the lock goes back to the mempool (0 conf), and once
//! the funding is double-spent it is Absent again. lock() then funds it anew (the first funding
//! can never be mined), once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use btc_adapter::chain::txid_of;
use swap_core::Finality;
use swap_core::{HtlcStatus, Preimage, Rail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_of_funding_block_makes_lock_absent() {
    let env = common::env().await;
    let s = Preimage::random().unwrap();
    let p = env.params(5_000_000, 60, &s).await;
    let funding = common::fund(&env, &p).await;
    env.node.mine(1).await;
    assert_eq!(
        common::confirmations(&env.bob.htlc_status(&p).await.unwrap()),
        Some(2)
    );

    // Disconnect both blocks: the funding returns to the mempool.
    env.node.invalidate(2).await;
    match env.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { lock, finality } => {
            assert_eq!(lock.txref, funding);
            assert_eq!(finality, Finality::confirmations(0));
        }
        other => panic!("expected funded in mempool, got {other:?}"),
    }
    // Double-spend it and build a longer chain without it.
    env.node
        .double_spend(&env.alice_wallet, &txid_of(&funding).unwrap())
        .await;
    env.node.mine_fresh(3).await;
    assert_eq!(env.bob.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);
    assert_eq!(env.alice.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);
    // Alice's adapter remembers its funding, which can never be mined now (a mined
    // transaction spent its coins): once a block came after the tip at which it saw that (a
    // lock's depth here), it funds the HTLC anew, once.
    let err = env.alice.lock(&p).await.unwrap_err();
    assert!(
        matches!(err.cause, swap_core::Cause::NotReady { .. }),
        "{err}"
    );
    env.node.mine(1).await;
    let again = env.alice.lock(&p).await.unwrap();
    assert_ne!(again, funding);
    assert_eq!(env.alice.lock(&p).await.unwrap(), again);

    // A reorg that keeps the new funding in the new chain keeps it funded.
    env.node.mine(1).await;
    env.node.reorg(1).await;
    // The reorged-out block's funding is back in the mempool, then mined again.
    env.node.mine(1).await;
    match env.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { lock, finality } => {
            assert_eq!(lock.txref, again);
            assert!(finality.reaches(Finality::Depth(1)));
        }
        other => panic!("expected funded, got {other:?}"),
    }
}
