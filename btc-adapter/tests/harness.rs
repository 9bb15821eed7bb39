//! The regtest harness itself: start, wallet, CLTV-active height, mine, reorg, restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use btc_adapter::regtest::{NodeKind, RegtestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_starts_mines_reorgs_and_restarts() {
    let mut node = RegtestNode::start().await;
    let h = node.height().await;
    if node.kind() == NodeKind::Litecoind {
        assert!(h > 1351, "CLTV must be active, height {h}");
    }
    assert!(node.rpc().get_balance().await.unwrap() > 100_000_000);
    let hashes = node.mine(3).await;
    assert_eq!(node.height().await, h + 3);
    let new = node.reorg(2).await;
    assert_eq!(node.height().await, h + 3);
    assert_eq!(new.len(), 2);
    assert_eq!(node.rpc().get_block_hash(h + 1).await.unwrap(), hashes[0]);
    assert_ne!(node.rpc().get_block_hash(h + 2).await.unwrap(), hashes[1]);
    let block = node
        .rpc()
        .get_block_verbose(&node.rpc().get_block_hash(h + 3).await.unwrap())
        .await
        .unwrap();
    for (i, tx) in block.tx.iter().enumerate() {
        let parsed: Result<bitcoin::Transaction, _> =
            bitcoin::consensus::encode::deserialize_hex(&tx.hex);
        eprintln!("tx {i} {} parse ok: {}", tx.txid, parsed.is_ok());
    }
    let t = std::time::Instant::now();
    node.stop().await;
    eprintln!("TIMING stop {:?}", t.elapsed());
    let t = std::time::Instant::now();
    node.start_again().await;
    eprintln!("TIMING start {:?}", t.elapsed());
    assert_eq!(node.height().await, h + 3);
    node.mine(1).await;
    assert_eq!(node.height().await, h + 4);
}
