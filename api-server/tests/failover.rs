//! Failover with real nodes: three `xswap-server` processes on one PostgreSQL database run 300
//! swaps created through their API while one of them is SIGKILLed every few seconds and
//! restarted, and one is stalled (SIGSTOP) past its leases and woken up. Every swap ends
//! swapped or refunded, each coin HTLC is funded exactly once on chain, the killed workers'
//! swaps are taken over, and the stalled worker's stale leases are refused by their fencing
//! tokens when it wakes up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use swap_core::driver::final_outcome;
use swap_core::Outcome;

use crate::cluster::{Cluster, Setup};

const SWAPS: usize = 300;
const SERVERS: usize = 3;
const TTL: Duration = Duration::from_secs(3);
/// Creations in flight at once (the maker keeps 4 open quotes per taker key, and every server
/// of the exchange is one taker key).
const CREATING: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_every_few_seconds_finish_every_swap_once() {
    let t_setup = Instant::now();
    let c = Cluster::start(
        "failover",
        Setup {
            servers: SERVERS,
            swaps: SWAPS,
            lease_ttl: TTL.as_secs_f64(),
            poll: Duration::from_millis(300),
            block_every: Duration::from_secs(1),
        },
    )
    .await;
    eprintln!("setup: {:.1} s", t_setup.elapsed().as_secs_f64());
    c.mine();
    let t0 = Instant::now();

    // Chaos until every swap finished (and at least 3 kills): every 4 s one server (in turn)
    // is SIGKILLed and restarted a second later; the second time (while swaps are still being
    // created), the busiest server is stalled instead, for more than twice its leases' time to
    // live, then woken up.
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut kills, mut stalled) = (0usize, None);
            let mut k = 0usize;
            while !stop.load(Ordering::SeqCst) || kills < 3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                let mut i = k % SERVERS;
                k += 1;
                if k == 2 {
                    // The busiest worker (the most unfinished swaps leased): the hardest
                    // takeover, and never one that happens to hold none.
                    let mut busiest = (0, 0);
                    for j in 0..SERVERS {
                        let n = c.leases_of(&c.worker_name(j)).await;
                        if n > busiest.1 {
                            busiest = (j, n);
                        }
                    }
                    i = busiest.0;
                    let name = c.worker_name(i);
                    let held = c.leases_of(&name).await;
                    c.signal(i, "STOP");
                    tokio::time::sleep(TTL * 5 / 2).await;
                    // Until the other workers took over every unfinished swap it held (its
                    // leases expired; an expired lease no one took keeps its token).
                    let t = Instant::now();
                    while c.leases_of(&name).await > 0 && t.elapsed() < Duration::from_secs(60) {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    let left = c.leases_of(&name).await;
                    c.signal(i, "CONT");
                    stalled = Some((i, held, left, TTL * 5 / 2 + t.elapsed()));
                    continue;
                }
                c.kill(i);
                kills += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                c.spawn(i);
            }
            (kills, stalled)
        })
    };

    // 300 swaps through the API of whichever servers are up, 4 at a time.
    let ids: Vec<String> = futures::stream::iter(0..SWAPS)
        .map(|k| {
            let c = c.clone();
            async move { c.create_any(k).await }
        })
        .buffer_unordered(CREATING)
        .collect()
        .await;
    let created = t0.elapsed();
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), SWAPS, "each creation answered its own swap");
    eprintln!(
        "{SWAPS} swaps created in {:.1} s ({:.1}/s)",
        created.as_secs_f64(),
        SWAPS as f64 / created.as_secs_f64()
    );

    let (took, blocks) = c.wait_finished(SWAPS, Duration::from_secs(240)).await;
    stop.store(true, Ordering::SeqCst);
    let (kills, stalled) = chaos.await.unwrap();
    eprintln!(
        "all finished {:.1} s after the last creation ({blocks} blocks); {:.1} s in all; \
         {kills} kills",
        took.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );

    // Every swap (those created through the API, and any a killed server stored before
    // answering) ended swapped or refunded.
    let states = c.states().await;
    assert!(states.len() >= SWAPS, "{} swaps stored", states.len());
    let mut outcomes = std::collections::BTreeMap::new();
    for (record, state) in &states {
        let outcome = final_outcome(state).expect("finished");
        assert!(
            matches!(outcome, Outcome::Swapped | Outcome::Refunded),
            "swap {} ended {outcome:?}",
            record.id()
        );
        *outcomes.entry(outcome.name()).or_insert(0usize) += 1;
    }
    eprintln!("outcomes: {outcomes:?}");

    // Each coin HTLC funded exactly once, on chain.
    let fundings = c.coin_fundings().await;
    let wrong: Vec<_> = fundings.iter().filter(|(_, n)| **n != 1).collect();
    assert!(wrong.is_empty(), "HTLCs not funded exactly once: {wrong:?}");
    assert_eq!(fundings.len(), states.len());
    // A lock sent again by the worker that took its swap over was the recorded transaction,
    // unless that one was proven dead (a mined transaction spent its coins, as deep as a lock
    // must be) and the swap funded anew; funded exactly once on chain either way (above).
    let again = c.locks_sent_by_several();
    for (id, txs) in &again {
        if txs.iter().all(|t| t == &txs[0]) {
            continue;
        }
        let lines = c.lines_about(id);
        assert!(
            lines
                .lines()
                .any(|l| l.contains("can never be mined") && l.contains("funding anew")),
            "swap {id}: workers sent different locks {txs:?}, none recorded as dead:\n{lines}"
        );
    }
    // A funding recorded by a killed worker whose coins another worker spent meanwhile was
    // funded anew (see `btc-adapter`'s funding.rs), rather than left to its swap's deadline.
    let anew: usize = (0..SERVERS)
        .map(|i| c.log(i).matches("funding anew").count())
        .sum();
    eprintln!(
        "{} locks sent again by a worker that took the swap over, each the recorded one; \
         {anew} recorded fundings whose coins were spent meanwhile funded anew",
        again.len()
    );

    // Killed workers' swaps were taken over: more leases were taken than there are swaps.
    let logs: Vec<String> = (0..SERVERS).map(|i| c.log(i)).collect();
    let taken: usize = logs.iter().map(|l| l.matches("lease taken").count()).sum();
    assert!(
        taken > states.len(),
        "{taken} leases taken for {} swaps: no takeover",
        states.len()
    );
    // The stalled worker woke up holding leases that others had taken over: its heartbeat or
    // its writes were refused by their fencing tokens, and it stopped running those swaps.
    let (stalled, held, left, waited) = stalled.expect("a worker was stalled");
    assert!(
        held > 0,
        "the stalled server {stalled} held no unfinished swap"
    );
    assert_eq!(
        left, 0,
        "the other workers did not take the stalled worker's swaps over in {waited:?}"
    );
    let lost = logs[stalled].matches("lease lost").count();
    let refused = logs[stalled].matches("write refused").count();
    assert!(
        lost > 0,
        "the stalled server {stalled} lost none of its {held} leases (refused writes: \
         {refused})"
    );
    eprintln!(
        "{taken} leases taken for {} swaps; the stalled worker held {held}, stalled {:.1} s \
         (all taken over by then); on waking up it lost {lost} leases to fencing ({refused} \
         writes refused); starts per server: {:?}",
        states.len(),
        waited.as_secs_f64(),
        (0..SERVERS).map(|i| c.starts(i)).collect::<Vec<_>>()
    );
}
