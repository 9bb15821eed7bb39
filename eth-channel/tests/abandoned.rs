//! The watcher and our abandoned proposals (anvil): the peer countersigns a proposal of ours
//! that we abandoned (crossing proposals) and closes with it; our watcher still reveals the
//! lock it owes us and settles with that state's locks, found among our abandoned proposals.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use alloy::primitives::{B256, U256};
use eth_adapter::channel::Side;
use eth_channel::{hashlock_of, ChannelStore, CoSigned, Event, SecretMap, Skip, WatchConfig};

use crate::common::proposal_of;
use crate::watcher::{no_errors, sent_kinds, Env, HOUR, ONE};

#[tokio::test]
async fn a_close_with_our_abandoned_proposal_is_settled_with_its_locks() {
    let mut env = Env::start().await;
    let id = env.chan.id();
    // v1: A locks 2 ETH for B; B holds the preimage.
    let (pre, _) = env.lock(Side::A, 2 * ONE, 5, 2 * HOUR).await;
    // v2: crossing proposals. B's (a lock of 1 ETH for A) loses and is abandoned.
    let chain = env.chain().await;
    let now = chain.time;
    let pb = env
        .b
        .propose_lock(
            ONE,
            hashlock_of(&B256::repeat_byte(6)),
            now + HOUR,
            now,
            &chain,
        )
        .unwrap();
    let b_prop = proposal_of(&pb);
    env.b.commit(pb, &env.sb).unwrap();
    let pa = env
        .a
        .propose_lock(
            ONE,
            hashlock_of(&B256::repeat_byte(7)),
            now + HOUR,
            now,
            &chain,
        )
        .unwrap();
    let bytes = env.a.commit(pa, &env.sa).unwrap().unwrap();
    let step = env.b.receive(&bytes, now, &chain).unwrap();
    assert!(
        matches!(step.event, Event::Crossed { .. }),
        "{:?}",
        step.event
    );
    env.b.commit(step, &env.sb).unwrap();
    assert_eq!(env.sb.abandoned_proposals(id).unwrap().len(), 1);
    assert_eq!(env.b.latest().state.version, 1);

    // A, dishonest, countersigns B's abandoned version 2 (it holds B's signature) and closes.
    let state = b_prop.state.state();
    let locks = b_prop.state.locks();
    assert_eq!(locks.len(), 2);
    let sig_a = env
        .chan
        .sign(&env.net.signer(0), &state, &locks, now)
        .unwrap();
    let cs = CoSigned {
        state: state.clone(),
        locks,
        sig_a: Some(sig_a),
        sig_b: Some(b_prop.sig.into()),
    };
    let rec = env.close_with(0, &cs).await;
    assert_eq!(rec.version, 2);

    let secrets = SecretMap::new();
    secrets.insert(pre);
    let mut wb = env.watcher(Side::B, &secrets, WatchConfig::default());
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(sent_kinds(&r), ["reveal"], "{r:?}");
    assert!(r.skipped.iter().any(|s| matches!(
        s,
        Skip::PeerAhead {
            closing: 2,
            ours: 1,
            ..
        }
    )));
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert_eq!(r.finished.len(), 1, "{r:?}");

    // After the challenge period (and B's lock to A expired): settled with version 2's locks.
    env.net.advance_time(HOUR + 1).await;
    let (a0, b0) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    let r = wb.tick().await.unwrap();
    no_errors(&r);
    assert!(
        !r.skipped
            .iter()
            .any(|s| matches!(s, Skip::LocksUnknown { .. })),
        "{r:?}"
    );
    assert_eq!(sent_kinds(&r), ["settle"], "{r:?}");
    let fee = env.fee(r.sent[0].1).await;
    wb.tick().await.unwrap();
    assert_eq!(env.status().await, 3, "settled");
    let (a1, b1) = (
        env.balance(env.chan.params.a).await,
        env.balance(env.chan.params.b).await,
    );
    // A: 10 - 2 (its lock, revealed in time: B's). B: 5 - 1 + 1 (its own lock, expired,
    // back) + 2.
    assert_eq!(state.balanceA, 8 * ONE);
    assert_eq!(a1 - a0, U256::from(8 * ONE));
    assert_eq!(b1 + fee - b0, U256::from(7 * ONE));
}
