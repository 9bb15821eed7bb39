//! The node goes down while LDK broadcasts (here a force close's commitment transaction): the
//! send is queued and made again as soon as the node answers, before any new block (LDK's own
//! rebroadcast of a funding transaction never comes, and of a commitment only after blocks or
//! its 30 s timer).

use std::time::{Duration, Instant};

use bitcoin::OutPoint;

use crate::common::*;

/// A pair with a channel, the node stopped, then `a` force-closes: its commitment cannot be
/// sent and is queued. Returns the pair, the channel's funding outpoint and the height then.
async fn force_closed_while_the_node_is_down() -> (Pair, OutPoint, u64) {
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
    p.a.force_close(&channel_id, &p.b.node_id())
        .expect("force close");
    wait_until("the commitment queued", || p.a.queued_broadcasts() > 0).await;
    (p, funding, height)
}

/// The queued commitment reaches the node (back up) within 20 s and before any new block,
/// and `a`'s queue empties.
async fn sent_again_before_any_block(p: &Pair, funding: OutPoint, height: u64) {
    let started = Instant::now();
    let spend = wait_spend(p, funding).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        p.node.height().await,
        height,
        "sent again before any new block"
    );
    assert_eq!(spend.input[0].previous_output, funding);
    wait_until("the queue emptied", || p.a.queued_broadcasts() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_while_the_node_is_down_is_sent_when_it_is_back() {
    let (mut p, funding, height) = force_closed_while_the_node_is_down().await;
    p.node.start_again().await;
    sent_again_before_any_block(&p, funding, height).await;
}

/// The same, but the Lightning node stops too before the node is back: the queue was kept in
/// its store, and the node started again from its directory sends it before any new block,
/// and the stored queue empties. (LDK also broadcasts a force-closed channel's commitment
/// again when it starts, so this run would pass without the stored queue; the transaction it
/// is for, a funding LDK broadcasts once, cannot be timed here: `io::tests` shows the queue
/// read back by the next broadcaster.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_broadcast_survives_a_restart_of_the_lightning_node() {
    let (mut p, funding, height) = force_closed_while_the_node_is_down().await;
    let a_dir = p.dirs.path().join("a");
    let kept = || stored_values(&a_dir, "xswap", "rebroadcast");
    assert!(kept() > 0, "the queued commitment is kept in the store");
    let a_addr = p.a.listen_addr();
    p.a.stop().await.unwrap();
    p.node.start_again().await;
    p.a = start_ln_on(&p.node, "a", 1, &p.dirs.path().join("a"), Some(a_addr)).await;
    sent_again_before_any_block(&p, funding, height).await;
    wait_until("the stored queue emptied", || kept() == 0).await;
}
