//! The ticked runtime: every swap of a driver advances in rounds ("ticks"), not in a task of
//! its own.
//!
//! One tick over the swaps that are due:
//! 1. per rail, one [`Rail::observe`] of all their legs on it (one block scan, one log query,
//!    one read of a channel's state, whatever the number of swaps);
//! 2. the pure machines step every swap;
//! 3. the new states are persisted (each with the sequence number it was computed from, so a
//!    second writer is detected), before anything is sent;
//! 4. the actions are handed to each rail together ([`Rail::execute`]), so packing N locks into
//!    one funding transaction or N claims into one contract call is the adapter's only batching
//!    code.
//!
//! A swap whose state changed without sending anything is due again at once (a valid
//! counter-lock, a learned secret), a few times in a row at most; otherwise it is due again
//! after the poll interval, or after a growing backoff when its rails could not be read.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::driver::{final_outcome, state_name, Driver, DriverError, StepReport};
use crate::machine::{Action, LegView, Outcome, Snapshot};
use crate::params::RailId;
use crate::rail::{ChainError, HtlcParams, RailOp};
use crate::store::{SwapRecord, SwapState};
use crate::terms::Leg;
use crate::types::SwapId;

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
}

/// A loaded swap during a tick.
struct Loaded {
    record: SwapRecord,
    state: SwapState,
    seq: u64,
    views: [Option<Result<LegView, DriverError>>; 2],
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::X => 0,
        Leg::Y => 1,
    }
}

impl Driver {
    /// One tick over `ids`: one observation per rail for all their legs, every machine steps,
    /// new states are persisted, then the actions are executed grouped per rail. Returns what
    /// each swap did (a swap that could not be stepped has an error and changed nothing).
    pub async fn tick(&self, ids: &[SwapId]) -> Vec<(SwapId, Result<StepReport, DriverError>)> {
        let mut out = Vec::with_capacity(ids.len());
        let mut loaded = Vec::with_capacity(ids.len());
        for id in ids {
            match self.store().load_entry(id).await {
                Ok((_, entry)) if entry.state.is_final() => out.push((
                    *id,
                    Ok(StepReport {
                        state: entry.state,
                        changed: false,
                        actions: Vec::new(),
                    }),
                )),
                Ok((record, entry)) => loaded.push(Loaded {
                    record,
                    state: entry.state,
                    seq: entry.seq,
                    views: [None, None],
                }),
                Err(e) => out.push((*id, Err(e.into()))),
            }
        }

        // 1. One observation per rail.
        let mut by_rail: HashMap<RailId, Vec<(usize, Leg)>> = HashMap::new();
        for (i, l) in loaded.iter().enumerate() {
            for leg in [Leg::X, Leg::Y] {
                let rail = l.record.terms.leg(leg).params.rail();
                by_rail.entry(rail).or_default().push((i, leg));
            }
        }
        let observations = join_all(by_rail.into_iter().map(|(rail_id, legs)| {
            let htlcs: Vec<HtlcParams> = legs
                .iter()
                .map(|(i, leg)| Driver::htlc(&loaded[*i].record, *leg))
                .collect();
            async move {
                let result = match self.rail(rail_id) {
                    None => Err(DriverError::NoRail(rail_id)),
                    Some(rail) => rail
                        .observe(&htlcs)
                        .await
                        .map_err(|source| DriverError::Chain {
                            rail: rail_id,
                            source,
                        }),
                };
                (rail_id, legs, result)
            }
        }))
        .await;
        for (rail_id, legs, result) in observations {
            for (n, (i, leg)) in legs.into_iter().enumerate() {
                let view = match &result {
                    Err(DriverError::Chain { source, .. }) => Err(DriverError::Chain {
                        rail: rail_id,
                        source: source.clone(),
                    }),
                    Err(_) => Err(DriverError::NoRail(rail_id)),
                    Ok(obs) => match obs.statuses.get(n) {
                        Some(Ok(status)) => Ok(LegView {
                            tip: obs.tip,
                            htlc: status.clone(),
                        }),
                        Some(Err(source)) => Err(DriverError::Chain {
                            rail: rail_id,
                            source: source.clone(),
                        }),
                        None => Err(DriverError::Chain {
                            rail: rail_id,
                            source: ChainError::transient("the rail answered fewer legs"),
                        }),
                    },
                };
                loaded[i].views[leg_index(leg)] = Some(view);
            }
        }

        // 2 and 3. Step every machine; persist the changes before anything is sent.
        let mut pending: Vec<(usize, bool, Vec<Action>)> = Vec::with_capacity(loaded.len());
        for (i, l) in loaded.iter_mut().enumerate() {
            let id = l.record.id();
            let [x, y] = std::mem::take(&mut l.views);
            let snap = match (x, y) {
                (Some(Ok(x)), Some(Ok(y))) => Snapshot { x, y },
                (Some(Err(e)), _) | (_, Some(Err(e))) => {
                    out.push((id, Err(e)));
                    continue;
                }
                _ => {
                    out.push((id, Err(DriverError::MissingView(id))));
                    continue;
                }
            };
            match self.decide(&l.record, &l.state, &snap) {
                Err(e) => out.push((id, Err(e))),
                Ok((next, actions)) => {
                    let changed = next != l.state;
                    if changed {
                        if let Err(e) = self.store().append_state(&id, l.seq, &next).await {
                            out.push((id, Err(e.into())));
                            continue;
                        }
                        info!(swap_id = %id, from = state_name(&l.state), to = state_name(&next), "state");
                        l.state = next;
                    }
                    pending.push((i, changed, actions));
                }
            }
        }

        // 4. The actions, grouped per rail.
        let mut ops_by_rail: HashMap<RailId, Vec<(usize, usize, RailOp)>> = HashMap::new();
        for (p, (i, _, actions)) in pending.iter().enumerate() {
            let record = &loaded[*i].record;
            for (a, action) in actions.iter().enumerate() {
                let leg = action.leg();
                let htlc = Driver::htlc(record, leg);
                let op = match action {
                    Action::Lock { .. } => RailOp::Lock(htlc),
                    Action::Claim { preimage, .. } => RailOp::Claim(htlc, preimage.clone()),
                    Action::Refund { .. } => RailOp::Refund(htlc),
                };
                let rail = record.terms.leg(leg).params.rail();
                ops_by_rail.entry(rail).or_default().push((p, a, op));
            }
        }
        let executed = join_all(ops_by_rail.into_iter().map(|(rail_id, ops)| async move {
            let rail_ops: Vec<RailOp> = ops.iter().map(|(_, _, op)| op.clone()).collect();
            let results = match self.rail(rail_id) {
                None => rail_ops
                    .iter()
                    .map(|_| Err(ChainError::permanent(format!("no adapter for {rail_id}"))))
                    .collect(),
                Some(rail) => rail.execute(&rail_ops).await,
            };
            (ops, results)
        }))
        .await;
        let mut results: HashMap<(usize, usize), Result<crate::types::TxRef, ChainError>> =
            HashMap::new();
        for (ops, rs) in executed {
            let mut rs = rs.into_iter();
            for (p, a, _) in ops {
                let r = rs.next().unwrap_or_else(|| {
                    Err(ChainError::transient("the rail answered fewer operations"))
                });
                results.insert((p, a), r);
            }
        }
        for (p, (i, changed, actions)) in pending.into_iter().enumerate() {
            let l = &loaded[i];
            let mut done = Vec::with_capacity(actions.len());
            for (a, action) in actions.into_iter().enumerate() {
                let result = results
                    .remove(&(p, a))
                    .unwrap_or_else(|| Err(ChainError::transient("not executed")));
                self.after_action(&l.record, &action, &result).await;
                done.push((action, result));
            }
            out.push((
                l.record.id(),
                Ok(StepReport {
                    state: l.state.clone(),
                    changed,
                    actions: done,
                }),
            ));
        }
        out
    }

    /// The runtime's queue, started on first use.
    pub(crate) fn runtime(self: &Arc<Self>) -> mpsc::UnboundedSender<Registration> {
        self.runtime_tx
            .get_or_init(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_loop(Arc::downgrade(self), rx, self.config()));
                tx
            })
            .clone()
    }
}

/// The tick loop. Ends when the driver is dropped.
async fn run_loop(
    driver: Weak<Driver>,
    mut rx: mpsc::UnboundedReceiver<Registration>,
    config: crate::driver::DriverConfig,
) {
    let mut active: HashMap<SwapId, Active> = HashMap::new();
    loop {
        let next = active.values().map(|a| a.due).min();
        tokio::select! {
            reg = rx.recv() => match reg {
                None => return,
                Some(r) => add(&mut active, r, config.poll_interval),
            },
            _ = sleep_until(next) => {}
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
            .filter(|(_, a)| a.due <= now)
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            continue;
        }
        let Some(driver) = driver.upgrade() else {
            return;
        };
        for (id, result) in driver.tick(&due).await {
            let Some(a) = active.get_mut(&id) else {
                continue;
            };
            let now = Instant::now();
            match result {
                Ok(report) => {
                    if let Some(outcome) = final_outcome(&report.state) {
                        info!(swap_id = %id, outcome = outcome.name(), "swap finished");
                        driver.forget(&id).await;
                        if let Some(a) = active.remove(&id) {
                            for w in a.waiters {
                                let _ = w.send(Ok(outcome.clone()));
                            }
                        }
                        continue;
                    }
                    a.backoff = config.poll_interval;
                    if report.changed && report.actions.is_empty() && a.quick < MAX_QUICK_STEPS {
                        a.quick += 1;
                        a.due = now;
                    } else {
                        a.quick = 0;
                        a.due = now + config.poll_interval;
                    }
                }
                Err(e) if e.is_transient() => {
                    warn!(swap_id = %id, error = %e, "step failed, retrying");
                    a.due = now + a.backoff;
                    a.backoff = (a.backoff * 2).min(config.max_backoff);
                }
                // A chain error that looks permanent must not abandon a swap with funds at
                // stake (its refund depends on us): keep trying, slowly, and say so loudly.
                Err(e @ DriverError::Chain { .. }) => {
                    error!(swap_id = %id, error = %e, "chain error; retrying at the slowest pace");
                    a.due = now + config.max_backoff;
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
        }
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
