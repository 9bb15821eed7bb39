//! Crossing proposals: both parties propose the same version at once. Side A's wins, both
//! abandon that version, A re-proposes at the next one and B after it; random interleavings
//! (with lost messages and resends) always converge to the same co-signed states.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use std::collections::VecDeque;

use alloy::primitives::B256;
use common::*;
use eth_adapter::channel::{OnChain, Side, State};
use eth_channel::msg::{Message, UpdateKind, WireLock};
use eth_channel::{
    hashlock_of, ChannelStore, Config, Event, Party, PartyError, RejectCode, StoreError,
};
use proptest::prelude::*;

fn secret(n: u32) -> B256 {
    hashlock_of(&B256::from(alloy::primitives::U256::from(n)))
}

fn conserved(s: &State, locked: u128) -> bool {
    s.balanceA + s.balanceB + locked + s.withdrawnA + s.withdrawnB == s.depositA + s.depositB
}

#[test]
fn crossing_proposals_skip_the_version_and_both_go_through() {
    let mut pair = Pair::new();
    let sa = pair
        .a
        .propose_lock(5, secret(1), NOW + 3600, NOW, &chain())
        .unwrap();
    let sb = pair
        .b
        .propose_lock(7, secret(2), NOW + 3600, NOW, &chain())
        .unwrap();
    let pa1 = pair.a.commit(sa, &pair.sa).unwrap().unwrap();
    let pb1 = pair.b.commit(sb, &pair.sb).unwrap().unwrap();

    // A refuses B's: Busy, nothing changes.
    let r = pair.a.receive(&pb1, NOW, &chain()).unwrap();
    assert!(matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::Busy));
    let busy = pair.a.commit(r, &pair.sa).unwrap().unwrap();
    assert_eq!(pair.a.pending().unwrap().state.version, 1);

    // B abandons its own and answers Crossed.
    let r = pair.b.receive(&pa1, NOW, &chain()).unwrap();
    let Event::Crossed { abandoned, kind } = r.event.clone() else {
        panic!("{:?}", r.event)
    };
    assert_eq!(abandoned, 1);
    assert!(matches!(&kind, UpdateKind::Lock { lock } if lock.amount == 7));
    let crossed = pair.b.commit(r, &pair.sb).unwrap().unwrap();
    assert!(pair.b.pending().is_none());
    assert_eq!(pair.b.next_version(), 2);
    // Persisted: a resumed B knows it too; B never co-signs version 1.
    let b2 = Party::resume(pair.b.id(), pair.kb.clone(), Config::default(), &pair.sb).unwrap();
    assert!(b2.pending().is_none());
    assert_eq!(b2.abandoned(), Some(1));
    assert_eq!(b2.next_version(), 2);
    // A holds B's signature on B's abandoned lock: until a higher version is co-signed it may
    // still come into force, so the store keeps answering it (the channel rail reports such a
    // lock Funded in the mempool, never Absent, and will not call it cancelled).
    let open = pair.sb.abandoned_proposals(pair.b.id()).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].0, 1);
    assert!(matches!(&open[0].1, UpdateKind::Lock { lock } if lock.amount == 7));
    // B's stale Busy from A is no answer to anything now.
    assert!(matches!(
        pair.b.receive(&busy, NOW, &chain()),
        Err(PartyError::Unexpected(_))
    ));
    // A's proposal of 1 again (a resend): the same Crossed answer, nothing changes.
    let again = pair.b.receive(&pa1, NOW, &chain()).unwrap();
    assert!(matches!(&again.event, Event::RefusedPeer(r) if r.code == RejectCode::Crossed));
    assert_eq!(pair.b.commit(again, &pair.sb).unwrap().unwrap(), crossed);

    // A abandons its own and re-proposes the same change at 2.
    let r = pair.a.receive(&crossed, NOW, &chain()).unwrap();
    assert_eq!(
        r.event,
        Event::Reproposed {
            abandoned: 1,
            version: 2
        }
    );
    let pa2 = pair.a.commit(r, &pair.sa).unwrap().unwrap();
    let a2 = Party::resume(pair.a.id(), pair.ka.clone(), Config::default(), &pair.sa).unwrap();
    assert_eq!(a2.pending().unwrap().state.version, 2);
    assert_eq!(a2.abandoned(), Some(1));

    // B countersigns 2; A completes.
    let cs = pair.b.receive(&pa2, NOW, &chain()).unwrap();
    assert_eq!(cs.event, Event::Countersigned(2));
    let back = pair.b.commit(cs, &pair.sb).unwrap().unwrap();
    let done = pair.a.receive(&back, NOW, &chain()).unwrap();
    assert_eq!(done.event, Event::Completed(2));
    assert!(pair.a.commit(done, &pair.sa).unwrap().is_none());
    assert_eq!(pair.a.latest(), pair.b.latest());
    // Version 2 co-signed: B's abandoned proposal of 1 can never come into force now.
    assert!(pair.sb.abandoned_proposals(pair.b.id()).unwrap().is_empty());

    // B proposes its change again, at 3.
    let step = pair.b.propose(kind.clone(), NOW, &chain()).unwrap();
    assert_eq!(step.event, Event::Proposed(3));
    pair.exchange(Side::B, step, NOW, &chain());
    let l = pair.a.latest();
    assert_eq!(l.state.version, 3);
    assert_eq!(l.state.balanceA, DEP_A - 5);
    assert_eq!(l.state.balanceB, DEP_B - 7);
    assert_eq!(l.locks.len(), 2);
    let versions: Vec<u64> = pair
        .sa
        .history(pair.a.id())
        .unwrap()
        .iter()
        .map(|s| s.state.version)
        .collect();
    assert_eq!(versions, vec![2, 3]);
    assert_eq!(
        pair.sa.history(pair.a.id()).unwrap(),
        pair.sb.history(pair.b.id()).unwrap()
    );
}

/// B's final state (a cooperative close) is never abandoned for a crossing proposal of A's: A
/// holds B's signature on it and `cooperativeClose` takes any co-signed final state, so B
/// countersigning A's change (say a lock to B) at the next version would let A close without
/// it. B answers Busy and keeps its final proposal; nothing of A's is countersigned.
#[test]
fn a_final_proposal_is_never_abandoned_for_a_crossing_one() {
    let mut pair = Pair::new();
    let sa = pair
        .a
        .propose_lock(5, secret(3), NOW + 3600, NOW, &chain())
        .unwrap();
    let sb = pair.b.propose_close(NOW, &chain()).unwrap();
    let pa1 = pair.a.commit(sa, &pair.sa).unwrap().unwrap();
    pair.b.commit(sb, &pair.sb).unwrap().unwrap();
    assert!(pair.b.pending().unwrap().state.is_final);

    let r = pair.b.receive(&pa1, NOW, &chain()).unwrap();
    assert!(
        matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::Busy),
        "{:?}",
        r.event
    );
    pair.b.commit(r, &pair.sb).unwrap();
    // B's final proposal stands, nothing abandoned, nothing co-signed.
    assert!(pair.b.pending().unwrap().state.is_final);
    assert_eq!(pair.b.abandoned(), None);
    assert_eq!(pair.b.latest().state.version, 0);
    let b2 = Party::resume(pair.b.id(), pair.kb.clone(), Config::default(), &pair.sb).unwrap();
    assert!(b2.pending().unwrap().state.is_final);
    assert_eq!(b2.abandoned(), None);
}

#[test]
fn an_abandoned_version_is_never_cosigned_nor_proposed_again() {
    let mut pair = Pair::new();
    let sa = pair
        .a
        .propose_lock(5, secret(1), NOW + 3600, NOW, &chain())
        .unwrap();
    let sb = pair
        .b
        .propose_lock(7, secret(2), NOW + 3600, NOW, &chain())
        .unwrap();
    let pa1 = pair.a.commit(sa, &pair.sa).unwrap().unwrap();
    let pb1 = pair.b.commit(sb, &pair.sb).unwrap().unwrap();
    let r = pair.b.receive(&pa1, NOW, &chain()).unwrap();
    let _ = pair.b.commit(r, &pair.sb).unwrap();
    let Message::Propose(mine) = Message::decode(&pb1).unwrap() else {
        panic!()
    };
    // The store refuses B's abandoned proposal as pending again, and any co-signed state of
    // version 1 (even its own proposal countersigned by a dishonest A).
    assert!(matches!(
        pair.sb.save_proposal(pair.b.id(), &mine),
        Err(StoreError::Conflict { .. })
    ));
    let forged = eth_channel::CoSigned {
        state: mine.state.state(),
        locks: mine.state.locks(),
        sig_a: Some(raw_sig(&pair.chan, &pair.ka, &mine.state).into()),
        sig_b: Some(mine.sig.into()),
    };
    assert!(matches!(
        pair.sb.save_cosigned(pair.b.id(), &forged),
        Err(StoreError::Conflict { .. })
    ));
    // A countersign of the abandoned proposal is no answer to anything.
    let cs = Message::Countersign(eth_channel::msg::Countersign {
        channel: pair.b.id(),
        version: 1,
        sig: raw_sig(&pair.chan, &pair.ka, &mine.state),
    })
    .encode();
    assert!(matches!(
        pair.b.receive(&cs, NOW, &chain()),
        Err(PartyError::Unexpected(_))
    ));
    // A proposal by "A" at the crossing version not signed by A does not make B abandon.
    let mut pair = Pair::new();
    let sa = pair
        .a
        .propose_lock(5, secret(1), NOW + 3600, NOW, &chain())
        .unwrap();
    let sb = pair
        .b
        .propose_lock(7, secret(2), NOW + 3600, NOW, &chain())
        .unwrap();
    let mut forged = proposal_of(&sa);
    forged.sig = raw_sig(&pair.chan, &pair.kb, &forged.state);
    let _ = pair.b.commit(sb, &pair.sb).unwrap();
    let r = pair.b.receive(&encode(&forged), NOW, &chain()).unwrap();
    assert!(matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::BadSignature));
    assert_eq!(pair.b.pending().unwrap().state.version, 1);
}

// ------------------------------------------------------------------ random interleavings

#[derive(Debug, Clone, Copy)]
enum Act {
    /// A proposes its next wanted lock (if free).
    ProposeA,
    /// B proposes its next wanted lock (if free and not waiting on A's re-proposal).
    ProposeB,
    /// Deliver the oldest message A -> B.
    DeliverAB,
    /// Deliver the oldest message B -> A.
    DeliverBA,
    /// The connection drops: everything in flight is lost; both resend their pending.
    Reconnect,
    /// B stops waiting for A's re-proposal.
    Timeout,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        3 => Just(Act::ProposeA),
        3 => Just(Act::ProposeB),
        4 => Just(Act::DeliverAB),
        4 => Just(Act::DeliverBA),
        1 => Just(Act::Reconnect),
        1 => Just(Act::Timeout),
    ]
}

/// One party's driver: the changes it still wants, and whether it waits for the winner.
struct Driver {
    want: VecDeque<UpdateKind>,
    wait: bool,
}

struct Sim {
    pair: Pair,
    ab: VecDeque<Vec<u8>>,
    ba: VecDeque<Vec<u8>>,
    da: Driver,
    db: Driver,
}

impl Sim {
    fn propose(&mut self, side: Side) {
        let (p, ps, d, q) = match side {
            Side::A => (&mut self.pair.a, &self.pair.sa, &mut self.da, &mut self.ab),
            Side::B => (&mut self.pair.b, &self.pair.sb, &mut self.db, &mut self.ba),
        };
        if p.pending().is_some() || d.wait {
            return;
        }
        let Some(kind) = d.want.pop_front() else {
            return;
        };
        let step = p.propose(kind, NOW, &chain()).unwrap();
        q.push_back(p.commit(step, ps).unwrap().unwrap());
    }

    fn deliver(&mut self, to: Side) {
        let (p, ps, d, inq, outq) = match to {
            Side::A => (
                &mut self.pair.a,
                &self.pair.sa,
                &mut self.da,
                &mut self.ba,
                &mut self.ab,
            ),
            Side::B => (
                &mut self.pair.b,
                &self.pair.sb,
                &mut self.db,
                &mut self.ab,
                &mut self.ba,
            ),
        };
        let Some(bytes) = inq.pop_front() else {
            return;
        };
        // Answers to nothing of ours (stale after a reconnect) are ignored, as a session does.
        let Ok(step) = p.receive(&bytes, NOW, &chain()) else {
            return;
        };
        match &step.event {
            Event::Crossed { kind, .. } => {
                d.want.push_front(kind.clone());
                d.wait = true;
            }
            Event::Countersigned(_) => d.wait = false,
            Event::Dropped { .. } => panic!("nothing expires here"),
            Event::RefusedPeer(r) => {
                assert!(
                    matches!(r.code, RejectCode::Busy | RejectCode::Crossed),
                    "{r:?}"
                );
            }
            _ => {}
        }
        if let Some(out) = p.commit(step, ps).unwrap() {
            outq.push_back(out);
        }
    }

    fn reconnect(&mut self) {
        self.ab.clear();
        self.ba.clear();
        self.ab.extend(self.pair.a.resend());
        self.ba.extend(self.pair.b.resend());
    }

    fn quiet(&self) -> bool {
        self.ab.is_empty() && self.ba.is_empty()
    }

    /// Runs to the end: everything delivered, nothing pending, nothing wanted.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            if !self.quiet() {
                self.deliver(Side::B);
                self.deliver(Side::A);
            } else if self.pair.a.pending().is_some() || self.pair.b.pending().is_some() {
                self.reconnect();
            } else if self.db.wait {
                self.db.wait = false;
            } else if !self.da.want.is_empty() || !self.db.want.is_empty() {
                self.propose(Side::A);
                self.propose(Side::B);
            } else {
                return;
            }
        }
        panic!("no convergence");
    }
}

fn lock_kind(pair: &Pair, side: Side, n: u32, amount: u128) -> UpdateKind {
    UpdateKind::Lock {
        lock: WireLock {
            from: pair.chan.party(side),
            amount,
            hashlock: secret(n),
            expiry: NOW + 3600,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_of_crossing_proposals_converge(
        na in 1usize..6,
        nb in 1usize..6,
        acts in prop::collection::vec(act(), 0..80),
    ) {
        let pair = Pair::new();
        let mut n = 0u32;
        let mut kinds = |side: Side, count: usize, pair: &Pair| -> VecDeque<UpdateKind> {
            (0..count).map(|i| { n += 1; lock_kind(pair, side, n, 1 + i as u128) }).collect()
        };
        let da = Driver { want: kinds(Side::A, na, &pair), wait: false };
        let db = Driver { want: kinds(Side::B, nb, &pair), wait: false };
        let mut sim = Sim { pair, ab: VecDeque::new(), ba: VecDeque::new(), da, db };
        for a in acts {
            match a {
                Act::ProposeA => sim.propose(Side::A),
                Act::ProposeB => sim.propose(Side::B),
                Act::DeliverAB => sim.deliver(Side::B),
                Act::DeliverBA => sim.deliver(Side::A),
                Act::Reconnect => sim.reconnect(),
                Act::Timeout => sim.db.wait = false,
            }
            // At every point: the co-signed histories agree where both have a version.
            let ha = sim.pair.sa.history(sim.pair.a.id()).unwrap();
            let hb = sim.pair.sb.history(sim.pair.b.id()).unwrap();
            for s in &ha {
                if let Some(t) = hb.iter().find(|t| t.state.version == s.state.version) {
                    prop_assert_eq!(s, t);
                }
            }
        }
        sim.drain();
        let (a, b) = (&sim.pair.a, &sim.pair.b);
        prop_assert_eq!(a.latest(), b.latest());
        let l = a.latest();
        // Every wanted lock went through exactly once.
        prop_assert_eq!(l.locks.len(), na + nb);
        let sum = |k: usize| (1..=k as u128).sum::<u128>();
        prop_assert_eq!(l.state.balanceA, DEP_A - sum(na));
        prop_assert_eq!(l.state.balanceB, DEP_B - sum(nb));
        prop_assert!(conserved(&l.state, l.locks.iter().map(|l| l.amount).sum()));
        let ha = sim.pair.sa.history(a.id()).unwrap();
        let hb = sim.pair.sb.history(b.id()).unwrap();
        prop_assert_eq!(&ha, &hb);
        let mut last = 0;
        for s in &ha {
            prop_assert!(s.state.version > last);
            last = s.state.version;
            prop_assert!(conserved(&s.state, s.locks.iter().map(|l| l.amount).sum()));
            let (x, y) = s.sigs().unwrap();
            sim.pair.chan.verify(&s.state, &x, sim.pair.chan.params.a).unwrap();
            sim.pair.chan.verify(&s.state, &y, sim.pair.chan.params.b).unwrap();
        }
        let _ = OnChain::default();
    }
}

/// B's first two proposals are refused (expiries too close for A) and abandoned; then both
/// propose at once, B at version 3 and A at version 1: A's goes above B's abandoned versions
/// (answered `crossed`), wins the crossing at 3, and both changes go through.
#[test]
fn refused_proposals_then_crossing_proposals_converge() {
    let mut pair = Pair::new();
    for (n, v) in [(21u32, 1u64), (22, 2)] {
        let kind = UpdateKind::Lock {
            lock: WireLock {
                from: pair.chan.party(Side::B),
                amount: 1,
                hashlock: secret(n),
                expiry: NOW + 700,
            },
        };
        let step = pair.b.propose(kind, NOW, &chain()).unwrap();
        let bytes = pair.b.commit(step, &pair.sb).unwrap().unwrap();
        let r = pair.a.receive(&bytes, NOW + 200, &chain()).unwrap();
        assert!(matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::BadExpiry));
        let back = pair.a.commit(r, &pair.sa).unwrap().unwrap();
        let s = pair.b.receive(&back, NOW, &chain()).unwrap();
        assert!(
            matches!(s.event, Event::PeerRefused { .. }),
            "{:?}",
            s.event
        );
        assert!(pair.b.commit(s, &pair.sb).unwrap().is_none());
        assert_eq!(
            (pair.b.pending().is_none(), pair.b.abandoned()),
            (true, Some(v))
        );
    }
    let da = Driver {
        want: VecDeque::from([lock_kind(&pair, Side::A, 23, 7)]),
        wait: false,
    };
    let db = Driver {
        want: VecDeque::from([lock_kind(&pair, Side::B, 24, 6)]),
        wait: false,
    };
    let mut sim = Sim {
        pair,
        ab: VecDeque::new(),
        ba: VecDeque::new(),
        da,
        db,
    };
    sim.propose(Side::B);
    sim.propose(Side::A);
    assert_eq!(sim.pair.b.pending().unwrap().state.version, 3);
    assert_eq!(sim.pair.a.pending().unwrap().state.version, 1);
    sim.drain();
    let (a, b) = (&sim.pair.a, &sim.pair.b);
    assert_eq!(a.latest(), b.latest());
    let l = a.latest();
    assert_eq!(l.locks.len(), 2);
    assert_eq!((l.state.balanceA, l.state.balanceB), (DEP_A - 7, DEP_B - 6));
    assert_eq!(
        sim.pair.sa.history(a.id()).unwrap(),
        sim.pair.sb.history(b.id()).unwrap()
    );
}

/// A's change refused and abandoned; B proposes meanwhile and A retries the same invalid
/// change above B's pending proposal: B refuses it with its reason, not `busy` (A would send
/// it again for ever while B waits for A), and B's change then goes through.
#[test]
fn an_invalid_proposal_above_a_pending_one_is_refused_not_busy() {
    let mut pair = Pair::new();
    let bad = |pair: &Pair, n| UpdateKind::Lock {
        lock: WireLock {
            from: pair.chan.party(Side::A),
            amount: 1,
            hashlock: secret(n),
            expiry: NOW + 700,
        },
    };
    // B's clock is 200 s ahead: the expiry is too close for it.
    let later = NOW + 200;
    let step = pair.a.propose(bad(&pair, 31), NOW, &chain()).unwrap();
    let bytes = pair.a.commit(step, &pair.sa).unwrap().unwrap();
    let r = pair.b.receive(&bytes, later, &chain()).unwrap();
    let back = pair.b.commit(r, &pair.sb).unwrap().unwrap();
    let s = pair.a.receive(&back, NOW, &chain()).unwrap();
    assert!(pair.a.commit(s, &pair.sa).unwrap().is_none());
    assert_eq!(pair.a.abandoned(), Some(1));
    let sb = pair
        .b
        .propose(lock_kind(&pair, Side::B, 32, 5), later, &chain())
        .unwrap();
    let mut b_bytes = pair.b.commit(sb, &pair.sb).unwrap().unwrap();
    let sa = pair.a.propose(bad(&pair, 33), NOW, &chain()).unwrap();
    let a2 = pair.a.commit(sa, &pair.sa).unwrap().unwrap();
    let r = pair.b.receive(&a2, later, &chain()).unwrap();
    assert!(
        matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::StateMismatch),
        "{:?}",
        r.event
    );
    let back = pair.b.commit(r, &pair.sb).unwrap().unwrap();
    let s = pair.a.receive(&back, NOW, &chain()).unwrap();
    assert!(pair.a.commit(s, &pair.sa).unwrap().is_none());
    assert!(pair.a.pending().is_none());
    // B's change: answered `Crossed` at each version A gave up (1, 2), and B makes it again
    // at the version above by itself, until it goes through at 3.
    let mut versions = vec![];
    for _ in 0..4 {
        let Message::Propose(p) = Message::decode(&b_bytes).unwrap() else {
            panic!("no proposal");
        };
        versions.push(p.state.version);
        let r = pair.a.receive(&b_bytes, NOW, &chain()).unwrap();
        let countersigned = matches!(r.event, Event::Countersigned(_));
        if !countersigned {
            assert!(
                matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::Crossed),
                "{:?}",
                r.event
            );
        }
        let back = pair.a.commit(r, &pair.sa).unwrap().unwrap();
        let s = pair.b.receive(&back, later, &chain()).unwrap();
        let again = pair.b.commit(s, &pair.sb).unwrap();
        if countersigned {
            assert!(again.is_none());
            break;
        }
        b_bytes = again.expect("proposed again above");
    }
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(pair.a.latest(), pair.b.latest());
    assert_eq!(pair.a.latest().locks.len(), 1);
    assert_eq!(pair.a.latest().state.balanceB, DEP_B - 5);
}

/// A's proposal refused and given up (version 1); B, which never saw it, proposes at version 1:
/// A answers `Crossed` (it never signs at a version it gave up) and B makes the same change
/// again at 2, which A countersigns. Once with a lock, once with B's final state: before, A
/// answered `WrongVersion`, which left a lock to be retried by its caller and a final proposal
/// (never abandoned) pending for good.
#[test]
fn a_proposal_at_a_version_the_peer_gave_up_goes_again_above_it() {
    for close in [false, true] {
        let mut pair = Pair::new();
        // B's clock is 200 s ahead: A's lock expires too close for it.
        let bad = UpdateKind::Lock {
            lock: WireLock {
                from: pair.chan.party(Side::A),
                amount: 1,
                hashlock: secret(41),
                expiry: NOW + 700,
            },
        };
        let step = pair.a.propose(bad, NOW, &chain()).unwrap();
        let bytes = pair.a.commit(step, &pair.sa).unwrap().unwrap();
        let r = pair.b.receive(&bytes, NOW + 200, &chain()).unwrap();
        let back = pair.b.commit(r, &pair.sb).unwrap().unwrap();
        let s = pair.a.receive(&back, NOW, &chain()).unwrap();
        assert!(pair.a.commit(s, &pair.sa).unwrap().is_none());
        assert_eq!(pair.a.abandoned(), Some(1));
        assert_eq!(pair.b.next_version(), 1, "B never saw version 1 given up");

        let step = if close {
            pair.b.propose_close(NOW, &chain()).unwrap()
        } else {
            pair.b
                .propose(lock_kind(&pair, Side::B, 42, 5), NOW, &chain())
                .unwrap()
        };
        let bytes = pair.b.commit(step, &pair.sb).unwrap().unwrap();
        assert_eq!(pair.b.pending().unwrap().state.version, 1);
        let r = pair.a.receive(&bytes, NOW, &chain()).unwrap();
        assert!(
            matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::Crossed),
            "{:?}",
            r.event
        );
        let back = pair.a.commit(r, &pair.sa).unwrap().unwrap();
        let s = pair.b.receive(&back, NOW, &chain()).unwrap();
        assert!(
            matches!(
                s.event,
                Event::Reproposed {
                    abandoned: 1,
                    version: 2
                }
            ),
            "{:?}",
            s.event
        );
        let again = pair.b.commit(s, &pair.sb).unwrap().unwrap();
        assert_eq!(pair.b.pending().unwrap().state.version, 2);
        let r = pair.a.receive(&again, NOW, &chain()).unwrap();
        assert!(matches!(r.event, Event::Countersigned(2)), "{:?}", r.event);
        let cs = pair.a.commit(r, &pair.sa).unwrap().unwrap();
        let s = pair.b.receive(&cs, NOW, &chain()).unwrap();
        assert!(matches!(s.event, Event::Completed(2)), "{:?}", s.event);
        assert!(pair.b.commit(s, &pair.sb).unwrap().is_none());
        let (a, b) = (&pair.a, &pair.b);
        assert_eq!(a.latest(), b.latest());
        let l = a.latest();
        assert_eq!(l.state.version, 2);
        assert_eq!(l.state.isFinal, close);
        if close {
            assert_eq!((l.state.balanceA, l.state.balanceB), (DEP_A, DEP_B));
        } else {
            assert_eq!(l.locks.len(), 1);
            assert_eq!(l.state.balanceB, DEP_B - 5);
        }
        assert_eq!(
            pair.sa.history(a.id()).unwrap(),
            pair.sb.history(b.id()).unwrap()
        );
    }
}

/// Giving up a proposal and making its successor is one write: when the successor cannot be
/// recorded, the proposal is not given up either (a final one, given up with nothing pending
/// after it, would let the peer close with it after we countersigned a later change).
#[test]
fn a_proposal_is_given_up_only_with_its_successor_recorded() {
    let pair = Pair::new();
    let id = pair.b.id();
    let step = pair.b.propose_close(NOW, &chain()).unwrap();
    let mut b = pair.b;
    b.commit(step, &pair.sb).unwrap().unwrap();
    let fin = b.pending().unwrap().clone();
    assert!(fin.state.is_final);
    // Something else is recorded at version 2 already: the successor is refused.
    let mut other = fin.clone();
    other.state.version = 2;
    other.state.balance_a -= 1;
    other.state.balance_b += 1;
    pair.sb.save_proposal(id, &other).unwrap();
    let mut next = fin.clone();
    next.state.version = 2;
    assert!(matches!(
        pair.sb.abandon_and_propose(id, 1, &next),
        Err(StoreError::Duplicate { version: 2, .. })
    ));
    assert!(
        pair.sb.abandoned_proposals(id).unwrap().is_empty(),
        "given up without its successor"
    );
    // Recorded together otherwise.
    let fresh = Pair::new();
    let id = fresh.b.id();
    let step = fresh.b.propose_close(NOW, &chain()).unwrap();
    let mut b = fresh.b;
    b.commit(step, &fresh.sb).unwrap().unwrap();
    let mut next = b.pending().unwrap().clone();
    next.state.version = 2;
    fresh.sb.abandon_and_propose(id, 1, &next).unwrap();
    assert_eq!(fresh.sb.abandoned_proposals(id).unwrap().len(), 1);
    let saved = fresh.sb.load(id).unwrap().unwrap();
    assert_eq!(saved.pending.map(|p| p.state.version), Some(2));
}
