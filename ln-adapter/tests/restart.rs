//! A node stopped and started again from its data directory (blocks mined meanwhile) keeps
//! its channel: it reconnects and pays again.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_keeps_its_channel() {
    let mut p = pair().await;
    let (channel_id, _) = open_channel(&p, 400_000).await;
    hold_pay_and_claim(&p.a, &p.b, 10_000_000).await;
    let b_id = p.b.node_id();

    p.b.stop().await.unwrap();
    // Blocks while b is down: it must catch up from its persisted best block.
    p.node.mine(5).await;
    let b = start_ln(&p.node, "b", 2, &p.dirs.path().join("b")).await;
    assert_eq!(b.node_id(), b_id, "same seed, same node id");
    let (_, height) = b.best_block().await;
    assert_eq!(
        u64::from(height),
        p.node.height().await,
        "caught up to the tip"
    );
    assert!(b.channels().iter().any(|c| c.channel_id == channel_id));
    p.b = b;
    p.b.connect(p.a.node_id(), p.a.listen_addr()).await.unwrap();
    wait_until("channel usable again", || {
        p.a.channels().iter().any(|c| c.usable) && p.b.channels().iter().any(|c| c.usable)
    })
    .await;
    hold_pay_and_claim(&p.a, &p.b, 10_000_000).await;
    hold_pay_and_claim(&p.b, &p.a, 5_000_000).await;
}
