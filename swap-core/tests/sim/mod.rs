//! A simulated two-chain world: a TEST DOUBLE, never shipped, never used as a chain outside
//! swap-core's own tests. It exists so the state machines and the driver can be exercised over
//! thousands of interleavings that real nodes could never run through.
//!
//! Each chain mines blocks at a pace chosen by the test (within the chain parameters' bounds),
//! holds HTLCs, a mempool with per-transaction inclusion delays, and balances. Validity follows
//! the real chains: a claim needs the preimage (and, on a time-expiry chain, a block before the
//! expiry); a refund needs a block past the expiry (height > E, or time >= E).
//!
//! A simulated chain can also be a *channel-like rail* (its parameters' kind is Lightning or
//! EVM channel): a lock is a co-signed update, irrevocable at once (no mempool, no depth); a
//! claim or refund is applied at once while the peer answers (an inclusion delay of at most
//! one block) and otherwise enforced on chain, visible while in flight and landing after the
//! delay; on a rail with automatic refunds (Lightning) an unclaimed lock fails back by itself
//! in the first block past its expiry, and nobody can send a refund.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use swap_core::*;

/// How fast a simulated chain mines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mining {
    /// Every block at the fastest pace the parameters allow.
    Fast,
    /// Every block at the slowest pace.
    Slow,
    /// Exactly the expected interval.
    Nominal,
    /// Uniformly random within the bounds (seeded).
    Random(u64),
}

#[derive(Debug, Clone)]
pub struct SimHtlc {
    pub lock: ObservedLock,
    pub funded_height: u64,
    pub spend: Option<Spend>,
}

#[derive(Debug, Clone)]
pub struct Spend {
    pub claim: Option<Preimage>,
    pub txref: TxRef,
    pub height: u64,
}

#[derive(Debug, Clone)]
pub enum TxKind {
    Lock(ObservedLock),
    Claim { htlc: usize, preimage: Preimage },
    Refund { htlc: usize },
}

#[derive(Debug, Clone)]
pub struct PendingTx {
    pub kind: TxKind,
    pub txref: TxRef,
    pub include_at: u64,
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// One simulated chain.
pub struct SimChain {
    pub params: ChainParams,
    pub height: u64,
    pub time: u64,
    pub next_block_at: u64,
    pub pace: Mining,
    rng: u64,
    pub htlcs: Vec<SimHtlc>,
    pub mempool: Vec<PendingTx>,
    pub balances: HashMap<Account, u128>,
    next_tx: u64,
    /// Delay, in blocks, given to the next transactions submitted (set by the scenario).
    pub inclusion_delay: u64,
    pub down: bool,
}

pub fn amount_value(a: &Amount) -> u128 {
    match a {
        Amount::Sats(s) => s.0 as u128,
        Amount::Wei(w) => w.0,
        Amount::Token(t) => t.units,
    }
}

impl SimChain {
    pub fn new(params: ChainParams, height: u64, time: u64, pace: Mining) -> Self {
        let rng = match pace {
            Mining::Random(seed) => seed | 1,
            _ => 1,
        };
        let mut c = Self {
            params,
            height,
            time,
            next_block_at: 0,
            pace,
            rng,
            htlcs: Vec::new(),
            mempool: Vec::new(),
            balances: HashMap::new(),
            next_tx: 0,
            inclusion_delay: 1,
            down: false,
        };
        c.next_block_at = time + c.gap();
        c
    }

    fn gap(&mut self) -> u64 {
        let i = self.params.block_interval;
        let (f, s) = (
            self.params.fast_factor_pct as u64,
            self.params.slow_factor_pct as u64,
        );
        let pct = match self.pace {
            Mining::Fast => f,
            Mining::Slow => s,
            Mining::Nominal => 100,
            Mining::Random(_) => f + xorshift(&mut self.rng) % (s - f + 1),
        };
        // Rounded so that every block gap stays within [interval*fast, interval*slow].
        match self.pace {
            Mining::Slow => (i * pct) / 100,
            _ => (i * pct).div_ceil(100),
        }
        .max(1)
    }

    pub fn tip(&self) -> ChainTip {
        ChainTip {
            height: Height(self.height),
            time: Timestamp(self.time),
        }
    }

    fn txref(&mut self, tag: &str) -> TxRef {
        self.next_tx += 1;
        TxRef(format!("{}-{tag}-{}", self.params.chain, self.next_tx))
    }

    fn is_channel(&self) -> bool {
        self.params.kind.is_channel()
    }

    /// How final a lock, claim or refund included at `height` is.
    fn finality(&self, height: u64) -> Finality {
        if self.is_channel() {
            Finality::Irrevocable
        } else {
            Finality::confirmations((self.height + 1 - height) as u32)
        }
    }

    /// Applies a transaction now (a channel update the peer co-signs at once) or queues it
    /// (on chain, or a channel claim enforced on chain because the peer does not answer).
    fn submit(&mut self, kind: TxKind, tag: &str) -> TxRef {
        let txref = self.txref(tag);
        let mut kind = kind;
        if let TxKind::Lock(lock) = &mut kind {
            lock.txref = txref.clone();
        }
        let tx = PendingTx {
            kind,
            txref: txref.clone(),
            include_at: self.height + self.inclusion_delay,
        };
        if self.is_channel() && (matches!(tx.kind, TxKind::Lock(_)) || self.inclusion_delay <= 1) {
            self.include(tx);
        } else {
            self.mempool.push(tx);
        }
        txref
    }

    /// Mines every block due by `t`.
    pub fn advance_to(&mut self, t: u64) {
        while self.next_block_at <= t {
            let at = self.next_block_at;
            self.mine(at);
            self.next_block_at = at + self.gap();
        }
    }

    fn mine(&mut self, at: u64) {
        self.height += 1;
        self.time = at;
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.mempool)
            .into_iter()
            .partition(|tx| tx.include_at <= self.height);
        self.mempool = rest;
        for tx in due {
            self.include(tx);
        }
        if self.params.refunds() == RefundMode::Automatic {
            // The rail fails every expired, unclaimed lock back by itself.
            let expired: Vec<usize> = (0..self.htlcs.len())
                .filter(|&i| self.htlcs[i].spend.is_none() && self.expired(i))
                .collect();
            for htlc in expired {
                let txref = self.txref("failed-back");
                self.include(PendingTx {
                    kind: TxKind::Refund { htlc },
                    txref,
                    include_at: self.height,
                });
            }
        }
    }

    /// True when the lock `i` can be refunded in the current block.
    fn expired(&self, i: usize) -> bool {
        match self.htlcs[i].lock.expiry {
            Expiry::Time(e) => self.time >= e.0,
            Expiry::Height(e) => self.height > e.0,
        }
    }

    fn include(&mut self, tx: PendingTx) {
        match tx.kind {
            TxKind::Lock(lock) => {
                let v = amount_value(&lock.amount);
                let bal = self.balances.entry(lock.sender).or_insert(0);
                if *bal < v {
                    return; // insufficient funds: never mined
                }
                *bal -= v;
                self.htlcs.push(SimHtlc {
                    lock,
                    funded_height: self.height,
                    spend: None,
                });
            }
            TxKind::Claim { htlc, preimage } => {
                let time = self.time;
                let h = &mut self.htlcs[htlc];
                let in_time = match h.lock.expiry {
                    Expiry::Time(e) => time < e.0,
                    Expiry::Height(_) => true,
                };
                if h.spend.is_some() || !h.lock.hashlock.matches(&preimage) || !in_time {
                    return;
                }
                h.spend = Some(Spend {
                    claim: Some(preimage),
                    txref: tx.txref,
                    height: self.height,
                });
                let (to, v) = (h.lock.recipient, amount_value(&h.lock.amount));
                *self.balances.entry(to).or_insert(0) += v;
            }
            TxKind::Refund { htlc } => {
                let expired = self.expired(htlc);
                let h = &mut self.htlcs[htlc];
                if h.spend.is_some() || !expired {
                    return;
                }
                h.spend = Some(Spend {
                    claim: None,
                    txref: tx.txref,
                    height: self.height,
                });
                let (to, v) = (h.lock.sender, amount_value(&h.lock.amount));
                *self.balances.entry(to).or_insert(0) += v;
            }
        }
    }

    /// The first HTLC (confirmed) with this hashlock.
    pub fn find(&self, hashlock: &Hashlock) -> Option<usize> {
        self.htlcs.iter().position(|h| h.lock.hashlock == *hashlock)
    }

    /// What an adapter would report for the HTLC with this hashlock.
    pub fn status(&self, hashlock: &Hashlock) -> HtlcStatus {
        let confs = |h: u64| self.finality(h);
        match self.find(hashlock) {
            None => {
                for tx in &self.mempool {
                    if let TxKind::Lock(lock) = &tx.kind {
                        if lock.hashlock == *hashlock {
                            return HtlcStatus::Funded {
                                lock: lock.clone(),
                                finality: Finality::Mempool,
                            };
                        }
                    }
                }
                HtlcStatus::Absent
            }
            Some(i) => {
                let h = &self.htlcs[i];
                match &h.spend {
                    Some(Spend {
                        claim: Some(p),
                        txref,
                        height,
                    }) => HtlcStatus::Claimed {
                        preimage: p.clone(),
                        txref: txref.clone(),
                        finality: confs(*height),
                    },
                    Some(Spend {
                        claim: None,
                        txref,
                        height,
                    }) => HtlcStatus::Refunded {
                        txref: txref.clone(),
                        finality: confs(*height),
                    },
                    None => {
                        // Mempool spends are visible (a claim first: it reveals the secret).
                        let mut refund = None;
                        for tx in &self.mempool {
                            match &tx.kind {
                                TxKind::Claim { htlc, preimage }
                                    if *htlc == i && h.lock.hashlock.matches(preimage) =>
                                {
                                    return HtlcStatus::Claimed {
                                        preimage: preimage.clone(),
                                        txref: tx.txref.clone(),
                                        finality: Finality::Mempool,
                                    }
                                }
                                TxKind::Refund { htlc } if *htlc == i => {
                                    refund = Some(tx.txref.clone())
                                }
                                _ => {}
                            }
                        }
                        match refund {
                            Some(txref) => HtlcStatus::Refunded {
                                txref,
                                finality: Finality::Mempool,
                            },
                            None => HtlcStatus::Funded {
                                lock: h.lock.clone(),
                                finality: confs(h.funded_height),
                            },
                        }
                    }
                }
            }
        }
    }

    /// Broadcasts a lock (idempotent per hashlock and sender, as the real adapters are).
    pub fn submit_lock(&mut self, lock: ObservedLock) -> Result<TxRef, ChainError> {
        if let Some(i) = self.find(&lock.hashlock) {
            if self.htlcs[i].lock.sender == lock.sender {
                return Ok(self.htlcs[i].lock.txref.clone());
            }
        }
        for tx in &self.mempool {
            if let TxKind::Lock(l) = &tx.kind {
                if l.hashlock == lock.hashlock && l.sender == lock.sender {
                    return Ok(tx.txref.clone());
                }
            }
        }
        Ok(self.submit(TxKind::Lock(lock), "lock"))
    }

    /// Cancels a lock still in the mempool (its inputs spent elsewhere, at once in this model):
    /// it will never be mined. A mined lock cannot be cancelled.
    pub fn submit_cancel(
        &mut self,
        hashlock: &Hashlock,
        sender: swap_core::Account,
    ) -> Result<TxRef, ChainError> {
        if let Some(i) = self.find(hashlock) {
            if self.htlcs[i].lock.sender == sender {
                return Err(ChainError::new(Cause::AlreadySpent, "the lock is mined"));
            }
        }
        let before = self.mempool.len();
        self.mempool.retain(|tx| {
            !matches!(&tx.kind, TxKind::Lock(l) if l.hashlock == *hashlock && l.sender == sender)
        });
        if self.mempool.len() == before {
            Ok(TxRef(String::new()))
        } else {
            Ok(self.txref("cancel"))
        }
    }

    pub fn submit_claim(
        &mut self,
        hashlock: &Hashlock,
        preimage: &Preimage,
    ) -> Result<TxRef, ChainError> {
        let i = self
            .find(hashlock)
            .ok_or_else(|| ChainError::transient("no confirmed htlc to claim"))?;
        if let HtlcStatus::Claimed { txref, .. } = self.status(hashlock) {
            return Ok(txref);
        }
        if self.htlcs[i].spend.is_some() {
            return Err(ChainError::permanent("htlc already spent"));
        }
        if !hashlock.matches(preimage) {
            return Err(ChainError::permanent("wrong preimage"));
        }
        if let Expiry::Time(e) = self.htlcs[i].lock.expiry {
            if self.time >= e.0 {
                return Err(ChainError::permanent("claim after expiry reverts"));
            }
        }
        Ok(self.submit(
            TxKind::Claim {
                htlc: i,
                preimage: preimage.clone(),
            },
            "claim",
        ))
    }

    pub fn submit_refund(&mut self, hashlock: &Hashlock) -> Result<TxRef, ChainError> {
        if self.params.refunds() == RefundMode::Automatic {
            return Err(ChainError::new(
                Cause::Invalid,
                "refunds on this rail are automatic",
            ));
        }
        let i = self
            .find(hashlock)
            .ok_or_else(|| ChainError::transient("no confirmed htlc to refund"))?;
        if let HtlcStatus::Refunded { txref, .. } = self.status(hashlock) {
            return Ok(txref);
        }
        if self.htlcs[i].spend.is_some() {
            return Err(ChainError::permanent("htlc already spent"));
        }
        let ok = match self.htlcs[i].lock.expiry {
            Expiry::Time(e) => self.time >= e.0,
            Expiry::Height(e) => self.height >= e.0,
        };
        if !ok {
            return Err(ChainError::permanent("non-final"));
        }
        Ok(self.submit(TxKind::Refund { htlc: i }, "refund"))
    }
}

/// Swap direction: the rails of X and Y.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    pub x: RailId,
    pub y: RailId,
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.x, self.y)
    }
}

const fn rail(family: ChainFamily, kind: RailKind) -> RailId {
    RailId::new(ChainId::new(family, Network::Mainnet), kind)
}
const BTC: RailId = rail(ChainFamily::Bitcoin, RailKind::OnChain);
const LTC: RailId = rail(ChainFamily::Litecoin, RailKind::OnChain);
const ETH: RailId = rail(ChainFamily::Ethereum, RailKind::OnChain);
const BTC_LN: RailId = rail(ChainFamily::Bitcoin, RailKind::Lightning);
const LTC_LN: RailId = rail(ChainFamily::Litecoin, RailKind::Lightning);
const ETH_CHANNEL: RailId = rail(ChainFamily::Ethereum, RailKind::EvmChannel);

const fn dir(x: RailId, y: RailId) -> Direction {
    Direction { x, y }
}

impl Direction {
    pub const BTC_TO_ETH: Direction = dir(BTC, ETH);
    pub const ETH_TO_BTC: Direction = dir(ETH, BTC);
    /// Lightning on Bitcoin for ETH in a channel: both legs channel-like.
    pub const LN_TO_ETH_CHANNEL: Direction = dir(BTC_LN, ETH_CHANNEL);

    /// Which kinds of legs: "on-chain x on-chain", "on-chain x channel", ...
    pub fn class(&self) -> &'static str {
        match (self.x.kind.is_channel(), self.y.kind.is_channel()) {
            (false, false) => "on-chain x on-chain",
            (false, true) | (true, false) => "on-chain x channel",
            (true, true) => "channel x channel",
        }
    }
}

/// Every pairing of rails the interleavings run over: on chain x on chain (as before rails),
/// on chain x channel-like in both orders, and channel-like x channel-like.
pub const ALL_DIRECTIONS: [Direction; 10] = [
    dir(BTC, ETH),
    dir(ETH, BTC),
    dir(BTC, LTC),
    dir(BTC, ETH_CHANNEL),
    dir(ETH, BTC_LN),
    dir(BTC_LN, ETH),
    dir(ETH_CHANNEL, BTC),
    dir(BTC_LN, ETH_CHANNEL),
    dir(ETH_CHANNEL, BTC_LN),
    dir(BTC_LN, LTC_LN),
];

/// The on-chain pairs only (for the slower driver tests, which exercise the store, not rails).
pub const ON_CHAIN_DIRECTIONS: [Direction; 3] = [dir(BTC, ETH), dir(ETH, BTC), dir(BTC, LTC)];

/// The accounts of both parties.
pub struct Parties {
    /// Initiator on X (sender) and Y (recipient).
    pub i_x: Account,
    pub i_y: Account,
    /// Responder on X (recipient) and Y (sender).
    pub r_x: Account,
    pub r_y: Account,
}

fn rail_data(rail: RailId, tag: u8) -> Option<RailData> {
    let body = match rail.kind {
        RailKind::OnChain => return None,
        RailKind::Lightning => RailBody::Lightning {
            node_id: PublicKeyBytes([tag; 33]),
            payment_secret: [tag; 32],
            min_final_cltv_delta: 42,
            route_hints: Vec::new(),
        },
        RailKind::EvmChannel => RailBody::EvmChannel {
            channel_id: [tag; 32],
        },
    };
    Some(RailData::new(body))
}

fn account(p: &ChainParams, tag: u8) -> Account {
    match p.expiry_kind() {
        ExpiryKind::Height => Account::PublicKey(PublicKeyBytes([tag; 33])),
        ExpiryKind::Time => Account::Evm(EvmAddress([tag; 20])),
    }
}

fn asset_amount(p: &ChainParams) -> (Asset, Amount) {
    match p.chain.family {
        ChainFamily::Bitcoin => (Asset::Btc, Amount::Sats(Sats(1_000_000))),
        ChainFamily::Litecoin => (Asset::Ltc, Amount::Sats(Sats(50_000_000))),
        ChainFamily::Ethereum => (Asset::Eth, Amount::Wei(Wei(3 * 10u128.pow(17)))),
    }
}

pub const T0: u64 = 1_700_000_000;

/// A world with both chains, the agreed terms and the secret.
pub struct World {
    pub x: SimChain,
    pub y: SimChain,
    pub t: u64,
    pub terms: SwapTerms,
    pub secret: Preimage,
    pub parties: Parties,
    pub watch_from: Tips,
}

impl World {
    /// Both chains at their start, terms agreed with `policy` and tight expiries `slack`
    /// seconds above the minimum the rules allow (so that runs stay short).
    pub fn new(dir: Direction, pace_x: Mining, pace_y: Mining, secret: Preimage) -> Self {
        Self::with_slack(dir, pace_x, pace_y, secret, 0)
    }

    /// As [`World::new`], with the responder's expiry at least `slack` seconds later than the
    /// least the rules allow (room for a party that restarts and loses a poll or two; a
    /// channel rail's schedule has no block granularity to give it that room by chance).
    pub fn with_slack(
        dir: Direction,
        pace_x: Mining,
        pace_y: Mining,
        secret: Preimage,
        slack: u64,
    ) -> Self {
        let (px, py) = (ChainParams::for_rail(dir.x), ChainParams::for_rail(dir.y));
        let x_chain = SimChain::new(px, 800_000, T0, pace_x);
        let y_chain = SimChain::new(py, 2_000_000, T0, pace_y);
        let parties = Parties {
            i_x: account(&px, 0x11),
            i_y: account(&py, 0x12),
            r_x: account(&px, 0x21),
            r_y: account(&py, 0x22),
        };
        let (ax, amx) = asset_amount(&px);
        let (ay, amy) = asset_amount(&py);
        let tips = Tips {
            x: x_chain.tip(),
            y: y_chain.tip(),
        };
        let policy = SafetyPolicy {
            min_claim_window: 900,
            margin: 300,
        };
        // The responder's expiry: the least that passes the schedule check, plus some slack.
        let x = LegTerms {
            params: px,
            asset: ax,
            amount: amx,
            sender: parties.i_x,
            recipient: parties.r_x,
            expiry: Expiry::Height(Height(0)),
            rail_data: rail_data(dir.x, 0x31),
        };
        let y = LegTerms {
            params: py,
            asset: ay,
            amount: amy,
            sender: parties.r_y,
            recipient: parties.i_y,
            expiry: Expiry::Height(Height(0)),
            rail_data: rail_data(dir.y, 0x32),
        };
        let terms = tight_terms(
            SwapId([9; 16]),
            secret.hashlock(),
            x,
            y,
            policy,
            tips,
            slack,
        );
        let mut w = Self {
            x: x_chain,
            y: y_chain,
            t: T0,
            terms,
            secret,
            parties,
            watch_from: tips,
        };
        let vx = amount_value(&w.terms.x.amount);
        let vy = amount_value(&w.terms.y.amount);
        w.x.balances.insert(w.parties.i_x, vx * 3);
        w.y.balances.insert(w.parties.r_y, vy * 3);
        w
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            x: LegView {
                tip: self.x.tip(),
                htlc: self.x.status(&self.terms.hashlock),
            },
            y: LegView {
                tip: self.y.tip(),
                htlc: self.y.status(&self.terms.hashlock),
            },
        }
    }

    pub fn advance(&mut self, dt: u64) {
        self.t += dt;
        self.x.advance_to(self.t);
        self.y.advance_to(self.t);
    }

    pub fn chain_mut(&mut self, leg: Leg) -> &mut SimChain {
        match leg {
            Leg::X => &mut self.x,
            Leg::Y => &mut self.y,
        }
    }

    /// The lock a party would broadcast for `leg` according to the terms.
    pub fn agreed_lock(&self, leg: Leg) -> ObservedLock {
        let l = self.terms.leg(leg);
        ObservedLock {
            txref: TxRef(String::new()),
            asset: l.asset.clone(),
            amount: l.amount,
            sender: l.sender,
            recipient: l.recipient,
            hashlock: self.terms.hashlock,
            expiry: l.expiry,
        }
    }

    /// Performs an honest party's action.
    pub fn perform(&mut self, action: &Action) -> Result<TxRef, ChainError> {
        let h = self.terms.hashlock;
        match action {
            Action::Lock { leg } => {
                let lock = self.agreed_lock(*leg);
                self.chain_mut(*leg).submit_lock(lock)
            }
            Action::Claim { leg, preimage } => self.chain_mut(*leg).submit_claim(&h, preimage),
            Action::Refund { leg } => self.chain_mut(*leg).submit_refund(&h),
            Action::CancelLock { leg } => {
                let sender = self.agreed_lock(*leg).sender;
                self.chain_mut(*leg).submit_cancel(&h, sender)
            }
        }
    }

    /// Seconds until nothing about this swap can change any more (both legs past their final
    /// points at the slowest pace), plus an hour.
    pub fn horizon(&self) -> u64 {
        let tx = self.terms.x.params.claims_final_after(self.terms.x.expiry);
        let ty = self.terms.y.params.claims_final_after(self.terms.y.expiry);
        let sx = self
            .terms
            .x
            .params
            .secs_until(tx, self.x.tip(), swap_core::Pace::Slow);
        let sy = self
            .terms
            .y
            .params
            .secs_until(ty, self.y.tip(), swap_core::Pace::Slow);
        sx.max(sy).max(0) as u64 + 4 * 3600
    }
}

/// Expiries as tight as the rules allow, plus a little slack: the shortest safe swap.
pub fn tight_terms(
    id: SwapId,
    h: Hashlock,
    mut x: LegTerms,
    mut y: LegTerms,
    policy: SafetyPolicy,
    tips: Tips,
    slack: u64,
) -> SwapTerms {
    // Grow E_Y until the schedule (rule 1) holds, then E_X until rule 2 holds.
    let step_y = match y.params.expiry_kind() {
        ExpiryKind::Height => 1,
        ExpiryKind::Time => 60,
    };
    let step_x = match x.params.expiry_kind() {
        ExpiryKind::Height => 1,
        ExpiryKind::Time => 60,
    };
    y.expiry = y.params.expiry_after(tips.y, 0);
    x.expiry = x.params.expiry_after(tips.x, 0);
    let bump = |e: Expiry, by: u64| match e {
        Expiry::Height(v) => Expiry::Height(Height(v.0 + by)),
        Expiry::Time(v) => Expiry::Time(Timestamp(v.0 + by)),
    };
    loop {
        let t = SwapTerms {
            id,
            hashlock: h,
            x: x.clone(),
            y: y.clone(),
            policy,
        };
        if t.check_schedule(tips).is_ok() {
            break;
        }
        y.expiry = bump(y.expiry, step_y);
    }
    let slack_units = match y.params.expiry_kind() {
        ExpiryKind::Height => slack.div_ceil(y.params.block_interval),
        ExpiryKind::Time => slack,
    };
    y.expiry = bump(y.expiry, slack_units);
    loop {
        match SwapTerms::new(id, h, x.clone(), y.clone(), policy, tips) {
            Ok(t) => return t,
            Err(TermsError::Rule2ResponderCannotReact { .. }) => x.expiry = bump(x.expiry, step_x),
            Err(e) => panic!("unexpected terms error {e}"),
        }
    }
}

/// The world behind a mutex, as the async [`Chain`] trait needs it: one handle per leg.
#[derive(Clone)]
pub struct SimHandle {
    pub world: Arc<Mutex<World>>,
    pub leg: Leg,
    params: ChainParams,
}

impl SimHandle {
    pub fn new(world: Arc<Mutex<World>>, leg: Leg) -> Self {
        let params = {
            let w = world.lock().unwrap();
            match leg {
                Leg::X => w.x.params,
                Leg::Y => w.y.params,
            }
        };
        Self { world, leg, params }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut SimChain) -> Result<T, ChainError>,
    ) -> Result<T, ChainError> {
        let mut w = self.world.lock().unwrap();
        let c = w.chain_mut(self.leg);
        if c.down {
            return Err(ChainError::transient("node down"));
        }
        f(c)
    }
}

fn lock_from_params(p: &HtlcParams) -> ObservedLock {
    ObservedLock {
        txref: TxRef(String::new()),
        asset: p.asset.clone(),
        amount: p.amount,
        sender: p.sender,
        recipient: p.recipient,
        hashlock: p.hashlock,
        expiry: p.expiry,
    }
}

#[async_trait]
impl Rail for SimHandle {
    fn params(&self) -> &ChainParams {
        &self.params
    }

    /// One simulated rail serves both parties, so it has no account of its own: the scenario
    /// names the parties' accounts.
    async fn account(&self, _key_index: u32) -> Result<Account, ChainError> {
        Err(ChainError::new(
            Cause::Invalid,
            "the simulated rail serves both parties; accounts come from the scenario",
        ))
    }

    async fn tip(&self) -> Result<ChainTip, ChainError> {
        self.with(|c| Ok(c.tip()))
    }

    async fn htlc_status(&self, htlc: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        self.with(|c| Ok(c.status(&htlc.hashlock)))
    }

    async fn lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        let lock = lock_from_params(htlc);
        self.with(|c| c.submit_lock(lock))
    }

    async fn claim(&self, htlc: &HtlcParams, preimage: &Preimage) -> Result<TxRef, ChainError> {
        self.with(|c| c.submit_claim(&htlc.hashlock, preimage))
    }

    async fn refund(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        self.with(|c| c.submit_refund(&htlc.hashlock))
    }
}
