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
