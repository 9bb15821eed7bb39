//! The block follower across a reorg of the funding block: LDK is told the blocks are gone
//! (no panic, the channel waits again), and the channel opens once the funding confirms anew.

use ln_adapter::LnEvent;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_block_reorged_out_then_confirmed_again() {
    let p = pair().await;
    let mut a_rx = p.a.subscribe();
    let mut b_rx = p.b.subscribe();
    p.a.open_channel(p.b.node_id(), 600_000, 0).await.unwrap();
    let pending = wait_event(&mut a_rx, "channel pending", |e| {
        matches!(e, LnEvent::ChannelPending { .. })
    })
    .await;
    let LnEvent::ChannelPending { funding_txid, .. } = pending else {
        unreachable!()
    };
    wait_mempool(&p, &funding_txid).await;
    mine_and_sync(&p, 2).await;
    let tip = p.node.height().await;

    // Both blocks (the funding's and the next) leave the main chain.
    p.node.invalidate(2).await;
    for n in [&p.a, &p.b] {
        let height = n.sync().await.unwrap();
        assert_eq!(u64::from(height), tip - 2, "the follower went back");
        assert_eq!(n.best_block().await.1, height);
    }
    assert!(p.a.channels().iter().all(|c| !c.usable));
    // The funding transaction is back in the mempool; a longer chain confirms it again.
    wait_mempool(&p, &funding_txid).await;
    p.node.mine_fresh(4).await;
    for n in [&p.a, &p.b] {
        assert_eq!(u64::from(n.sync().await.unwrap()), tip + 2);
    }
    for (rx, who) in [(&mut a_rx, "a"), (&mut b_rx, "b")] {
        wait_event(rx, &format!("channel ready ({who})"), |e| {
            matches!(e, LnEvent::ChannelReady { .. })
        })
        .await;
    }
    hold_pay_and_claim(&p.a, &p.b, 25_000_000).await;
}

/// A reorg deeper than `MAX_REORG_DEPTH` is refused: the follower stops before telling LDK
/// (which would un-confirm and close the channel), and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_deeper_than_the_limit_is_refused_and_the_channel_kept() {
    let p = pair().await;
    open_channel(&p, 500_000).await;
    let deep = u64::from(ln_adapter::MAX_REORG_DEPTH) + 1;
    mine_and_sync(&p, deep + 2).await;
    let (best_hash, best_height) = p.a.best_block().await;
    p.node.invalidate(deep).await;
    p.node.mine_fresh(deep + 1).await;
    let err = p.a.sync().await.expect_err("a reorg that deep is refused");
    assert!(
        matches!(err, ln_adapter::LnError::Inconsistent(_)),
        "typed: {err}"
    );
    assert!(err.to_string().contains("refusing"), "{err}");
    assert_eq!(
        p.a.best_block().await,
        (best_hash, best_height),
        "nothing disconnected"
    );
    assert!(
        p.a.channels().iter().any(|c| c.usable),
        "the channel is not un-confirmed"
    );
}
