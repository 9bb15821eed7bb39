//! A refund that is not mined is replaced with a higher fee after `bump_after_blocks` blocks,
//! through `BtcChain::bump_fees` (the engine's periodic hook) as well as a repeated `refund`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::HashMap;
use swap_core::Finality;

use btc_adapter::chain::txid_of;
use serde_json::json;
use swap_core::{HtlcStatus, Preimage, Rail};

async fn deprioritise(rpc: &btc_adapter::rpc::RpcClient, txid: &str) {
    let _: serde_json::Value = rpc
        .call(
            "prioritisetransaction",
            vec![json!(txid), json!(0), json!(-100_000_000)],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_refund_is_replaced() {
    let env = common::env_with(btc_adapter::FeeConfig {
        fallback_sat_vb: 2,
        bump_after_blocks: 1,
        ..btc_adapter::FeeConfig::default()
    })
    .await;
    let s = Preimage::random().unwrap();
    let p = env.params(9_000_000, 3, &s).await;
    common::fund(&env, &p).await;
    env.node.mine(2).await;
    let first = env.alice.refund(&p).await.unwrap();
    deprioritise(env.node.rpc(), &first.0).await;
    env.node.mine(1).await;
    let bumped = env.alice.bump_fees(&HashMap::new()).await.unwrap();
    assert_eq!(bumped.len(), 1);
    let second = bumped[0].clone();
    assert_ne!(second, first);
    // Stuck again: a repeated refund() bumps once more.
    deprioritise(env.node.rpc(), &second.0).await;
    env.node.mine(1).await;
    let third = env.alice.refund(&p).await.unwrap();
    assert_ne!(third, second);
    let rpc = env.node.rpc();
    let fee = |tx: &bitcoin::Transaction| 9_000_000 - tx.output[0].value.to_sat();
    let t3 = rpc
        .get_raw_transaction(&txid_of(&third).unwrap(), None)
        .await
        .unwrap();
    assert!(fee(&t3) > t3.vsize() as u64 * 2);
    env.node.mine(1).await;
    match env.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Refunded { txref, finality } => {
            assert_eq!(txref, third);
            assert_eq!(finality, Finality::confirmations(1));
        }
        other => panic!("expected refunded, got {other:?}"),
    }
}
