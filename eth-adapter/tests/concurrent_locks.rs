//! Many swaps locked at once from one account (nonce manager), ETH and ERC-20 mixed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use alloy::network::EthereumWallet;
use alloy::primitives::U256;
use alloy::providers::ProviderBuilder;
use devnet::test_contracts::TestToken;
use swap_core::rail::{HtlcStatus, Rail, RailOp};

#[tokio::test]
async fn concurrent_locks_from_one_account() {
    let e = common::env().await;
    let p0 = ProviderBuilder::new()
        .wallet(EthereumWallet::from(e.net.signer(0)))
        .connect_http(e.net.url().parse().unwrap());
    let token = TestToken::deploy(&p0, "Test".into(), 6).await.unwrap();
    token
        .mint(e.net.address(0), U256::from(10u64.pow(12)))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let alice = Arc::new(e.alice);
    let mut swaps = Vec::new();
    for i in 0..16 {
        if i % 4 == 0 {
            swaps
                .push(common::token_swap(&e.net, *token.address(), 6, 0, 1, 1_000 + i, 3600).await);
        } else {
            swaps.push(common::eth_swap(&e.net, 0, 1, 10u128.pow(15) + i, 3600).await);
        }
    }
    let mut tasks = Vec::new();
    for (p, _) in &swaps {
        let (a, p) = (alice.clone(), p.clone());
        tasks.push(tokio::spawn(async move { a.lock(&p).await }));
    }
    let mut txs = Vec::new();
    for t in tasks {
        txs.push(t.await.unwrap().unwrap());
    }
    txs.sort_by(|a, b| a.0.cmp(&b.0));
    txs.dedup();
    assert_eq!(txs.len(), swaps.len(), "one transaction per swap");
    for (p, _) in &swaps {
        assert!(matches!(
            e.bob.htlc_status(p).await.unwrap(),
            HtlcStatus::Funded { .. }
        ));
    }
    // A round of claims by the recipient (the runtime hands a tick's claims over together).
    let bob = Arc::new(e.bob);
    let ops: Vec<RailOp> = swaps
        .iter()
        .map(|(p, pre)| RailOp::Claim(p.clone(), pre.clone()))
        .collect();
    let claims: Vec<_> = bob
        .execute(&ops)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    // The round's claims share claimBatch transactions.
    let mut distinct = claims.clone();
    distinct.sort_by(|a, b| a.0.cmp(&b.0));
    distinct.dedup();
    println!(
        "{} claims of a round sent in {} transaction(s)",
        claims.len(),
        distinct.len()
    );
    assert!(
        distinct.len() < swaps.len(),
        "the round's claims were not batched: {} transactions",
        distinct.len()
    );
    for ((p, pre), tx) in swaps.iter().zip(&claims) {
        match alice.htlc_status(p).await.unwrap() {
            HtlcStatus::Claimed {
                preimage, txref, ..
            } => {
                assert_eq!(&preimage, pre);
                assert_eq!(&txref, tx);
            }
            other => panic!("expected claimed, got {other:?}"),
        }
    }
    let bal = token
        .balanceOf(common::evm_addr(&e.net, 1))
        .call()
        .await
        .unwrap();
    assert_eq!(bal, U256::from(1_000 + 1_004 + 1_008 + 1_012));
}
