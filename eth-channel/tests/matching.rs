//! The rail knows a leg's lock by all its terms (anvil, two nodes over TCP): a lock on the
//! same hashlock with another amount, expiry or direction is not the leg's.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use swap_core::rail::{Cause, HtlcParams, HtlcStatus, Rail};
use swap_core::types::{Amount, Expiry, Timestamp, Wei};

use crate::rail::{pre, Env, ONE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_the_same_hashlock_with_other_terms_is_not_the_legs() {
    let env = Env::start(50).await;
    let h = env.leg(&pre(50), ONE, 3600);
    env.a.rail.lock(&h).await.unwrap();
    let Expiry::Time(t) = h.expiry else {
        unreachable!()
    };
    let others = [
        HtlcParams {
            amount: Amount::Wei(Wei(2 * ONE)),
            ..h.clone()
        },
        HtlcParams {
            expiry: Expiry::Time(Timestamp(t.0 + 1)),
            ..h.clone()
        },
        HtlcParams {
            sender: h.recipient,
            recipient: h.sender,
            ..h.clone()
        },
    ];
    for other in &others {
        for rail in [&env.a.rail, &env.b.rail] {
            assert_eq!(
                rail.htlc_status(other).await.unwrap(),
                HtlcStatus::Absent,
                "{other:?}"
            );
        }
    }
    assert!(matches!(
        env.a.rail.htlc_status(&h).await.unwrap(),
        HtlcStatus::Funded { .. }
    ));
    // Locking a leg of other terms on a pending hashlock: refused by the peer, typed.
    let e = env.a.rail.lock(&others[0]).await.unwrap_err();
    assert_eq!(
        e.cause,
        Cause::Rejected {
            code: Some(eth_channel::rail::reject_number(
                eth_channel::RejectCode::DuplicateHashlock
            ))
        }
    );
    // Refunding or claiming a leg that is not in the state: nothing happens.
    assert!(env.a.rail.refund(&others[1]).await.is_err());
    assert!(env.b.rail.claim(&others[1], &pre(50)).await.is_err());
    assert_eq!(env.state().2, 1);
}
