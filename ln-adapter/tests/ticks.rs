//! LDK forgets the payments a busy node sent within seconds instead of minutes
//! (`LnConfig::forget_payments_above`), without disturbing the channel or its peer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_remembering_many_payments_forgets_them_in_seconds_and_pays_on() {
    const ABOVE: usize = 4;
    let p = pair_with(|c| c.forget_payments_above = Some(ABOVE)).await;
    open_channel(&p, 1_000_000).await;
    let b_id = p.b.node_id();
    wait_until("the peers connected", || p.a.is_connected(&b_id)).await;

    // Whether the payer's peer was ever seen away while quick ticks ran (a tick that finds
    // a channel waiting on its peer marks it, the next disconnects it if still unanswered).
    let done = AtomicBool::new(false);
    let away = AtomicUsize::new(0);
    let sampler = async {
        while !done.load(Ordering::Relaxed) {
            if !p.a.is_connected(&b_id) {
                away.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let work = async {
        let payments = 12;
        for _ in 0..payments {
            hold_pay_and_claim(&p.a, &p.b, 1_000_000).await;
        }
        // LDK remembers what it sent until ticks forget it; ticks are never closer than
        // 1 s, so the last few are still there.
        let remembered = p.a.remembered_payments();
        assert!(
            remembered > ABOVE,
            "the payer remembers {remembered} of its {payments} payments"
        );
        assert_eq!(p.b.remembered_payments(), 0, "the payee sent nothing");
        assert_eq!(
            p.b.timer_ticks().forget,
            0,
            "the payee had nothing to forget"
        );

        // 7-8 quick ticks forget them (LDK's minute would take 7-8 minutes), while payments
        // go on the other way.
        let start = Instant::now();
        while p.a.remembered_payments() > ABOVE {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the payer still remembers {} payments",
                p.a.remembered_payments()
            );
            // Small, with pauses: the payee's side holds just what it was paid, above its
            // reserve.
            hold_pay_and_claim(&p.b, &p.a, 1_000).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ticks = p.a.timer_ticks();
        println!(
            "forgot down to {ABOVE} in {:?}; payer's ticks {ticks:?}",
            start.elapsed()
        );
        assert!(ticks.forget >= 7, "quick ticks taken: {ticks:?}");
        // A node that no longer remembers many stops ticking quickly.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let later = p.a.timer_ticks();
        assert!(
            later.forget <= ticks.forget + 1,
            "quick ticks went on below the cap: {ticks:?} then {later:?}"
        );
        done.store(true, Ordering::Relaxed);
    };
    tokio::join!(sampler, work);
    assert_eq!(
        away.load(Ordering::Relaxed),
        0,
        "the peer was seen disconnected during the quick ticks"
    );

    // The channel went on through the quick ticks: usable both ways.
    let chan = p.a.channels().into_iter().next().expect("the channel");
    assert!(chan.usable, "channel usable after the ticks: {chan:?}");
    hold_pay_and_claim(&p.a, &p.b, 1_000_000).await;
    hold_pay_and_claim(&p.b, &p.a, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_ticks_go_on_under_load_and_never_disconnect_the_peer() {
    // No payment to keep: a quick tick is wanted at every gap while payments are in flight
    // all the time, and waits only for the peer's answers to what the last tick may have
    // marked (a channel always busy is never quiet, and a tick while it waited on its peer
    // twice in a row would disconnect it).
    let gap = Duration::from_millis(250);
    let p = pair_with(|c| {
        c.forget_payments_above = Some(0);
        c.forget_tick_gap = gap;
    })
    .await;
    open_channel(&p, 1_000_000).await;
    let b_id = p.b.node_id();
    wait_until("the peers connected", || p.a.is_connected(&b_id)).await;

    let done = AtomicBool::new(false);
    let away = AtomicUsize::new(0);
    let sampler = async {
        while !done.load(Ordering::Relaxed) {
            if !p.a.is_connected(&b_id) || !p.b.is_connected(&p.a.node_id()) {
                away.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let load = Duration::from_secs(4);
    let paid = AtomicUsize::new(0);
    let payer = || async {
        let start = Instant::now();
        while start.elapsed() < load {
            hold_pay_and_claim(&p.a, &p.b, 10_000).await;
            paid.fetch_add(1, Ordering::Relaxed);
        }
    };
    let before = p.a.timer_ticks();
    let work = async {
        tokio::join!(payer(), payer(), payer(), payer());
        done.store(true, Ordering::Relaxed);
    };
    tokio::join!(sampler, work);
    let ticks = p.a.timer_ticks();
    let paid = paid.load(Ordering::Relaxed);
    println!("{paid} payments, 4 in flight, in {load:?}: payer's ticks {before:?} -> {ticks:?}");
    assert!(paid >= 8, "only {paid} payments made");
    // At most one per gap; under load at least a third of that.
    let quick = ticks.forget - before.forget;
    let most = (load.as_millis() / gap.as_millis()) as u64 + 1;
    assert!(
        quick >= most / 3 && quick <= most,
        "{quick} quick ticks in {load:?} (a gap of {gap:?})"
    );
    assert_eq!(
        away.load(Ordering::Relaxed),
        0,
        "the peers were seen disconnected during the quick ticks"
    );
    let chan = p.a.channels().into_iter().next().expect("the channel");
    assert!(chan.usable, "channel usable after the ticks: {chan:?}");
}
