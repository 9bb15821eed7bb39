//! Two parties of one channel (no chain), and the exchange of one update between them.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use alloy::primitives::{address, Address, B256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use eth_adapter::channel::{ChannelRef, OnChain, Params, Side, Sig};
use eth_channel::msg::{Proposal, WireSig, WireState};
use eth_channel::{ChannelStore, Config, Event, Message, Party, SqliteChannelStore, Step};

pub const NOW: u64 = 1_800_000_000;
pub const DEP_A: u128 = 1_000;
pub const DEP_B: u128 = 500;

pub struct Pair {
    pub chan: ChannelRef,
    pub ka: PrivateKeySigner,
    pub kb: PrivateKeySigner,
    pub a: Party,
    pub b: Party,
    pub sa: SqliteChannelStore,
    pub sb: SqliteChannelStore,
}

pub fn chain() -> OnChain {
    OnChain {
        deposit_a: DEP_A,
        deposit_b: DEP_B,
        withdrawn_a: 0,
        withdrawn_b: 0,
        time: NOW,
    }
}

pub fn chan_of(ka: &PrivateKeySigner, kb: &PrivateKeySigner) -> ChannelRef {
    ChannelRef::new(
        Params {
            a: ka.address(),
            b: kb.address(),
            token: Address::ZERO,
            challengePeriod: 3600,
            salt: B256::repeat_byte(9),
        },
        31337,
        address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
    )
}

impl Pair {
    pub fn new() -> Self {
        Self::with_stores(
            SqliteChannelStore::in_memory().unwrap(),
            SqliteChannelStore::in_memory().unwrap(),
        )
    }

    pub fn with_stores(sa: SqliteChannelStore, sb: SqliteChannelStore) -> Self {
        let ka = PrivateKeySigner::random();
        let kb = PrivateKeySigner::random();
        let chan = chan_of(&ka, &kb);
        let cfg = Config::default();
        let a = Party::open(chan.clone(), Side::A, ka.clone(), cfg, DEP_A, DEP_B, &sa).unwrap();
        let b = Party::open(chan.clone(), Side::B, kb.clone(), cfg, DEP_A, DEP_B, &sb).unwrap();
        Self {
            chan,
            ka,
            kb,
            a,
            b,
            sa,
            sb,
        }
    }

    /// (proposer, its store, receiver, its store)
    pub fn roles(
        &mut self,
        by: Side,
    ) -> (
        &mut Party,
        &SqliteChannelStore,
        &mut Party,
        &SqliteChannelStore,
    ) {
        match by {
            Side::A => (&mut self.a, &self.sa, &mut self.b, &self.sb),
            Side::B => (&mut self.b, &self.sb, &mut self.a, &self.sa),
        }
    }

    /// Commits `step` (a proposal by `by`), delivers it, countersigns, completes.
    pub fn exchange(&mut self, by: Side, step: Step, now: u64, chain: &OnChain) {
        let (p, ps, r, rs) = self.roles(by);
        deliver(p, ps, r, rs, step, now, chain);
        assert_eq!(self.a.latest(), self.b.latest());
    }
}

/// Commits `step` (a proposal by `p`), delivers it to `r`, which countersigns; `p` completes.
pub fn deliver(
    p: &mut Party,
    ps: &dyn ChannelStore,
    r: &mut Party,
    rs: &dyn ChannelStore,
    step: Step,
    now: u64,
    chain: &OnChain,
) {
    let bytes = p.commit(step, ps).unwrap().expect("a proposal to send");
    let answer = r.receive(&bytes, now, chain).unwrap();
    assert!(
        matches!(answer.event, Event::Countersigned(_)),
        "{:?}",
        answer.event
    );
    let back = r.commit(answer, rs).unwrap().expect("a countersign");
    let done = p.receive(&back, now, chain).unwrap();
    assert!(
        matches!(done.event, Event::Completed(_)),
        "{:?}",
        done.event
    );
    assert!(p.commit(done, ps).unwrap().is_none());
    assert_eq!(p.latest(), r.latest());
    assert!(p.pending().is_none() && r.pending().is_none());
}

/// Signs `ws`'s state with `key`, no checks.
pub fn raw_sig(chan: &ChannelRef, key: &PrivateKeySigner, ws: &WireState) -> WireSig {
    let sig = key.sign_hash_sync(&chan.digest(&ws.state())).unwrap();
    WireSig::from(&Sig {
        v: 27 + u8::from(sig.v()),
        r: sig.r().into(),
        s: sig.s().into(),
    })
}

/// The proposal a step would send (not committed: for forging variants of it).
pub fn proposal_of(step: &Step) -> Proposal {
    match step.message() {
        Some(Message::Propose(p)) => p.clone(),
        other => panic!("not a proposal: {other:?}"),
    }
}

/// Re-signs a modified proposal with `key`.
pub fn resign(chan: &ChannelRef, key: &PrivateKeySigner, mut p: Proposal) -> Proposal {
    p.state.locks_hash = eth_adapter::channel::locks_hash(&p.state.locks());
    p.sig = raw_sig(chan, key, &p.state);
    p
}

pub fn encode(p: &Proposal) -> Vec<u8> {
    Message::Propose(p.clone()).encode()
}

/// Keeps the store's view for "nothing changed" checks.
pub fn snapshot(store: &SqliteChannelStore, id: B256) -> (eth_channel::Saved, usize) {
    (
        store.load(id).unwrap().unwrap(),
        store.history(id).unwrap().len(),
    )
}
