//! A late claim (after the expiry) replaces the sender's refund while that refund is only in the
//! mempool (BIP-125): the claim branch has no timelock. Within the fee caps, a transient error
//! when the node refuses the replacement; a mined refund cannot be replaced (permanent error).
//! The sender's fee bumps never replace the recipient's claim with a refund.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::HashMap;
use swap_core::Finality;

use bitcoin::Transaction;
use btc_adapter::chain::txid_of;
use btc_adapter::tx::{replacement_fee, Replaced, ReplacementPolicy};
use btc_adapter::FeeConfig;
use serde_json::json;
use swap_core::{Expiry, HtlcParams, HtlcStatus, Preimage, Rail, TxRef};

async fn mine_to_expiry(env: &common::Env, p: &HtlcParams) {
    let Expiry::Height(expiry) = p.expiry else {
        unreachable!()
    };
    let tip = env.node.height().await;
    env.node.mine(expiry.0 - tip).await;
}

async fn in_mempool(env: &common::Env, txref: &TxRef) -> bool {
    let txid = txid_of(txref).unwrap();
    env.node
        .rpc()
        .get_raw_mempool()
        .await
        .unwrap()
        .contains(&txid)
}

async fn tx(env: &common::Env, txref: &TxRef) -> Transaction {
    env.node
        .rpc()
        .get_raw_transaction(&txid_of(txref).unwrap(), None)
        .await
        .unwrap()
}

async fn prioritise(env: &common::Env, txref: &TxRef, delta: i64) {
    let _: serde_json::Value = env
        .node
        .rpc()
        .call(
            "prioritisetransaction",
            vec![json!(txref.0), json!(0), json!(delta)],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_claim_replaces_the_unconfirmed_refund() {
    let env = common::env().await;
    // Alice refunds at 20 sat/vB and would bump her spends at once (bump_after_blocks 0).
    let alice = common::chain_for(
        &env.node,
        "alice",
        1,
        FeeConfig {
            fallback_sat_vb: 20,
            bump_after_blocks: 0,
            ..common::fees()
        },
    );
    let s = Preimage::random().unwrap();
    let amount = 10_000_000;
    let p = env.params(amount, 5, &s).await;
    common::fund(&env, &p).await;
    mine_to_expiry(&env, &p).await;
    let bob_before = env.bob_wallet.get_balance().await.unwrap();

    let refund = alice.refund(&p).await.unwrap();
    assert!(in_mempool(&env, &refund).await);
    let refund_tx = tx(&env, &refund).await;
    let refund_fee = amount - refund_tx.output[0].value.to_sat();
    let refund_vsize = refund_tx.vsize() as u64;
    assert!(matches!(
        env.bob.htlc_status(&p).await.unwrap(),
        HtlcStatus::Refunded {
            finality: Finality::Mempool,
            ..
        }
    ));

    // Capped at the refund's own feerate: refused (transient), not capped silently.
    let capped = common::chain_for(
        &env.node,
        "bob",
        2,
        FeeConfig {
            max_sat_vb: 20,
            ..common::fees()
        },
    );
    let err = capped.claim(&p, &s).await.unwrap_err();
    eprintln!("capped: {err}");
    assert!(err.is_transient(), "{err}");
    assert!(in_mempool(&env, &refund).await);

    // The node counts the refund as paying more than it does: it rejects our replacement,
    // a transient error.
    prioritise(&env, &refund, 100_000).await;
    let err = env.bob.claim(&p, &s).await.unwrap_err();
    eprintln!("rejected: {err}");
    assert!(err.is_transient(), "{err}");
    assert!(in_mempool(&env, &refund).await);
    prioritise(&env, &refund, -100_000).await;

    // The claim replaces the refund.
    let claim = env.bob.claim(&p, &s).await.unwrap();
    assert_ne!(claim, refund);
    assert!(in_mempool(&env, &claim).await);
    assert!(
        !in_mempool(&env, &refund).await,
        "the refund left the mempool"
    );
    let claim_tx = tx(&env, &claim).await;
    assert_eq!(
        claim_tx.input[0].previous_output,
        refund_tx.input[0].previous_output
    );
    let received = claim_tx.output[0].value.to_sat();
    let claim_fee = amount - received;
    let claim_vsize = claim_tx.vsize() as u64;
    let (incremental, _) = env.node.rpc().relay_feerates().await.unwrap();
    eprintln!(
        "refund {refund}: fee {refund_fee}, vsize {refund_vsize}; claim {claim}: fee {claim_fee}, \
         vsize {claim_vsize}; incremental {incremental} sat/vB"
    );
    // BIP-125: more than the refund by the incremental feerate, at a higher feerate.
    assert!(claim_fee >= refund_fee + incremental * claim_vsize);
    assert!(claim_fee * 1000 / claim_vsize > refund_fee * 1000 / refund_vsize);
    // And no more than that: the least fee for the estimated vsize (at most 1 vB above).
    let least = |vsize| {
        replacement_fee(
            vsize,
            &ReplacementPolicy {
                feerate_sat_vb: common::fees().fallback_sat_vb,
                incremental_sat_vb: incremental,
                max_sat_vb: common::fees().max_sat_vb,
                max_fee_bps: common::fees().max_fee_bps,
                replaced: Replaced {
                    fee: refund_fee,
                    vsize: refund_vsize,
                },
            },
        )
    };
    assert!(
        claim_fee == least(claim_vsize) || claim_fee == least(claim_vsize + 1),
        "claim fee {claim_fee}"
    );
    // Idempotent: our claim is pending now.
    assert_eq!(env.bob.claim(&p, &s).await.unwrap(), claim);

    // Alice sees the claim and the secret; she cannot refund, and her fee bumps leave the
    // claim alone.
    let claimed = |confirmations: u32| HtlcStatus::Claimed {
        preimage: s.clone(),
        txref: claim.clone(),
        finality: Finality::confirmations(confirmations),
    };
    assert_eq!(alice.htlc_status(&p).await.unwrap(), claimed(0));
    assert!(!alice.refund(&p).await.unwrap_err().is_transient());
    assert_eq!(alice.bump_fees(&HashMap::new()).await.unwrap(), vec![]);
    assert!(in_mempool(&env, &claim).await);

    env.node.mine(1).await;
    assert_eq!(env.bob.htlc_status(&p).await.unwrap(), claimed(1));
    assert_eq!(alice.htlc_status(&p).await.unwrap(), claimed(1));
    assert_eq!(env.alice.htlc_status(&p).await.unwrap(), claimed(1));
    let bob_after = env.bob_wallet.get_balance().await.unwrap();
    assert_eq!(bob_after - bob_before, amount - claim_fee);
    assert_eq!(env.bob.claim(&p, &s).await.unwrap(), claim);

    // A mined refund is final: the claim is refused for good.
    let s2 = Preimage::random().unwrap();
    let p2 = env.params(amount, 5, &s2).await;
    common::fund(&env, &p2).await;
    mine_to_expiry(&env, &p2).await;
    let refund2 = env.alice.refund(&p2).await.unwrap();
    env.node.mine(1).await;
    assert_eq!(
        env.bob.htlc_status(&p2).await.unwrap(),
        HtlcStatus::Refunded {
            txref: refund2.clone(),
            finality: Finality::Depth(1)
        }
    );
    let err = env.bob.claim(&p2, &s2).await.unwrap_err();
    eprintln!("mined refund: {err}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("already refunded"), "{err}");
    assert_eq!(env.alice.refund(&p2).await.unwrap(), refund2);
}
