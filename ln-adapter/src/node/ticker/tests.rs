//! The ticker's rules, against looks and clocks made up for each case.

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn id(n: u8) -> ChannelId {
    ChannelId::from_bytes([n; 32])
}

/// The tests' timeline starts an hour from now, so that "long ago" is now.
fn start() -> Instant {
    Instant::now() + 3_600 * SEC
}

fn long_ago() -> Instant {
    Instant::now()
}

/// What was heard from a peer: `done` answers handled (none in progress), last long ago.
fn silent(done: u64) -> Heard {
    Heard {
        begun: done,
        done,
        last: long_ago(),
    }
}

/// A usable channel with its peer connected, `n` naming it.
fn conn(n: u8, quiet: bool, heard: Heard) -> Connected {
    Connected {
        id: id(n),
        quiet,
        usable: true,
        heard,
    }
}

fn look(settled: bool, connected: Vec<Connected>) -> Channels {
    Channels {
        settled,
        connected,
        fee_due: Vec::new(),
    }
}

/// Settled, no peer connected.
fn calm(_: Option<&[ChannelId]>) -> Channels {
    look(true, Vec::new())
}

/// Looks at `now` as the node does: when a tick is due, takes it and tells the ticker
/// of the look `after` it.
fn at(
    t: &mut Ticker,
    now: Instant,
    remembered: usize,
    before: Channels,
    after: Channels,
) -> Option<Tick> {
    let tick = t.due(now, || remembered, |_| before);
    if tick.is_some() {
        t.ticked(|_| after);
    }
    tick
}

/// A ticker whose last tick was at `t0` (started a gap before).
fn ticker(every: Duration, above: Option<usize>, gap: Duration, t0: Instant) -> Ticker {
    Ticker::new(every, above, gap, t0 - gap.max(MIN_FORGET_TICK_GAP))
}

#[test]
fn no_quick_tick_within_two_gaps_of_the_start_when_ldk_ticked_too() {
    let start = start();
    let mut t = Ticker::new(60 * SEC, Some(0), SEC, start);
    assert_eq!(t.due(start + SEC, || 1, calm), None);
    assert_eq!(t.due(start + 2 * SEC - SEC / 10, || 1, calm), None);
    assert_eq!(t.due(start + 2 * SEC, || 1, calm), Some(Tick::Forget));
}

#[test]
fn the_next_look_is_never_after_the_regular_tick_is_due() {
    let t0 = start();
    let mut t = ticker(2 * SEC, Some(10), 4 * SEC, t0);
    assert_eq!(t.next_look(t0), SEC);
    assert_eq!(t.next_look(t0 + SEC + SEC / 2), SEC / 2);
    let busy = |_: Option<&[ChannelId]>| look(true, vec![conn(1, false, silent(9))]);
    assert_eq!(
        t.due(t0 + 2 * SEC, || unreachable!(), busy),
        Some(Tick::Regular)
    );
}

#[test]
fn the_regular_tick_comes_each_period_whatever_ldk_remembers() {
    let t0 = start();
    let mut t = ticker(60 * SEC, None, SEC, t0);
    let none = || -> usize { panic!("payments read without a cap") };
    let no_ch = |_: Option<&[ChannelId]>| -> Channels { panic!("channels read without a cap") };
    assert_eq!(t.due(t0 + 59 * SEC, none, no_ch), None);
    assert_eq!(t.due(t0 + 60 * SEC, none, no_ch), Some(Tick::Regular));
    // Counted from the tick taken.
    assert_eq!(t.due(t0 + 119 * SEC, none, no_ch), None);
    assert_eq!(t.due(t0 + 121 * SEC, none, no_ch), Some(Tick::Regular));
    assert_eq!(t.next_look(t0), SEC / 4);
}

#[test]
fn many_remembered_payments_tick_quickly_but_never_two_within_the_gap() {
    let t0 = start();
    let mut t = ticker(60 * SEC, Some(1_000), SEC, t0);
    // At the cap: nothing, and the channels are not even read.
    assert_eq!(
        t.due(t0 + 2 * SEC, || 1_000, |_| panic!("channels read")),
        None
    );
    let idle = || look(true, vec![conn(1, true, silent(9))]);
    assert_eq!(
        at(&mut t, t0 + 3 * SEC, 1_001, idle(), idle()),
        Some(Tick::Forget)
    );
    // Within the gap LDK's lists are not read.
    let gap = t0 + 3 * SEC + SEC / 2;
    assert_eq!(
        t.due(gap, || panic!("payments read"), |_| panic!("channels read")),
        None
    );
    assert_eq!(
        at(&mut t, t0 + 4 * SEC, 5_000, idle(), idle()),
        Some(Tick::Forget)
    );
    // The regular period counts from the last tick of either kind.
    assert_eq!(t.due(t0 + 63 * SEC, || 0, calm), None);
    assert_eq!(
        at(&mut t, t0 + 65 * SEC, 0, idle(), idle()),
        Some(Tick::Regular)
    );
}

#[test]
fn after_a_tick_that_may_have_marked_a_channel_the_next_waits_for_its_peers_answer() {
    let t0 = start();
    let mut t = ticker(60 * SEC, Some(10), SEC, t0);
    // A busy channel: waiting on its peer around the tick.
    let busy = |done| look(true, vec![conn(1, false, silent(done))]);
    let quiet = |done| look(true, vec![conn(1, true, silent(done))]);
    assert_eq!(
        at(&mut t, t0 + SEC, 11, busy(100), busy(100)),
        Some(Tick::Forget)
    );
    // A gap later, quiet now, but no answer since the look after the tick: the mark
    // may still be on it, and a tick would disconnect the peer.
    assert_eq!(t.due(t0 + 2 * SEC, || 11, |_| quiet(100)), None);
    // Looked at again soon, the payments not read again.
    assert_eq!(t.next_look(t0), LOOK_AGAIN_EVERY);
    let soon = t0 + 2 * SEC + LOOK_AGAIN_EVERY;
    assert_eq!(t.due(soon, || panic!("payments read"), |_| busy(100)), None);
    // Its peer answered: a tick. An answer begun before the look after it and handled
    // after that look does not count: it may have been handled before the tick marked
    // the channel.
    let handled_late = look(
        true,
        vec![conn(
            1,
            false,
            Heard {
                begun: 101,
                done: 100,
                last: long_ago(),
            },
        )],
    );
    let later = soon + LOOK_AGAIN_EVERY;
    assert_eq!(
        at(&mut t, later, 11, busy(101), handled_late),
        Some(Tick::Forget)
    );
    assert_eq!(t.due(later + SEC, || 11, |_| busy(101)), None);
    // One begun after it, handled: cleared, busy or not.
    let answered = later + SEC + LOOK_AGAIN_EVERY;
    assert_eq!(
        at(&mut t, answered, 11, busy(102), busy(102)),
        Some(Tick::Forget)
    );
    assert_eq!(t.next_look(t0), SEC / 4);
    // Under load, a tick at each gap.
    assert_eq!(
        at(&mut t, answered + SEC, 11, busy(130), busy(130)),
        Some(Tick::Forget)
    );
    assert_eq!(t.due(answered + 2 * SEC, || 11, |_| busy(130)), None);
    assert_eq!(
        at(
            &mut t,
            answered + 2 * SEC + LOOK_AGAIN_EVERY,
            11,
            busy(131),
            quiet(131)
        ),
        Some(Tick::Forget)
    );
}

#[test]
fn a_channel_counts_as_unmarked_only_quiet_on_both_looks_and_its_peer_silent_a_while() {
    let t0 = start();
    let mut t = ticker(60 * SEC, Some(10), SEC, t0);
    let quiet = |heard| look(true, vec![conn(1, true, heard), conn(2, true, silent(5))]);
    assert_eq!(
        at(&mut t, t0 + SEC, 11, quiet(silent(50)), quiet(silent(50))),
        Some(Tick::Forget)
    );
    // Idle since: the next tick needs no answer.
    assert_eq!(
        at(
            &mut t,
            t0 + 2 * SEC,
            11,
            quiet(silent(50)),
            quiet(silent(50))
        ),
        Some(Tick::Forget)
    );
    // Its peer sent something lately (an update whose commitment is still to come is
    // a wait the list does not show): maybe marked, though quiet on both looks.
    let lately = |at, n| Heard {
        begun: n,
        done: n,
        last: at,
    };
    let tick = t0 + 3 * SEC;
    assert_eq!(
        at(
            &mut t,
            tick,
            11,
            quiet(lately(tick - SILENT_FOR / 2, 50)),
            quiet(lately(tick - SILENT_FOR / 2, 50))
        ),
        Some(Tick::Forget)
    );
    assert_eq!(t.due(t0 + 4 * SEC, || 11, |_| quiet(silent(50))), None);
    assert_eq!(
        at(
            &mut t,
            t0 + 4 * SEC + LOOK_AGAIN_EVERY,
            11,
            quiet(silent(51)),
            quiet(silent(51))
        ),
        Some(Tick::Forget)
    );
    // Heard between the two looks: maybe marked too.
    let tick = t0 + 6 * SEC;
    assert_eq!(
        at(&mut t, tick, 11, quiet(silent(51)), quiet(lately(tick, 51))),
        Some(Tick::Forget)
    );
    assert_eq!(t.due(t0 + 7 * SEC, || 11, |_| quiet(silent(51))), None);
    // Silent long enough before the look: unmarked.
    let tick = t0 + 8 * SEC;
    let enough = lately(tick - SILENT_FOR, 52);
    assert_eq!(
        at(
            &mut t,
            tick,
            11,
            quiet(silent(52)),
            quiet(Heard {
                begun: 52,
                done: 52,
                ..enough
            })
        ),
        Some(Tick::Forget)
    );
    assert_eq!(
        at(
            &mut t,
            t0 + 9 * SEC,
            11,
            quiet(silent(52)),
            quiet(silent(52))
        ),
        Some(Tick::Forget)
    );
    // A channel first seen after the tick (its peer connected meanwhile) may have been
    // marked.
    let both = look(
        true,
        vec![conn(1, true, silent(52)), conn(3, true, silent(7))],
    );
    let one = look(true, vec![conn(1, true, silent(52))]);
    assert_eq!(
        at(&mut t, t0 + 10 * SEC, 11, one.clone(), both.clone()),
        Some(Tick::Forget)
    );
    assert_eq!(t.due(t0 + 11 * SEC, || 11, |_| both.clone()), None);
    let answered = look(
        true,
        vec![conn(1, true, silent(52)), conn(3, true, silent(8))],
    );
    assert_eq!(
        at(
            &mut t,
            t0 + 11 * SEC + LOOK_AGAIN_EVERY,
            11,
            answered.clone(),
            answered
        ),
        Some(Tick::Forget)
    );
}

#[test]
fn a_marked_channel_seen_without_its_peer_is_cleared_by_its_reestablishment() {
    let t0 = start();
    let mut t = ticker(60 * SEC, Some(10), SEC, t0);
    let busy = |done| look(true, vec![conn(1, false, silent(done))]);
    let back = |done| {
        let mut c = conn(1, false, silent(done));
        c.usable = false;
        look(true, vec![c])
    };
    let away = || look(true, vec![]);
    assert_eq!(
        at(&mut t, t0 + SEC, 11, busy(170), busy(170)),
        Some(Tick::Forget)
    );
    // The peer left: LDK's tick does not look at the channel, but its mark stays.
    assert_eq!(
        at(&mut t, t0 + 2 * SEC, 11, away(), away()),
        Some(Tick::Forget)
    );
    // Back, not yet reestablished (not usable): a tick would disconnect it again.
    assert_eq!(t.due(t0 + 3 * SEC, || 11, |_| back(170)), None);
    // Reestablished (usable), busy, with no answer counted: cleared.
    let later = t0 + 3 * SEC + LOOK_AGAIN_EVERY;
    assert_eq!(
        at(&mut t, later, 11, busy(170), busy(170)),
        Some(Tick::Forget)
    );
    // A channel whose peer left between the look before a tick and the one after it
    // is taken as away too.
    assert_eq!(
        at(&mut t, t0 + 5 * SEC, 11, busy(171), away()),
        Some(Tick::Forget)
    );
    assert_eq!(t.due(t0 + 6 * SEC, || 11, |_| back(171)), None);
    // A look that finds it away does not clear it either.
    let later = t0 + 6 * SEC + LOOK_AGAIN_EVERY;
    assert_eq!(t.due(later, || 11, |_| away()), Some(Tick::Forget));
    // Back as that tick ran, not yet reestablished: maybe marked, and usable now is
    // not enough (it may have been marked after its reestablishment)...
    t.ticked(|_| back(171));
    assert_eq!(t.due(later + SEC, || 11, |_| back(171)), None);
    let again = later + SEC + LOOK_AGAIN_EVERY;
    assert_eq!(at(&mut t, again, 11, busy(171), busy(171)), None);
    // ...its reestablishment (an answer) is.
    let answered = again + LOOK_AGAIN_EVERY;
    assert_eq!(
        at(&mut t, answered, 11, busy(172), busy(172)),
        Some(Tick::Forget)
    );
}

#[test]
fn no_quick_tick_while_a_channel_opens_or_closes() {
    let t0 = start();
    let mut t = ticker(60 * SEC, Some(10), SEC, t0);
    assert_eq!(
        t.due(t0 + 5 * SEC, || 50_000, |_| look(false, vec![])),
        None
    );
    // Not looked at in haste: nothing to wait for but the channel's open or close.
    assert_eq!(t.next_look(t0), SEC / 4);
    assert_eq!(t.due(t0 + 6 * SEC, || 50_000, calm), Some(Tick::Forget));
    // Unsettled again: the next tick is the regular one, a period after the last.
    for s in 7..66 {
        assert_eq!(
            t.due(t0 + s * SEC, || 50_000, |_| look(false, vec![])),
            None,
            "at {s} s"
        );
    }
    assert_eq!(
        t.due(t0 + 67 * SEC, || unreachable!(), |_| look(false, vec![])),
        Some(Tick::Regular)
    );
}

#[test]
fn without_a_cap_only_the_regular_tick_is_taken() {
    let t0 = start();
    let mut t = ticker(5 * SEC, None, SEC, t0);
    assert_eq!(
        t.due(t0 + 4 * SEC, || unreachable!(), |_| unreachable!()),
        None
    );
    assert_eq!(
        t.due(t0 + 5 * SEC, || unreachable!(), |_| unreachable!()),
        Some(Tick::Regular)
    );
    // A gap shorter than its floor is raised to it.
    let mut quick = ticker(60 * SEC, Some(0), Duration::from_millis(1), t0);
    let at = t0 + MIN_FORGET_TICK_GAP - Duration::from_millis(1);
    assert_eq!(quick.due(at, || 1, calm), None);
    let at = t0 + MIN_FORGET_TICK_GAP;
    assert_eq!(quick.due(at, || 1, calm), Some(Tick::Forget));
    // A period shorter than its floor (1 s) is raised to it.
    let mut fast = ticker(SEC / 10, None, SEC, t0);
    assert_eq!(
        fast.due(t0 + SEC / 2, || unreachable!(), |_| unreachable!()),
        None
    );
    assert_eq!(
        fast.due(t0 + SEC, || unreachable!(), |_| unreachable!()),
        Some(Tick::Regular)
    );
}

#[test]
fn an_open_request_is_remembered_for_a_while() {
    let o = OpenRequests::default();
    assert!(!o.lately());
    o.seen();
    assert!(o.lately());
    // And it unsettles the channels, even with none.
    let of = |lately| Channels::of(&[], |_| true, |_| 253, None, |_| silent(0), lately);
    assert!(!of(o.lately()).settled);
    assert_eq!(of(false), look(true, vec![]));
}

#[test]
fn a_tick_updates_a_funders_fee_when_it_rose_or_halved() {
    assert!(!fee_update_due(1_000, 1_000));
    assert!(fee_update_due(1_001, 1_000));
    assert!(!fee_update_due(501, 1_000));
    assert!(fee_update_due(500, 1_000));
    assert!(!fee_update_due(0, 0));
}

#[test]
fn a_fee_update_sent_by_a_tick_holds_the_next_quick_one_until_committed() {
    let t0 = start();
    let due = |quiet, done| Channels {
        settled: true,
        connected: vec![conn(7, quiet, silent(done))],
        fee_due: vec![id(7)],
    };
    let mut t = ticker(60 * SEC, Some(0), SEC, t0);
    let tick = t.due(
        t0 + SEC,
        || 1,
        |sent| {
            assert_eq!(sent, Some(&[][..]), "LDK's tick at the start sends none");
            due(true, 40)
        },
    );
    assert_eq!(tick, Some(Tick::Forget));
    // Quiet on both looks, but the tick may have sent a fee update: maybe marked.
    t.ticked(|sent| {
        assert_eq!(
            sent,
            Some(&[id(7)][..]),
            "the update this tick sent is told"
        );
        due(true, 40)
    });
    let tick = t.due(
        t0 + 2 * SEC,
        || 1,
        |sent| {
            assert_eq!(sent, Some(&[id(7)][..]));
            due(true, 40)
        },
    );
    assert_eq!(tick, None);
    // A regular tick records what it sends too.
    let tick = t.due(
        t0 + 62 * SEC,
        || unreachable!(),
        |sent| {
            assert_eq!(sent, None);
            look(true, vec![conn(7, true, silent(41))])
        },
    );
    assert_eq!(tick, Some(Tick::Regular));
    t.ticked(|_| look(true, vec![conn(7, true, silent(41))]));
    let tick = t.due(
        t0 + 63 * SEC,
        || 1,
        |sent| {
            assert_eq!(sent, Some(&[][..]));
            due(true, 41)
        },
    );
    assert_eq!(tick, Some(Tick::Forget));
    t.ticked(|_| due(false, 41));
    // An update LDK never sent (a funder that cannot afford it) is waited for a while
    // only: then the quick ticks go on (its peer answered meanwhile for other updates).
    let sent_at = t0 + 63 * SEC;
    let waited = sent_at + SEC * FEE_WAIT_GAPS - LOOK_AGAIN_EVERY;
    let tick = t.due(
        waited,
        || 1,
        |sent| {
            assert_eq!(sent, Some(&[id(7)][..]));
            due(false, 50)
        },
    );
    assert_eq!(tick, None);
    let tick = t.due(
        sent_at + SEC * FEE_WAIT_GAPS,
        || 1,
        |sent| {
            assert_eq!(sent, Some(&[][..]), "no longer waited for");
            due(true, 50)
        },
    );
    assert_eq!(tick, Some(Tick::Forget));
}
