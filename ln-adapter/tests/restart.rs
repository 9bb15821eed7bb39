//! A node stopped and started again from its data directory (blocks mined meanwhile) keeps
//! its channel; its peer reconnects by itself and both pay again. Then the other node
//! restarts and reconnects to the stored peer by itself.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_keeps_its_channel() {
    let mut p = pair().await;
    let (channel_id, _) = open_channel(&p, 400_000).await;
    hold_pay_and_claim(&p.a, &p.b, 10_000_000).await;
    let b_id = p.b.node_id();
    let b_addr = p.b.listen_addr();

    p.b.stop().await.unwrap();
    // Blocks while b is down: it must catch up from its persisted best block.
    p.node.mine(5).await;
    let b = start_ln_on(&p.node, "b", 2, &p.dirs.path().join("b"), Some(b_addr)).await;
    assert_eq!(b.node_id(), b_id, "same seed, same node id");
    let (_, height) = b.best_block().await;
    assert_eq!(
        u64::from(height),
        p.node.height().await,
        "caught up to the tip"
    );
    assert!(b.channels().iter().any(|c| c.channel_id == channel_id));
    p.b = b;
    // a reconnects to b (the follower task retries its peers).
    wait_until("channel usable again", || {
        p.a.channels().iter().any(|c| c.usable) && p.b.channels().iter().any(|c| c.usable)
    })
    .await;
    hold_pay_and_claim(&p.a, &p.b, 10_000_000).await;
    hold_pay_and_claim(&p.b, &p.a, 5_000_000).await;

    // Now a restarts: it reconnects to b from its stored peers.
    wait_settled(&p).await;
    let a_addr = p.a.listen_addr();
    p.a.stop().await.unwrap();
    p.a = start_ln_on(&p.node, "a", 1, &p.dirs.path().join("a"), Some(a_addr)).await;
    wait_until("channel usable after a's restart", || {
        p.a.channels().iter().any(|c| c.usable) && p.b.channels().iter().any(|c| c.usable)
    })
    .await;
    hold_pay_and_claim(&p.a, &p.b, 2_000_000).await;
}

/// A data directory whose channel manager is gone but whose monitors are there is refused:
/// a new manager would not know the channels. Nothing in the directory is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_without_their_manager_are_refused() {
    let mut p = pair().await;
    open_channel(&p, 300_000).await;
    let dir = p.dirs.path().join("b");
    p.b.stop().await.unwrap();
    let manager = || -> Option<Vec<u8>> {
        node_db(&dir)
            .query_row(
                "SELECT value FROM kv WHERE primary_ns = '' AND secondary_ns = '' AND key = 'manager'",
                [],
                |r| r.get(0),
            )
            .ok()
    };
    let saved = manager().expect("the persisted manager");
    node_db(&dir)
        .execute(
            "DELETE FROM kv WHERE primary_ns = '' AND key = 'manager'",
            [],
        )
        .unwrap();
    let mut config =
        ln_adapter::LnConfig::new(p.node.chain_id(), p.node.rpc_config(Some("b")), dir.clone());
    config.poll_interval = std::time::Duration::from_millis(200);
    config.anchors = false;
    let err = ln_adapter::LnNode::start(config, &ln_adapter::Seed::new([2; 32]))
        .await
        .expect_err("started over monitors without a manager");
    assert!(
        matches!(err, ln_adapter::LnError::Decode(ref m) if m.contains("no channel manager")),
        "{err}"
    );
    assert!(manager().is_none(), "nothing written");
    // With the manager back, the node starts and has its channel.
    node_db(&dir)
        .execute(
            "INSERT INTO kv (primary_ns, secondary_ns, key, value) VALUES ('', '', 'manager', ?1)",
            [saved],
        )
        .unwrap();
    p.b = start_ln(&p.node, "b", 2, &dir).await;
    assert_eq!(p.b.channels().len(), 1);
}
