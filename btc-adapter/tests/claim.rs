//! Happy path: Alice locks, Bob claims with the right preimage; balances, idempotency, the
//! secret visible to Alice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use btc_adapter::chain::txid_of;
use swap_core::Finality;
use swap_core::{Amount, HtlcStatus, Preimage, Rail, Sats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_with_right_preimage() {
    let env = common::env().await;
    let s = Preimage::random().unwrap();
    let amount = 25_000_000;
    let p = env.params(amount, 50, &s).await;

    assert_eq!(env.bob.htlc_status(&p).await.unwrap(), HtlcStatus::Absent);
    let alice_before = env.alice_wallet.get_balance().await.unwrap();
    let bob_before = env.bob_wallet.get_balance().await.unwrap();

    // Two concurrent lock() calls fund once.
    let (a, b) = tokio::join!(env.alice.lock(&p), env.alice.lock(&p));
    let funding = a.unwrap();
    assert_eq!(b.unwrap(), funding);
    // Mempool: 0 confirmations, and lock() again does not fund twice.
    match env.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Funded { lock, finality } => {
            assert_eq!(finality, Finality::confirmations(0));
            assert_eq!(lock.txref, funding);
            assert_eq!(lock.amount, Amount::Sats(Sats(amount)));
            assert_eq!(lock.hashlock, p.hashlock);
            assert_eq!(lock.expiry, p.expiry);
        }
        other => panic!("expected funded, got {other:?}"),
    }
    assert_eq!(env.alice.lock(&p).await.unwrap(), funding);
    // A fresh adapter (after a crash) sees the mempool funding and does not fund again.
    let fresh = common::chain_for(&env.node, "alice", 1, common::fees());
    assert_eq!(fresh.lock(&p).await.unwrap(), funding);
    let mempool = env.node.rpc().get_raw_mempool().await.unwrap();
    assert_eq!(mempool.len(), 1);
    env.node.mine(1).await;
    assert_eq!(env.alice.lock(&p).await.unwrap(), funding);
    let st = env.bob.htlc_status(&p).await.unwrap();
    assert_eq!(common::confirmations(&st), Some(1));

    // Alice paid the amount plus a small fee, once.
    let alice_after = env.alice_wallet.get_balance().await.unwrap();
    let spent = alice_before - alice_after;
    assert!(
        spent > amount && spent < amount + 10_000,
        "alice spent {spent}"
    );

    // Bob claims.
    let claim = env.bob.claim(&p, &s).await.unwrap();
    match env.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage,
            txref,
            finality,
        } => {
            assert_eq!(preimage, s);
            assert_eq!(txref, claim);
            assert_eq!(finality, Finality::confirmations(0));
        }
        other => panic!("expected claimed, got {other:?}"),
    }
    // Idempotent.
    assert_eq!(env.bob.claim(&p, &s).await.unwrap(), claim);
    env.node.mine(1).await;
    match env.bob.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed { finality, .. } => assert_eq!(finality, Finality::confirmations(1)),
        other => panic!("expected claimed, got {other:?}"),
    }
    assert_eq!(env.bob.claim(&p, &s).await.unwrap(), claim);

    // Bob received the amount minus the claim fee.
    let tx = env
        .bob_wallet
        .get_raw_transaction(
            &txid_of(&claim).unwrap(),
            Some(&env.node.rpc().get_best_block_hash().await.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(tx.output.len(), 1);
    let received = tx.output[0].value.to_sat();
    let fee = amount - received;
    let vsize = tx.vsize() as u64;
    assert!(vsize <= 140, "claim vsize {vsize}");
    assert!(
        fee >= vsize * 5 && fee <= (vsize + 1) * 5,
        "fee {fee} vsize {vsize}"
    );
    let bob_after = env.bob_wallet.get_balance().await.unwrap();
    assert_eq!(bob_after - bob_before, received);
    // Alice cannot refund a claimed HTLC.
    let err = env.alice.refund(&p).await.unwrap_err();
    assert!(!err.is_transient());
    eprintln!("claim vsize {vsize}, fee {fee}");

    // No cache with an age: every status read scans, so a block mined between two reads
    // shows in the second; one observation answers several legs from one scan.
    let config = btc_adapter::BtcConfig::new(env.node.chain_id(), env.node.rpc_config(Some("bob")));
    let fresh = btc_adapter::BtcChain::new(config, &[2; 32]).unwrap();
    let confs = |st: HtlcStatus| common::confirmations(&st).unwrap();
    assert_eq!(confs(fresh.htlc_status(&p).await.unwrap()), 1);
    env.node.mine(1).await;
    assert_eq!(confs(fresh.htlc_status(&p).await.unwrap()), 2);
    let other = env.params(amount, 50, &Preimage::random().unwrap()).await;
    env.node.mine(1).await;
    let seen = fresh.observe(&[p.clone(), other.clone()]).await.unwrap();
    assert_eq!(confs(seen.statuses[0].clone().unwrap()), 3);
    assert_eq!(seen.statuses[1].clone().unwrap(), HtlcStatus::Absent);
    assert_eq!(seen.tip, fresh.tip().await.unwrap());

    // Rails issue, 7b: a watch-only adapter (no seed, no wallet) sees the claim and its secret,
    // and refuses to send anything.
    let watcher = btc_adapter::BtcChain::watch_only(btc_adapter::BtcConfig::new(
        env.node.chain_id(),
        env.node.rpc_config(None),
    ))
    .unwrap();
    assert!(watcher.is_watch_only());
    match watcher.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed { preimage, .. } => assert_eq!(preimage, s),
        other => panic!("expected claimed, got {other:?}"),
    }
    let mempool = env.node.rpc().get_raw_mempool().await.unwrap();
    for err in [
        watcher.lock(&other).await.unwrap_err(),
        watcher.claim(&p, &s).await.unwrap_err(),
        watcher.refund(&p).await.unwrap_err(),
        watcher.swap_key(1).unwrap_err(),
    ] {
        assert_eq!(err.cause, swap_core::Cause::Invalid, "{err}");
        assert!(err.message.contains("watch-only"), "{err}");
    }
    assert_eq!(env.node.rpc().get_raw_mempool().await.unwrap(), mempool);
    // Forgotten, the HTLC is no longer watched; asked again, it is found afresh.
    assert_eq!(watcher.watched_htlcs().await, 1);
    watcher.forget(&p).await;
    assert_eq!(watcher.watched_htlcs().await, 0);
    match watcher.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed { preimage, .. } => assert_eq!(preimage, s),
        other => panic!("expected claimed after a re-watch, got {other:?}"),
    }
}
