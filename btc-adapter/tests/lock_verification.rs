//! What the adapter reports for locks that are not the agreed one: a wrong amount is reported
//! with the amount found on chain; a lock with another expiry or another key pays another
//! script, so the agreed HTLC is Absent (and the lock actually made is visible under its own
//! terms).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use swap_core::Finality;
use swap_core::{Account, Amount, Expiry, Height, HtlcStatus, Preimage, Rail, Sats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_locks_are_reported_as_what_they_are() {
    let env = common::env().await;
    let amount = 4_000_000;

    // Wrong amount: funded by hand with 1,000 sat less.
    let s1 = Preimage::random().unwrap();
    let p1 = env.params(amount, 60, &s1).await;
    env.node
        .send(&env.alice.htlc_address(&p1).unwrap(), amount - 1_000)
        .await;

    // Wrong expiry: the agreed terms say E, the lock uses E - 5.
    let s2 = Preimage::random().unwrap();
    let agreed2 = env.params(amount, 60, &s2).await;
    let mut made2 = agreed2.clone();
    let Expiry::Height(e) = agreed2.expiry else {
        unreachable!()
    };
    made2.expiry = Expiry::Height(Height(e.0 - 5));
    env.alice.lock(&made2).await.unwrap();

    // Wrong script: the claim key is not Bob's.
    let s3 = Preimage::random().unwrap();
    let agreed3 = env.params(amount, 60, &s3).await;
    let mut made3 = agreed3.clone();
    made3.recipient = Account::PublicKey(env.alice.swap_public_key(99).unwrap());
    env.alice.lock(&made3).await.unwrap();

    env.node.mine(1).await;

    match env.bob.htlc_status(&p1).await.unwrap() {
        HtlcStatus::Funded { lock, finality } => {
            assert_eq!(lock.amount, Amount::Sats(Sats(amount - 1_000)));
            assert_ne!(lock.amount, p1.amount);
            assert_eq!(finality, Finality::confirmations(1));
        }
        other => panic!("expected funded with the wrong amount, got {other:?}"),
    }
    assert_eq!(
        env.bob.htlc_status(&agreed2).await.unwrap(),
        HtlcStatus::Absent
    );
    match env.bob.htlc_status(&made2).await.unwrap() {
        HtlcStatus::Funded { lock, .. } => assert_eq!(lock.expiry, made2.expiry),
        other => panic!("expected funded, got {other:?}"),
    }
    assert_eq!(
        env.bob.htlc_status(&agreed3).await.unwrap(),
        HtlcStatus::Absent
    );
    assert!(matches!(
        env.bob.htlc_status(&made3).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
    // Bob cannot claim an HTLC whose claim key is not his.
    assert!(!env.bob.claim(&made3, &s3).await.unwrap_err().is_transient());
    // An adapter asked to lock the wrong-amount HTLC sees it funded and does not fund again.
    let before = env.alice_wallet.get_balance().await.unwrap();
    env.alice.lock(&p1).await.unwrap();
    assert_eq!(env.alice_wallet.get_balance().await.unwrap(), before);
}
