//! The ticked runtime: every swap of a driver advances in rounds ("ticks"), not in a task of
//! its own.
//!
//! One tick over the swaps that are due:
//! 1. per rail, one `Rail::observe` of all their legs on it (one block scan, one log query,
//!    one read of a channel's state, whatever the number of swaps);
//! 2. the pure machines step every swap;
//! 3. the new states are persisted (each with the sequence number it was computed from, so a
//!    second writer is detected), before anything is sent;
//! 4. the actions are handed to each rail together (`Rail::execute`), so packing N locks into
//!    one funding transaction or N claims into one contract call is the adapter's only batching
//!    code.
//!
//! A swap whose state changes without sending anything (a valid counter-lock, a learned
//! secret) steps again at once on the same observation, a few times in a row at most, and only
//! its last state is persisted (`Driver::decide_on`); one that still changed without sending
//! anything is due again at once; otherwise it is due again
//! after the poll interval, or after a growing backoff when its rails could not be read.
//! A rail that learns of changes itself ([`crate::Rail::changes`]: a channel peer's update, a
//! Lightning payment event) makes the swaps it names (by hashlock) due at once: channel swaps
//! move at the pace of their messages, not of the poll interval, and a change of one swap does
//! not make the rail's other swaps in flight step again for nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::changes::Changed;
use crate::driver::{final_outcome, state_name, Advanced, Driver, DriverError, StepReport};
use crate::machine::{Action, LegView, Outcome, Snapshot};
use crate::params::RailId;
use crate::rail::{ChainError, HtlcParams, RailOp};
use crate::store::SwapRecord;
use crate::terms::Leg;
use crate::types::{Hashlock, SwapId, TxRef};

/// How many state changes in a row a swap may step through without waiting a poll.
const MAX_QUICK_STEPS: u32 = 4;

/// A request to run a swap to its end, answered when it ends.
pub(crate) struct Registration {
    pub(crate) id: SwapId,
    pub(crate) done: oneshot::Sender<Result<Outcome, DriverError>>,
}

/// One swap's place in the runtime.
struct Active {
    waiters: Vec<oneshot::Sender<Result<Outcome, DriverError>>>,
    due: Instant,
    backoff: Duration,
    quick: u32,
    /// The rails of its two legs and its hashlock, once a step has read its record (until
    /// then any rail's change wakes it).
    legs: Option<Legs>,
    /// One of its rails told of a change while its actions were being performed.
    woken: bool,
}

/// Where a swap's legs are: the rails of its two legs, and its hashlock (the name rails give
/// their changes).
#[derive(Clone, Copy)]
struct Legs {
    rails: [RailId; 2],
    hashlock: Hashlock,
}

impl Active {
    /// Whether one of the changes in `woken` (per rail) concerns this swap.
    fn on_any(&self, woken: &HashMap<RailId, Changed>) -> bool {
        self.legs.is_none_or(|legs| {
            legs.rails.iter().any(|r| {
                woken
                    .get(r)
                    .is_some_and(|changed| changed.concerns(&legs.hashlock))
            })
        })
    }
}

/// What one tick did to one swap, with where its legs are when its record was read.
type Stepped = (SwapId, Result<StepReport, DriverError>, Option<Legs>);

/// What a tick did to a swap it advanced, once its actions (if any) returned `actions`.
fn stepped(adv: &Advanced, actions: Vec<(Action, Result<TxRef, ChainError>)>) -> Stepped {
    let terms = &adv.record.terms;
    (
        adv.record.id(),
        Ok(StepReport {
            state: adv.state.clone(),
            changed: adv.changed,
            actions,
        }),
        Some(Legs {
            rails: [
                terms.leg(Leg::X).params.rail(),
                terms.leg(Leg::Y).params.rail(),
            ],
            hashlock: terms.hashlock,
        }),
    )
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::X => 0,
        Leg::Y => 1,
    }
}

/// A chain error of `rail`, for one of the legs an observation covered.
fn rail_error(rail: RailId, source: &ChainError) -> DriverError {
    DriverError::Chain {
        rail,
        source: source.clone(),
    }
}

impl Driver {
    /// What the rails say now about each record's two legs: one [`crate::Rail::observe`] per
    /// rail for all the legs on it, whatever the number of swaps.
    pub(crate) async fn views(
        &self,
        records: &[&SwapRecord],
    ) -> Vec<Result<Snapshot, DriverError>> {
        let mut by_rail: HashMap<RailId, Vec<(usize, Leg)>> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            for leg in [Leg::X, Leg::Y] {
                let rail = record.terms.leg(leg).params.rail();
                by_rail.entry(rail).or_default().push((i, leg));
            }
        }
        let observations = join_all(by_rail.into_iter().map(|(rail_id, legs)| {
            let htlcs: Vec<HtlcParams> = legs
                .iter()
                .map(|(i, leg)| Driver::htlc(records[*i], *leg))
                .collect();
            async move {
                let result = match self.rail(rail_id) {
                    None => Err(None),
                    Some(rail) => rail.observe(&htlcs).await.map_err(Some),
                };
                (rail_id, legs, result)
            }
        }))
        .await;
        let mut views: Vec<[Option<Result<LegView, DriverError>>; 2]> =
            records.iter().map(|_| [None, None]).collect();
        for (rail_id, legs, result) in observations {
            for (n, (i, leg)) in legs.into_iter().enumerate() {
                let view = match &result {
                    Err(None) => Err(DriverError::NoRail(rail_id)),
                    Err(Some(source)) => Err(rail_error(rail_id, source)),
                    Ok(obs) => match obs.statuses.get(n) {
                        Some(Ok(status)) => Ok(LegView {
                            tip: obs.tip,
                            htlc: status.clone(),
                        }),
                        Some(Err(source)) => Err(rail_error(rail_id, source)),
                        None => Err(rail_error(
                            rail_id,
                            &ChainError::transient("the rail answered fewer legs"),
                        )),
                    },
                };
                views[i][leg_index(leg)] = Some(view);
            }
        }
        views
            .into_iter()
            .zip(records)
            .map(|(view, record)| match view {
                [Some(x), Some(y)] => Ok(Snapshot { x: x?, y: y? }),
                _ => Err(DriverError::MissingView(record.id())),
            })
            .collect()
    }

    /// Computes and persists the next state of every swap in `ids` from one observation per
    /// rail; returns each with the actions still to do. Nothing is sent here. The states that
    /// changed are persisted together ([`crate::SwapStore::append_states`]: one transaction
    /// in the SQLite store) BEFORE any action: a crash resumes from them and redoes the
    /// actions. Each new state is appended after the one it was computed from, so a swap
    /// another writer moved meanwhile gets a conflict and no actions.
    pub(crate) async fn advance_many(
        &self,
        ids: &[SwapId],
        hops: usize,
    ) -> Vec<(SwapId, Result<Advanced, DriverError>)> {
        let mut out = Vec::with_capacity(ids.len());
        let mut loaded = Vec::with_capacity(ids.len());
        let mut entries = self.store().load_entries(ids).await.into_iter();
        for id in ids {
            let entry = entries.next().unwrap_or_else(|| {
                Err(crate::store::StoreError::Backend(
                    "the store answered fewer swaps than it was asked for".into(),
                ))
            });
            match entry {
                Ok((record, entry)) if entry.state.is_final() => out.push((
                    *id,
                    Ok(Advanced {
                        record,
                        state: entry.state,
                        changed: false,
                        actions: Vec::new(),
                    }),
                )),
                Ok((record, entry)) => loaded.push((record, entry)),
                Err(e) => out.push((*id, Err(e.into()))),
            }
        }
        let records: Vec<&SwapRecord> = loaded.iter().map(|(r, _)| r).collect();
        let snapshots = self.views(&records).await;
        let mut decided = Vec::with_capacity(loaded.len());
        let mut batch = Vec::new();
        for ((record, entry), snap) in loaded.into_iter().zip(snapshots) {
            match snap.and_then(|snap| self.decide_on(&record, &entry.state, &snap, hops)) {
                Err(e) => out.push((record.id(), Err(e))),
                Ok((next, actions)) => {
                    let changed = next != entry.state;
                    if changed {
                        batch.push((record.id(), entry.seq, next.clone()));
                    }
                    decided.push((record, entry.state, next, actions, changed));
                }
            }
        }
        let mut written = self.store().append_states(&batch).await.into_iter();
        for (record, from, next, actions, changed) in decided {
            let id = record.id();
            if changed {
                match written.next() {
                    Some(Ok(_)) => {
                        info!(swap_id = %id, from = state_name(&from), to = state_name(&next), "state");
                    }
                    Some(Err(e)) => {
                        out.push((id, Err(e.into())));
                        continue;
                    }
                    None => {
                        out.push((
                            id,
                            Err(crate::store::StoreError::Backend(
                                "the store answered fewer states than it was given".into(),
                            )
                            .into()),
                        ));
                        continue;
                    }
                }
            }
            out.push((
                id,
                Ok(Advanced {
                    record,
                    state: next,
                    changed,
                    actions,
                }),
            ));
        }
        out
    }

    /// The machine's step from `state` on `snap`, and while it moves to another state with
    /// nothing to do (a valid counter-lock, a learned secret), its next steps on the same
    /// observation, `hops` at most ([`MAX_HOPS`] in the runtime): only the last state is persisted, before its
    /// actions. Each state is a function of the one before and the observation, and the last
    /// holds all that the ones before it learned (a learned secret is in `Claiming`), so a
    /// crash resumes as it would have from them; the swap no longer waits a whole tick (its
    /// record loaded, its rails observed, its state written) to act on what it saw.
    fn decide_on(
        &self,
        record: &SwapRecord,
        state: &crate::store::SwapState,
        snap: &Snapshot,
        hops: usize,
    ) -> Result<(crate::store::SwapState, Vec<Action>), DriverError> {
        let (mut next, mut actions) = self.decide(record, state, snap)?;
        let mut from = state.clone();
        for _ in 0..hops {
            if !actions.is_empty() || next == from || next.is_final() {
                break;
            }
            let (after, acts) = self.decide(record, &next, snap)?;
            from = std::mem::replace(&mut next, after);
            actions = acts;
        }
        Ok((next, actions))
    }

    /// Performs the actions of several swaps, handed to each rail together
    /// ([`crate::Rail::execute`]); one list of results per swap, in order. Errors are returned,
    /// not raised: the next step sees the rails as they are and decides again.
    pub(crate) async fn perform_many(
        &self,
        plans: &[(&SwapRecord, &[Action])],
    ) -> Vec<Vec<(Action, Result<TxRef, ChainError>)>> {
        let mut out: Vec<Vec<(Action, Result<TxRef, ChainError>)>> =
            plans.iter().map(|_| Vec::new()).collect();
        self.perform_each(plans, |p, done| out[p] = done).await;
        out
    }

    /// [`Driver::perform_many`], telling `done` of each swap (its index in `plans` and its
    /// results, in order) as soon as every rail its actions went to has answered: a rail that
    /// waits long (an Ethereum lock waiting a block for its receipt) holds back only the swaps
    /// with an action on it.
    pub(crate) async fn perform_each(
        &self,
        plans: &[(&SwapRecord, &[Action])],
        mut done: impl FnMut(usize, Vec<(Action, Result<TxRef, ChainError>)>),
    ) {
        let mut ops_by_rail: HashMap<RailId, Vec<(usize, usize, RailOp)>> = HashMap::new();
        for (p, (record, actions)) in plans.iter().enumerate() {
            for (a, action) in actions.iter().enumerate() {
                let leg = action.leg();
                let htlc = Driver::htlc(record, leg);
                let op = match action {
                    Action::Lock { .. } => RailOp::Lock(htlc),
                    Action::Claim { preimage, .. } => RailOp::Claim(htlc, preimage.clone()),
                    Action::Refund { .. } => RailOp::Refund(htlc),
                    Action::CancelLock { .. } => RailOp::CancelLock(htlc),
                };
                let rail = record.terms.leg(leg).params.rail();
                ops_by_rail.entry(rail).or_default().push((p, a, op));
            }
        }
        let mut waiting: Vec<usize> = plans.iter().map(|(_, actions)| actions.len()).collect();
        // A swap with nothing to do is done at once.
        for (p, n) in waiting.iter().enumerate() {
            if *n == 0 {
                done(p, Vec::new());
            }
        }
        let mut results: HashMap<(usize, usize), Result<TxRef, ChainError>> = HashMap::new();
        let mut executing: FuturesUnordered<_> = ops_by_rail
            .into_iter()
            .map(|(rail_id, ops)| async move {
                let rail_ops: Vec<RailOp> = ops.iter().map(|(_, _, op)| op.clone()).collect();
                let results = match self.rail(rail_id) {
                    None => rail_ops
                        .iter()
                        .map(|_| Err(ChainError::permanent(format!("no adapter for {rail_id}"))))
                        .collect(),
                    Some(rail) => rail.execute(&rail_ops).await,
                };
                (ops, results)
            })
            .collect();
        while let Some((ops, rs)) = executing.next().await {
            let mut rs = rs.into_iter();
            // Each swap's count reaches zero at its last operation, once.
            let mut finished = Vec::new();
            for (p, a, _) in ops {
                let r = rs.next().unwrap_or_else(|| {
                    Err(ChainError::transient("the rail answered fewer operations"))
                });
                results.insert((p, a), r);
                waiting[p] = waiting[p].saturating_sub(1);
                if waiting[p] == 0 {
                    finished.push(p);
                }
            }
            // What the swaps finished by this answer sent, recorded in one call to the store
            // before any of them is told done.
            let mut sent = Vec::new();
            let mut outs = Vec::with_capacity(finished.len());
            for p in finished {
                let (record, actions) = plans[p];
                let mut out = Vec::with_capacity(actions.len());
                for (a, action) in actions.iter().enumerate() {
                    let result = results
                        .remove(&(p, a))
                        .unwrap_or_else(|| Err(ChainError::transient("not executed")));
                    sent.extend(Driver::after_action(record, action, &result));
                    out.push((action.clone(), result));
                }
                outs.push((p, out));
            }
            self.record_sent(&sent).await;
            for (p, out) in outs {
                done(p, out);
            }
        }
    }

    /// One tick over `ids`: one observation per rail for all their legs, every machine steps,
    /// new states are persisted, then the actions are executed grouped per rail. Returns what
    /// each swap did (a swap that could not be stepped has an error and changed nothing).
    pub async fn tick(&self, ids: &[SwapId]) -> Vec<(SwapId, Result<StepReport, DriverError>)> {
        self.tick_with_rails(ids, MAX_HOPS)
            .await
            .into_iter()
            .map(|(id, result, _)| (id, result))
            .collect()
    }

    /// One step of one swap's machine, as [`Driver::step`] but without the steps that follow on
    /// the same observation ([`Driver::tick`] takes them): for a caller that stops a swap at a
    /// given state (a test of the last moment to claim, say).
    pub async fn step_one(&self, id: &SwapId) -> Result<StepReport, DriverError> {
        self.tick_with_rails(std::slice::from_ref(id), 0)
            .await
            .pop()
            .map_or(Err(DriverError::MissingView(*id)), |(_, r, _)| r)
    }

    /// [`Driver::tick`], with where each swap's legs are when its record was read.
    async fn tick_with_rails(&self, ids: &[SwapId], hops: usize) -> Vec<Stepped> {
        let (mut out, to_perform) = self.decide_tick(ids, hops).await;
        out.extend(self.perform_advanced(to_perform).await);
        out
    }

    /// The first half of a tick: observe, step and persist every swap in `ids`. Returns the
    /// swaps that are done with this tick (an error, or nothing to do) and, apart, those with
    /// actions to perform ([`Driver::perform_advanced`]).
    async fn decide_tick(&self, ids: &[SwapId], hops: usize) -> (Vec<Stepped>, Vec<Advanced>) {
        let mut out = Vec::with_capacity(ids.len());
        let mut to_perform = Vec::new();
        for (id, result) in self.advance_many(ids, hops).await {
            // A swap that has ended needs no more watching: its rails forget it now, from the
            // record in hand.
            if let Ok(adv) = &result {
                if adv.state.is_final() {
                    self.forget_record(&adv.record).await;
                }
            }
            match result {
                Ok(adv) if adv.actions.is_empty() => out.push(stepped(&adv, Vec::new())),
                Ok(adv) => to_perform.push(adv),
                Err(e) => out.push((id, Err(e), None)),
            }
        }
        (out, to_perform)
    }

    /// The second half of a tick: the actions of the swaps [`Driver::decide_tick`] persisted,
    /// executed grouped per rail.
    async fn perform_advanced(&self, advanced: Vec<Advanced>) -> Vec<Stepped> {
        let mut out = Vec::with_capacity(advanced.len());
        self.perform_advanced_each(advanced, |stepped| out.push(stepped))
            .await;
        out
    }

    /// [`Driver::perform_advanced`], telling `done` of each swap as soon as its actions have
    /// returned ([`Driver::perform_each`]).
    async fn perform_advanced_each(&self, advanced: Vec<Advanced>, mut done: impl FnMut(Stepped)) {
        let plans: Vec<(&SwapRecord, &[Action])> = advanced
            .iter()
            .map(|adv| (&adv.record, adv.actions.as_slice()))
            .collect();
        self.perform_each(&plans, |p, actions| done(stepped(&advanced[p], actions)))
            .await;
    }

    /// A queue of what changed on which rail ([`crate::Rail::changes`]), fed by one small
    /// task per rail that has changes to tell; each task ends when the queue's reader (the
    /// tick loop) is gone.
    fn wakes(&self) -> (mpsc::UnboundedSender<Wake>, mpsc::UnboundedReceiver<Wake>) {
        let (tx, rx) = mpsc::unbounded_channel();
        for rail in self.rails() {
            let Some(mut changes) = rail.changes() else {
                continue;
            };
            let (id, tx) = (rail.id(), tx.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        changed = changes.next() => {
                            if tx.send((id, changed)).is_err() {
                                return;
                            }
                        }
                        // The tick loop ended: the rail may never tell again.
                        () = tx.closed() => return,
                    }
                }
            });
        }
        (tx, rx)
    }

    /// The runtime's queue, started on first use.
    pub(crate) fn runtime(self: &Arc<Self>) -> mpsc::UnboundedSender<Registration> {
        self.runtime_tx
            .get_or_init(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let wakes = self.wakes();
                tokio::spawn(run_loop(Arc::downgrade(self), rx, wakes, self.config()));
                tx
            })
            .clone()
    }
}

/// What a rail told of its changes.
type Wake = (RailId, Changed);

/// Adds a rail's change to those not acted on yet.
fn note_wake(woken: &mut HashMap<RailId, Changed>, (rail, changed): Wake) {
    match woken.get_mut(&rail) {
        Some(known) => known.merge(changed),
        None => {
            woken.insert(rail, changed);
        }
    }
}

/// The most steps a swap takes after the first on one observation ([`Driver::decide_on`]).
pub(crate) const MAX_HOPS: usize = 3;

/// The tick loop. Ends when the driver is dropped.
///
/// A tick's actions run in a task of their own: a rail that waits for its transactions to be
/// mined (an Ethereum lock waits for its receipt, a block interval on a real chain) holds up
/// only the swaps whose actions they are, not the observation of every other swap, and each swap
/// of the task comes back as soon as the rails its own actions went to have answered (a claim on
/// a coin chain does not wait for another swap's Ethereum lock). A swap is not stepped again
/// until its actions have returned (persist-then-act holds per swap; the next step sees what
/// they did).
async fn run_loop(
    driver: Weak<Driver>,
    mut rx: mpsc::UnboundedReceiver<Registration>,
    // The sender is kept here so the queue never closes (a driver without such rails).
    (_keep, mut wakes): (mpsc::UnboundedSender<Wake>, mpsc::UnboundedReceiver<Wake>),
    config: crate::driver::DriverConfig,
) {
    let mut active: HashMap<SwapId, Active> = HashMap::new();
    let mut woken: HashMap<RailId, Changed> = HashMap::new();
    // Swaps whose actions are being performed: never due until they return (even if the swap
    // was dropped and registered again meanwhile).
    let mut performing: HashSet<SwapId> = HashSet::new();
    let (performed_tx, mut performed_rx) = mpsc::unbounded_channel::<Vec<Stepped>>();
    let grid = Grid {
        epoch: Instant::now(),
        step: config.poll_interval.max(Duration::from_millis(1)),
    };
    loop {
        let next = active
            .iter()
            .filter(|(id, _)| !performing.contains(*id))
            .map(|(_, a)| a.due)
            .min();
        let mut returned = Vec::new();
        tokio::select! {
            reg = rx.recv() => match reg {
                None => return,
                Some(r) => add(&mut active, r, config.poll_interval),
            },
            Some(wake) = wakes.recv() => note_wake(&mut woken, wake),
            Some(done) = performed_rx.recv() => returned.push(done),
            _ = sleep_until(next) => {}
        }
        while let Ok(done) = performed_rx.try_recv() {
            returned.push(done);
        }
        let Some(driver) = driver.upgrade() else {
            return;
        };
        for (id, result, legs) in returned.into_iter().flatten() {
            performing.remove(&id);
            settle(&mut active, &config, &grid, id, result, legs);
        }
        // Every change told while the last tick ran is one wake.
        while let Ok(wake) = wakes.try_recv() {
            note_wake(&mut woken, wake);
        }
        if !woken.is_empty() {
            let now = Instant::now();
            for (id, a) in active.iter_mut().filter(|(_, a)| a.on_any(&woken)) {
                if performing.contains(id) {
                    // Due at once when its actions come back (`settle` would set a later due).
                    a.woken = true;
                } else {
                    a.due = a.due.min(now);
                }
            }
            woken.clear();
        }
        while let Ok(r) = rx.try_recv() {
            add(&mut active, r, config.poll_interval);
        }
        // Nobody waits for a swap any more (its tasks were dropped): stop running it.
        active.retain(|_, a| {
            a.waiters.retain(|w| !w.is_closed());
            !a.waiters.is_empty()
        });
        let now = Instant::now();
        let due: Vec<SwapId> = active
            .iter()
            .filter(|(id, a)| a.due <= now && !performing.contains(*id))
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            continue;
        }
        let (stepped, to_perform) = driver.decide_tick(&due, MAX_HOPS).await;
        for (id, result, legs) in stepped {
            settle(&mut active, &config, &grid, id, result, legs);
        }
        if !to_perform.is_empty() {
            performing.extend(to_perform.iter().map(|adv| adv.record.id()));
            let (driver, tx) = (driver.clone(), performed_tx.clone());
            tokio::spawn(async move {
                // Whatever ends this task (a panic in a rail included), every swap of it comes
                // back: those not reported yet as interrupted, stepped again from the store.
                let mut unreported = Unreported {
                    ids: to_perform.iter().map(|adv| adv.record.id()).collect(),
                    tx,
                };
                driver
                    .perform_advanced_each(to_perform, |stepped| {
                        unreported.ids.remove(&stepped.0);
                        let _ = unreported.tx.send(vec![stepped]);
                    })
                    .await;
            });
        }
    }
}

/// The swaps of a task performing actions that have not come back yet: reported as
/// interrupted when the task ends without them (a panic unwinding through it), so that none
/// stays out of the ticks for good.
struct Unreported {
    ids: HashSet<SwapId>,
    tx: mpsc::UnboundedSender<Vec<Stepped>>,
}

impl Drop for Unreported {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        error!(
            swaps = self.ids.len(),
            "actions interrupted; the swaps are stepped again"
        );
        let _ = self.tx.send(
            self.ids
                .drain()
                .map(|id| (id, Err(DriverError::Interrupted(id)), None))
                .collect(),
        );
    }
}

/// Takes in what a tick did to swap `id`: answers its waiters when it ended, or sets when it
/// is due again.
fn settle(
    active: &mut HashMap<SwapId, Active>,
    config: &crate::driver::DriverConfig,
    grid: &Grid,
    id: SwapId,
    result: Result<StepReport, DriverError>,
    legs: Option<Legs>,
) {
    let Some(a) = active.get_mut(&id) else {
        return;
    };
    if legs.is_some() {
        a.legs = legs;
    }
    let now = Instant::now();
    match result {
        Ok(report) => {
            if let Some(outcome) = final_outcome(&report.state) {
                info!(swap_id = %id, outcome = outcome.name(), "swap finished");
                if let Some(a) = active.remove(&id) {
                    for w in a.waiters {
                        let _ = w.send(Ok(outcome.clone()));
                    }
                }
                return;
            }
            a.backoff = config.poll_interval;
            if report.changed && report.actions.is_empty() && a.quick < MAX_QUICK_STEPS {
                a.quick += 1;
                a.due = now;
            } else {
                a.quick = 0;
                a.due = grid.after(now + config.poll_interval / 2);
            }
        }
        Err(e) if e.is_transient() => {
            warn!(swap_id = %id, error = %e, "step failed, retrying");
            a.due = grid.after(now + a.backoff);
            a.backoff = (a.backoff * 2).min(config.max_backoff);
        }
        // A chain error that looks permanent must not abandon a swap with funds at
        // stake (its refund depends on us): keep trying, slowly, and say so loudly.
        Err(e @ DriverError::Chain { .. }) => {
            error!(swap_id = %id, error = %e, "chain error; retrying at the slowest pace");
            a.due = grid.after(now + config.max_backoff);
        }
        Err(e) => {
            error!(swap_id = %id, error = %e, "swap stopped");
            if let Some(a) = active.remove(&id) {
                let mut waiters = a.waiters.into_iter();
                if let Some(first) = waiters.next() {
                    let _ = first.send(Err(e));
                }
                for w in waiters {
                    let _ = w.send(Err(DriverError::Stopped(id)));
                }
            }
        }
    }
    // One of its rails told of a change while its actions ran: due at once.
    if let Some(a) = active.get_mut(&id) {
        if std::mem::take(&mut a.woken) {
            a.due = a.due.min(now);
        }
    }
}

/// The instants swaps are due at after a poll or a backoff: multiples of the poll interval
/// since the loop started, so that swaps polled at different moments are due together and
/// share one tick (one observation per rail) instead of a tick each.
struct Grid {
    epoch: Instant,
    step: Duration,
}

impl Grid {
    /// The first instant of the grid at or after `at`.
    fn after(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let step = self.step.as_nanos().max(1);
        let steps = since.div_ceil(step);
        let offset = u64::try_from(steps.saturating_mul(step)).unwrap_or(u64::MAX);
        self.epoch
            .checked_add(Duration::from_nanos(offset))
            .unwrap_or(at)
    }
}

fn add(active: &mut HashMap<SwapId, Active>, r: Registration, poll: Duration) {
    active
        .entry(r.id)
        .or_insert_with(|| Active {
            waiters: Vec::new(),
            due: Instant::now(),
            backoff: poll,
            quick: 0,
            legs: None,
            woken: false,
        })
        .waiters
        .push(r.done);
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_instants_fall_on_the_poll_grid_within_one_step() {
        let epoch = Instant::now();
        let step = Duration::from_millis(500);
        let grid = Grid { epoch, step };
        for ms in [0u64, 1, 499, 500, 501, 1234, 86_400_000] {
            let at = epoch + Duration::from_millis(ms);
            let due = grid.after(at);
            assert!(due >= at, "{ms}: due before asked");
            assert!(due < at + step, "{ms}: more than a step late");
            assert_eq!(
                due.duration_since(epoch).as_nanos() % step.as_nanos(),
                0,
                "{ms}: off the grid"
            );
        }
        // Two swaps polled at different moments of one step are due together.
        let a = grid.after(epoch + Duration::from_millis(1_010));
        let b = grid.after(epoch + Duration::from_millis(1_490));
        assert_eq!(a, b);
    }
}
