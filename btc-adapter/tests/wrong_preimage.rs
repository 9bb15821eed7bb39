//! The node rejects a claim with a wrong preimage, and a claim with a 33-byte preimage even
//! when it hashes to the lock (the script's `SIZE 32` check). The adapter refuses the wrong
//! one before sending anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use bitcoin::hashes::{sha256, Hash};
use swap_core::{Hashlock, HtlcStatus, Preimage, Rail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_oversized_preimages_are_rejected() {
    let env = common::env().await;
    let key = env.bob.swap_key(common::KEY_INDEX).unwrap();
    let dest = common::wallet_script(&env.bob_wallet).await;

    // 1. A wrong 32-byte preimage.
    let s = Preimage::random().unwrap();
    let p = env.params(1_000_000, 50, &s).await;
    let funding = common::fund(&env, &p).await;
    let err = env
        .bob
        .claim(&p, &Preimage::from_bytes([0x11; 32]))
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    let (outpoint, value) = common::htlc_outpoint(&env, &env.bob, &p, &funding).await;
    let script = env.bob.htlc(&p).unwrap().witness_script();
    let bad = common::hand_claim(
        &script,
        outpoint,
        value,
        &dest,
        2_000,
        key.secret_key(),
        &[0x11; 32],
    );
    let e = env.node.rpc().send_raw_transaction(&bad).await.unwrap_err();
    eprintln!("wrong preimage: {e}");
    assert!(!e.is_transient() && !e.is_already_known());
    assert_eq!(e.code(), Some(btc_adapter::rpc::RPC_VERIFY_REJECTED));
    assert!(matches!(
        env.bob.htlc_status(&p).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
    // The right one, built the same way, is accepted (the test's claim is sound).
    let good = common::hand_claim(
        &script,
        outpoint,
        value,
        &dest,
        2_000,
        key.secret_key(),
        s.as_bytes(),
    );
    env.node.rpc().send_raw_transaction(&good).await.unwrap();

    // 2. A 33-byte secret whose SHA-256 is the lock: rejected by the size check.
    let secret33 = [0x42u8; 33];
    let mut p33 = env.params(1_000_000, 50, &s).await;
    p33.hashlock = Hashlock(sha256::Hash::hash(&secret33).to_byte_array());
    let funding = common::fund(&env, &p33).await;
    let (outpoint, value) = common::htlc_outpoint(&env, &env.bob, &p33, &funding).await;
    let script = env.bob.htlc(&p33).unwrap().witness_script();
    let bad = common::hand_claim(
        &script,
        outpoint,
        value,
        &dest,
        2_000,
        key.secret_key(),
        &secret33,
    );
    let e = env.node.rpc().send_raw_transaction(&bad).await.unwrap_err();
    eprintln!("33-byte preimage: {e}");
    assert!(!e.is_transient() && !e.is_already_known());
    assert_eq!(e.code(), Some(btc_adapter::rpc::RPC_VERIFY_REJECTED));
    let accept = env.node.rpc().test_mempool_accept(&bad).await.unwrap();
    assert!(!accept.allowed);
    assert!(matches!(
        env.bob.htlc_status(&p33).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
}
