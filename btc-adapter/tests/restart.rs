//! The node stops mid-watch: the adapter answers with transient errors while it is down, and
//! carries on (same scanner state, new cookie) once it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use swap_core::Finality;
use swap_core::{HtlcStatus, Preimage, Rail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restart_mid_watch() {
    let mut env = common::env().await;
    let s = Preimage::random().unwrap();
    let p = env.params(7_000_000, 60, &s).await;
    common::fund(&env, &p).await;
    assert_eq!(
        common::confirmations(&env.bob.htlc_status(&p).await.unwrap()),
        Some(1)
    );

    env.node.stop().await;
    let err = env.bob.htlc_status(&p).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let err = env.bob.claim(&p, &s).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(env.bob.tip().await.unwrap_err().is_transient());
    let err = env.alice.lock(&p).await.unwrap_err();
    assert!(err.is_transient(), "{err}");

    env.node.start_again().await;
    env.node.mine(2).await;
    assert_eq!(
        common::confirmations(&env.bob.htlc_status(&p).await.unwrap()),
        Some(3)
    );
    let claim = env.bob.claim(&p, &s).await.unwrap();
    env.node.mine(1).await;
    match env.alice.htlc_status(&p).await.unwrap() {
        HtlcStatus::Claimed {
            preimage,
            txref,
            finality,
        } => {
            assert_eq!(preimage, s);
            assert_eq!(txref, claim);
            assert_eq!(finality, Finality::confirmations(1));
        }
        other => panic!("expected claimed, got {other:?}"),
    }
}
