//! A proposal the peer refuses does not block the channel (anvil, two nodes over TCP): the
//! proposer abandons it on the typed rejection, stays careful with it until a higher version
//! is co-signed, and the next update goes through at the version above it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::primitives::B256;
use eth_channel::msg::WireLock;
use eth_channel::{ChannelStore, RejectCode, SessionError, UpdateKind};
use swap_core::params::Finality;
use swap_core::rail::{HtlcStatus, Rail};

use crate::rail::{pre, Env, DEP_A, DEP_B, ONE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proposal_is_abandoned_and_the_next_update_goes_through() {
    // B wants locks to run at least an hour.
    let env = Env::start_with(40, 3600).await;
    let id = env.chan.id();
    let short = env.leg(&pre(40), ONE, 600);
    let e = env.a.rail.lock(&short).await.unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    // Abandoned, not pending: the channel is free. Signed by us, so the rail still counts
    // it as possibly in force (the peer could countersign it) until a higher version.
    let (pending, abandoned) = env
        .a
        .node
        .with_party(id, |p| (p.pending().is_some(), p.abandoned()))
        .unwrap();
    assert!(!pending);
    assert_eq!(abandoned, Some(1));
    assert_eq!(env.a.store.abandoned_proposals(id).unwrap().len(), 1);
    match env.a.rail.htlc_status(&short).await.unwrap() {
        HtlcStatus::Funded { finality, .. } => assert_eq!(finality, Finality::Mempool),
        other => panic!("expected possibly in force, got {other:?}"),
    }
    assert!(env.a.rail.cancel_lock(&short).await.is_err());

    // The same through the node: a typed refusal, then the next change at version 3.
    let bad = WireLock {
        from: env.a.addr,
        amount: ONE,
        hashlock: B256::from(pre(41).hashlock().0),
        expiry: match short.expiry {
            swap_core::types::Expiry::Time(t) => t.0,
            swap_core::types::Expiry::Height(_) => unreachable!(),
        },
    };
    match env.a.node.propose(id, UpdateKind::Lock { lock: bad }).await {
        Err(SessionError::Refused { code, .. }) => assert_eq!(code, RejectCode::BadExpiry),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
    let long = env.leg(&pre(42), 2 * ONE, 7200);
    env.a.rail.lock(&long).await.unwrap();
    assert_eq!(env.state(), (DEP_A - 2 * ONE, DEP_B, 1));
    let v = env
        .a
        .node
        .with_party(id, |p| p.latest().state.version)
        .unwrap();
    assert_eq!(v, 3, "versions 1 and 2 were abandoned, never co-signed");
    // A higher version is co-signed: the refused lock can no longer come into force.
    assert_eq!(
        env.a.rail.htlc_status(&short).await.unwrap(),
        HtlcStatus::Absent
    );
    env.a.rail.cancel_lock(&short).await.unwrap();
    // And the peer's next update goes through too.
    let p = pre(42);
    env.b.rail.claim(&long, &p).await.unwrap();
    assert_eq!(env.state(), (DEP_A - 2 * ONE, DEP_B + 2 * ONE, 0));
}
