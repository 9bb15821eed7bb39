//! Crash and resume: a party is rebuilt from its store file after every step.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use alloy::primitives::B256;
use common::*;
use eth_adapter::channel::Side;
use eth_channel::{hashlock_of, Config, Event, Party, PartyError, SqliteChannelStore};

struct Files {
    _dir: tempfile::TempDir,
    pa: std::path::PathBuf,
    pb: std::path::PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    Files {
        pa: dir.path().join("a.db"),
        pb: dir.path().join("b.db"),
        _dir: dir,
    }
}

/// Drops both parties and stores, reopens the files and resumes both.
fn crash(pair: &mut Pair, f: &Files) {
    let id = pair.a.id();
    let (ka, kb) = (pair.ka.clone(), pair.kb.clone());
    pair.sa = SqliteChannelStore::open(&f.pa).unwrap();
    pair.sb = SqliteChannelStore::open(&f.pb).unwrap();
    pair.a = Party::resume(id, ka, Config::default(), &pair.sa).unwrap();
    pair.b = Party::resume(id, kb, Config::default(), &pair.sb).unwrap();
}

#[test]
fn resumes_with_the_latest_cosigned_state_after_every_step() {
    let f = files();
    let mut pair = Pair::with_stores(
        SqliteChannelStore::open(&f.pa).unwrap(),
        SqliteChannelStore::open(&f.pb).unwrap(),
    );
    for i in 0..10u8 {
        let by = if i % 2 == 0 { Side::A } else { Side::B };
        let pre = B256::repeat_byte(i + 1);
        let (p, _, _, _) = pair.roles(by);
        let step = p
            .propose_lock(7, hashlock_of(&pre), NOW + 3600, NOW, &chain())
            .unwrap();
        pair.exchange(by, step, NOW, &chain());
        let before = pair.a.latest().clone();
        crash(&mut pair, &f);
        assert_eq!(pair.a.latest(), &before);
        assert_eq!(pair.b.latest(), &before);
        assert!(pair.a.pending().is_none() && pair.b.pending().is_none());
        // The receiver claims.
        let (_, _, r, _) = pair.roles(by);
        let step = r.propose_claim(pre, NOW, &chain()).unwrap();
        let other = if by == Side::A { Side::B } else { Side::A };
        pair.exchange(other, step, NOW, &chain());
        crash(&mut pair, &f);
        assert_eq!(pair.a.latest().state.version, u64::from(i) * 2 + 2);
        assert_eq!(pair.a.latest(), pair.b.latest());
    }
    assert_eq!(pair.a.latest().state.balanceA, DEP_A);
    let hist = eth_channel::ChannelStore::history(&pair.sa, pair.a.id()).unwrap();
    assert_eq!(hist.len(), 20);
    assert!(hist
        .windows(2)
        .all(|w| w[1].state.version == w[0].state.version + 1));
    // A new store on the same file refuses to open the channel again.
    assert!(Party::open(
        pair.chan.clone(),
        Side::A,
        pair.ka.clone(),
        Config::default(),
        DEP_A,
        DEP_B,
        &pair.sa
    )
    .is_err());
}

#[test]
fn a_crash_before_the_countersign_keeps_the_one_signed_proposal() {
    let f = files();
    let mut pair = Pair::with_stores(
        SqliteChannelStore::open(&f.pa).unwrap(),
        SqliteChannelStore::open(&f.pb).unwrap(),
    );
    let h = hashlock_of(&B256::repeat_byte(1));
    let step = pair
        .a
        .propose_lock(10, h, NOW + 3600, NOW, &chain())
        .unwrap();
    let sent = pair.a.commit(step, &pair.sa).unwrap().unwrap();
    // B countersigns and persists, but A crashes before the countersign arrives.
    let answer = pair.b.receive(&sent, NOW, &chain()).unwrap();
    let back = pair.b.commit(answer, &pair.sb).unwrap().unwrap();
    crash(&mut pair, &f);
    assert_eq!(pair.a.latest().state.version, 0);
    assert_eq!(pair.b.latest().state.version, 1);
    let pending = pair.a.pending().cloned().expect("the proposal survives");
    assert_eq!(pending.state.version, 1);
    // A signs nothing else at version 1 (nor anything later) until it completes...
    assert!(matches!(
        pair.a.propose_lock(20, h, NOW + 3600, NOW, &chain()),
        Err(PartyError::Busy(1))
    ));
    // ...nor countersigns a proposal of the peer.
    let other = pair
        .b
        .propose_lock(
            5,
            hashlock_of(&B256::repeat_byte(2)),
            NOW + 3600,
            NOW,
            &chain(),
        )
        .unwrap();
    let other = proposal_of(&other);
    let r = pair.a.receive(&encode(&other), NOW, &chain()).unwrap();
    assert!(matches!(r.event, Event::RefusedPeer(_)));
    // A's store refuses another proposal of version 1 outright.
    let mut twin = pending.clone();
    twin.state.balance_a -= 1;
    assert!(eth_channel::ChannelStore::save_proposal(&pair.sa, pair.a.id(), &twin).is_err());
    // Resending gives the very same proposal; B (which already countersigned it) answers
    // with the same countersign, changing nothing; that completes it.
    let again = pair.a.resend().unwrap();
    assert_eq!(again, encode(&pending));
    let stored_b = snapshot(&pair.sb, pair.b.id());
    let answer = pair.b.receive(&again, NOW, &chain()).unwrap();
    assert_eq!(answer.event, Event::Countersigned(1));
    let back2 = pair.b.commit(answer, &pair.sb).unwrap().unwrap();
    assert_eq!(back2, back);
    assert_eq!(snapshot(&pair.sb, pair.b.id()), stored_b);
    let done = pair.a.receive(&back2, NOW, &chain()).unwrap();
    assert_eq!(done.event, Event::Completed(1));
    assert!(pair.a.commit(done, &pair.sa).unwrap().is_none());
    crash(&mut pair, &f);
    assert_eq!(pair.a.latest(), pair.b.latest());
    assert!(pair.a.pending().is_none());
}

#[test]
fn a_store_failure_changes_nothing_and_sends_nothing() {
    let mut pair = Pair::new();
    let step = pair
        .a
        .propose_lock(10, hashlock_of(&B256::ZERO), NOW + 3600, NOW, &chain())
        .unwrap();
    // A store that does not know the channel fails the write.
    let empty = SqliteChannelStore::in_memory().unwrap();
    assert!(pair.a.commit(step.clone(), &empty).is_err());
    assert!(pair.a.pending().is_none());
    // A step made before another was committed is stale.
    let step2 = pair.a.propose_close(NOW, &chain()).unwrap();
    pair.exchange(Side::A, step, NOW, &chain());
    assert!(matches!(
        pair.a.commit(step2, &pair.sa),
        Err(PartyError::StaleStep { made: 0, now: 1 })
    ));
}
