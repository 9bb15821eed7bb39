//! The driver against the simulated two-chain model (a test double, see `sim/mod.rs`), with
//! real SQLite stores on disk:
//! - each party is killed (driver and store dropped) at every protocol step, right after the
//!   new state was persisted and before its action was sent, then restarted from the same file;
//!   every swap still completes or refunds, with balances that agree;
//! - a node that is down for a while only delays the swap;
//! - many swaps run concurrently between two engines.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::sim;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim::*;
use swap_core::store::SqliteStore;
use swap_core::*;

const POLL: u64 = 30;

fn records(w: &World) -> (SwapRecord, SwapRecord) {
    let i = SwapRecord {
        terms: w.terms.clone(),
        role: Role::Initiator,
        secret: Some(w.secret.clone()),
        key_index: 0,
        watch_from: w.watch_from,
    };
    let r = SwapRecord {
        terms: w.terms.clone(),
        role: Role::Responder,
        secret: None,
        key_index: 0,
        watch_from: w.watch_from,
    };
    (i, r)
}

fn driver(world: &Arc<Mutex<World>>, db: &Path) -> Driver {
    let store = Arc::new(SqliteStore::open(db).unwrap());
    Driver::new(
        store,
        [
            Arc::new(SimHandle::new(world.clone(), Leg::X)) as Arc<dyn Rail>,
            Arc::new(SimHandle::new(world.clone(), Leg::Y)) as Arc<dyn Rail>,
        ],
        DriverConfig::default(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Crash {
    /// Kill right after the k-th persisted state change, before its actions are sent.
    AfterPersist(usize),
    /// Kill right after the k-th state change's actions were sent.
    AfterActions(usize),
}

struct Party {
    role: Role,
    id: SwapId,
    db: PathBuf,
    driver: Option<Driver>,
    changes: usize,
    crash: Option<Crash>,
    crashed: bool,
    outcome: Option<Outcome>,
}

impl Party {
    async fn tick(&mut self, world: &Arc<Mutex<World>>) {
        if self.outcome.is_some() {
            return;
        }
        let drv = match &self.driver {
            Some(d) => d,
            None => {
                // Restart from the same database file.
                self.driver = Some(driver(world, &self.db));
                self.driver.as_ref().unwrap()
            }
        };
        let adv = match drv.advance(&self.id).await {
            Ok(a) => a,
            Err(e) if e.is_transient() => return,
            Err(e) => panic!("{:?}: {e}", self.role),
        };
        if adv.changed {
            self.changes += 1;
            if !self.crashed && self.crash == Some(Crash::AfterPersist(self.changes)) {
                self.crashed = true;
                self.driver = None; // killed: actions never sent
                return;
            }
        }
        drv.perform(&adv.record, &adv.actions).await;
        if adv.changed && !self.crashed && self.crash == Some(Crash::AfterActions(self.changes)) {
            self.crashed = true;
            self.driver = None;
            return;
        }
        self.outcome = swap_core::driver::final_outcome(&adv.state);
    }
}

struct Result2 {
    i: Outcome,
    r: Outcome,
    i_changes: usize,
    r_changes: usize,
    crashed: bool,
}

async fn run_pair(
    dir: Direction,
    crash_i: Option<Crash>,
    crash_r: Option<Crash>,
    node_down: Option<(Leg, u64, u64)>,
) -> Result2 {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::with_slack(
        dir,
        Mining::Nominal,
        Mining::Nominal,
        Preimage::from_bytes([0x77; 32]),
        // A restart costs a poll or two of the schedule, the node outage below 20 minutes:
        // half an hour of room so that they delay the swap rather than call it off.
        1800,
    );
    let (ri, rr) = records(&w);
    let ax = amount_value(&w.terms.x.amount);
    let ay = amount_value(&w.terms.y.amount);
    let horizon = w.t + w.horizon();
    let (bx0, by0) = (w.x.balances[&w.parties.i_x], w.y.balances[&w.parties.r_y]);
    let world = Arc::new(Mutex::new(w));
    let mut parties = Vec::new();
    for (rec, crash, name) in [(ri, crash_i, "i.sqlite"), (rr, crash_r, "r.sqlite")] {
        let db = tmp.path().join(name);
        let d = driver(&world, &db);
        d.create(&rec).await.unwrap();
        parties.push(Party {
            role: rec.role,
            id: rec.id(),
            db,
            driver: Some(d),
            changes: 0,
            crash,
            crashed: false,
            outcome: None,
        });
    }
    let mut ticks = 0u64;
    while parties.iter().any(|p| p.outcome.is_none()) {
        {
            let mut w = world.lock().unwrap();
            assert!(
                w.t <= horizon,
                "{dir:?} crash {crash_i:?}/{crash_r:?}: no end by the horizon"
            );
            if let Some((leg, from, to)) = node_down {
                w.chain_mut(leg).down = (from..to).contains(&ticks);
            }
        }
        for p in parties.iter_mut() {
            p.tick(&world).await;
        }
        world.lock().unwrap().advance(POLL);
        ticks += 1;
    }
    let w = world.lock().unwrap();
    let i = parties[0].outcome.clone().unwrap();
    let r = parties[1].outcome.clone().unwrap();
    let ctx = format!("{dir:?} crash {crash_i:?}/{crash_r:?} down {node_down:?}: {i:?} {r:?}");
    // Balances agree with each party's outcome.
    let (ix, iy) = (
        w.x.balances[&w.parties.i_x],
        w.y.balances.get(&w.parties.i_y).copied().unwrap_or(0),
    );
    let (rx, ry) = (
        w.x.balances.get(&w.parties.r_x).copied().unwrap_or(0),
        w.y.balances[&w.parties.r_y],
    );
    match i {
        Outcome::Swapped => assert!(ix == bx0 - ax && iy == ay, "{ctx}"),
        Outcome::Refunded | Outcome::Aborted { .. } => assert!(ix == bx0 && iy == 0, "{ctx}"),
        Outcome::Lost => panic!("{ctx}: initiator lost"),
    }
    match r {
        Outcome::Swapped => assert!(rx == ax && ry == by0 - ay, "{ctx}"),
        Outcome::Refunded | Outcome::Aborted { .. } => assert!(rx == 0 && ry == by0, "{ctx}"),
        Outcome::Lost => panic!("{ctx}: responder lost"),
    }
    Result2 {
        i,
        r,
        i_changes: parties[0].changes,
        r_changes: parties[1].changes,
        crashed: parties.iter().any(|p| p.crashed),
    }
}

#[tokio::test]
async fn killed_at_every_step_and_restarted_every_swap_completes() {
    let mut runs = 0;
    for dir in ALL_DIRECTIONS {
        // A clean run tells how many state changes each role goes through.
        let clean = run_pair(dir, None, None, None).await;
        assert_eq!((&clean.i, &clean.r), (&Outcome::Swapped, &Outcome::Swapped));
        for k in 1..=clean.i_changes {
            for crash in [Crash::AfterPersist(k), Crash::AfterActions(k)] {
                let res = run_pair(dir, Some(crash), None, None).await;
                assert!(res.crashed || k > res.i_changes);
                // A restart costs one poll at most: the swap still goes through.
                assert_eq!(
                    (&res.i, &res.r),
                    (&Outcome::Swapped, &Outcome::Swapped),
                    "{dir:?} initiator {crash:?}"
                );
                runs += 1;
            }
        }
        for k in 1..=clean.r_changes {
            for crash in [Crash::AfterPersist(k), Crash::AfterActions(k)] {
                let res = run_pair(dir, None, Some(crash), None).await;
                assert_eq!(
                    (&res.i, &res.r),
                    (&Outcome::Swapped, &Outcome::Swapped),
                    "{dir:?} responder {crash:?}"
                );
                runs += 1;
            }
        }
        // Both killed at once, at each step.
        for k in 1..=clean.i_changes.min(clean.r_changes) {
            let res = run_pair(
                dir,
                Some(Crash::AfterPersist(k)),
                Some(Crash::AfterPersist(k)),
                None,
            )
            .await;
            assert_eq!(
                (&res.i, &res.r),
                (&Outcome::Swapped, &Outcome::Swapped),
                "{dir:?} both at {k}"
            );
            runs += 1;
        }
    }
    println!("{runs} crash-and-restart runs, all swapped");
    assert!(runs > 50);
}

#[tokio::test]
async fn a_node_down_for_a_while_only_delays_the_swap() {
    for dir in ALL_DIRECTIONS {
        for leg in [Leg::X, Leg::Y] {
            // Down for 20 minutes early on, while locks are being made.
            let res = run_pair(dir, None, None, Some((leg, 2, 42))).await;
            assert_eq!(
                (&res.i, &res.r),
                (&Outcome::Swapped, &Outcome::Swapped),
                "{dir:?} {leg:?}"
            );
        }
    }
}

/// Swap number `tag` between the world's parties, with its own secret and id and default
/// (12 h / 24 h) expiries: engines that race a clock running on its own need the hours of slack
/// the defaults leave (the tight test terms leave minutes).
fn nth_swap(w: &World, tag: u8) -> (Preimage, SwapTerms) {
    let secret = Preimage::from_bytes([tag; 32]);
    let terms = SwapTerms::with_default_expiries(
        SwapId([tag; 16]),
        secret.hashlock(),
        w.terms.x.clone(),
        w.terms.y.clone(),
        w.terms.policy,
        w.watch_from,
    )
    .unwrap();
    (secret, terms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_swaps_run_concurrently_and_resume_from_the_store() {
    const N: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let mut w = World::new(
        Direction::BTC_TO_ETH,
        Mining::Nominal,
        Mining::Nominal,
        Preimage::from_bytes([1; 32]),
    );
    let base = w.terms.clone();
    let mut recs = Vec::new();
    for n in 0..N {
        let (secret, terms) = nth_swap(&w, n as u8 + 1);
        let i = SwapRecord {
            terms: terms.clone(),
            role: Role::Initiator,
            secret: Some(secret),
            key_index: n as u32,
            watch_from: w.watch_from,
        };
        let r = SwapRecord {
            terms,
            role: Role::Responder,
            secret: None,
            key_index: n as u32,
            watch_from: w.watch_from,
        };
        recs.push((i, r));
    }
    let (ax, ay) = (amount_value(&base.x.amount), amount_value(&base.y.amount));
    w.x.balances.insert(w.parties.i_x, ax * N as u128);
    w.y.balances.insert(w.parties.r_y, ay * N as u128);
    let (i_x, i_y, r_x, r_y) = (w.parties.i_x, w.parties.i_y, w.parties.r_x, w.parties.r_y);
    let world = Arc::new(Mutex::new(w));
    let fast = DriverConfig {
        poll_interval: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
    };
    let mk = |db: &Path| {
        Arc::new(Driver::new(
            Arc::new(SqliteStore::open(db).unwrap()),
            [
                Arc::new(SimHandle::new(world.clone(), Leg::X)) as Arc<dyn Rail>,
                Arc::new(SimHandle::new(world.clone(), Leg::Y)) as Arc<dyn Rail>,
            ],
            fast,
        ))
    };
    let (db_i, db_r) = (tmp.path().join("i.sqlite"), tmp.path().join("r.sqlite"));
    {
        let (di, dr) = (mk(&db_i), mk(&db_r));
        for (i, r) in &recs {
            di.create(i).await.unwrap();
            dr.create(r).await.unwrap();
        }
    }
    // Time moves on its own.
    let clock = {
        let world = world.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(3)).await;
                world.lock().unwrap().advance(POLL);
            }
        })
    };
    // Start both engines from their stores, let them run a little, kill them, start again.
    for _ in 0..2 {
        let (di, dr) = (mk(&db_i), mk(&db_r));
        let (ti, bad_i) = di.resume_all().await.unwrap();
        let (tr, bad_r) = dr.resume_all().await.unwrap();
        assert!(bad_i.is_empty() && bad_r.is_empty());
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop((ti, tr)); // killed mid-swap
    }
    let (di, dr) = (mk(&db_i), mk(&db_r));
    let (mut ti, _) = di.resume_all().await.unwrap();
    let (mut tr, _) = dr.resume_all().await.unwrap();
    let mut outcomes = Vec::new();
    let all = async {
        while let Some(done) = ti.join_next().await {
            outcomes.push(done.unwrap().1.unwrap());
        }
        while let Some(done) = tr.join_next().await {
            outcomes.push(done.unwrap().1.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("all swaps finish");
    clock.abort();
    // Some swaps may have finished before the last restart; count from the stores.
    let mut swapped = 0;
    for d in [&di, &dr] {
        for id in d.store().list().await.unwrap() {
            let (_, state) = d.store().load(&id).await.unwrap();
            assert_eq!(
                swap_core::driver::final_outcome(&state),
                Some(Outcome::Swapped),
                "{id}"
            );
            swapped += 1;
        }
    }
    assert_eq!(swapped, 2 * N);
    let w = world.lock().unwrap();
    assert_eq!(w.x.balances.get(&r_x).copied().unwrap_or(0), ax * N as u128);
    assert_eq!(w.y.balances.get(&i_y).copied().unwrap_or(0), ay * N as u128);
    assert_eq!(w.x.balances[&i_x], 0);
    assert_eq!(w.y.balances[&r_y], 0);
}

/// Rails: a finished swap's legs are forgotten by their adapters (a long-running engine does
/// not keep watching every swap it ever ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_swaps_are_forgotten_on_both_legs() {
    let w = World::new(
        Direction::BTC_TO_ETH,
        Mining::Nominal,
        Mining::Nominal,
        Preimage::from_bytes([9; 32]),
    );
    let (ri, rr) = records(&w);
    let world = Arc::new(Mutex::new(w));
    let fast = DriverConfig {
        poll_interval: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    };
    let mk = || {
        let x = Arc::new(Counting::new(SimHandle::new(world.clone(), Leg::X)));
        let y = Arc::new(Counting::new(SimHandle::new(world.clone(), Leg::Y)));
        let d = Arc::new(Driver::new(
            Arc::new(swap_core::store::MemoryStore::new()),
            [x.clone() as Arc<dyn Rail>, y.clone() as Arc<dyn Rail>],
            fast,
        ));
        (d, x, y)
    };
    let (di, ix, iy) = mk();
    let (dr, rx, ry) = mk();
    di.create(&ri).await.unwrap();
    dr.create(&rr).await.unwrap();
    let clock = {
        let world = world.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(2)).await;
                world.lock().unwrap().advance(POLL);
            }
        })
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(di.run_swap(ri.id()), dr.run_swap(rr.id()))
    })
    .await
    .unwrap();
    clock.abort();
    assert_eq!(
        (a.unwrap(), b.unwrap()),
        (Outcome::Swapped, Outcome::Swapped)
    );
    use std::sync::atomic::Ordering::SeqCst;
    for chain in [&ix, &iy, &rx, &ry] {
        assert_eq!(chain.forgotten.load(SeqCst), 1);
    }
}

/// The simulated rail, counting what the runtime asks of it and the HTLCs it is told to
/// forget.
struct Counting {
    inner: SimHandle,
    forgotten: std::sync::atomic::AtomicUsize,
    observes: std::sync::atomic::AtomicUsize,
    legs_observed: std::sync::atomic::AtomicUsize,
    executes: std::sync::atomic::AtomicUsize,
    single_reads: std::sync::atomic::AtomicUsize,
    /// Where a test tells of changes ([`Rail::changes`]).
    feed: swap_core::ChangeFeed,
    /// The hashlocks of the legs observed, in order.
    seen: Mutex<Vec<Hashlock>>,
}

impl Counting {
    fn new(inner: SimHandle) -> Self {
        Self {
            inner,
            forgotten: Default::default(),
            observes: Default::default(),
            legs_observed: Default::default(),
            executes: Default::default(),
            single_reads: Default::default(),
            feed: swap_core::ChangeFeed::new(),
            seen: Mutex::new(Vec::new()),
        }
    }
    fn seen(&self) -> Vec<Hashlock> {
        self.seen.lock().unwrap().clone()
    }
    fn get(n: &std::sync::atomic::AtomicUsize) -> usize {
        n.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Rail for Counting {
    fn params(&self) -> &ChainParams {
        self.inner.params()
    }
    fn changes(&self) -> Option<swap_core::ChangeSubscription> {
        Some(self.feed.subscribe())
    }
    async fn account(&self, key_index: u32) -> Result<Account, ChainError> {
        self.inner.account(key_index).await
    }
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        self.inner.tip().await
    }
    async fn forget(&self, _htlc: &HtlcParams) {
        self.forgotten
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    async fn htlc_status(&self, h: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        self.single_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.htlc_status(h).await
    }
    async fn observe(&self, htlcs: &[HtlcParams]) -> Result<Observation, ChainError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.observes.fetch_add(1, SeqCst);
        self.legs_observed.fetch_add(htlcs.len(), SeqCst);
        self.seen
            .lock()
            .unwrap()
            .extend(htlcs.iter().map(|h| h.hashlock));
        // One read of the world for every leg (what an adapter's one scan is).
        let w = self.inner.world.lock().unwrap();
        let c = match self.inner.leg {
            Leg::X => &w.x,
            Leg::Y => &w.y,
        };
        Ok(Observation {
            tip: c.tip(),
            statuses: htlcs.iter().map(|h| Ok(c.status(&h.hashlock))).collect(),
        })
    }
    async fn execute(&self, ops: &[RailOp]) -> Vec<Result<TxRef, ChainError>> {
        self.executes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut out = Vec::new();
        for op in ops {
            out.push(swap_core::rail::perform(&self.inner, op).await);
        }
        out
    }
    async fn lock(&self, h: &HtlcParams) -> Result<TxRef, ChainError> {
        self.inner.lock(h).await
    }
    async fn claim(&self, h: &HtlcParams, p: &Preimage) -> Result<TxRef, ChainError> {
        self.inner.claim(h, p).await
    }
    async fn refund(&self, h: &HtlcParams) -> Result<TxRef, ChainError> {
        self.inner.refund(h).await
    }
}

/// A runtime that polls once an hour: in the tests below only a rail's change steps a swap.
fn hourly() -> DriverConfig {
    DriverConfig {
        poll_interval: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
    }
}

/// `n` swaps of one world in a driver with `config` over two counting rails, this party the
/// initiator of each (secrets tagged from `first_tag`), funded on X for all of them.
struct CountedSwaps {
    world: Arc<Mutex<World>>,
    x: Arc<Counting>,
    y: Arc<Counting>,
    d: Arc<Driver>,
    recs: Vec<SwapRecord>,
}

async fn counted_swaps(seed: u8, first_tag: u8, n: usize, config: DriverConfig) -> CountedSwaps {
    let mut w = World::new(
        Direction::BTC_TO_ETH,
        Mining::Nominal,
        Mining::Nominal,
        Preimage::from_bytes([seed; 32]),
    );
    let base = w.terms.clone();
    let mut recs = Vec::new();
    for i in 0..n {
        let (secret, terms) = nth_swap(&w, i as u8 + first_tag);
        recs.push(SwapRecord {
            terms,
            role: Role::Initiator,
            secret: Some(secret),
            key_index: i as u32,
            watch_from: w.watch_from,
        });
    }
    let ax = amount_value(&base.x.amount);
    w.x.balances.insert(w.parties.i_x, ax * n as u128);
    let world = Arc::new(Mutex::new(w));
    let x = Arc::new(Counting::new(SimHandle::new(world.clone(), Leg::X)));
    let y = Arc::new(Counting::new(SimHandle::new(world.clone(), Leg::Y)));
    let d = Arc::new(Driver::new(
        Arc::new(swap_core::store::MemoryStore::new()),
        [x.clone() as Arc<dyn Rail>, y.clone() as Arc<dyn Rail>],
        config,
    ));
    for r in &recs {
        d.create(r).await.unwrap();
    }
    CountedSwaps {
        world,
        x,
        y,
        d,
        recs,
    }
}

/// Rails, the ticked runtime: one tick over N swaps asks each rail once for all their legs
/// (never leg by leg) and hands it all the round's operations at once; N swaps run to their
/// end through the runtime with a number of observations that does not grow with N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tick_observes_each_rail_once_and_executes_grouped() {
    const N: usize = 12;
    let CountedSwaps {
        world,
        x,
        y,
        d,
        recs,
    } = counted_swaps(3, 100, N, DriverConfig::default()).await;
    let ids: Vec<SwapId> = recs.iter().map(|r| r.id()).collect();
    let reports = d.tick(&ids).await;
    assert_eq!(reports.len(), N);
    for (id, r) in &reports {
        let r = r.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(
            r.changed,
            "{id}: the first tick moves every swap to locking"
        );
        assert_eq!(r.actions.len(), 1);
        assert!(r.actions[0].1.is_ok(), "{id}: {:?}", r.actions[0]);
    }
    // One observation per rail covering every swap's leg, one grouped execute (the locks, on
    // X only), and no leg-by-leg reads.
    assert_eq!(Counting::get(&x.observes), 1);
    assert_eq!(Counting::get(&y.observes), 1);
    assert_eq!(Counting::get(&x.legs_observed), N);
    assert_eq!(Counting::get(&y.legs_observed), N);
    assert_eq!(Counting::get(&x.executes), 1);
    assert_eq!(Counting::get(&y.executes), 0);
    assert_eq!(
        Counting::get(&x.single_reads) + Counting::get(&y.single_reads),
        0
    );
    assert_eq!(world.lock().unwrap().x.mempool.len(), N, "N locks sent");
    // A second tick at once: the locks are in the mempool, nothing new is sent, the states
    // stand (they were persisted before sending).
    let again = d.tick(&ids).await;
    assert!(again.iter().all(|(_, r)| r.as_ref().is_ok_and(|r| !r
        .actions
        .iter()
        .any(|(a, _)| matches!(a, Action::Claim { .. })))));
    assert_eq!(Counting::get(&x.observes), 2);
    assert_eq!(
        world.lock().unwrap().x.mempool.len(),
        N,
        "no lock sent twice"
    );
}

/// A change a rail tells of one swap (by its hashlock) steps that swap only: the other swaps
/// in flight on the rail are not observed again for it, so a channel's traffic costs each
/// swap its own steps, not one step of every swap in flight. A change told for any leg steps
/// them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_told_for_one_swap_steps_that_swap_only() {
    const N: usize = 8;
    let CountedSwaps {
        world,
        x,
        y,
        d,
        recs,
    } = counted_swaps(4, 140, N, hourly()).await;
    let _runs: Vec<_> = recs
        .iter()
        .map(|r| {
            let (d, id) = (d.clone(), r.id());
            tokio::spawn(async move { d.run_swap(id).await })
        })
        .collect();
    // Until each swap was stepped (it locked on X) and the runtime has nothing due for an hour.
    let settled = |n: usize| {
        let (x, world) = (x.clone(), world.clone());
        async move {
            tokio::time::timeout(Duration::from_secs(30), async {
                while x.seen().len() < n || world.lock().unwrap().x.mempool.len() < N {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the swaps were stepped");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    settled(N).await;
    let (x0, y0) = (x.seen().len(), y.seen().len());
    let third = recs[3].terms.hashlock;
    x.feed.touch([third]);
    settled(x0 + 1).await;
    let (xs, ys) = (x.seen(), y.seen());
    assert!(
        xs[x0..].iter().chain(&ys[y0..]).all(|h| *h == third),
        "only the swap told of was observed again"
    );
    assert!(
        xs.len() > x0 && ys.len() > y0,
        "both its legs were observed"
    );
    // A change for any leg on Y: every swap steps.
    let x1 = xs.len();
    y.feed.touch_all();
    settled(x1 + N).await;
    let again: HashSet<Hashlock> = x.seen()[x1..].iter().copied().collect();
    assert_eq!(again.len(), N, "a change for any leg steps every swap");
}

/// A driver gone takes its runtime's listening with it: the rails' change feeds no longer
/// hold a listener for it (its wake tasks end although the rails never tell again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_gone_stops_listening_to_its_rails() {
    let CountedSwaps { x, y, d, recs, .. } = counted_swaps(5, 160, 1, hourly()).await;
    let run = tokio::spawn({
        let (d, id) = (d.clone(), recs[0].id());
        async move { d.run_swap(id).await }
    });
    let listening = |n: usize| {
        let (x, y) = (x.clone(), y.clone());
        async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                while x.feed.listeners() != n || y.feed.listeners() != n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{n} listener(s) per rail"));
        }
    };
    listening(1).await;
    run.abort();
    let _ = run.await;
    drop(d);
    listening(0).await;
}

/// A simulated rail that tells the runtime of every operation on it
/// ([`Rail::changes`]), as a channel rail does when a peer's update lands.
struct Waking {
    inner: SimHandle,
    changed: swap_core::ChangeFeed,
    /// How many changes it told.
    told: std::sync::atomic::AtomicU64,
    /// How long a lock takes to return after it has landed (and told of it).
    linger: Duration,
}

#[async_trait::async_trait]
impl Rail for Waking {
    fn params(&self) -> &ChainParams {
        self.inner.params()
    }
    fn changes(&self) -> Option<swap_core::ChangeSubscription> {
        Some(self.changed.subscribe())
    }
    async fn account(&self, key_index: u32) -> Result<Account, ChainError> {
        self.inner.account(key_index).await
    }
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        self.inner.tip().await
    }
    async fn htlc_status(&self, h: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        self.inner.htlc_status(h).await
    }
    async fn lock(&self, h: &HtlcParams) -> Result<TxRef, ChainError> {
        let r = self.inner.lock(h).await;
        self.tell(h);
        tokio::time::sleep(self.linger).await;
        r
    }
    async fn claim(&self, h: &HtlcParams, p: &Preimage) -> Result<TxRef, ChainError> {
        let r = self.inner.claim(h, p).await;
        self.tell(h);
        r
    }
    async fn refund(&self, h: &HtlcParams) -> Result<TxRef, ChainError> {
        let r = self.inner.refund(h).await;
        self.tell(h);
        r
    }
}

impl Waking {
    /// Tells of a change of `h`'s swap.
    fn tell(&self, h: &HtlcParams) {
        self.told.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.changed.touch([h.hashlock]);
    }

    fn told(&self) -> u64 {
        self.told.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Rails that tell of their changes wake the swaps on them: two parties whose poll interval
/// is an hour swap over two channel-like rails in well under a minute, each step taken when
/// the other party's lock or claim lands, not at the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rail_that_tells_of_changes_wakes_its_swaps_before_the_poll() {
    let (x, y) = swap_over_waking_rails(12, Duration::ZERO, "changes did not wake it").await;
    assert!(
        x.told() >= 2 && y.told() >= 2,
        "each leg was locked and claimed through its rail"
    );
}

/// One swap between two parties whose poll interval is an hour, over two channel-like rails
/// that tell of every operation; X's lock returns `linger_x` after it landed. Both sides must
/// swap within a minute (`why` says what a timeout means). Returns the two rails.
async fn swap_over_waking_rails(
    tag: u8,
    linger_x: Duration,
    why: &str,
) -> (Arc<Waking>, Arc<Waking>) {
    let w = World::with_slack(
        Direction::LN_TO_ETH_CHANNEL,
        Mining::Nominal,
        Mining::Nominal,
        Preimage::from_bytes([tag; 32]),
        600,
    );
    let (ri, rr) = records(&w);
    let world = Arc::new(Mutex::new(w));
    // One rail per leg, shared by both parties' drivers (as one channel is by its two ends).
    let rail = |leg, linger| {
        Arc::new(Waking {
            inner: SimHandle::new(world.clone(), leg),
            changed: swap_core::ChangeFeed::new(),
            told: Default::default(),
            linger,
        })
    };
    let (x, y) = (rail(Leg::X, linger_x), rail(Leg::Y, Duration::ZERO));
    let mk = || {
        Arc::new(Driver::new(
            Arc::new(swap_core::store::MemoryStore::new()),
            [x.clone() as Arc<dyn Rail>, y.clone() as Arc<dyn Rail>],
            hourly(),
        ))
    };
    let (di, dr) = (mk(), mk());
    di.create(&ri).await.unwrap();
    dr.create(&rr).await.unwrap();
    let (a, b) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(di.run_swap(ri.id()), dr.run_swap(rr.id()))
    })
    .await
    .unwrap_or_else(|_| panic!("the swap waited for a poll: {why}"));
    assert_eq!(
        (a.unwrap(), b.unwrap()),
        (Outcome::Swapped, Outcome::Swapped)
    );
    (x, y)
}

/// A simulated rail whose lock of one swap (by its hashlock) waits until the test opens its
/// gate, as an Ethereum lock waits a block interval for its receipt.
struct Gated {
    inner: SimHandle,
    held: Hashlock,
    /// Told when the held lock is waiting at the gate.
    reached: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
    locks: std::sync::atomic::AtomicUsize,
    /// The next lock panics (a bug in an adapter) instead.
    panic_next: std::sync::atomic::AtomicBool,
}

impl Gated {
    fn new(inner: SimHandle, held: Hashlock) -> Self {
        Self {
            inner,
            held,
            reached: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
            locks: Default::default(),
            panic_next: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl Rail for Gated {
    fn params(&self) -> &ChainParams {
        self.inner.params()
    }
    async fn account(&self, key_index: u32) -> Result<Account, ChainError> {
        self.inner.account(key_index).await
    }
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        self.inner.tip().await
    }
    async fn htlc_status(&self, h: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        self.inner.htlc_status(h).await
    }
    async fn lock(&self, h: &HtlcParams) -> Result<TxRef, ChainError> {
        if self
            .panic_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("adapter bug while locking");
        }
        if h.hashlock == self.held {
            self.reached.notify_one();
            let _pass = self.gate.acquire().await;
        }
        let r = self.inner.lock(h).await;
        self.locks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        r
    }
    async fn claim(&self, h: &HtlcParams, p: &Preimage) -> Result<TxRef, ChainError> {
        self.inner.claim(h, p).await
    }
    async fn refund(&self, h: &HtlcParams) -> Result<TxRef, ChainError> {
        self.inner.refund(h).await
    }
}

/// An action that takes long (a lock waiting for its block) holds up only its own swap: the
/// runtime goes on observing and stepping the others meanwhile, and steps the held swap again
/// only once its action has returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_action_holds_up_only_its_own_swap() {
    let mut w = World::new(
        Direction::BTC_TO_ETH,
        Mining::Nominal,
        Mining::Nominal,
        Preimage::from_bytes([5; 32]),
    );
    let (secret_a, terms_a) = nth_swap(&w, 140);
    let (secret_b, terms_b) = nth_swap(&w, 141);
    let ax = amount_value(&w.terms.x.amount);
    w.x.balances.insert(w.parties.i_x, ax * 2);
    let record = |secret: Preimage, terms: SwapTerms, k: u32| SwapRecord {
        terms,
        role: Role::Initiator,
        secret: Some(secret),
        key_index: k,
        watch_from: w.watch_from,
    };
    let (ra, rb) = (record(secret_a, terms_a, 0), record(secret_b, terms_b, 1));
    let world = Arc::new(Mutex::new(w));
    let x = Arc::new(Gated::new(
        SimHandle::new(world.clone(), Leg::X),
        ra.terms.hashlock,
    ));
    let y = Arc::new(Counting::new(SimHandle::new(world.clone(), Leg::Y)));
    let d = Arc::new(Driver::new(
        Arc::new(swap_core::store::MemoryStore::new()),
        [x.clone() as Arc<dyn Rail>, y.clone() as Arc<dyn Rail>],
        DriverConfig {
            poll_interval: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
    ));
    d.create(&ra).await.unwrap();
    d.create(&rb).await.unwrap();
    let (id_a, id_b) = (ra.id(), rb.id());
    // Neither swap can end here (no responder): their runs are dropped at the end.
    let run_a = tokio::spawn({
        let d = d.clone();
        async move { d.run_swap(id_a).await }
    });
    tokio::time::timeout(Duration::from_secs(10), x.reached.notified())
        .await
        .expect("swap A's lock reached the rail");
    let observed = Counting::get(&y.observes);
    let run_b = tokio::spawn({
        let d = d.clone();
        async move { d.run_swap(id_b).await }
    });
    // B is observed, steps to locking and its lock is sent while A's lock still waits.
    tokio::time::timeout(Duration::from_secs(10), async {
        while x.locks.load(std::sync::atomic::Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("swap B's lock waited for swap A's: one slow action held up the runtime");
    assert_eq!(
        world.lock().unwrap().x.mempool.len(),
        1,
        "only B's lock is sent"
    );
    // And B is observed again (polled) while A's lock still waits.
    let later = Counting::get(&y.observes);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        Counting::get(&y.observes) > later && later > observed,
        "the runtime kept observing while A's lock waited"
    );
    let (_, a_state) = d.store().load(&id_a).await.unwrap();
    assert_eq!(swap_core::driver::state_name(&a_state), "locking");
    // A is not stepped again while its action runs: no second lock of A's is sent.
    assert_eq!(x.locks.load(std::sync::atomic::Ordering::SeqCst), 1);
    x.gate.add_permits(1);
    tokio::time::timeout(Duration::from_secs(10), async {
        while world.lock().unwrap().x.mempool.len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("A's lock is sent once its gate opens");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        world.lock().unwrap().x.mempool.len(),
        2,
        "each lock sent once"
    );
    assert_eq!(x.locks.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(!run_a.is_finished() && !run_b.is_finished());
    run_a.abort();
    run_b.abort();
}

/// In one tick's actions, a swap whose actions went to a quick rail comes back (and is stepped
/// on) while another swap's action on a slow rail still waits: the responder of one swap locks
/// on Y and goes on to see its lock confirmed while the initiator of another waits at X's gate.
#[tokio::test]
async fn a_slow_rail_holds_back_only_the_swaps_with_an_action_on_it() {
    let w = World::new(
        Direction::BTC_TO_ETH,
        Mining::Nominal,
        Mining::Nominal,
        Preimage::from_bytes([6; 32]),
    );
    // Swap B: the world's own swap, its initiator's X lock made directly; we are its responder.
    let (_, rb) = records(&w);
    let (secret_a, terms_a) = nth_swap(&w, 150);
    let ra = SwapRecord {
        terms: terms_a,
        role: Role::Initiator,
        secret: Some(secret_a),
        key_index: 1,
        watch_from: w.watch_from,
    };
    let mut w = w;
    let ax = amount_value(&w.terms.x.amount);
    w.x.balances.insert(w.parties.i_x, ax * 2);
    w.perform(&Action::Lock { leg: Leg::X }).unwrap();
    let world = Arc::new(Mutex::new(w));
    let x = Arc::new(Gated::new(
        SimHandle::new(world.clone(), Leg::X),
        ra.terms.hashlock,
    ));
    let y = Arc::new(SimHandle::new(world.clone(), Leg::Y));
    let d = Arc::new(Driver::new(
        Arc::new(swap_core::store::MemoryStore::new()),
        [x.clone() as Arc<dyn Rail>, y as Arc<dyn Rail>],
        DriverConfig {
            poll_interval: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
    ));
    // B's counter-lock (X) deep enough before either swap starts: B's first step locks Y.
    world.lock().unwrap().advance(3600);
    d.create(&ra).await.unwrap();
    d.create(&rb).await.unwrap();
    let (id_a, id_b) = (ra.id(), rb.id());
    // B stepped (persisted, nothing sent) up to its lock on Y: its first tick in the runtime
    // decides that lock again, as after a crash, in the same tick as A's first (A's lock).
    let mut steps = 0;
    while d.advance(&id_b).await.unwrap().actions.is_empty() {
        steps += 1;
        assert!(steps < 10, "B never came to its lock");
    }
    // Registered together: on this single-threaded runtime the loop runs only once both are
    // queued, so their first actions (A's lock on X, B's on Y) go out in one tick.
    let run_a = tokio::spawn({
        let d = d.clone();
        async move { d.run_swap(id_a).await }
    });
    let run_b = tokio::spawn({
        let d = d.clone();
        async move { d.run_swap(id_b).await }
    });
    tokio::time::timeout(Duration::from_secs(10), x.reached.notified())
        .await
        .expect("A's lock reached X");
    let state_b =
        || async { swap_core::driver::state_name(&d.store().load(&id_b).await.unwrap().1) };
    let moved_on = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = state_b().await;
            if !matches!(
                s,
                "negotiated" | "await_counter_lock" | "counter_lock_valid" | "locking"
            ) {
                return s;
            }
            world.lock().unwrap().advance(30);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("B was not stepped on while A's lock waited on another rail");
    assert_eq!(moved_on, "locked");
    assert_eq!(
        x.locks.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "A's lock still waits at its gate"
    );
    let (_, a_state) = d.store().load(&id_a).await.unwrap();
    assert_eq!(swap_core::driver::state_name(&a_state), "locking");
    x.gate.add_permits(1);
    run_a.abort();
    run_b.abort();
}

/// A rail that panics while performing a swap's action does not leave the swap out of the
/// ticks: it comes back as interrupted and is stepped again (its lock is then sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_whose_actions_panicked_is_stepped_again() {
    let mut w = World::new(
        Direction::BTC_TO_ETH,
        Mining::Nominal,
        Mining::Nominal,
        Preimage::from_bytes([7; 32]),
    );
    let ax = amount_value(&w.terms.x.amount);
    w.x.balances.insert(w.parties.i_x, ax);
    let (ri, _) = records(&w);
    let world = Arc::new(Mutex::new(w));
    // Nothing held at the gate; the first lock panics.
    let x = Arc::new(Gated::new(
        SimHandle::new(world.clone(), Leg::X),
        Preimage::from_bytes([0xee; 32]).hashlock(),
    ));
    x.panic_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let d = Arc::new(Driver::new(
        Arc::new(swap_core::store::MemoryStore::new()),
        [
            x.clone() as Arc<dyn Rail>,
            Arc::new(SimHandle::new(world.clone(), Leg::Y)) as Arc<dyn Rail>,
        ],
        DriverConfig {
            poll_interval: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
    ));
    d.create(&ri).await.unwrap();
    let id = ri.id();
    let run = tokio::spawn({
        let d = d.clone();
        async move { d.run_swap(id).await }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while world.lock().unwrap().x.mempool.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the swap was left out after its action panicked");
    assert!(
        !x.panic_next.load(std::sync::atomic::Ordering::SeqCst),
        "the lock panicked"
    );
    assert_eq!(world.lock().unwrap().x.mempool.len(), 1, "locked once");
    assert!(!run.is_finished(), "the swap runs on");
    run.abort();
}

/// A change told while a swap's own action is still being performed is not lost: the swap is
/// due at once when its action comes back. The initiator's lock lingers half a second after it
/// landed; meanwhile the responder sees it and locks, which wakes the initiator while its lock
/// is still out. With an hour's poll, a lost wake would stall the swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_told_while_a_swaps_action_runs_wakes_it_when_it_returns() {
    swap_over_waking_rails(
        13,
        Duration::from_millis(500),
        "a change told while an action ran was lost",
    )
    .await;
}
