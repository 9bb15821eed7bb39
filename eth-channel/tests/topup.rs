//! Top-ups: an on-chain deposit after the open, accounted by a co-signed `top_up` update only
//! once the chain (a final block) holds it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use common::*;
use eth_adapter::channel::{OnChain, Side};
use eth_channel::msg::{Message, UpdateKind};
use eth_channel::{Event, PartyError, RejectCode};

#[test]
fn a_top_up_is_accounted_only_once_final_on_chain() {
    let mut pair = Pair::new();
    // Not on chain yet: our own proposal is refused before anything is signed.
    assert!(matches!(
        pair.b.propose_top_up(200, NOW, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::Rules
    ));
    assert!(matches!(
        pair.b.propose_top_up(0, NOW, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::StateMismatch
    ));
    let topped = OnChain {
        deposit_b: DEP_B + 200,
        ..chain()
    };
    // B made it with a view of the chain A does not share yet: A refuses, nothing changes.
    let step = pair.b.propose_top_up(200, NOW, &topped).unwrap();
    let bytes = pair.b.commit(step, &pair.sb).unwrap().unwrap();
    let r = pair.a.receive(&bytes, NOW, &chain()).unwrap();
    assert!(matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::Rules));
    assert_eq!(pair.a.latest().state.version, 0);
    // Once A sees it too, the same (resent) proposal is countersigned.
    let r = pair.a.receive(&bytes, NOW, &topped).unwrap();
    assert_eq!(r.event, Event::Countersigned(1));
    let back = pair.a.commit(r, &pair.sa).unwrap().unwrap();
    let done = pair.b.receive(&back, NOW, &topped).unwrap();
    pair.b.commit(done, &pair.sb).unwrap();
    let l = pair.a.latest();
    assert_eq!(l, pair.b.latest());
    assert_eq!(
        (l.state.depositB, l.state.balanceB),
        (DEP_B + 200, DEP_B + 200)
    );
    assert_eq!((l.state.depositA, l.state.balanceA), (DEP_A, DEP_A));
    // A proposal claiming B's top-up as A's own is refused (A's deposit not on chain).
    let step = pair.a.propose_top_up(
        1,
        NOW,
        &OnChain {
            deposit_a: DEP_A + 1,
            ..topped
        },
    );
    let Message::Propose(p) = step.unwrap().message().unwrap().clone() else {
        panic!()
    };
    assert_eq!(p.kind, UpdateKind::TopUp { amount: 1 });
    let r = pair.b.receive(&encode(&p), NOW, &topped).unwrap();
    assert!(matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::Rules));
    let _ = Side::A;
}
