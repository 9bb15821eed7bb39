//! Twenty swaps locked concurrently from one account, then claimed in one transaction.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use alloy::providers::Provider;
use swap_core::rail::{HtlcStatus, Rail};

#[tokio::test]
async fn batch_claim_of_twenty_swaps() {
    let e = common::env().await;
    let alice = Arc::new(e.alice);
    let mut swaps = Vec::new();
    for _ in 0..20 {
        swaps.push(common::eth_swap(&e.net, 0, 1, 10u128.pow(16), 3600).await);
    }
    let mut tasks = Vec::new();
    for (p, _) in &swaps {
        let (a, p) = (alice.clone(), p.clone());
        tasks.push(tokio::spawn(async move { a.lock(&p).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let bob_addr = e.net.address(1);
    let before = common::balance(&e.net, bob_addr).await;
    let tx = e.bob.claim_batch(&swaps).await.unwrap().expect("sent");
    let receipt = e
        .net
        .provider()
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    let after = common::balance(&e.net, bob_addr).await;
    let fee = alloy::primitives::U256::from(receipt.gas_used as u128 * receipt.effective_gas_price);
    assert_eq!(
        after + fee - before,
        alloy::primitives::U256::from(20 * 10u128.pow(16))
    );
    for (p, pre) in &swaps {
        match alice.htlc_status(p).await.unwrap() {
            HtlcStatus::Claimed { preimage, .. } => assert_eq!(&preimage, pre),
            other => panic!("expected claimed, got {other:?}"),
        }
    }
    // Idempotent: everything already claimed, nothing sent.
    assert_eq!(e.bob.claim_batch(&swaps).await.unwrap(), None);
    println!("batch claim of 20: {} gas", receipt.gas_used);
}
