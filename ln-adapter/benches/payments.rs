//! Lightning payments between two local nodes on a regtest chain (litecoind, or bitcoind with
//! `BITCOIND_EXE`): the latency of one payment (add, held, claim, the payer's success) and
//! payments per second on one channel with many in flight. Prints figures; asserts only that
//! every payment succeeded.
//!
//! `cargo bench -p ln-adapter --bench payments [-- --sequential N --concurrent N]`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use ln_adapter::{LnEvent, PaymentTarget};
use swap_core::Preimage;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sequential = arg("--sequential", 30);
    let concurrent = arg("--concurrent", 200);
    let p = pair().await;
    open_channel(&p, 5_000_000).await;
    println!("ln-adapter payments bench on {:?}", p.node.kind());

    // Latency: one payment at a time (LDK waits a random 0-200 ms batch delay before it
    // forwards or fails HTLCs, at each of its steps; that is most of it).
    let mut times = Vec::with_capacity(sequential);
    for _ in 0..sequential {
        times.push(hold_pay_and_claim(&p.a, &p.b, 1_000_000).await);
        wait_settled(&p).await;
    }
    times.sort();
    println!(
        "latency of one payment (add + held + claim + payer's success), {sequential} in a row: \
         min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        times[0].as_secs_f64() * 1e3,
        percentile(&times, 50).as_secs_f64() * 1e3,
        percentile(&times, 90).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );

    // Throughput: `concurrent` payments in flight on one channel, each claimed by the payee
    // as soon as it is held.
    let amount = 10_000;
    let mut preimages = HashMap::new();
    let mut targets = Vec::with_capacity(concurrent);
    for _ in 0..concurrent {
        let preimage = Preimage::random().unwrap();
        let hashlock = preimage.hashlock();
        let secret = p.b.hold_invoice(hashlock, amount, 3600, 144).unwrap();
        targets.push(PaymentTarget {
            payee: p.b.node_id(),
            hashlock,
            payment_secret: secret,
            amount_msat: amount,
            final_cltv_delta: FINAL_CLTV,
            route_hints: vec![],
        });
        preimages.insert(hashlock, preimage);
    }
    let mut a_rx = p.a.subscribe();
    let mut b_rx = p.b.subscribe();
    let cpu = cpu_secs();
    let started = Instant::now();
    for t in &targets {
        p.a.pay(t, t.hashlock.0).unwrap();
    }
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while sent < concurrent {
        assert!(
            Instant::now() < deadline,
            "{sent} of {concurrent} payments done in 300 s"
        );
        tokio::select! {
            e = b_rx.recv() => {
                if let Ok(LnEvent::PaymentClaimable { hashlock, .. }) = e {
                    if let Some(preimage) = preimages.get(&hashlock) {
                        p.b.claim(preimage).await.unwrap();
                    }
                }
            }
            e = a_rx.recv() => match e {
                Ok(LnEvent::PaymentSent { .. }) => sent += 1,
                Ok(LnEvent::PaymentFailed { reason, .. }) => panic!("a payment failed: {reason}"),
                _ => {}
            },
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_secs() - cpu;
    println!(
        "{concurrent} payments in flight on one channel: all succeeded in {:.2} s = {:.1} \
         payments/s; CPU {:.1} ms per payment (both nodes, this process)",
        elapsed.as_secs_f64(),
        concurrent as f64 / elapsed.as_secs_f64(),
        cpu * 1e3 / concurrent as f64,
    );
    p.a.stop().await.unwrap();
    p.b.stop().await.unwrap();
}

/// CPU seconds this process used (user + system), from /proc.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the ")").
    (ticks(11) + ticks(12)) / 100.0
}
