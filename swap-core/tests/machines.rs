//! The state machines against every counterparty we can think of, over many chain paces and
//! inclusion delays, in the simulated two-chain model (a test double: see `sim/mod.rs`).
//!
//! For each run: an honest party runs its real state machine; the counterparty is honest or
//! deviates (never locks, locks wrong amount/recipient/hash/expiry, locks late, never claims,
//! claims at the last allowed block, claims too late, goes silent mid-swap). The honest party
//! must finish with either the other asset or its own back, with balances that agree.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::sim;

use sim::*;
use swap_core::*;

const POLL: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrong {
    Amount,
    Recipient,
    Hash,
    Expiry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deviant {
    Honest,
    NeverLocks,
    LocksWrong(Wrong),
    LocksLate,
    /// Locks, then never does anything again (no claim, no refund).
    SilentAfterLock,
    /// Initiator only: locks, never claims (refunds as usual).
    NeverClaims,
    /// Initiator only: claims exactly at its deadline with the slowest inclusion.
    ClaimsAtDeadline,
    /// Initiator only: claims after its deadline, `n` units late (racing the refund).
    ClaimsLate(u64),
}

const R_DEVIANTS: &[Deviant] = &[
    Deviant::Honest,
    Deviant::NeverLocks,
    Deviant::LocksWrong(Wrong::Amount),
    Deviant::LocksWrong(Wrong::Recipient),
    Deviant::LocksWrong(Wrong::Hash),
    Deviant::LocksWrong(Wrong::Expiry),
    Deviant::LocksLate,
    Deviant::SilentAfterLock,
];

const I_DEVIANTS: &[Deviant] = &[
    Deviant::Honest,
    Deviant::NeverLocks,
    Deviant::LocksWrong(Wrong::Amount),
    Deviant::LocksWrong(Wrong::Recipient),
    Deviant::LocksWrong(Wrong::Hash),
    Deviant::LocksWrong(Wrong::Expiry),
    Deviant::LocksLate,
    Deviant::SilentAfterLock,
    Deviant::NeverClaims,
    Deviant::ClaimsAtDeadline,
    Deviant::ClaimsLate(1),
    Deviant::ClaimsLate(6),
    Deviant::ClaimsLate(20),
];

fn paces() -> Vec<(Mining, Mining)> {
    let mut v = vec![
        (Mining::Fast, Mining::Slow),
        (Mining::Slow, Mining::Fast),
        (Mining::Nominal, Mining::Nominal),
        (Mining::Fast, Mining::Fast),
        (Mining::Slow, Mining::Slow),
    ];
    for seed in [3u64, 77, 1234] {
        v.push((Mining::Random(seed), Mining::Random(seed * 31 + 7)));
    }
    v
}

fn bump(e: Expiry, by: i64) -> Expiry {
    match e {
        Expiry::Height(h) => Expiry::Height(Height((h.0 as i64 + by) as u64)),
        Expiry::Time(t) => Expiry::Time(Timestamp((t.0 as i64 + by * 60) as u64)),
    }
}

fn wrong_lock(w: &World, leg: Leg, how: Wrong) -> ObservedLock {
    let mut lock = w.agreed_lock(leg);
    match how {
        Wrong::Amount => {
            lock.amount = match lock.amount {
                Amount::Sats(s) => Amount::Sats(Sats(s.0 - 1)),
                Amount::Wei(v) => Amount::Wei(Wei(v.0 + 1)),
                Amount::Token(t) => Amount::Token(TokenUnits {
                    units: t.units + 1,
                    decimals: t.decimals,
                }),
            }
        }
        Wrong::Recipient => lock.recipient = lock.sender,
        Wrong::Hash => lock.hashlock = Preimage::from_bytes([0x5a; 32]).hashlock(),
        // Shorter than agreed: less time for the victim.
        Wrong::Expiry => lock.expiry = bump(lock.expiry, -3),
    }
    lock
}

/// Where a late claim of the initiator is sent: `n` units past its deadline.
fn claim_point(w: &World, n: u64) -> Expiry {
    let deadline = w.terms.y.params.claim_deadline(w.terms.y.expiry);
    bump(deadline, n as i64)
}

fn trace() -> bool {
    std::env::var_os("SIM_TRACE").is_some()
}

struct Run {
    honest_outcome: Outcome,
    other_outcome: Option<Outcome>,
    steps: u64,
}

/// Runs one swap. `honest` is the role under test; the other role behaves as `dev`.
/// `delay` is the inclusion delay (blocks) for every transaction of the run.
fn run(dir: Direction, pace: (Mining, Mining), honest: Role, dev: Deviant, delay_max: bool) -> Run {
    let secret = Preimage::from_bytes([0x42; 32]);
    let mut w = World::new(dir, pace.0, pace.1, secret.clone());
    // The longest a claim or refund may take to land: `claim_blocks` on chain; on a channel
    // rail whose peer does not answer, the enforcement delay on top.
    let delay_x = if delay_max {
        w.terms.x.params.cutoff_blocks() as u64
    } else {
        1
    };
    let delay_y = if delay_max {
        w.terms.y.params.cutoff_blocks() as u64
    } else {
        1
    };
    w.x.inclusion_delay = delay_x;
    w.y.inclusion_delay = delay_y;
    let bx0 = w.x.balances.get(&w.parties.i_x).copied().unwrap_or(0);
    let by0 = w.y.balances.get(&w.parties.r_y).copied().unwrap_or(0);
    let horizon = w.t + w.horizon();

    let mut i_state = initiator::State::Negotiated;
    let mut r_state = responder::State::Negotiated;
    let mut deviant_locked = false;
    let mut deviant_claimed = false;
    let mut steps = 0u64;
    let terms = w.terms.clone();

    loop {
        steps += 1;
        assert!(
            w.t <= horizon,
            "{dir:?} {pace:?} honest {honest:?} vs {dev:?} (delay_max {delay_max}): no end by the horizon; \
             initiator {i_state:?}, responder {r_state:?}"
        );
        // --- initiator ---
        let snap = w.snapshot();
        let i_honest = honest == Role::Initiator || dev == Deviant::Honest;
        if i_honest {
            let step = initiator::next(&terms, &secret, &i_state, &snap);
            if trace() && step.state != i_state {
                eprintln!(
                    "t+{} x {:?} y {:?}: I {:?} -> {:?} {:?}",
                    w.t - T0,
                    snap.x.tip,
                    snap.y.tip,
                    i_state,
                    step.state,
                    step.actions
                );
            }
            i_state = step.state;
            for a in &step.actions {
                if w.perform(a).is_ok() {
                    if let Some(sent) = initiator::after_sent(&i_state, a) {
                        i_state = sent;
                    }
                }
            }
        } else {
            deviant_initiator(
                &mut w,
                &terms,
                &secret,
                dev,
                &mut i_state,
                &mut deviant_locked,
                &mut deviant_claimed,
            );
        }
        // --- responder ---
        let snap = w.snapshot();
        let r_honest = honest == Role::Responder || dev == Deviant::Honest;
        if r_honest {
            let step = responder::next(&terms, &r_state, &snap);
            if trace() && step.state != r_state {
                eprintln!(
                    "t+{} x {:?} y {:?}: R {:?} -> {:?} {:?}",
                    w.t - T0,
                    snap.x.tip,
                    snap.y.tip,
                    r_state,
                    step.state,
                    step.actions
                );
            }
            r_state = step.state;
            for a in &step.actions {
                let _ = w.perform(a);
            }
        } else {
            deviant_responder(&mut w, &terms, dev, &mut r_state, &mut deviant_locked);
        }

        let done = match honest {
            Role::Initiator => i_state.is_final() && (!r_honest || r_state.is_final()),
            Role::Responder => r_state.is_final() && (!i_honest || i_state.is_final()),
        };
        if done {
            break;
        }
        w.advance(POLL);
    }

    let outcome_of_i = match &i_state {
        initiator::State::Done { outcome } => Some(outcome.clone()),
        _ => None,
    };
    let outcome_of_r = match &r_state {
        responder::State::Done { outcome } => Some(outcome.clone()),
        _ => None,
    };
    let (honest_outcome, other_outcome) = match honest {
        Role::Initiator => (outcome_of_i.unwrap(), outcome_of_r),
        Role::Responder => (outcome_of_r.unwrap(), outcome_of_i),
    };

    // Balances must agree with the outcome: the other asset, or our own back.
    let ax = amount_value(&terms.x.amount);
    let ay = amount_value(&terms.y.amount);
    let ctx = format!(
        "{dir:?} {pace:?} honest {honest:?} vs {dev:?} delay_max {delay_max}: {honest_outcome:?}"
    );
    match honest {
        Role::Initiator => {
            let bx = w.x.balances.get(&w.parties.i_x).copied().unwrap_or(0);
            let by = w.y.balances.get(&w.parties.i_y).copied().unwrap_or(0);
            match honest_outcome {
                Outcome::Swapped => assert!(bx == bx0 - ax && by == ay, "{ctx}: {bx} {by}"),
                Outcome::Refunded | Outcome::Aborted { .. } => {
                    assert!(bx == bx0 && by == 0, "{ctx}: {bx} {by}")
                }
                Outcome::Lost => panic!("{ctx}: the honest initiator lost its funds"),
            }
        }
        Role::Responder => {
            let bx = w.x.balances.get(&w.parties.r_x).copied().unwrap_or(0);
            let by = w.y.balances.get(&w.parties.r_y).copied().unwrap_or(0);
            match honest_outcome {
                Outcome::Swapped => assert!(bx == ax && by == by0 - ay, "{ctx}: {bx} {by}"),
                Outcome::Refunded | Outcome::Aborted { .. } => {
                    assert!(bx == 0 && by == by0, "{ctx}: {bx} {by}")
                }
                Outcome::Lost => panic!("{ctx}: the honest responder lost its funds"),
            }
        }
    }
    Run {
        honest_outcome,
        other_outcome,
        steps,
    }
}

fn try_refund(w: &mut World, leg: Leg) {
    let h = w.terms.hashlock;
    let _ = w.chain_mut(leg).submit_refund(&h);
}

#[allow(clippy::too_many_arguments)]
fn deviant_initiator(
    w: &mut World,
    terms: &SwapTerms,
    secret: &Preimage,
    dev: Deviant,
    state: &mut initiator::State,
    locked: &mut bool,
    claimed: &mut bool,
) {
    let snap = w.snapshot();
    match dev {
        Deviant::Honest => unreachable!(),
        Deviant::NeverLocks => {}
        Deviant::LocksWrong(how) => {
            if !*locked {
                let lock = wrong_lock(w, Leg::X, how);
                w.x.submit_lock(lock).unwrap();
                *locked = true;
            }
            try_refund(w, Leg::X);
        }
        Deviant::LocksLate => {
            // Locks only once the responder may no longer lock (rule 3).
            if !*locked && terms.check_responder_may_lock(snap.tips()).is_err() {
                let lock = w.agreed_lock(Leg::X);
                w.x.submit_lock(lock).unwrap();
                *locked = true;
            }
            if *locked {
                try_refund(w, Leg::X);
            }
        }
        Deviant::SilentAfterLock => {
            if !matches!(
                state,
                initiator::State::LockConfirmed | initiator::State::CounterLockSeen { .. }
            ) {
                let step = initiator::next(terms, secret, state, &snap);
                *state = step.state;
                for a in step
                    .actions
                    .iter()
                    .filter(|a| !matches!(a, Action::Claim { .. }))
                {
                    let _ = w.perform(a);
                }
            }
        }
        Deviant::NeverClaims => {
            let step = initiator::next(terms, secret, state, &snap);
            *state = step.state;
            for a in step
                .actions
                .iter()
                .filter(|a| !matches!(a, Action::Claim { .. }))
            {
                let _ = w.perform(a);
            }
            // Without a claim the machine waits in CounterLockValid/Claiming: refund by hand.
            try_refund(w, Leg::X);
        }
        Deviant::ClaimsAtDeadline | Deviant::ClaimsLate(_) => {
            // Runs the honest machine for everything but the claim, which it sends itself at
            // the chosen point, with the slowest inclusion the budget allows.
            let step = initiator::next(terms, secret, state, &snap);
            *state = step.state;
            for a in step
                .actions
                .iter()
                .filter(|a| !matches!(a, Action::Claim { .. }))
            {
                let _ = w.perform(a);
            }
            let point = match dev {
                Deviant::ClaimsLate(n) => claim_point(w, n),
                _ => claim_point(w, 0),
            };
            let y_params = terms.y.params;
            if !*claimed
                && matches!(snap.y.htlc, HtlcStatus::Funded { .. })
                && y_params.reached(point, snap.y.tip)
            {
                let old = w.y.inclusion_delay;
                w.y.inclusion_delay = y_params.claim_blocks as u64;
                if w.y.submit_claim(&terms.hashlock, secret).is_ok() {
                    *claimed = true;
                }
                w.y.inclusion_delay = old;
            }
            try_refund(w, Leg::X);
        }
    }
}

fn deviant_responder(
    w: &mut World,
    terms: &SwapTerms,
    dev: Deviant,
    state: &mut responder::State,
    locked: &mut bool,
) {
    let snap = w.snapshot();
    let x_confirmed = matches!(snap.x.htlc, HtlcStatus::Funded { finality, .. }
        if finality.reaches(terms.x.params.required_finality()));
    match dev {
        Deviant::Honest => unreachable!(),
        Deviant::NeverLocks => {}
        Deviant::LocksWrong(how) => {
            if !*locked && x_confirmed {
                let lock = wrong_lock(w, Leg::Y, how);
                w.y.submit_lock(lock).unwrap();
                *locked = true;
            }
            if *locked {
                try_refund(w, Leg::Y);
            }
        }
        Deviant::LocksLate => {
            // Locks when the initiator's claim window has (almost) closed.
            let deadline = terms.y.params.claim_deadline(terms.y.expiry);
            if !*locked && terms.y.params.reached(bump(deadline, -1), snap.y.tip) {
                let lock = w.agreed_lock(Leg::Y);
                w.y.submit_lock(lock).unwrap();
                *locked = true;
            }
            if *locked {
                try_refund(w, Leg::Y);
            }
        }
        Deviant::SilentAfterLock => {
            if !matches!(state, responder::State::Locked { .. }) {
                let step = responder::next(terms, state, &snap);
                *state = step.state;
                for a in &step.actions {
                    let _ = w.perform(a);
                }
            }
        }
        _ => unreachable!("initiator-only deviation"),
    }
}

fn expected_for_honest_initiator(dir: Direction, dev: Deviant) -> &'static [&'static str] {
    match dev {
        Deviant::Honest | Deviant::SilentAfterLock => &["swapped"],
        // A channel lock is irrevocable the moment it is made: one made just before the
        // initiator's claim cutoff still leaves it time to claim (its claim budget covers the
        // enforcement delay), so a late lock may end in a swap there.
        Deviant::LocksLate if dir.y.kind.is_channel() => &["swapped", "refunded"],
        Deviant::NeverLocks | Deviant::LocksWrong(_) | Deviant::LocksLate => &["refunded"],
        _ => unreachable!(),
    }
}

fn expected_for_honest_responder(dev: Deviant) -> &'static [&'static str] {
    match dev {
        Deviant::Honest | Deviant::ClaimsAtDeadline => &["swapped"],
        Deviant::NeverLocks | Deviant::LocksWrong(_) | Deviant::LocksLate => &["aborted"],
        Deviant::SilentAfterLock | Deviant::NeverClaims => &["refunded"],
        // A late claim races the refund: either end is fine, losing is not.
        Deviant::ClaimsLate(_) => &["swapped", "refunded"],
    }
}

fn label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Swapped => "swapped",
        Outcome::Refunded => "refunded",
        Outcome::Aborted { .. } => "aborted",
        Outcome::Lost => "lost",
    }
}

#[test]
fn honest_parties_never_lose_against_any_counterparty() {
    let mut runs = 0u64;
    let mut steps = 0u64;
    let mut tally = std::collections::BTreeMap::<String, u64>::new();
    let mut by_class = std::collections::BTreeMap::<&str, u64>::new();
    for dir in ALL_DIRECTIONS {
        let before = runs;
        for pace in paces() {
            for delay_max in [false, true] {
                for &dev in R_DEVIANTS {
                    let r = run(dir, pace, Role::Initiator, dev, delay_max);
                    let got = label(&r.honest_outcome);
                    assert!(
                        expected_for_honest_initiator(dir, dev).contains(&got),
                        "{dir:?} {pace:?} delay_max {delay_max}: honest initiator vs {dev:?} ended {:?}",
                        r.honest_outcome
                    );
                    if dev == Deviant::Honest {
                        assert_eq!(r.other_outcome, Some(Outcome::Swapped));
                    }
                    *tally
                        .entry(format!("initiator vs {dev:?}: {got}"))
                        .or_default() += 1;
                    runs += 1;
                    steps += r.steps;
                }
                for &dev in I_DEVIANTS {
                    let r = run(dir, pace, Role::Responder, dev, delay_max);
                    let got = label(&r.honest_outcome);
                    assert!(
                        expected_for_honest_responder(dev).contains(&got),
                        "{dir:?} {pace:?} delay_max {delay_max}: honest responder vs {dev:?} ended {:?}",
                        r.honest_outcome
                    );
                    *tally
                        .entry(format!("responder vs {dev:?}: {got}"))
                        .or_default() += 1;
                    runs += 1;
                    steps += r.steps;
                }
            }
        }
        *by_class.entry(dir.class()).or_default() += runs - before;
    }
    println!("explored {runs} interleavings ({steps} machine steps)");
    for (class, n) in &by_class {
        println!("  {n:5}  {class} legs");
    }
    for class in [
        "on-chain x on-chain",
        "on-chain x channel",
        "channel x channel",
    ] {
        assert!(
            by_class.get(class).copied().unwrap_or(0) > 0,
            "no {class} runs"
        );
    }
    for (k, v) in &tally {
        println!("  {v:4}  {k}");
    }
    assert_eq!(
        runs,
        (ALL_DIRECTIONS.len() * paces().len() * 2 * (R_DEVIANTS.len() + I_DEVIANTS.len())) as u64
    );
}

#[test]
fn initiator_never_reveals_the_secret_after_its_deadline() {
    // Whatever the counterparty's lock looks like, past the deadline no Claim is ever emitted
    // by a machine that has not already claimed.
    let secret = Preimage::from_bytes([1; 32]);
    for dir in ALL_DIRECTIONS {
        let w = World::new(dir, Mining::Nominal, Mining::Nominal, secret.clone());
        let terms = w.terms.clone();
        let deadline = terms.y.params.claim_deadline(terms.y.expiry);
        let lock_x = w.agreed_lock(Leg::X);
        let lock_y = w.agreed_lock(Leg::Y);
        for past in 0..50i64 {
            let tip_y = tip_at(bump(deadline, past));
            let snap = Snapshot {
                x: LegView {
                    tip: w.x.tip(),
                    htlc: HtlcStatus::Funded {
                        lock: lock_x.clone(),
                        finality: Finality::confirmations(100),
                    },
                },
                y: LegView {
                    tip: tip_y,
                    htlc: HtlcStatus::Funded {
                        lock: lock_y.clone(),
                        finality: Finality::confirmations(100),
                    },
                },
            };
            for state in [
                initiator::State::LockConfirmed,
                initiator::State::CounterLockSeen {
                    txref: TxRef("t".into()),
                },
                initiator::State::CounterLockValid,
                initiator::State::Locked {
                    txref: TxRef("t".into()),
                },
            ] {
                let step = initiator::next(&terms, &secret, &state, &snap);
                assert!(
                    !step
                        .actions
                        .iter()
                        .any(|a| matches!(a, Action::Claim { .. })),
                    "{dir:?}: claim {past} units past the deadline from {state:?}"
                );
                assert!(matches!(step.state, initiator::State::AwaitRefund { .. }));
            }
        }
    }
}

#[test]
fn spends_stuck_in_the_mempool_are_sent_again_for_fee_bumps() {
    let secret = Preimage::from_bytes([2; 32]);
    let w = World::new(
        Direction::ETH_TO_BTC,
        Mining::Nominal,
        Mining::Nominal,
        secret.clone(),
    );
    let t = w.terms.clone();
    let funded = |leg| HtlcStatus::Funded {
        lock: w.agreed_lock(leg),
        finality: Finality::confirmations(10),
    };
    let claimed = |confirmations: u32| HtlcStatus::Claimed {
        preimage: secret.clone(),
        txref: TxRef("c".into()),
        finality: Finality::confirmations(confirmations),
    };
    let refunded = |confirmations: u32| HtlcStatus::Refunded {
        txref: TxRef("r".into()),
        finality: Finality::confirmations(confirmations),
    };
    let snap = |x: HtlcStatus, y: HtlcStatus| Snapshot {
        x: LegView {
            tip: w.x.tip(),
            htlc: x,
        },
        y: LegView {
            tip: w.y.tip(),
            htlc: y,
        },
    };
    // Initiator: its claim on Y is pending -> claim again; once mined -> wait quietly.
    let s = initiator::next(
        &t,
        &secret,
        &initiator::State::Claimed,
        &snap(funded(Leg::X), claimed(0)),
    );
    assert!(matches!(
        s.actions.as_slice(),
        [Action::Claim { leg: Leg::Y, .. }]
    ));
    let s = initiator::next(
        &t,
        &secret,
        &initiator::State::Claimed,
        &snap(funded(Leg::X), claimed(1)),
    );
    assert!(t.y.params.lock_confirmations > 1 && s.actions.is_empty());
    // Responder: its claim on X is pending -> claim again.
    let st = responder::State::Claiming {
        preimage: secret.clone(),
    };
    let s = responder::next(&t, &st, &snap(claimed(0), claimed(5)));
    assert!(matches!(
        s.actions.as_slice(),
        [Action::Claim { leg: Leg::X, .. }]
    ));
    // Refunds likewise.
    let s = responder::next(
        &t,
        &responder::State::Refunding,
        &snap(funded(Leg::X), refunded(0)),
    );
    assert!(matches!(
        s.actions.as_slice(),
        [Action::Refund { leg: Leg::Y }]
    ));
    let st = initiator::State::Refunding {
        reason: GiveUpReason::CounterLockMissing,
    };
    let s = initiator::next(&t, &secret, &st, &snap(refunded(0), HtlcStatus::Absent));
    assert!(matches!(
        s.actions.as_slice(),
        [Action::Refund { leg: Leg::X }]
    ));
}

#[test]
fn a_stranger_paying_our_script_never_makes_the_responder_lock() {
    let secret = Preimage::from_bytes([3; 32]);
    for dir in ALL_DIRECTIONS {
        let w = World::new(dir, Mining::Nominal, Mining::Nominal, secret.clone());
        let t = w.terms.clone();
        let mut dust = w.agreed_lock(Leg::Y);
        dust.amount = match dust.amount {
            Amount::Sats(_) => Amount::Sats(Sats(330)),
            Amount::Wei(_) => Amount::Wei(Wei(1)),
            a => a,
        };
        let snap = |y: HtlcStatus| Snapshot {
            x: LegView {
                tip: w.x.tip(),
                htlc: HtlcStatus::Absent,
            },
            y: LegView {
                tip: w.y.tip(),
                htlc: y,
            },
        };
        let paid = HtlcStatus::Funded {
            lock: dust.clone(),
            finality: Finality::confirmations(0),
        };
        let exact = HtlcStatus::Funded {
            lock: w.agreed_lock(Leg::Y),
            finality: Finality::confirmations(3),
        };
        // Someone pays (dust or even the exact amount) to our Y script before we locked, then
        // double-spends it away: we keep waiting for the initiator and never lock.
        let mut state = responder::State::AwaitCounterLock;
        for y in [
            paid.clone(),
            exact.clone(),
            HtlcStatus::Absent,
            paid,
            HtlcStatus::Absent,
        ] {
            let step = responder::next(&t, &state, &snap(y));
            assert!(step.actions.is_empty(), "{dir:?}: {step:?}");
            assert_eq!(step.state, responder::State::AwaitCounterLock, "{dir:?}");
            state = step.state;
        }
        // Even after we did send a lock that then vanished, no re-lock without the
        // initiator's confirmed, exact lock.
        for state in [
            responder::State::Locking,
            responder::State::Locked {
                txref: TxRef("l".into()),
            },
        ] {
            let step = responder::next(&t, &state, &snap(HtlcStatus::Absent));
            assert!(step.actions.is_empty(), "{dir:?}: {step:?}");
        }
        // A stranger's dust at our script after we locked does not count as our lock.
        let step = responder::next(
            &t,
            &responder::State::Locking,
            &snap(HtlcStatus::Funded {
                lock: dust.clone(),
                finality: Finality::confirmations(2),
            }),
        );
        assert_eq!(step.state, responder::State::Locking, "{dir:?}");
    }
}

#[test]
fn a_claim_decided_but_never_sent_is_not_sent_after_the_deadline() {
    // The initiator persisted Claiming, crashed before sending, and restarts past its deadline:
    // it must keep its secret and go for its refund. Once a claim did reach the node
    // (ClaimSent), the secret is public and it keeps claiming whatever the time.
    let secret = Preimage::from_bytes([4; 32]);
    for dir in ALL_DIRECTIONS {
        let w = World::new(dir, Mining::Nominal, Mining::Nominal, secret.clone());
        let t = w.terms.clone();
        let deadline = t.y.params.claim_deadline(t.y.expiry);
        let tip_y = tip_at(bump(deadline, 1));
        let snap = Snapshot {
            x: LegView {
                tip: w.x.tip(),
                htlc: HtlcStatus::Funded {
                    lock: w.agreed_lock(Leg::X),
                    finality: Finality::confirmations(50),
                },
            },
            y: LegView {
                tip: tip_y,
                htlc: HtlcStatus::Funded {
                    lock: w.agreed_lock(Leg::Y),
                    finality: Finality::confirmations(50),
                },
            },
        };
        let step = initiator::next(&t, &secret, &initiator::State::Claiming, &snap);
        assert!(step.actions.is_empty(), "{dir:?}: {step:?}");
        assert!(
            matches!(step.state, initiator::State::AwaitRefund { .. }),
            "{dir:?}"
        );
        let step = initiator::next(&t, &secret, &initiator::State::ClaimSent, &snap);
        assert!(
            matches!(step.actions.as_slice(), [Action::Claim { leg: Leg::Y, .. }]),
            "{dir:?}"
        );
        // Sending it again is an action, not a way back to "decided but not sent".
        assert_eq!(step.state, initiator::State::ClaimSent, "{dir:?}");
        // And a claim sent in time moves Claiming to ClaimSent.
        let claim = Action::Claim {
            leg: Leg::Y,
            preimage: secret.clone(),
        };
        assert_eq!(
            initiator::after_sent(&initiator::State::Claiming, &claim),
            Some(initiator::State::ClaimSent)
        );
    }
}

/// Issue 9, item 2: on a snapshot that does not change (a claim stuck at 0 confirmations, or a
/// status view that lags our own broadcast), the initiator settles after a few history rows
/// instead of going claiming <-> claim_sent for ever. Counts rows the way the driver writes
/// them: one per changed state, one per `after_sent` state.
#[test]
fn the_claim_phase_settles_on_an_unchanging_snapshot() {
    let secret = Preimage::from_bytes([6; 32]);
    for dir in ALL_DIRECTIONS {
        let w = World::new(dir, Mining::Nominal, Mining::Nominal, secret.clone());
        let t = w.terms.clone();
        let lock_y = w.agreed_lock(Leg::Y);
        let ys = [
            HtlcStatus::Funded {
                lock: lock_y,
                finality: Finality::confirmations(50),
            },
            HtlcStatus::Claimed {
                preimage: secret.clone(),
                txref: TxRef("claim".into()),
                finality: Finality::confirmations(0),
            },
            HtlcStatus::Absent,
            HtlcStatus::Refunded {
                txref: TxRef("refund".into()),
                finality: Finality::confirmations(0),
            },
        ];
        let starts = [
            initiator::State::CounterLockValid,
            initiator::State::Claiming,
            initiator::State::ClaimSent,
            initiator::State::Claimed,
        ];
        for y in &ys {
            for start in &starts {
                let snap = Snapshot {
                    x: LegView {
                        tip: w.x.tip(),
                        htlc: HtlcStatus::Funded {
                            lock: w.agreed_lock(Leg::X),
                            finality: Finality::confirmations(50),
                        },
                    },
                    y: LegView {
                        tip: w.y.tip(),
                        htlc: y.clone(),
                    },
                };
                let mut state = start.clone();
                let mut rows = 0;
                let mut settled = false;
                for _ in 0..10 {
                    let step = initiator::next(&t, &secret, &state, &snap);
                    let mut wrote = 0;
                    if step.state != state {
                        wrote += 1;
                    }
                    state = step.state;
                    for a in &step.actions {
                        if let Some(s) = initiator::after_sent(&state, a) {
                            wrote += 1;
                            state = s;
                        }
                    }
                    rows += wrote;
                    if wrote == 0 {
                        settled = true;
                        break;
                    }
                }
                assert!(settled, "{dir:?} {start:?} on {y:?}: never settles");
                assert!(rows <= 3, "{dir:?} {start:?} on {y:?}: {rows} rows");
            }
        }
    }
}

fn tip_at(e: Expiry) -> ChainTip {
    match e {
        Expiry::Height(h) => ChainTip {
            height: h,
            time: Timestamp(0),
        },
        Expiry::Time(t) => ChainTip {
            height: Height(1),
            time: t,
        },
    }
}

/// Rails issue, item 3: a lock that was sent but never got on chain (evicted, never
/// broadcast) could be mined after its swap gave up. Both machines ask their rail to cancel it
/// (spend what it spends elsewhere) once they will never lock again, and end only once the
/// cancel is final (the rail's `Ok`, `after_sent`).
#[test]
fn a_lock_that_never_got_on_chain_is_cancelled_before_the_swap_ends() {
    let secret = Preimage::from_bytes([6; 32]);
    for dir in ALL_DIRECTIONS {
        let w = World::new(dir, Mining::Nominal, Mining::Nominal, secret.clone());
        let t = w.terms.clone();
        let absent = |tip| LegView {
            tip,
            htlc: HtlcStatus::Absent,
        };
        // Initiator: gave up with nothing of ours on X.
        let too_late = tip_at(bump(t.x.expiry, -1));
        let settled = tip_at(t.x.params.claims_final_after(t.x.expiry));
        let snap = |x_tip| Snapshot {
            x: absent(x_tip),
            y: absent(w.y.tip()),
        };
        let step = initiator::next(&t, &secret, &initiator::State::Locking, &snap(too_late));
        assert!(
            matches!(step.state, initiator::State::AwaitRefund { .. }),
            "{dir:?}: {step:?}"
        );
        let waiting = step.state.clone();
        let step = initiator::next(&t, &secret, &waiting, &snap(too_late));
        assert_eq!(step.state, waiting, "{dir:?}");
        assert_eq!(
            step.actions,
            vec![Action::CancelLock { leg: Leg::X }],
            "{dir:?}"
        );
        assert_eq!(
            initiator::after_sent(&waiting, &step.actions[0]),
            None,
            "{dir:?}: not over before nothing can land on X any more"
        );
        let step = initiator::next(&t, &secret, &waiting, &snap(settled));
        assert!(
            matches!(step.state, initiator::State::Cancelling { .. }),
            "{dir:?}: {step:?}"
        );
        assert_eq!(
            step.actions,
            vec![Action::CancelLock { leg: Leg::X }],
            "{dir:?}"
        );
        // Not done until the rail says the cancel is final.
        assert!(!step.state.is_final());
        let done = initiator::after_sent(&step.state, &step.actions[0]).unwrap();
        assert!(
            matches!(
                done,
                initiator::State::Done {
                    outcome: Outcome::Aborted { .. }
                }
            ),
            "{dir:?}: {done:?}"
        );
        // The lock shows up after all: refunded, never cancelled.
        let funded = Snapshot {
            x: LegView {
                tip: settled,
                htlc: HtlcStatus::Funded {
                    lock: w.agreed_lock(Leg::X),
                    finality: Finality::confirmations(3),
                },
            },
            y: absent(w.y.tip()),
        };
        let step = initiator::next(&t, &secret, &step.state, &funded);
        let expected = match t.x.params.refunds() {
            RefundMode::Explicit => vec![Action::Refund { leg: Leg::X }],
            RefundMode::Automatic => vec![],
        };
        assert_eq!(step.actions, expected, "{dir:?}");

        // Responder: locked (or tried to), its lock is not on Y, too late to lock again.
        let r_snap = |y_tip| Snapshot {
            x: LegView {
                tip: w.x.tip(),
                htlc: HtlcStatus::Funded {
                    lock: w.agreed_lock(Leg::X),
                    finality: Finality::confirmations(50),
                },
            },
            y: absent(y_tip),
        };
        let too_late = tip_at(bump(t.y.expiry, -1));
        let settled = tip_at(t.y.params.claims_final_after(t.y.expiry));
        let step = responder::next(&t, &responder::State::Locking, &r_snap(too_late));
        assert_eq!(step.state, responder::State::Locking, "{dir:?}");
        assert_eq!(
            step.actions,
            vec![Action::CancelLock { leg: Leg::Y }],
            "{dir:?}"
        );
        assert_eq!(responder::after_sent(&step.state, &step.actions[0]), None);
        let step = responder::next(&t, &responder::State::Locking, &r_snap(settled));
        assert_eq!(step.state, responder::State::Cancelling, "{dir:?}");
        assert_eq!(
            step.actions,
            vec![Action::CancelLock { leg: Leg::Y }],
            "{dir:?}"
        );
        assert!(matches!(
            responder::after_sent(&step.state, &step.actions[0]),
            Some(responder::State::Done {
                outcome: Outcome::Aborted { .. }
            })
        ));
        // Still allowed to lock: no cancel (the lock is sent again instead).
        let step = responder::next(&t, &responder::State::Locking, &r_snap(w.y.tip()));
        assert!(
            !step
                .actions
                .iter()
                .any(|a| matches!(a, Action::CancelLock { .. })),
            "{dir:?}: {step:?}"
        );
    }
}
