//! Model-based test of the payment channel contract (`contracts/Channel.sol`): a seeded random
//! sequence of a few hundred operations over several channels (ETH, ERC-20, and an ETH
//! channel whose B is a contract that can refuse payments) against a real anvil with
//! controlled block times: deposits and top-ups, off-chain co-signed states (payments, locks
//! added and resolved, withdrawals, dropped lapsed withdrawals, final states) plus invalid
//! ones (over capacity, bad signatures, another channel's, version 0, unfunded, wrong locks),
//! withdrawals (live and expired), cooperative closes, unilateral closes with old or latest
//! states and unsigned, updates by either party or a third party, reveals before and after
//! expiry, settlements before and after the challenge period, `settleFinal` and
//! `withdrawCredit`.
//!
//! After every step: each transaction succeeded exactly when the model says it must; the
//! contract's ETH and token balances equal the model's (what went in minus what went out) and
//! the conservation identity (open channels' deposits minus withdrawals, plus closing
//! channels' frozen nets, plus credits); every channel's status view, `ChannelRef::on_chain`
//! and both storage words (hence the whole closing record) equal the model; every account's
//! ETH and token balance equals the model's (payouts exact, gas accounted from receipts);
//! credits and the secret registry equal the model; and the latest co-signed state of every
//! open channel still pays nobody less than zero (W1). At the end every channel is settled
//! and each channel's payouts add up to its deposits.
//!
//! `CHANNEL_MODEL_SEED` replays a seed; `CHANNEL_MODEL_STEPS` changes the number of steps.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;

use alloy::eips::BlockNumberOrTag;
use alloy::network::TransactionBuilder;
use alloy::primitives::{keccak256, Address, Bytes, B256, I256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall;
use common::channel::{sign_raw, ChannelEnv, Sigs, HOUR};
use devnet::test_contracts::{ChannelParty, TestToken};
use eth_adapter::bindings::Channel;
use eth_adapter::channel::{locks_hash, ChannelRef, Lock, OnChain, Params, Record, State};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::common;

const MAX_LOCK_TTL: u64 = 30 * 24 * HOUR;
/// Deposits are multiples of this (0.001 ETH or token units).
const UNIT: u128 = 1_000_000_000_000_000;
const THIRD: usize = 4;
/// Account 3 runs `ChannelParty` code (it can refuse ETH); account 2 drives it.
const PARTY: usize = 3;
const DRIVER: usize = 2;
/// Where account 3 sends its credits.
const SINK: usize = 5;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    None,
    Open,
    Closing,
    Settled,
}

#[derive(Clone, Debug)]
struct Signed {
    s: State,
    locks: Vec<Lock>,
    sigs: Sigs,
}

/// A state as sent to the contract, with what the model knows of it.
#[derive(Clone, Debug)]
struct Cand {
    s: State,
    locks: Vec<Lock>,
    sigs: Sigs,
    /// Both signatures are the right parties' over this channel's digest of `s`.
    sig_ok: bool,
    label: &'static str,
}

struct Chan {
    ch: ChannelRef,
    /// Dev account of A and of B.
    who: [usize; 2],
    token: bool,
    st: St,
    dep: [u128; 2],
    wd: [u128; 2],
    /// A withdrawal was executed (the channel word's OPEN_W tag).
    withdrew: bool,
    /// Every co-signed honest state, in signing order.
    hist: Vec<Signed>,
    /// The closing record and its locks.
    rec: Option<(Record, Vec<Lock>)>,
    /// Withdrawals and settlement payouts (credits included) per side.
    paid: [u128; 2],
}

impl Chan {
    fn nets(&self) -> [i128; 2] {
        [
            self.dep[0] as i128 - self.wd[0] as i128,
            self.dep[1] as i128 - self.wd[1] as i128,
        ]
    }
    fn latest(&self) -> Option<&Signed> {
        self.hist.last()
    }
}

/// What a successful transaction changes in the model.
#[derive(Default)]
struct Fx {
    st: Option<St>,
    dep: Option<(usize, u128)>,
    wd: Option<[u128; 2]>,
    rec: Option<(Record, Vec<Lock>)>,
    /// Payouts (side, amount) from the channel.
    pay: Vec<(usize, u128)>,
    reveal: Option<B256>,
    /// A credit taken: (account, token, amount, to).
    credit_out: Option<(Address, Address, u128, Address)>,
    /// What the outcome exercised, for the statistics.
    notes: Vec<&'static str>,
}

type Expect = Result<Fx, String>;

fn sum_locks(locks: &[Lock]) -> u128 {
    locks.iter().map(|l| l.amount).sum()
}

/// What state `s` pays each party before its locks, with on-chain nets `net`
/// (the contract's header: pay_X = balance_X + net_X - deposit_X + withdrawn_X).
fn bases(s: &State, locked: u128, net: [i128; 2]) -> Result<[u128; 2], String> {
    let out = s.balanceA as i128
        + s.balanceB as i128
        + locked as i128
        + s.withdrawnA as i128
        + s.withdrawnB as i128;
    if out != s.depositA as i128 + s.depositB as i128 {
        return Err("SumMismatch".into());
    }
    let x = s.balanceA as i128 + net[0] - s.depositA as i128 + s.withdrawnA as i128;
    let y = s.balanceB as i128 + net[1] - s.depositB as i128 + s.withdrawnB as i128;
    if x < 0 || y < 0 {
        return Err("Underfunded".into());
    }
    Ok([x as u128, y as u128])
}

fn i256(x: i128) -> I256 {
    I256::try_from(x).unwrap()
}
fn i128_of(x: I256) -> i128 {
    i128::try_from(x).unwrap()
}
fn u128_of(x: U256) -> u128 {
    u128::try_from(x).unwrap()
}

struct World {
    t: ChannelEnv,
    token: Address,
    rng: Rng,
    /// The last block's timestamp.
    now: u64,
    chans: Vec<Chan>,
    /// Live channel per kind (indices into `chans`).
    live: Vec<usize>,
    salt: u8,
    /// hashlock -> preimage, for every lock ever made.
    secrets: Vec<(B256, B256)>,
    next_secret: u64,
    revealed: HashMap<B256, u64>,
    credit: HashMap<(Address, Address), u128>,
    eth: HashMap<Address, i128>,
    tok: HashMap<Address, i128>,
    contract_eth: i128,
    contract_tok: i128,
    rejecting: bool,
    /// Outcomes per operation: (succeeded, failed).
    stats: HashMap<String, u32>,
    /// What the state sent by the current step is (latest, old, an invalid variant).
    label: &'static str,
    /// The kind of the next off-chain update, instead of a random one.
    force_kind: Option<u64>,
}

impl World {
    fn addr(&self, i: usize) -> Address {
        self.t.net.address(i)
    }

    fn new_chan(&mut self, kind: usize) -> usize {
        self.salt += 1;
        let (a, b, token, cp) = match kind {
            0 => (0, 1, Address::ZERO, HOUR),
            1 => (1, 0, Address::ZERO, 2 * HOUR),
            2 => (0, 1, self.token, HOUR),
            _ => (0, PARTY, Address::ZERO, HOUR),
        };
        let params = Params {
            a: self.addr(a),
            b: self.addr(b),
            token,
            challengePeriod: cp,
            salt: B256::repeat_byte(self.salt),
        };
        self.chans.push(Chan {
            ch: ChannelRef::new(params, self.t.chain_id, self.t.contract()),
            who: [a, b],
            token: token != Address::ZERO,
            st: St::None,
            dep: [0; 2],
            wd: [0; 2],
            withdrew: false,
            hist: vec![],
            rec: None,
            paid: [0; 2],
        });
        self.chans.len() - 1
    }

    fn fresh_secret(&mut self) -> B256 {
        self.next_secret += 1;
        let pre = keccak256(self.next_secret.to_be_bytes());
        let h = B256::from_slice(&Sha256::digest(pre.0));
        self.secrets.push((h, pre));
        h
    }

    fn sign_both(&self, c: usize, s: &State, locks: &[Lock]) -> Sigs {
        let ch = &self.chans[c].ch;
        let ka = self.t.key(self.chans[c].who[0]);
        let kb = self.t.key(self.chans[c].who[1]);
        (
            ch.sign(&ka, s, locks, self.now).unwrap(),
            ch.sign(&kb, s, locks, self.now).unwrap(),
        )
    }

    fn sign_raw_both(&self, c: usize, s: &State) -> Sigs {
        let ch = &self.chans[c].ch;
        (
            sign_raw(ch, &self.t.key(self.chans[c].who[0]), s),
            sign_raw(ch, &self.t.key(self.chans[c].who[1]), s),
        )
    }

    /// Builds, checks (`check`, `check_next`) and co-signs the next honest state of an open
    /// channel. Returns false when there is nothing to sign.
    fn offchain_update(&mut self, c: usize, want_final: bool) -> bool {
        let now = self.now;
        let ch = &self.chans[c];
        if ch.st != St::Open || ch.latest().is_some_and(|l| l.s.isFinal) {
            return false;
        }
        let (prev, mut locks) = match ch.latest() {
            Some(l) => (l.s.clone(), l.locks.clone()),
            None => (
                State {
                    version: 0,
                    balanceA: 0,
                    balanceB: 0,
                    locksHash: B256::ZERO,
                    depositA: 0,
                    depositB: 0,
                    withdrawnA: 0,
                    withdrawnB: 0,
                    withdrawExpiry: 0,
                    isFinal: false,
                },
                vec![],
            ),
        };
        let (dep, wd) = (ch.dep, ch.wd);
        let parties = [ch.ch.params.a, ch.ch.params.b];
        let mut s = prev.clone();
        s.version += 1 + self.rng.below(3);
        let mut bal = [s.balanceA, s.balanceB];
        let mut d = [s.depositA, s.depositB];
        let mut w = [s.withdrawnA, s.withdrawnB];
        // Count the final top-ups (always for the first state).
        if prev.version == 0 || self.rng.chance(50) {
            for (b, (d, dep)) in bal.iter_mut().zip(d.iter_mut().zip(dep)) {
                *b += dep - *d;
                *d = dep;
            }
        }
        let running = now < prev.withdrawExpiry;
        let x = self.rng.below(2) as usize;
        if want_final {
            // Resolve every lock first, then sign the final state.
            for l in std::mem::take(&mut locks) {
                let from = usize::from(l.from != parties[0]);
                let in_time = self
                    .revealed
                    .get(&l.hashlock)
                    .is_some_and(|t| *t < l.expiry);
                bal[if in_time { 1 - from } else { from }] += l.amount;
            }
            s.isFinal = true;
        } else {
            match self.force_kind.take().unwrap_or_else(|| self.rng.below(9)) {
                0 | 1 if bal[x] > 0 => {
                    let amt = self.rng.range(1, bal[x] as u64 / UNIT as u64 + 1) as u128 * UNIT;
                    let amt = amt.min(bal[x]);
                    bal[x] -= amt;
                    bal[1 - x] += amt;
                }
                2 | 7 | 8 if bal[x] > 0 && locks.len() < 4 => {
                    let amt = (self.rng.range(1, 5) as u128 * UNIT / 2).min(bal[x]);
                    bal[x] -= amt;
                    let hashlock = self.fresh_secret();
                    locks.push(Lock {
                        from: parties[x],
                        amount: amt,
                        hashlock,
                        expiry: now + self.rng.range(600, 6 * HOUR),
                    });
                }
                3 if !locks.is_empty() => {
                    let i = self.rng.below(locks.len() as u64) as usize;
                    let l = locks.remove(i);
                    let from = usize::from(l.from != parties[0]);
                    let in_time = self
                        .revealed
                        .get(&l.hashlock)
                        .is_some_and(|t| *t < l.expiry);
                    // Revealed in time: paid; expired: back; otherwise either (the secret
                    // handed over off-chain, or a cancel).
                    let to_receiver = in_time || (now < l.expiry && self.rng.chance(60));
                    bal[if to_receiver { 1 - from } else { from }] += l.amount;
                }
                4 | 6 if bal[x] > 0 => {
                    let amt = (self.rng.range(1, 4) as u128 * UNIT / 3).min(bal[x]);
                    bal[x] -= amt;
                    w[x] += amt;
                    let exp = if self.rng.chance(15) {
                        // Already lapsed when executed (unless a running one holds it).
                        now
                    } else {
                        now + self.rng.range(300, 3 * HOUR)
                    };
                    s.withdrawExpiry = if running {
                        exp.max(prev.withdrawExpiry)
                    } else {
                        exp
                    };
                }
                5 if !running => {
                    // Drop lapsed, unexecuted withdrawals.
                    for y in 0..2 {
                        if w[y] > wd[y] {
                            bal[y] += w[y] - wd[y];
                            w[y] = wd[y];
                        }
                    }
                    if self.rng.chance(50) {
                        s.withdrawExpiry = 0;
                    }
                }
                _ => {}
            }
        }
        [s.balanceA, s.balanceB] = bal;
        [s.depositA, s.depositB] = d;
        [s.withdrawnA, s.withdrawnB] = w;
        s.locksHash = locks_hash(&locks);
        let ch = &self.chans[c].ch;
        let chain = OnChain {
            deposit_a: dep[0],
            deposit_b: dep[1],
            withdrawn_a: wd[0],
            withdrawn_b: wd[1],
            time: now,
        };
        ch.check(&s, &locks, now)
            .unwrap_or_else(|e| panic!("generated state fails check: {e} {s:?}"));
        if prev.version > 0 {
            ch.check_next(&prev, &s, &chain)
                .unwrap_or_else(|e| panic!("generated state fails check_next: {e} {s:?}"));
        }
        let sigs = self.sign_both(c, &s, &locks);
        self.chans[c].hist.push(Signed { s, locks, sigs });
        true
    }

    /// A state to send: the latest, an older one, or an invalid variant.
    fn candidate(&mut self, c: usize) -> Option<Cand> {
        self.candidate_with(c, 45)
    }

    /// As `candidate`, with the latest state `latest_percent` % of the time.
    fn candidate_with(&mut self, c: usize, latest_percent: u64) -> Option<Cand> {
        let ch = &self.chans[c];
        let latest = ch.latest()?.clone();
        let ok = |x: &Signed, label| Cand {
            s: x.s.clone(),
            locks: x.locks.clone(),
            sigs: x.sigs.clone(),
            sig_ok: true,
            label,
        };
        let r = self.rng.below(100);
        if r < latest_percent {
            return Some(ok(&latest, "latest"));
        }
        if r < latest_percent + (100 - latest_percent) * 6 / 10 {
            let old = self.rng.pick(&ch.hist).clone();
            return Some(ok(&old, "old"));
        }
        let mut s = latest.s.clone();
        Some(
            match self.force_kind.take().unwrap_or_else(|| self.rng.below(9)) {
                0 => {
                    s.balanceA += 1;
                    let sigs = self.sign_raw_both(c, &s);
                    Cand {
                        sigs,
                        ..ok(&Signed { s, ..latest }, "over capacity")
                    }
                }
                1 => {
                    let sigs = (latest.sigs.0.clone(), latest.sigs.0.clone());
                    Cand {
                        sigs,
                        sig_ok: false,
                        ..ok(&latest, "A's signature twice")
                    }
                }
                2 => {
                    let ch = &self.chans[c].ch;
                    let sigs = (sign_raw(ch, &self.t.key(THIRD), &s), latest.sigs.1.clone());
                    Cand {
                        sigs,
                        sig_ok: false,
                        ..ok(&latest, "signed by a stranger")
                    }
                }
                3 => {
                    let mut other = self.chans[c].ch.clone();
                    other.params.salt = B256::repeat_byte(0xee);
                    let sigs = (
                        sign_raw(&other, &self.t.key(self.chans[c].who[0]), &s),
                        sign_raw(&other, &self.t.key(self.chans[c].who[1]), &s),
                    );
                    Cand {
                        sigs,
                        sig_ok: false,
                        ..ok(&latest, "another channel's")
                    }
                }
                4 => {
                    s.version = 0;
                    let sigs = self.sign_raw_both(c, &s);
                    Cand {
                        sigs,
                        ..ok(&Signed { s, ..latest }, "version 0")
                    }
                }
                5 => {
                    // Counts a deposit of 1000 units A never made, paid to B.
                    s.depositA += 1000 * UNIT;
                    s.balanceB += 1000 * UNIT;
                    s.version += 100;
                    let sigs = self.sign_raw_both(c, &s);
                    Cand {
                        sigs,
                        ..ok(&Signed { s, ..latest }, "unfunded")
                    }
                }
                _ => {
                    let mut cand = ok(&latest, "wrong locks");
                    if cand.locks.pop().is_none() {
                        cand.locks.push(Lock {
                            from: self.chans[c].ch.params.a,
                            amount: 0,
                            hashlock: B256::ZERO,
                            expiry: 0,
                        });
                    }
                    cand
                }
            },
        )
    }

    /// The contract's `_verify` and `_payouts` for a candidate with nets `net`.
    fn payouts(&self, c: usize, k: &Cand, net: [i128; 2]) -> Result<[u128; 2], String> {
        if k.s.version == 0 {
            return Err("StaleVersion (version 0)".into());
        }
        if !k.sig_ok {
            return Err("BadSignature".into());
        }
        let p = &self.chans[c].ch.params;
        if k.locks.len() > 64 || k.locks.iter().any(|l| l.from != p.a && l.from != p.b) {
            return Err("bad locks".into());
        }
        if locks_hash(&k.locks) != k.s.locksHash {
            return Err("LocksMismatch".into());
        }
        bases(&k.s, sum_locks(&k.locks), net)
    }

    fn record(&self, c: usize, k: &Cand, deadline: u64, net: [i128; 2]) -> Expect {
        let pay = self.payouts(c, k, net)?;
        let rec = Record {
            version: k.s.version,
            deadline,
            netA: i256(net[0]),
            netB: i256(net[1]),
            payA: U256::from(pay[0]),
            payB: U256::from(pay[1]),
            locksHash: k.s.locksHash,
        };
        Ok(Fx {
            st: Some(St::Closing),
            rec: Some((rec, k.locks.clone())),
            ..Fx::default()
        })
    }

    /// Sends `input` (with `value`) to the channel contract as dev account `by` in a block
    /// stamped `at`; account 3 (contract code) acts through `exec`, sent by account 2.
    async fn send(&self, by: usize, input: Vec<u8>, value: u128, at: u64) -> TransactionReceipt {
        let (from, to, input) = if by == PARTY {
            let call = ChannelParty::execCall {
                to: self.t.contract(),
                callData: input.into(),
            };
            (DRIVER, self.addr(PARTY), call.abi_encode())
        } else {
            (by, self.t.contract(), input)
        };
        self.send_from(from, to, input, value, at).await
    }

    async fn send_from(
        &self,
        from: usize,
        to: Address,
        input: Vec<u8>,
        value: u128,
        at: u64,
    ) -> TransactionReceipt {
        self.t
            .net
            .rpc("evm_setNextBlockTimestamp", json!([at]))
            .await;
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(Bytes::from(input))
            .with_value(U256::from(value))
            .with_gas_limit(2_000_000);
        self.t.p[from]
            .send_transaction(tx)
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap()
    }

    /// Sends, checks the outcome against `expect` and applies it to the model.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        step: usize,
        op: &'static str,
        c: usize,
        by: usize,
        input: Vec<u8>,
        value: u128,
        at: u64,
        expect: Expect,
    ) {
        let label = std::mem::take(&mut self.label);
        let r = self.send(by, input.clone(), value, at).await;
        self.now = at;
        let fee = r.gas_used as i128 * r.effective_gas_price as i128;
        *self.eth.get_mut(&r.from).unwrap() -= fee;
        let fx = match (r.status(), expect) {
            (true, Ok(fx)) => {
                *self.stats.entry(format!("{op} ok")).or_default() += 1;
                for n in &fx.notes {
                    *self.stats.entry(n.to_string()).or_default() += 1;
                }
                fx
            }
            (false, Err(why)) => {
                let why = why.split(' ').next().unwrap_or_default();
                *self
                    .stats
                    .entry(format!("{op} refused: {why}"))
                    .or_default() += 1;
                return;
            }
            (ok, expect) => {
                let why = match expect {
                    Ok(_) => {
                        // Replay as a call to get the revert reason.
                        let tx = TransactionRequest::default()
                            .with_from(self.addr(by))
                            .with_to(self.t.contract())
                            .with_input(Bytes::from(input))
                            .with_value(U256::from(value));
                        format!("{:?}", self.t.net.provider().call(tx).await.err())
                    }
                    Err(e) => e,
                };
                panic!(
                    "step {step}: {op} ({label}) on channel {c} by {by} at {at}: succeeded {ok}, \
                     the model says {}: {why}",
                    !ok
                );
            }
        };
        // Value sent.
        let payer = if by == PARTY {
            self.addr(DRIVER)
        } else {
            self.addr(by)
        };
        let ch_token = self.chans[c].token;
        *self.eth.get_mut(&payer).unwrap() -= value as i128;
        self.contract_eth += value as i128;
        let chan = &mut self.chans[c];
        if let Some(st) = fx.st {
            chan.st = st;
        }
        if let Some((x, amt)) = fx.dep {
            chan.dep[x] += amt;
            if ch_token {
                *self.tok.get_mut(&chan.ch.party_of(x)).unwrap() -= amt as i128;
                self.contract_tok += amt as i128;
            }
        }
        if let Some(w) = fx.wd {
            chan.wd = w;
            chan.withdrew = true;
        }
        if let Some(rec) = fx.rec {
            chan.rec = Some(rec);
        }
        let token = chan.ch.params.token;
        let parties = [chan.ch.params.a, chan.ch.params.b];
        for (x, amt) in fx.pay {
            if amt == 0 {
                continue;
            }
            chan.paid[x] += amt;
            let to = parties[x];
            if ch_token {
                *self.tok.get_mut(&to).unwrap() += amt as i128;
                self.contract_tok -= amt as i128;
            } else if to == self.t.net.address(PARTY) && self.rejecting {
                *self.credit.entry((to, token)).or_default() += amt;
                *self
                    .stats
                    .entry(format!("{op}: payout credited"))
                    .or_default() += 1;
            } else {
                *self.eth.get_mut(&to).unwrap() += amt as i128;
                self.contract_eth -= amt as i128;
            }
        }
        if let Some(h) = fx.reveal {
            self.revealed.insert(h, at);
        }
        if let Some((who, tk, amt, to)) = fx.credit_out {
            self.credit.insert((who, tk), 0);
            *self.eth.get_mut(&to).unwrap() += amt as i128;
            self.contract_eth -= amt as i128;
        }
        // A settled channel is replaced by a fresh one of the same kind.
        if fx.st == Some(St::Settled) {
            if let Some(k) = self.live.iter().position(|&l| l == c) {
                self.live[k] = self.new_chan(k);
            }
        }
    }

    /// The next block's time: a few seconds after the last.
    fn tick(&mut self) -> u64 {
        self.now + 1 + self.rng.below(20)
    }

    /// A channel for operation `r`: mostly one in a status where it can succeed, sometimes
    /// any (settled ones included).
    fn pick_chan(&mut self, r: u64) -> usize {
        let now = self.now;
        let fits = |ch: &Chan| match r {
            0..=9 => matches!(ch.st, St::None | St::Open),
            10..=54 => ch.st == St::Open,
            // Updates: mostly within the challenge period.
            55..=64 => ch.st == St::Closing && ch.rec.as_ref().is_some_and(|r| now < r.0.deadline),
            65..=74 => ch.st == St::Closing,
            _ => ch.st != St::Settled,
        };
        let fit: Vec<usize> = (0..self.chans.len())
            .filter(|&c| fits(&self.chans[c]))
            .collect();
        if fit.is_empty() || self.rng.chance(12) {
            self.rng.below(self.chans.len() as u64) as usize
        } else {
            *self.rng.pick(&fit)
        }
    }

    /// A party of channel `c` (side, account), or now and then the third party.
    fn actor(&mut self, c: usize, third_percent: u64) -> (Option<usize>, usize) {
        if self.rng.chance(third_percent) {
            return (None, THIRD);
        }
        let x = self.rng.below(2) as usize;
        (Some(x), self.chans[c].who[x])
    }

    async fn step(&mut self, step: usize) {
        let r = self.rng.below(100);
        let c = self.pick_chan(r);
        let at = self.tick();
        let p = self.chans[c].ch.params.clone();
        let st = self.chans[c].st;
        match r {
            // Deposit or top-up.
            0..=9 => {
                let (side, by) = self.actor(c, 8);
                let amt = if self.rng.chance(5) {
                    0
                } else {
                    self.rng.range(1, 20) as u128 * UNIT
                };
                let expect = match side {
                    _ if amt == 0 => Err("ZeroAmount".into()),
                    _ if !matches!(st, St::None | St::Open) => Err("NotOpen".into()),
                    None => Err("NotParty".into()),
                    Some(x) => Ok(Fx {
                        st: Some(St::Open),
                        dep: Some((x, amt)),
                        ..Fx::default()
                    }),
                };
                let (input, value) = if self.chans[c].token {
                    let call = Channel::depositTokenCall {
                        p,
                        amount: U256::from(amt),
                    };
                    (call.abi_encode(), 0)
                } else {
                    (Channel::depositCall { p }.abi_encode(), amt)
                };
                self.run(step, "deposit", c, by, input, value, at, expect)
                    .await;
            }
            // Off-chain: a new co-signed state (nothing sent).
            10..=34 => {
                self.offchain_update(c, false);
            }
            // Withdraw with a state (any sender).
            35..=44 => {
                let wd = self.chans[c].wd;
                let has_pending = |ch: &Chan| {
                    ch.latest()
                        .is_some_and(|x| x.s.withdrawnA > wd[0] || x.s.withdrawnB > wd[1])
                };
                if !has_pending(&self.chans[c]) && self.rng.chance(60) {
                    // The parties first sign a withdrawal.
                    self.force_kind = Some(4);
                    self.offchain_update(c, false);
                    self.force_kind = None;
                }
                let pending = self.chans[c]
                    .hist
                    .iter()
                    .rev()
                    .find(|x| x.s.withdrawnA > wd[0] || x.s.withdrawnB > wd[1])
                    .cloned();
                let k = match pending {
                    Some(x) if self.rng.chance(50) => Some(Cand {
                        s: x.s,
                        locks: x.locks,
                        sigs: x.sigs,
                        sig_ok: true,
                        label: "last with a pending withdrawal",
                    }),
                    _ => self.candidate(c),
                };
                let Some(k) = k else { return };
                let (_, by) = self.actor(c, 30);
                let chan = &self.chans[c];
                let expect = (|| {
                    if st != St::Open {
                        return Err("NotOpen".to_string());
                    }
                    let (w, wd) = ([k.s.withdrawnA, k.s.withdrawnB], chan.wd);
                    if w[0] < wd[0] || w[1] < wd[1] {
                        return Err("StaleWithdrawal".into());
                    }
                    let out = [w[0] - wd[0], w[1] - wd[1]];
                    if out == [0, 0] {
                        return Err("NothingToWithdraw".into());
                    }
                    if at >= k.s.withdrawExpiry {
                        return Err("WithdrawalExpired".into());
                    }
                    let net = [
                        chan.dep[0] as i128 - w[0] as i128,
                        chan.dep[1] as i128 - w[1] as i128,
                    ];
                    self.payouts(c, &k, net)?;
                    Ok(Fx {
                        wd: Some(w),
                        pay: vec![(0, out[0]), (1, out[1])],
                        ..Fx::default()
                    })
                })();
                let call = Channel::withdrawCall {
                    p,
                    s: k.s.clone(),
                    locks: k.locks.clone(),
                    sa: k.sigs.0.clone(),
                    sb: k.sigs.1.clone(),
                };
                self.label = k.label;
                self.run(step, "withdraw", c, by, call.abi_encode(), 0, at, expect)
                    .await;
            }
            // Cooperative close.
            45..=48 => {
                if self.rng.chance(70) && self.chans[c].latest().is_some_and(|l| l.locks.is_empty())
                {
                    self.offchain_update(c, true);
                }
                let Some(mut k) = self.candidate(c) else {
                    return;
                };
                if self.rng.chance(60) {
                    let l = self.chans[c].latest().unwrap();
                    k = Cand {
                        s: l.s.clone(),
                        locks: l.locks.clone(),
                        sigs: l.sigs.clone(),
                        sig_ok: true,
                        label: "latest",
                    };
                }
                let (_, by) = self.actor(c, 40);
                let expect = (|| {
                    if st != St::Open {
                        return Err("NotOpen".to_string());
                    }
                    if !k.s.isFinal {
                        return Err("NotFinal".into());
                    }
                    if k.s.locksHash != B256::ZERO {
                        return Err("PendingLocks".into());
                    }
                    let nolocks = Cand {
                        locks: vec![],
                        ..k.clone()
                    };
                    let pay = self.payouts(c, &nolocks, self.chans[c].nets())?;
                    Ok(Fx {
                        st: Some(St::Settled),
                        pay: vec![(0, pay[0]), (1, pay[1])],
                        ..Fx::default()
                    })
                })();
                let call = Channel::cooperativeCloseCall {
                    p,
                    s: k.s.clone(),
                    sa: k.sigs.0.clone(),
                    sb: k.sigs.1.clone(),
                };
                self.label = k.label;
                self.run(
                    step,
                    "cooperativeClose",
                    c,
                    by,
                    call.abi_encode(),
                    0,
                    at,
                    expect,
                )
                .await;
            }
            // Unilateral close, signed or unsigned.
            49..=54 => {
                let (side, by) = self.actor(c, 8);
                let deadline = at + p.challengePeriod;
                let net = self.chans[c].nets();
                let pre = |st| -> Result<(), String> {
                    if side.is_none() {
                        return Err("NotParty".into());
                    }
                    if st != St::Open {
                        return Err("NotOpen".into());
                    }
                    Ok(())
                };
                let k = if self.rng.chance(20) {
                    None
                } else {
                    self.candidate_with(c, 25)
                };
                match k {
                    None => {
                        let expect = pre(st).and_then(|()| {
                            if net[0] < 0 || net[1] < 0 {
                                return Err("Underfunded".into());
                            }
                            let rec = Record {
                                version: 0,
                                deadline,
                                netA: i256(net[0]),
                                netB: i256(net[1]),
                                payA: U256::from(net[0] as u128),
                                payB: U256::from(net[1] as u128),
                                locksHash: B256::ZERO,
                            };
                            Ok(Fx {
                                st: Some(St::Closing),
                                rec: Some((rec, vec![])),
                                ..Fx::default()
                            })
                        });
                        let call = Channel::closeUnsignedCall { p };
                        self.run(
                            step,
                            "closeUnsigned",
                            c,
                            by,
                            call.abi_encode(),
                            0,
                            at,
                            expect,
                        )
                        .await;
                    }
                    Some(k) => {
                        let expect = pre(st).and_then(|()| self.record(c, &k, deadline, net));
                        let call = Channel::closeCall {
                            p,
                            s: k.s.clone(),
                            locks: k.locks.clone(),
                            sa: k.sigs.0.clone(),
                            sb: k.sigs.1.clone(),
                        };
                        self.label = k.label;
                        self.run(step, "close", c, by, call.abi_encode(), 0, at, expect)
                            .await;
                    }
                }
            }
            // Update a closing channel (a party or the third party).
            55..=64 => {
                // Any state newer than the stored one (the watchtower's answer to an old
                // close, or a cheater's intermediate one), else the usual mix.
                let stored = self.chans[c].rec.as_ref().map_or(0, |r| r.0.version);
                let newer: Vec<Signed> = (self.chans[c].hist.iter())
                    .filter(|x| x.s.version > stored)
                    .cloned()
                    .collect();
                let k = if !newer.is_empty() && self.rng.chance(50) {
                    let x = self.rng.pick(&newer).clone();
                    Some(Cand {
                        s: x.s,
                        locks: x.locks,
                        sigs: x.sigs,
                        sig_ok: true,
                        label: "newer than the stored one",
                    })
                } else {
                    self.candidate_with(c, 60)
                };
                let Some(k) = k else { return };
                let (_, by) = self.actor(c, 35);
                let Some((rec, _)) = self.chans[c].rec.clone() else {
                    return;
                };
                let mut f = rec.frozen();
                let corrupt = self.rng.chance(5);
                if corrupt {
                    f.netA += I256::ONE;
                }
                let expect = (|| {
                    if st != St::Closing {
                        return Err("NotClosing".to_string());
                    }
                    if corrupt {
                        return Err("BadRecord".into());
                    }
                    if at >= rec.deadline {
                        return Err("ChallengeOver".into());
                    }
                    if k.s.version <= rec.version {
                        return Err("StaleVersion".into());
                    }
                    let net = [i128_of(rec.netA), i128_of(rec.netB)];
                    self.record(c, &k, rec.deadline, net)
                })();
                let call = Channel::updateCall {
                    p,
                    f,
                    s: k.s.clone(),
                    locks: k.locks.clone(),
                    sa: k.sigs.0.clone(),
                    sb: k.sigs.1.clone(),
                };
                self.label = k.label;
                self.run(step, "update", c, by, call.abi_encode(), 0, at, expect)
                    .await;
            }
            // Settle.
            65..=71 => {
                let Some((mut rec, mut locks)) = self.chans[c].rec.clone() else {
                    return;
                };
                let (_, by) = self.actor(c, 40);
                let mut bad = None;
                match self.rng.below(12) {
                    0 => {
                        rec.payA += U256::from(1);
                        rec.payB -= U256::from(1).min(rec.payB);
                        bad = Some("BadRecord");
                    }
                    1 if !locks.is_empty() => {
                        locks.pop();
                        bad = Some("LocksMismatch");
                    }
                    _ => {}
                }
                let expect = (|| {
                    if st != St::Closing {
                        return Err("NotClosing".to_string());
                    }
                    if let Some(b) = bad {
                        // A changed payout pair could collide only by a hash collision.
                        if b != "BadRecord" || rec != self.chans[c].rec.as_ref().unwrap().0 {
                            return Err(b.into());
                        }
                    }
                    if at < rec.deadline {
                        return Err("ChallengeOpen".into());
                    }
                    let mut pay = [u128_of(rec.payA), u128_of(rec.payB)];
                    let cap = rec.deadline + MAX_LOCK_TTL;
                    let mut notes = vec![];
                    for l in &locks {
                        let expiry = l.expiry.min(cap);
                        let t = self.revealed.get(&l.hashlock).copied();
                        let to_receiver = t.is_some_and(|t| t < expiry);
                        if !to_receiver && at < expiry {
                            return Err(format!("LockPending {}", l.hashlock));
                        }
                        let from_a = l.from == p.a;
                        pay[usize::from(from_a == to_receiver)] += l.amount;
                        notes.push(match t {
                            _ if to_receiver => "settle: lock paid (revealed in time)",
                            Some(_) => "settle: lock returned (revealed late)",
                            None => "settle: lock returned (never revealed)",
                        });
                    }
                    Ok(Fx {
                        st: Some(St::Settled),
                        pay: vec![(0, pay[0]), (1, pay[1])],
                        notes,
                        ..Fx::default()
                    })
                })();
                let call = Channel::settleCall { p, rec, locks };
                self.run(step, "settle", c, by, call.abi_encode(), 0, at, expect)
                    .await;
            }
            // settleFinal: the parties agree on a final state while closing.
            72..=74 => {
                let Some((rec, _)) = self.chans[c].rec.clone() else {
                    return;
                };
                if st == St::Closing && self.rng.chance(70) {
                    // Sign a final state after the latest (the closing blocks `check_next`).
                    if let Some(l) = self.chans[c].latest().cloned() {
                        if l.locks.is_empty() && !l.s.isFinal {
                            let mut s = l.s.clone();
                            s.version += 1;
                            s.isFinal = true;
                            let sigs = self.sign_both(c, &s, &[]);
                            self.chans[c].hist.push(Signed {
                                s,
                                locks: vec![],
                                sigs,
                            });
                        }
                    }
                }
                let Some(k) = self.candidate(c) else { return };
                let (_, by) = self.actor(c, 40);
                let expect = (|| {
                    if st != St::Closing {
                        return Err("NotClosing".to_string());
                    }
                    if !k.s.isFinal {
                        return Err("NotFinal".into());
                    }
                    if k.s.locksHash != B256::ZERO {
                        return Err("PendingLocks".into());
                    }
                    if k.s.version < rec.version {
                        return Err("StaleVersion".into());
                    }
                    let nolocks = Cand {
                        locks: vec![],
                        ..k.clone()
                    };
                    let net = [i128_of(rec.netA), i128_of(rec.netB)];
                    let pay = self.payouts(c, &nolocks, net)?;
                    Ok(Fx {
                        st: Some(St::Settled),
                        pay: vec![(0, pay[0]), (1, pay[1])],
                        ..Fx::default()
                    })
                })();
                let call = Channel::settleFinalCall {
                    p,
                    f: rec.frozen(),
                    s: k.s.clone(),
                    sa: k.sigs.0.clone(),
                    sb: k.sigs.1.clone(),
                };
                self.label = k.label;
                self.run(step, "settleFinal", c, by, call.abi_encode(), 0, at, expect)
                    .await;
            }
            // Reveal a lock's secret (or an unrelated one), by anyone.
            75..=82 => {
                // Mostly an unrevealed secret of a pending lock (latest states, closing
                // records), else any secret made so far, or an unrelated one.
                let pending: Vec<B256> = self
                    .chans
                    .iter()
                    .flat_map(|ch| {
                        let held = ch.latest().map(|l| l.locks.clone()).unwrap_or_default();
                        let closing = match (&ch.rec, ch.st) {
                            (Some((_, locks)), St::Closing) => locks.clone(),
                            _ => vec![],
                        };
                        held.into_iter().chain(closing)
                    })
                    .map(|l| l.hashlock)
                    .filter(|h| !self.revealed.contains_key(h))
                    .collect();
                let (h, pre) = if !pending.is_empty() && self.rng.chance(50) {
                    let h = *self.rng.pick(&pending);
                    *self.secrets.iter().find(|x| x.0 == h).unwrap()
                } else if self.secrets.is_empty() || self.rng.chance(20) {
                    self.fresh_secret();
                    *self.secrets.last().unwrap()
                } else {
                    *self.rng.pick(&self.secrets)
                };
                let by = *self.rng.pick(&[0, 1, PARTY, THIRD]);
                let expect = if self.revealed.contains_key(&h) {
                    Err("AlreadyRevealed".into())
                } else {
                    Ok(Fx {
                        reveal: Some(h),
                        ..Fx::default()
                    })
                };
                let call = Channel::revealCall { preimage: pre };
                self.run(step, "reveal", c, by, call.abi_encode(), 0, at, expect)
                    .await;
                let got = self.t.c[0].revealedAt(h).call().await.unwrap();
                let want = self.revealed.get(&h).copied().unwrap_or(0);
                assert_eq!(got, U256::from(want), "step {step}: revealedAt");
            }
            // Time passes.
            83..=94 => {
                let dt = match self.rng.below(20) {
                    0..=9 => self.rng.range(30, 600),
                    10..=16 => self.rng.range(600, 1800),
                    _ => self.rng.range(HOUR, 3 * HOUR),
                };
                let at = self.now + dt;
                self.t
                    .net
                    .rpc("evm_setNextBlockTimestamp", json!([at]))
                    .await;
                self.t.net.rpc("evm_mine", json!([])).await;
                self.now = at;
            }
            // Account 3 starts or stops refusing ETH.
            95..=96 => {
                let flip = !self.rejecting;
                let call = ChannelParty::setRejectingCall { r: flip };
                let r = self
                    .send_from(DRIVER, self.addr(PARTY), call.abi_encode(), 0, at)
                    .await;
                assert!(r.status());
                self.now = at;
                let fee = r.gas_used as i128 * r.effective_gas_price as i128;
                *self.eth.get_mut(&r.from).unwrap() -= fee;
                self.rejecting = flip;
            }
            // withdrawCredit (account 3 to the sink while refusing; or anyone else: none).
            _ => {
                let by = *self.rng.pick(&[PARTY, PARTY, 0, THIRD]);
                let who = self.addr(by);
                let to = if by == PARTY { self.addr(SINK) } else { who };
                let amt = self.credit.get(&(who, Address::ZERO)).copied().unwrap_or(0);
                let expect = if amt == 0 {
                    Err("NoCredit".into())
                } else {
                    Ok(Fx {
                        credit_out: Some((who, Address::ZERO, amt, to)),
                        ..Fx::default()
                    })
                };
                let call = Channel::withdrawCreditCall {
                    token: Address::ZERO,
                    to,
                };
                self.run(
                    step,
                    "withdrawCredit",
                    c,
                    by,
                    call.abi_encode(),
                    0,
                    at,
                    expect,
                )
                .await;
            }
        }
    }

    /// Everything on chain equals the model.
    async fn check(&self, step: usize) {
        let t = &self.t;
        let prov = t.net.provider();
        let contract = t.contract();
        let eth = prov.get_balance(contract).await.unwrap();
        assert_eq!(
            eth,
            U256::from(self.contract_eth as u128),
            "step {step}: contract ETH"
        );
        let tok = TestToken::new(self.token, prov.clone());
        let tb = tok.balanceOf(contract).call().await.unwrap();
        assert_eq!(
            tb,
            U256::from(self.contract_tok as u128),
            "step {step}: contract tokens"
        );
        // Conservation: what the channels hold plus credits.
        let mut held = [0i128; 2];
        for ch in &self.chans {
            let k = usize::from(ch.token);
            match ch.st {
                St::Open => held[k] += ch.nets()[0] + ch.nets()[1],
                St::Closing => {
                    let (rec, locks) = ch.rec.as_ref().unwrap();
                    let net = i128_of(rec.netA) + i128_of(rec.netB);
                    let out = u128_of(rec.payA) + u128_of(rec.payB) + sum_locks(locks);
                    assert_eq!(net, out as i128, "step {step}: a closing record's sum");
                    held[k] += net;
                }
                St::None | St::Settled => {}
            }
            // The channel's own books: deposits = what it holds + what it paid.
            let holds = match ch.st {
                St::Open => ch.nets()[0] + ch.nets()[1],
                St::Closing => {
                    let rec = &ch.rec.as_ref().unwrap().0;
                    i128_of(rec.netA) + i128_of(rec.netB)
                }
                _ => 0,
            };
            assert_eq!(
                (ch.dep[0] + ch.dep[1]) as i128,
                holds + (ch.paid[0] + ch.paid[1]) as i128,
                "step {step}: channel {} conservation",
                ch.ch.id()
            );
        }
        let credits: u128 = self.credit.values().sum();
        assert_eq!(
            held[0] + credits as i128,
            self.contract_eth,
            "step {step}: ETH conservation"
        );
        assert_eq!(
            held[1], self.contract_tok,
            "step {step}: token conservation"
        );
        for (k, v) in &self.credit {
            let got = t.c[0].credit(k.0, k.1).call().await.unwrap();
            assert_eq!(got, U256::from(*v), "step {step}: credit of {}", k.0);
        }
        // Accounts.
        for i in 0..6 {
            let a = self.addr(i);
            let got = prov.get_balance(a).await.unwrap();
            assert_eq!(
                got,
                U256::from(self.eth[&a] as u128),
                "step {step}: ETH of account {i}"
            );
        }
        for i in [0, 1] {
            let a = self.addr(i);
            let got = tok.balanceOf(a).call().await.unwrap();
            assert_eq!(
                got,
                U256::from(self.tok[&a] as u128),
                "step {step}: tokens of account {i}"
            );
        }
        // Channels.
        for (n, ch) in self.chans.iter().enumerate() {
            let id = ch.ch.id();
            let s = t.c[0].status(id).call().await.unwrap();
            let st = match ch.st {
                St::None => 0,
                St::Open => 1,
                St::Closing => 2,
                St::Settled => 3,
            };
            let open = ch.st == St::Open;
            let amounts = |x: u128| U256::from(if open { x } else { 0 });
            assert_eq!(
                (s.st, s.depositA, s.depositB, s.withdrawnA, s.withdrawnB),
                (
                    st,
                    amounts(ch.dep[0]),
                    amounts(ch.dep[1]),
                    amounts(ch.wd[0]),
                    amounts(ch.wd[1])
                ),
                "step {step}: status of channel {n}"
            );
            if open {
                let oc = ch
                    .ch
                    .on_chain(prov, BlockNumberOrTag::Latest)
                    .await
                    .unwrap();
                assert_eq!(
                    (
                        oc.deposit_a,
                        oc.deposit_b,
                        oc.withdrawn_a,
                        oc.withdrawn_b,
                        oc.time
                    ),
                    (ch.dep[0], ch.dep[1], ch.wd[0], ch.wd[1], self.now),
                    "step {step}: on_chain of channel {n}"
                );
                // W1: the latest co-signed state still pays nobody less than zero.
                if let Some(l) = ch.latest() {
                    bases(&l.s, sum_locks(&l.locks), ch.nets()).unwrap_or_else(|e| {
                        panic!("step {step}: channel {n}: the latest state is unusable: {e}")
                    });
                }
            }
            // Both storage words (`_channels` at slot 0, `_second` at slot 1).
            let (w0, w1) = words(ch);
            for (slot, want) in [(0u8, w0), (1, w1)] {
                let key =
                    keccak256([id.as_slice(), B256::from(U256::from(slot)).as_slice()].concat());
                let got = prov.get_storage_at(contract, key.into()).await.unwrap();
                assert_eq!(
                    got, want,
                    "step {step}: storage word {slot} of channel {n} ({:?})",
                    ch.st
                );
            }
        }
    }
}

/// The two storage words the model expects for a channel (see the contract's layout).
fn words(ch: &Chan) -> (U256, U256) {
    let tag = |t: u64| U256::from(t) << 248;
    let mask = |bits: usize| (U256::from(1) << bits) - U256::from(1);
    match ch.st {
        St::None => (U256::ZERO, U256::ZERO),
        St::Open => {
            let w = (U256::from(ch.dep[0]) << 120) | U256::from(ch.dep[1]);
            if ch.withdrew {
                (
                    tag(2) | w,
                    (U256::from(ch.wd[0]) << 128) | U256::from(ch.wd[1]),
                )
            } else {
                (tag(1) | w, U256::ZERO)
            }
        }
        St::Closing => {
            let rec = &ch.rec.as_ref().unwrap().0;
            let frozen = [
                B256::from(U256::from(rec.deadline)),
                B256::from(rec.netA.into_raw()),
                B256::from(rec.netB.into_raw()),
            ]
            .concat();
            let outcome = [B256::from(rec.payA), B256::from(rec.payB), rec.locksHash].concat();
            let h = |b: Vec<u8>| U256::from_be_bytes(keccak256(b).0);
            (
                tag(3) | (h(frozen) & mask(248)),
                (U256::from(rec.version) << 192) | (h(outcome) & mask(192)),
            )
        }
        St::Settled => (tag(4), U256::ZERO),
    }
}

trait PartyOf {
    fn party_of(&self, side: usize) -> Address;
}
impl PartyOf for ChannelRef {
    fn party_of(&self, side: usize) -> Address {
        if side == 0 {
            self.params.a
        } else {
            self.params.b
        }
    }
}

#[tokio::test]
async fn random_channel_operations_conserve_funds() {
    let seed = std::env::var("CHANNEL_MODEL_SEED")
        .ok()
        .map(|s| {
            let s = s.trim();
            s.strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16).unwrap())
                .unwrap_or_else(|| s.parse().unwrap())
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let steps: usize = std::env::var("CHANNEL_MODEL_STEPS")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or(500);
    println!(
        "channel model: seed {seed:#x} ({steps} steps); replay with CHANNEL_MODEL_SEED={seed:#x}"
    );
    let started = std::time::Instant::now();

    let t = ChannelEnv::start().await;
    let token = TestToken::deploy(t.p[0].clone(), "M".into(), 18)
        .await
        .unwrap();
    for i in [0usize, 1] {
        let tk = TestToken::new(*token.address(), t.p[i].clone());
        common::channel::mined(tk.mint(t.net.address(i), U256::from(10u128.pow(24)))).await;
        common::channel::mined(tk.approve(t.contract(), U256::MAX)).await;
    }
    t.contract_party(PARTY).await;
    let prov = t.net.provider().clone();
    let mut eth = HashMap::new();
    let mut tok = HashMap::new();
    for i in 0..6 {
        let a = t.net.address(i);
        eth.insert(a, u128_of(prov.get_balance(a).await.unwrap()) as i128);
        tok.insert(a, u128_of(token.balanceOf(a).call().await.unwrap()) as i128);
    }
    let now = common::now(&t.net).await;
    let mut w = World {
        token: *token.address(),
        t,
        rng: Rng(seed.max(1)),
        now,
        chans: vec![],
        live: vec![],
        salt: 0,
        secrets: vec![],
        next_secret: seed,
        revealed: HashMap::new(),
        credit: HashMap::new(),
        eth,
        tok,
        contract_eth: 0,
        contract_tok: 0,
        rejecting: false,
        stats: HashMap::new(),
        label: "",
        force_kind: None,
    };
    for k in 0..4 {
        let c = w.new_chan(k);
        w.live.push(c);
    }
    w.check(0).await;
    for step in 1..=steps {
        w.step(step).await;
        w.check(step).await;
    }

    // Wind down: every channel is settled, every credit taken; the contract is empty.
    if w.rejecting {
        let call = ChannelParty::setRejectingCall { r: false };
        let at = w.tick();
        let r = w
            .send_from(DRIVER, w.addr(PARTY), call.abi_encode(), 0, at)
            .await;
        w.now = at;
        *w.eth.get_mut(&r.from).unwrap() -= r.gas_used as i128 * r.effective_gas_price as i128;
        w.rejecting = false;
    }
    for c in 0..w.chans.len() {
        let step = steps + 1 + c;
        let p = w.chans[c].ch.params.clone();
        match w.chans[c].st {
            St::Open => {
                // A final state (locks resolved) and a cooperative close.
                if w.chans[c].latest().is_none() {
                    w.offchain_update(c, false);
                }
                w.offchain_update(c, true);
                let l = w.chans[c].latest().unwrap().clone();
                let pay = bases(&l.s, 0, w.chans[c].nets()).unwrap();
                let expect = Ok(Fx {
                    st: Some(St::Settled),
                    pay: vec![(0, pay[0]), (1, pay[1])],
                    ..Fx::default()
                });
                let call = Channel::cooperativeCloseCall {
                    p,
                    s: l.s,
                    sa: l.sigs.0,
                    sb: l.sigs.1,
                };
                let at = w.tick();
                w.run(
                    step,
                    "cooperativeClose",
                    c,
                    THIRD,
                    call.abi_encode(),
                    0,
                    at,
                    expect,
                )
                .await;
            }
            St::Closing => {
                let (rec, locks) = w.chans[c].rec.clone().unwrap();
                let last = locks.iter().map(|l| l.expiry).max().unwrap_or(0);
                let at = w.now.max(rec.deadline).max(last) + 1;
                let mut pay = [u128_of(rec.payA), u128_of(rec.payB)];
                for l in &locks {
                    let to_receiver = w.revealed.get(&l.hashlock).is_some_and(|t| *t < l.expiry);
                    pay[usize::from((l.from == p.a) == to_receiver)] += l.amount;
                }
                let expect = Ok(Fx {
                    st: Some(St::Settled),
                    pay: vec![(0, pay[0]), (1, pay[1])],
                    ..Fx::default()
                });
                let call = Channel::settleCall { p, rec, locks };
                w.run(step, "settle", c, THIRD, call.abi_encode(), 0, at, expect)
                    .await;
            }
            St::None | St::Settled => {}
        }
        w.check(step).await;
    }
    // The replacements opened during the wind-down were never funded.
    let who = w.addr(PARTY);
    if let Some(&amt) = w.credit.get(&(who, Address::ZERO)).filter(|a| **a > 0) {
        let at = w.tick();
        let to = w.addr(SINK);
        let expect = Ok(Fx {
            credit_out: Some((who, Address::ZERO, amt, to)),
            ..Fx::default()
        });
        let call = Channel::withdrawCreditCall {
            token: Address::ZERO,
            to,
        };
        w.run(
            steps + 1000,
            "withdrawCredit",
            0,
            PARTY,
            call.abi_encode(),
            0,
            at,
            expect,
        )
        .await;
    }
    w.check(steps + 1001).await;
    assert_eq!(w.contract_eth, 0);
    assert_eq!(w.contract_tok, 0);
    for ch in &w.chans {
        assert!(matches!(ch.st, St::None | St::Settled));
        assert_eq!(
            ch.paid[0] + ch.paid[1],
            ch.dep[0] + ch.dep[1],
            "{}",
            ch.ch.id()
        );
    }
    // The secret registry equals the model.
    for (h, _) in &w.secrets {
        let got = w.t.c[0].revealedAt(*h).call().await.unwrap();
        assert_eq!(got, U256::from(w.revealed.get(h).copied().unwrap_or(0)));
    }

    let mut stats: Vec<_> = w.stats.iter().collect();
    stats.sort();
    println!(
        "channel model: seed {seed:#x}, {steps} steps, {} channels, {:?}",
        w.chans.len(),
        started.elapsed()
    );
    for (what, n) in &stats {
        println!("  {n:4}  {what}");
    }
    let ok: u32 = stats
        .iter()
        .filter(|s| s.0.ends_with(" ok"))
        .map(|s| s.1)
        .sum();
    let failed: u32 = stats
        .iter()
        .filter(|s| !s.0.ends_with(" ok"))
        .map(|s| s.1)
        .sum();
    assert!(
        ok > 40 && failed > 40,
        "both outcomes exercised: {ok} ok, {failed} reverted"
    );
    let settled = w.chans.iter().filter(|c| c.st == St::Settled).count();
    assert!(settled >= 4, "{settled} channels settled");
}
