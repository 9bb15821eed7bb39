//! Waiting for many transactions at once: the new blocks' receipts are read once for every
//! waiter (`eth_getBlockReceipts`), not each receipt asked for at every new block.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use alloy::providers::{Provider, ProviderBuilder};
use serde_json::json;
use swap_core::rail::{HtlcStatus, Rail};

#[tokio::test]
async fn many_waiters_find_their_receipts_in_one_read_per_block() {
    let e = common::env().await;
    const N: usize = 12;
    let mut swaps = Vec::new();
    for i in 0..N {
        swaps.push(common::eth_swap(&e.net, 0, 1, 10u128.pow(15) + i as u128, 3600).await);
    }
    // Blocks only when mined below: every lock waits in the pool, then several blocks pass
    // while the waiters look.
    e.net.rpc("evm_setAutomine", json!([false])).await;
    let alice = Arc::new(e.alice);
    let count = |m: &str| alice.rpc_calls_by_method().get(m).copied().unwrap_or(0);
    let (receipts0, blocks0) = (
        count("eth_getTransactionReceipt"),
        count("eth_getBlockReceipts"),
    );
    let tasks: Vec<_> = swaps
        .iter()
        .map(|(p, _)| {
            let (a, p) = (alice.clone(), p.clone());
            tokio::spawn(async move { a.lock(&p).await })
        })
        .collect();
    let miner = {
        let url = e.net.url().to_string();
        tokio::spawn(async move {
            let p = ProviderBuilder::new().connect_http(url.parse().unwrap());
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
            }
        })
    };
    let mut txs = Vec::new();
    for t in tasks {
        txs.push(t.await.unwrap().unwrap());
    }
    miner.abort();
    e.net.rpc("evm_setAutomine", json!([true])).await;
    txs.sort_by(|a, b| a.0.cmp(&b.0));
    txs.dedup();
    assert_eq!(txs.len(), N, "one transaction per lock");
    for (p, _) in &swaps {
        assert!(matches!(
            e.bob.htlc_status(p).await.unwrap(),
            HtlcStatus::Funded { .. }
        ));
    }
    let asked = count("eth_getTransactionReceipt") - receipts0;
    let read = count("eth_getBlockReceipts") - blocks0;
    println!("{N} locks waited for: {asked} receipts asked, {read} block receipt reads");
    // Each waiter asks once, when it starts; the blocks after that are read once for all.
    // (Asking at each new block would be at least 2 asks per waiter.)
    assert!(read > 0, "no block's receipts read");
    assert!(
        asked < 2 * N as u64,
        "{asked} receipts asked for {N} transactions"
    );
}
