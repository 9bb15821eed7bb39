//! Cancels of expired locks on real anvil (the rail's `refund`, over TCP): judged by the
//! chain's time, never the local clock; never countersigned by a receiver holding the secret.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::B256;
use eth_channel::{
    ChainView, PartyError, RejectCode, RpcChain, SecretMap, SessionError, UpdateKind,
};
use swap_core::rail::{Cause, Rail};
use swap_core::types::Expiry;

use crate::rail::{plain, pre, Env, DEP_A, DEP_B, ONE};

/// Waits until the local clock is at or past `t`.
async fn local_past(env: &Env, t: u64) {
    let clock = RpcChain::new(plain(&env.net), BlockNumberOrTag::Latest);
    while clock.now() <= t {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn expiry_of(h: &swap_core::rail::HtlcParams) -> u64 {
    match h.expiry {
        Expiry::Time(t) => t.0,
        Expiry::Height(_) => unreachable!(),
    }
}

/// The local clock past the expiry, no block since: the lock has not expired for the chain
/// (the contract would still take a reveal), so no cancel is signed; a block at or after
/// the expiry, and the cancel goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_waits_for_the_chains_time() {
    let env = Env::start(30).await;
    let p = pre(30);
    let h = env.leg(&p, ONE, 3);
    env.a.rail.lock(&h).await.unwrap();
    let expiry = expiry_of(&h);
    local_past(&env, expiry).await;
    let latest = eth_adapter::tx::latest(env.net.provider()).await.unwrap();
    assert!(latest.timestamp < expiry, "no block since the lock");

    let e = env.a.rail.refund(&h).await.unwrap_err();
    assert_eq!(
        e.cause,
        Cause::NotReady {
            until: Some(h.expiry)
        },
        "{e:?}"
    );
    // Our own party refuses to sign it (nothing pending, nothing sent).
    let e = env
        .a
        .node
        .propose(
            env.chan.id(),
            UpdateKind::CancelExpired {
                hashlock: B256::from(h.hashlock.0),
            },
        )
        .await
        .unwrap_err();
    match e {
        SessionError::Party(PartyError::Invalid(r)) => {
            assert_eq!(r.code, RejectCode::LockNotExpired)
        }
        other => panic!("expected our party to refuse, got {other:?}"),
    }
    assert!(env
        .a
        .node
        .with_party(env.chan.id(), |p| p.pending().is_none())
        .unwrap());
    assert_eq!(env.state(), (DEP_A - ONE, DEP_B, 1));

    env.net.mine(1).await;
    env.a.rail.refund(&h).await.unwrap();
    assert_eq!(env.state(), (DEP_A, DEP_B, 0));
}

/// The receiver holds the lock's secret (its watcher's reveal may be in flight, not mined):
/// it refuses to countersign the sender's cancel even after the expiry, with `SecretKnown`,
/// and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_holding_the_secret_never_countersigns_its_cancel() {
    let env = Env::start(31).await;
    let p = pre(31);
    let h = env.leg(&p, ONE, 3);
    env.a.rail.lock(&h).await.unwrap();
    let secrets = SecretMap::new();
    secrets.insert(B256::from(*p.as_bytes()));
    env.b.node.add_secrets(Arc::new(secrets)).unwrap();
    local_past(&env, expiry_of(&h)).await;
    env.net.mine(1).await;
    // Not revealed on chain: only the receiver's knowledge stops the cancel.
    assert!(env
        .chan
        .revealed_at(env.net.provider(), B256::from(h.hashlock.0))
        .await
        .unwrap()
        .is_none());
    let before = env.state();
    let e = env.a.rail.refund(&h).await.unwrap_err();
    assert_eq!(
        e.cause,
        Cause::Rejected {
            code: Some(eth_channel::rail::reject_number(RejectCode::SecretKnown))
        },
        "{e:?}"
    );
    assert_eq!(env.state(), before, "nothing changed");
    assert_eq!(before, (DEP_A - ONE, DEP_B, 1));
}
