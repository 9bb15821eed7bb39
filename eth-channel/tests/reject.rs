//! Every refusal of a peer's proposal, and that a refused message changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use alloy::primitives::{uint, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use common::*;
use eth_adapter::channel::{OnChain, Side, MAX_LOCKS, MAX_LOCK_TTL};
use eth_channel::msg::{Message, Proposal, UpdateKind};
use eth_channel::{hashlock_of, ChannelStore, Event, PartyError, RejectCode, StoreError};

fn secret(n: u8) -> (B256, B256) {
    let pre = B256::repeat_byte(n);
    (pre, hashlock_of(&pre))
}

/// B receives `bytes` from A and must refuse them with `code`, changing nothing (memory and
/// store); the reject it sends decodes and carries the code.
fn refused(pair: &mut Pair, bytes: &[u8], now: u64, chain: &OnChain, code: RejectCode) {
    let before = (pair.b.latest().clone(), pair.b.pending().cloned());
    let stored = snapshot(&pair.sb, pair.b.id());
    let step = pair.b.receive(bytes, now, chain).unwrap();
    match &step.event {
        Event::RefusedPeer(r) => assert_eq!(r.code, code, "{r:?}"),
        other => panic!("expected a refusal with {code:?}, got {other:?}"),
    }
    let out = pair
        .b
        .commit(step, &pair.sb)
        .unwrap()
        .expect("a reject to send");
    match Message::decode(&out).unwrap() {
        Message::Reject(r) => assert_eq!(r.code, code),
        other => panic!("{other:?}"),
    }
    assert_eq!((pair.b.latest().clone(), pair.b.pending().cloned()), before);
    assert_eq!(snapshot(&pair.sb, pair.b.id()), stored);
}

/// A's honest lock proposal (not committed).
fn lock_prop(pair: &Pair, amount: u128, n: u8, expiry: u64) -> Proposal {
    let step = pair
        .a
        .propose_lock(amount, secret(n).1, expiry, NOW, &chain())
        .unwrap();
    proposal_of(&step)
}

/// A's proposal of `kind` on top of the latest state (version + 1, otherwise unchanged)
/// modified by `f`, signed by A.
fn forged(pair: &Pair, kind: UpdateKind, f: impl FnOnce(&mut Proposal)) -> Vec<u8> {
    let l = pair.a.latest();
    let mut state = eth_channel::msg::WireState::new(&l.state, &l.locks);
    state.version += 1;
    let sig = eth_channel::msg::WireSig {
        v: 27,
        r: B256::ZERO,
        s: B256::ZERO,
    };
    let mut p = Proposal {
        channel: pair.a.id(),
        state,
        kind,
        sig,
    };
    f(&mut p);
    encode(&resign(&pair.chan, &pair.ka, p))
}

#[test]
fn garbage_is_an_error_and_changes_nothing() {
    let pair = Pair::new();
    let stored = snapshot(&pair.sb, pair.b.id());
    for bytes in [
        &b"garbage"[..],
        b"{}",
        b"{\"v\":1,\"msg\":{\"type\":\"propose\"}}",
        b"",
    ] {
        assert!(matches!(
            pair.b.receive(bytes, NOW, &chain()),
            Err(PartyError::Unexpected(_))
        ));
    }
    // A countersign or reject of nothing pending.
    let p = lock_prop(&pair, 10, 1, NOW + 3600);
    let cs = Message::Countersign(eth_channel::msg::Countersign {
        channel: pair.b.id(),
        version: 1,
        sig: p.sig,
    });
    assert!(pair.b.receive(&cs.encode(), NOW, &chain()).is_err());
    assert_eq!(snapshot(&pair.sb, pair.b.id()), stored);
    assert_eq!(pair.b.latest().state.version, 0);
}

#[test]
fn wrong_channel_and_signatures_are_refused() {
    let mut pair = Pair::new();
    let good = lock_prop(&pair, 10, 1, NOW + 3600);
    let mut other = good.clone();
    other.channel = B256::repeat_byte(1);
    refused(
        &mut pair,
        &encode(&other),
        NOW,
        &chain(),
        RejectCode::WrongChannel,
    );
    // Signed by a stranger, by B itself, or the malleable twin of A's signature.
    let stranger = resign(&pair.chan, &PrivateKeySigner::random(), good.clone());
    refused(
        &mut pair,
        &encode(&stranger),
        NOW,
        &chain(),
        RejectCode::BadSignature,
    );
    let by_b = resign(&pair.chan, &pair.kb.clone(), good.clone());
    refused(
        &mut pair,
        &encode(&by_b),
        NOW,
        &chain(),
        RejectCode::BadSignature,
    );
    let n = uint!(0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141_U256);
    let mut twin = good.clone();
    twin.sig.v = if good.sig.v == 27 { 28 } else { 27 };
    twin.sig.s = (n - U256::from_be_bytes(good.sig.s.0)).into();
    refused(
        &mut pair,
        &encode(&twin),
        NOW,
        &chain(),
        RejectCode::BadSignature,
    );
    // A signature over another state (the amount changed after signing).
    let mut changed = good.clone();
    changed.state.balance_a -= 1;
    refused(
        &mut pair,
        &encode(&changed),
        NOW,
        &chain(),
        RejectCode::BadSignature,
    );
    // A signature found good before (by the check made before the chain is read, which the
    // proposal's receipt then does not repeat) vouches for the state it signs only: the same
    // signature on another state is refused right after it.
    assert!(pair.b.precheck(&good).is_none());
    assert!(pair.b.precheck(&changed).is_some());
    assert!(pair.b.precheck(&good).is_none());
    refused(
        &mut pair,
        &encode(&changed),
        NOW,
        &chain(),
        RejectCode::BadSignature,
    );
    // The genuine one passes.
    assert!(pair.b.precheck(&good).is_none());
    let step = pair.b.receive(&encode(&good), NOW, &chain()).unwrap();
    assert_eq!(step.event, Event::Countersigned(1));
}

#[test]
fn versions_must_be_exactly_next() {
    let mut pair = Pair::new();
    let step = pair
        .a
        .propose_lock(10, secret(1).1, NOW + 3600, NOW, &chain())
        .unwrap();
    let v1 = proposal_of(&step);
    pair.exchange(Side::A, step, NOW, &chain());
    // The latest proposal again (a lost countersign): the same countersign, nothing changes.
    let stored = snapshot(&pair.sb, pair.b.id());
    let again = pair.b.receive(&encode(&v1), NOW, &chain()).unwrap();
    assert_eq!(again.event, Event::Countersigned(1));
    assert!(pair.b.commit(again, &pair.sb).unwrap().is_some());
    assert_eq!(snapshot(&pair.sb, pair.b.id()), stored);
    // Another state at the latest version.
    let mut other = v1.clone();
    other.state.balance_a -= 1;
    other.state.balance_b += 1;
    let other = resign(&pair.chan, &pair.ka, other);
    refused(
        &mut pair,
        &encode(&other),
        NOW,
        &chain(),
        RejectCode::WrongVersion,
    );
    let step = pair
        .a
        .propose_lock(10, secret(3).1, NOW + 3600, NOW, &chain())
        .unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    // Replaying v1 (an old version).
    refused(
        &mut pair,
        &encode(&v1),
        NOW,
        &chain(),
        RejectCode::WrongVersion,
    );
    // Skipping more versions than a peer's abandoned proposals explain.
    let mut v3 = lock_prop(&pair, 10, 2, NOW + 3600);
    v3.state.version = 3 + eth_channel::machine::MAX_VERSION_SKIP + 1;
    let v3 = resign(&pair.chan, &pair.ka, v3);
    refused(
        &mut pair,
        &encode(&v3),
        NOW,
        &chain(),
        RejectCode::WrongVersion,
    );
}

#[test]
fn capacity_and_balance_are_enforced() {
    let mut pair = Pair::new();
    // More than A's balance.
    let (_, h) = secret(1);
    let lock = eth_channel::msg::WireLock {
        from: pair.chan.params.a,
        amount: DEP_A + 1,
        hashlock: h,
        expiry: NOW + 3600,
    };
    let bytes = forged(&pair, UpdateKind::Lock { lock: lock.clone() }, |p| {
        p.state.is_final = false;
        p.state.balance_a = 0;
        p.state.locks = vec![lock.clone()];
    });
    refused(
        &mut pair,
        &bytes,
        NOW,
        &chain(),
        RejectCode::InsufficientBalance,
    );
    assert!(matches!(
        pair.a.propose_lock(DEP_A + 1, h, NOW + 3600, NOW, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::InsufficientBalance
    ));
    // A lock whose amount is not taken from the balance (creates money).
    let mut p = lock_prop(&pair, 10, 1, NOW + 3600);
    p.state.balance_a += 10;
    let p = resign(&pair.chan, &pair.ka, p);
    refused(&mut pair, &encode(&p), NOW, &chain(), RejectCode::Capacity);
    // A locks hash that does not commit to the locks.
    let mut p = lock_prop(&pair, 10, 1, NOW + 3600);
    p.state.locks_hash = B256::repeat_byte(3);
    p.sig = raw_sig(&pair.chan, &pair.ka, &p.state);
    refused(&mut pair, &encode(&p), NOW, &chain(), RejectCode::Capacity);
    // A lock that also moves B's balance to A (sum kept): more than the stated kind.
    let mut p = lock_prop(&pair, 10, 1, NOW + 3600);
    p.state.balance_a += 5;
    p.state.balance_b -= 5;
    let p = resign(&pair.chan, &pair.ka, p);
    refused(
        &mut pair,
        &encode(&p),
        NOW,
        &chain(),
        RejectCode::StateMismatch,
    );
    // A lock "from B" proposed by A.
    let mut p = lock_prop(&pair, 10, 1, NOW + 3600);
    if let UpdateKind::Lock { lock } = &mut p.kind {
        lock.from = pair.chan.params.b;
    }
    p.state.locks[0].from = pair.chan.params.b;
    p.state.balance_a += 10;
    p.state.balance_b -= 10;
    let p = resign(&pair.chan, &pair.ka, p);
    refused(
        &mut pair,
        &encode(&p),
        NOW,
        &chain(),
        RejectCode::StateMismatch,
    );
    // A deposit the chain does not hold (check_next).
    let p = lock_prop(&pair, 10, 1, NOW + 3600);
    let thin = OnChain {
        deposit_a: DEP_A - 1,
        ..chain()
    };
    refused(&mut pair, &encode(&p), NOW, &thin, RejectCode::Rules);
}

#[test]
fn lock_expiries_and_count_are_bounded() {
    let mut pair = Pair::new();
    let margin = eth_channel::Config::default().min_expiry_margin;
    for (expiry, ok) in [
        (NOW + margin - 1, false),
        (NOW + margin, true),
        (NOW + MAX_LOCK_TTL, true),
        (NOW + MAX_LOCK_TTL + 1, false),
        (NOW - 1, false),
    ] {
        let lock = eth_channel::msg::WireLock {
            from: pair.chan.params.a,
            amount: 1,
            hashlock: secret(1).1,
            expiry,
        };
        let bytes = forged(&pair, UpdateKind::Lock { lock: lock.clone() }, |p| {
            p.state.is_final = false;
            p.state.balance_a -= 1;
            p.state.locks = vec![lock.clone()];
        });
        if ok {
            let s = pair.b.receive(&bytes, NOW, &chain()).unwrap();
            assert_eq!(s.event, Event::Countersigned(1), "{expiry}");
        } else {
            refused(&mut pair, &bytes, NOW, &chain(), RejectCode::BadExpiry);
            assert!(pair
                .a
                .propose_lock(1, secret(1).1, expiry, NOW, &chain())
                .is_err());
        }
    }
    // MAX_LOCKS locks, then one more.
    for i in 0..MAX_LOCKS {
        let by = if i % 2 == 0 { Side::A } else { Side::B };
        let (p, _, _, _) = pair.roles(by);
        let step = p
            .propose_lock(1, secret(i as u8).1, NOW + 3600, NOW, &chain())
            .unwrap();
        pair.exchange(by, step, NOW, &chain());
    }
    assert_eq!(pair.a.latest().locks.len(), MAX_LOCKS);
    assert!(matches!(
        pair.a.propose_lock(1, secret(200).1, NOW + 3600, NOW, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::TooManyLocks
    ));
    let lock = eth_channel::msg::WireLock {
        from: pair.chan.params.a,
        amount: 1,
        hashlock: secret(200).1,
        expiry: NOW + 3600,
    };
    let bytes = forged(&pair, UpdateKind::Lock { lock: lock.clone() }, |p| {
        p.state.is_final = false;
        p.state.balance_a -= 1;
        p.state.locks.push(lock.clone());
    });
    refused(&mut pair, &bytes, NOW, &chain(), RejectCode::TooManyLocks);
    // A hashlock already pending.
    let mut pair = Pair::new();
    let step = pair
        .a
        .propose_lock(5, secret(1).1, NOW + 3600, NOW, &chain())
        .unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    assert!(matches!(
        pair.b.propose_lock(5, secret(1).1, NOW + 3600, NOW, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::DuplicateHashlock
    ));
}

#[test]
fn claims_and_cancels_follow_the_lock() {
    let mut pair = Pair::new();
    let (pre, h) = secret(1);
    let expiry = NOW + 3600;
    let step = pair.a.propose_lock(100, h, expiry, NOW, &chain()).unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    // B claims; A receives. Here A is the receiver, so swap the roles by hand.
    let claim = |pair: &Pair, pre: B256, now: u64| {
        let kind = UpdateKind::Claim {
            hashlock: h,
            preimage: pre,
        };
        let mut p = proposal_of(&pair.a.propose_cancel(h, expiry, &chain()).unwrap());
        p.kind = kind;
        p.state.locks.clear();
        p.state.balance_a = DEP_A - 100;
        p.state.balance_b = DEP_B + 100;
        let p = resign(&pair.chan, &pair.kb, p);
        let _ = now;
        encode(&p)
    };
    let a_refuses = |pair: &mut Pair, bytes: &[u8], now: u64, code: RejectCode| {
        let before = snapshot(&pair.sa, pair.a.id());
        let s = pair.a.receive(bytes, now, &chain()).unwrap();
        assert!(
            matches!(&s.event, Event::RefusedPeer(r) if r.code == code),
            "{:?}",
            s.event
        );
        pair.a.commit(s, &pair.sa).unwrap();
        assert_eq!(snapshot(&pair.sa, pair.a.id()), before);
    };
    let bytes = claim(&pair, B256::repeat_byte(2), NOW);
    a_refuses(&mut pair, &bytes, NOW, RejectCode::BadPreimage);
    let bytes = claim(&pair, pre, expiry);
    a_refuses(&mut pair, &bytes, expiry, RejectCode::LockExpired);
    assert!(matches!(
        pair.b.propose_claim(pre, expiry, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::LockExpired
    ));
    // A claim that also moves part of A's balance to B.
    let mut p = proposal_of(&pair.b.propose_claim(pre, NOW, &chain()).unwrap());
    p.state.balance_a -= 1;
    p.state.balance_b += 1;
    let p = resign(&pair.chan, &pair.kb, p);
    a_refuses(&mut pair, &encode(&p), NOW, RejectCode::StateMismatch);
    // A cancel before the expiry.
    let mut p = proposal_of(&pair.a.propose_cancel(h, expiry, &chain()).unwrap());
    p.sig = raw_sig(&pair.chan, &pair.ka, &p.state);
    refused(
        &mut pair,
        &encode(&p),
        expiry - 1,
        &chain(),
        RejectCode::LockNotExpired,
    );
    assert!(pair.a.propose_cancel(h, expiry - 1, &chain()).is_err());
    // The right preimage before the expiry passes.
    let step = pair.b.propose_claim(pre, NOW, &chain()).unwrap();
    pair.exchange(Side::B, step, NOW, &chain());
    assert_eq!(pair.a.latest().state.balanceB, DEP_B + 100);
    assert!(pair.a.latest().locks.is_empty());
}

#[test]
fn nothing_after_final_and_busy_while_pending() {
    let mut pair = Pair::new();
    // Both propose at once: A refuses B's (Busy); B abandons its own and answers A's with
    // Crossed (see tests/crossing.rs for the rest); nothing is signed twice at a version.
    let sa = pair
        .a
        .propose_lock(5, secret(1).1, NOW + 3600, NOW, &chain())
        .unwrap();
    let sb = pair
        .b
        .propose_lock(5, secret(2).1, NOW + 3600, NOW, &chain())
        .unwrap();
    let bytes_a = pair.a.commit(sa, &pair.sa).unwrap().unwrap();
    let bytes_b = pair.b.commit(sb, &pair.sb).unwrap().unwrap();
    let r = pair.a.receive(&bytes_b, NOW, &chain()).unwrap();
    assert!(matches!(&r.event, Event::RefusedPeer(r) if r.code == RejectCode::Busy));
    let r = pair.b.receive(&bytes_a, NOW, &chain()).unwrap();
    assert!(matches!(&r.event, Event::Crossed { abandoned: 1, .. }));
    assert!(matches!(
        pair.a.propose_close(NOW, &chain()),
        Err(PartyError::Busy(1))
    ));

    let mut pair = Pair::new();
    let step = pair.a.propose_close(NOW, &chain()).unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    assert!(pair.a.latest().state.isFinal);
    assert!(matches!(
        pair.b.propose_lock(5, secret(1).1, NOW + 3600, NOW, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::AfterFinal
    ));
    let mut p = lock_prop_after_final(&pair);
    p = resign(&pair.chan, &pair.ka, p);
    refused(
        &mut pair,
        &encode(&p),
        NOW,
        &chain(),
        RejectCode::AfterFinal,
    );
}

/// A version-2 lock on top of the final state, forged by A.
fn lock_prop_after_final(pair: &Pair) -> Proposal {
    let lock = eth_channel::msg::WireLock {
        from: pair.chan.params.a,
        amount: 1,
        hashlock: secret(9).1,
        expiry: NOW + 3600,
    };
    let mut st = eth_channel::msg::WireState::new(&pair.a.latest().state, &[]);
    st.version += 1;
    st.is_final = false;
    st.balance_a -= 1;
    st.locks = vec![lock.clone()];
    Proposal {
        channel: pair.a.id(),
        state: st,
        kind: UpdateKind::Lock { lock },
        sig: raw_sig(
            &pair.chan,
            &pair.ka,
            &eth_channel::msg::WireState::new(&pair.a.latest().state, &[]),
        ),
    }
}

#[test]
fn store_refuses_a_second_state_at_a_signed_version() {
    let pair = Pair::new();
    let id = pair.a.id();
    let p1 = lock_prop(&pair, 5, 1, NOW + 3600);
    let p2 = lock_prop(&pair, 6, 1, NOW + 3600);
    pair.sa.save_proposal(id, &p1).unwrap();
    pair.sa.save_proposal(id, &p1).unwrap();
    assert!(matches!(
        pair.sa.save_proposal(id, &p2),
        Err(StoreError::Duplicate { version: 1, .. })
    ));
    // A co-signed state differing from our proposal at that version.
    let cs = eth_channel::CoSigned {
        state: p2.state.state(),
        locks: p2.state.locks(),
        sig_a: None,
        sig_b: None,
    };
    assert!(matches!(
        pair.sa.save_cosigned(id, &cs),
        Err(StoreError::Duplicate { version: 1, .. })
    ));
    assert_eq!(pair.sa.load(id).unwrap().unwrap().pending, Some(p1.clone()));
    // Our proposal co-signed: saving it again is a no-op; a different co-signed state at
    // that version is refused, typed, and changes nothing.
    let ours = eth_channel::CoSigned {
        state: p1.state.state(),
        locks: p1.state.locks(),
        sig_a: Some(p1.sig.into()),
        sig_b: Some(raw_sig(&pair.chan, &pair.kb, &p1.state).into()),
    };
    pair.sa.save_cosigned(id, &ours).unwrap();
    pair.sa.save_cosigned(id, &ours).unwrap();
    pair.sa.save_proposal(id, &p1).unwrap_err();
    assert_eq!(pair.sa.history(id).unwrap().len(), 1);
    let other = eth_channel::CoSigned {
        sig_b: Some(raw_sig(&pair.chan, &pair.kb, &p2.state).into()),
        ..cs
    };
    assert!(matches!(
        pair.sa.save_cosigned(id, &other),
        Err(StoreError::Duplicate { version: 1, .. })
    ));
    assert!(matches!(
        pair.sa.save_proposal(id, &p2),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(pair.sa.history(id).unwrap(), vec![ours]);
    assert!(matches!(
        pair.sa.save_proposal(B256::ZERO, &p2),
        Err(StoreError::UnknownChannel(_))
    ));
}

#[test]
fn withdrawals_and_closes_change_only_what_they_state() {
    let mut pair = Pair::new();
    // Beyond the balance.
    assert!(matches!(
        pair.a.propose_withdraw(DEP_A + 1, NOW + 3600, NOW, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::InsufficientBalance
    ));
    let kind = UpdateKind::Withdraw {
        amount: DEP_A + 1,
        expiry: NOW + 3600,
    };
    let bytes = forged(&pair, kind, |p| {
        p.state.balance_a = 0;
        p.state.withdrawn_a = DEP_A + 1;
        p.state.balance_b -= 1;
        p.state.withdraw_expiry = NOW + 3600;
    });
    refused(
        &mut pair,
        &bytes,
        NOW,
        &chain(),
        RejectCode::InsufficientBalance,
    );
    // Expiring too soon.
    assert!(matches!(
        pair.a.propose_withdraw(10, NOW + 1, NOW, &chain()),
        Err(PartyError::Invalid(r)) if r.code == RejectCode::BadExpiry
    ));
    // A withdrawal by A that takes the amount from B's balance.
    let mut p = proposal_of(
        &pair
            .a
            .propose_withdraw(10, NOW + 3600, NOW, &chain())
            .unwrap(),
    );
    p.state.balance_a += 10;
    p.state.balance_b -= 10;
    let p = resign(&pair.chan, &pair.ka, p);
    refused(
        &mut pair,
        &encode(&p),
        NOW,
        &chain(),
        RejectCode::StateMismatch,
    );
    // A close that also moves balance.
    let mut p = proposal_of(&pair.a.propose_close(NOW, &chain()).unwrap());
    p.state.balance_a += 1;
    p.state.balance_b -= 1;
    let p = resign(&pair.chan, &pair.ka, p);
    refused(
        &mut pair,
        &encode(&p),
        NOW,
        &chain(),
        RejectCode::StateMismatch,
    );
    // A close with a lock pending.
    let step = pair
        .a
        .propose_lock(5, secret(1).1, NOW + 3600, NOW, &chain())
        .unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    assert!(pair.b.propose_close(NOW, &chain()).is_err());
    let bytes = forged(&pair, UpdateKind::Close, |p| p.state.is_final = true);
    refused(&mut pair, &bytes, NOW, &chain(), RejectCode::StateMismatch);
    // The honest withdrawal passes.
    let step = pair
        .a
        .propose_withdraw(10, NOW + 3600, NOW, &chain())
        .unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    assert_eq!(pair.b.latest().state.withdrawnA, 10);
    assert_eq!(pair.b.latest().state.balanceA, DEP_A - 15);
}
