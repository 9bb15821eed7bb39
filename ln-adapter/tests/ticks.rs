//! LDK forgets the payments a busy node sent within seconds instead of minutes
//! (`LnConfig::forget_payments_above`), without disturbing the channel.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_remembering_many_payments_forgets_them_in_seconds_and_pays_on() {
    const ABOVE: usize = 4;
    let p = pair_with(|c| c.forget_payments_above = Some(ABOVE)).await;
    open_channel(&p, 1_000_000).await;

    let payments = 12;
    for _ in 0..payments {
        hold_pay_and_claim(&p.a, &p.b, 1_000_000).await;
    }
    // LDK remembers what it sent until ticks forget it; ticks are never closer than 1 s, so
    // the last few are still there.
    let remembered = p.a.remembered_payments();
    assert!(
        remembered > ABOVE,
        "the payer remembers {remembered} of its {payments} payments"
    );
    assert_eq!(p.b.remembered_payments(), 0, "the payee sent nothing");

    // 7-8 quick ticks forget them (LDK's minute would take 7-8 minutes).
    let start = Instant::now();
    wait_until("the payer forgets down to the cap", || {
        p.a.remembered_payments() <= ABOVE
    })
    .await;
    let took = start.elapsed();
    let ticks = p.a.timer_ticks();
    println!("forgot down to {ABOVE} in {took:?}; payer's ticks {ticks:?}");
    assert!(ticks.forget >= 7, "quick ticks taken: {ticks:?}");
    assert_eq!(
        p.b.timer_ticks().forget,
        0,
        "the payee had nothing to forget"
    );
    // A node that no longer remembers many stops ticking quickly.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = p.a.timer_ticks();
    assert!(
        later.forget <= ticks.forget + 1,
        "quick ticks went on below the cap: {ticks:?} then {later:?}"
    );

    // The channel went on through the quick ticks: usable both ways, nothing in flight.
    let chan = p.a.channels().into_iter().next().expect("the channel");
    assert!(chan.usable, "channel usable after the ticks: {chan:?}");
    hold_pay_and_claim(&p.a, &p.b, 1_000_000).await;
    hold_pay_and_claim(&p.b, &p.a, 1_000_000).await;
}
