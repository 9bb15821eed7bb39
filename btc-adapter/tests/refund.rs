//! A refund is rejected by the node as non-final before the expiry height and accepted at it;
//! the adapter waits (transient error) until then, and the claim is refused afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use btc_adapter::{build_refund, FeePolicy, HtlcOutput};
use swap_core::Finality;
use swap_core::{HtlcStatus, Preimage, Rail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_only_after_expiry() {
    let env = common::env().await;
    let s = Preimage::random().unwrap();
    let amount = 3_000_000;
    let p = env.params(amount, 6, &s).await;
    let expiry = match p.expiry {
        swap_core::Expiry::Height(h) => h.0,
        _ => unreachable!(),
    };
    let funding = common::fund(&env, &p).await;
    let alice_before = env.alice_wallet.get_balance().await.unwrap();

    // Built directly and sent: the node says non-final until the tip reaches the expiry.
    let htlc = env.alice.htlc(&p).unwrap();
    let key = env.alice.swap_key(common::KEY_INDEX).unwrap();
    let (outpoint, value) = common::htlc_outpoint(&env, &env.alice, &p, &funding).await;
    let dest = common::wallet_script(&env.alice_wallet).await;
    let fee = FeePolicy {
        feerate_sat_vb: 5,
        max_fee_bps: 500,
    };
    let refund = build_refund(&htlc, HtlcOutput { outpoint, value }, &dest, fee, &key).unwrap();
    eprintln!("refund vsize {}", refund.vsize);
    assert!(refund.vsize <= 140);
    let tip = env.node.height().await;
    assert!(tip < expiry);
    env.node.mine(expiry - 1 - tip).await;
    assert_eq!(env.node.height().await, expiry - 1);
    let e = env
        .node
        .rpc()
        .send_raw_transaction(&refund.tx)
        .await
        .unwrap_err();
    eprintln!("early refund: {e}");
    assert!(e.is_non_final(), "{e}");
    assert!(!e.is_transient());
    // The adapter does not even try yet.
    let err = env.alice.refund(&p).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        err.cause,
        swap_core::Cause::NotReady {
            until: Some(swap_core::Expiry::Height(swap_core::Height(expiry)))
        },
        "{err:?}"
    );
    // Bob's key cannot refund.
    assert!(!env.bob.refund(&p).await.unwrap_err().is_transient());

    env.node.mine(1).await;
    let txref = env.alice.refund(&p).await.unwrap();
    assert_eq!(env.alice.refund(&p).await.unwrap(), txref);
    match env.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Refunded { txref: t, finality } => {
            assert_eq!(t, txref);
            assert_eq!(finality, Finality::confirmations(0));
        }
        other => panic!("expected refunded, got {other:?}"),
    }
    env.node.mine(1).await;
    // Bob can no longer claim (an unconfirmed refund he would replace: claim_replaces_refund.rs).
    assert!(!env.bob.claim(&p, &s).await.unwrap_err().is_transient());
    assert!(matches!(
        env.alice.htlc_status(&p).await.unwrap(),
        HtlcStatus::Refunded {
            finality: Finality::Depth(1),
            ..
        }
    ));
    // The prebuilt refund conflicts with the mined one; the adapter's answer stays the same.
    assert_eq!(env.alice.refund(&p).await.unwrap(), txref);
    let alice_after = env.alice_wallet.get_balance().await.unwrap();
    let back = alice_after - alice_before;
    assert!(back > amount - 1_000 && back < amount, "refunded {back}");
}
