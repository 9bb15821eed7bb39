//! The node goes down while LDK broadcasts (here a force close's commitment transaction): the
//! send is queued and made again as soon as the node answers, before any new block (LDK's own
//! rebroadcast of a funding transaction never comes, and of a commitment only after blocks or
//! its 30 s timer).

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_while_the_node_is_down_is_sent_when_it_is_back() {
    let mut p = pair().await;
    let (channel_id, _) = open_channel(&p, 300_000).await;
    let funding =
        p.a.channels()
            .into_iter()
            .find(|c| c.channel_id == channel_id)
            .and_then(|c| c.funding)
            .expect("funding outpoint");
    let height = p.node.height().await;
    p.node.stop().await;
    p.a.force_close(&channel_id, &p.b.node_id()).unwrap();
    wait_until("the commitment queued", || p.a.queued_broadcasts() > 0).await;
    p.node.start_again().await;
    let started = Instant::now();
    let spend = wait_spend(&p, funding).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        p.node.height().await,
        height,
        "sent again before any new block"
    );
    assert_eq!(spend.input[0].previous_output, funding);
    wait_until("the queue emptied", || p.a.queued_broadcasts() == 0).await;
}

/// The same, but the Lightning node stops too before the node is back: the queue was kept in
/// its store, and the node started again from its directory sends it at its first poll,
/// before any new block (LDK's own rebroadcast would wait for blocks or its 30 s timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_broadcast_survives_a_restart_of_the_lightning_node() {
    let mut p = pair().await;
    let (channel_id, _) = open_channel(&p, 300_000).await;
    let funding =
        p.a.channels()
            .into_iter()
            .find(|c| c.channel_id == channel_id)
            .and_then(|c| c.funding)
            .expect("funding outpoint");
    let height = p.node.height().await;
    p.node.stop().await;
    p.a.force_close(&channel_id, &p.b.node_id()).unwrap();
    wait_until("the commitment queued", || p.a.queued_broadcasts() > 0).await;
    let queue_dir = p.dirs.path().join("a").join("xswap").join("rebroadcast");
    let kept = || std::fs::read_dir(&queue_dir).map_or(0, |d| d.count());
    assert!(kept() > 0, "the queued commitment is kept in the store");
    let a_addr = p.a.listen_addr();
    p.a.stop().await.unwrap();
    p.node.start_again().await;
    p.a = start_ln_on(&p.node, "a", 1, &p.dirs.path().join("a"), Some(a_addr)).await;
    let started = Instant::now();
    let spend = wait_spend(&p, funding).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        p.node.height().await,
        height,
        "sent again before any new block"
    );
    assert_eq!(spend.input[0].previous_output, funding);
    wait_until("the queue emptied", || p.a.queued_broadcasts() == 0).await;
    wait_until("the stored queue emptied", || kept() == 0).await;
}
