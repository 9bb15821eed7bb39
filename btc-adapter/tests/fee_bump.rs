//! A claim that is not mined (the miner deprioritises it) is replaced with a higher fee after
//! `bump_after_blocks` blocks; the replacement is mined and pays Bob.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use btc_adapter::chain::txid_of;
use serde_json::json;
use swap_core::Finality;
use swap_core::{HtlcStatus, Preimage, Rail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_claim_is_replaced() {
    let env = common::env_with(btc_adapter::FeeConfig {
        fallback_sat_vb: 2,
        bump_after_blocks: 2,
        ..btc_adapter::FeeConfig::default()
    })
    .await;
    let s = Preimage::random().unwrap();
    let amount = 6_000_000;
    let p = env.params(amount, 60, &s).await;
    common::fund(&env, &p).await;

    let first = env.bob.claim(&p, &s).await.unwrap();
    // Make the miner ignore it.
    let _: serde_json::Value = env
        .node
        .rpc()
        .call(
            "prioritisetransaction",
            vec![json!(first.0), json!(0), json!(-100_000_000)],
        )
        .await
        .unwrap();
    env.node.mine(1).await;
    assert_eq!(
        env.bob.htlc_status(&p).await.unwrap(),
        HtlcStatus::Claimed {
            preimage: s.clone(),
            txref: first.clone(),
            finality: Finality::Mempool
        }
    );
    // One block: not yet.
    assert_eq!(env.bob.claim(&p, &s).await.unwrap(), first);
    env.node.mine(1).await;
    // Two blocks: replaced.
    let second = env.bob.claim(&p, &s).await.unwrap();
    assert_ne!(second, first);
    let rpc = env.node.rpc();
    let old = rpc
        .get_raw_transaction(&txid_of(&first).unwrap(), None)
        .await;
    assert!(old.is_err(), "the stuck claim left the mempool");
    let new = rpc
        .get_raw_transaction(&txid_of(&second).unwrap(), None)
        .await
        .unwrap();
    let new_out = new.output[0].value.to_sat();
    assert!(amount - new_out > new.vsize() as u64 * 2, "higher fee");
    env.node.mine(1).await;
    match env.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage,
            txref,
            finality,
        } => {
            assert_eq!(preimage, s);
            assert_eq!(txref, second);
            assert_eq!(finality, Finality::confirmations(1));
        }
        other => panic!("expected claimed, got {other:?}"),
    }
    assert_eq!(env.bob.claim(&p, &s).await.unwrap(), second);
    assert_eq!(env.bob_wallet.get_balance().await.unwrap(), new_out);
}
