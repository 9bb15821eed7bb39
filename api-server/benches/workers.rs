//! Workers bench: swaps created per second through the API, and completed swaps per block,
//! with 1, 2 and 4 `xswap-server` processes (workers) on one PostgreSQL database, each run on
//! fresh regtest nodes (litecoind or bitcoind, anvil) with a maker engine in this process.
//!
//! ```sh
//! cargo bench -p xswap-api --bench workers -- --swaps 300 --workers 1,2,4
//! ```
//!
//! Every creation goes to the next server in turn (a round-robin load balancer); the swap is
//! run by the server that created it unless it is taken over. The clock and the block count
//! start before the first creation and stop when every swap has finished.
#![allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

#[path = "../tests/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use futures::StreamExt;
use swap_core::driver::final_outcome;
use swap_core::Outcome;

use cluster::{Cluster, Setup};

/// Creations in flight at once by default (the maker keeps 4 open quotes per taker key:
/// every server of the exchange is one taker key).
const CREATING: usize = 4;

struct Opts {
    swaps: usize,
    workers: Vec<usize>,
    block_secs: f64,
    poll_ms: u64,
    in_flight: usize,
}

fn parse() -> anyhow::Result<Opts> {
    let mut o = Opts {
        swaps: 300,
        workers: vec![1, 2, 4],
        block_secs: 2.0,
        poll_ms: 500,
        in_flight: CREATING,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--swaps" => o.swaps = val()?.parse()?,
            "--workers" => {
                o.workers = val()?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--block-secs" => o.block_secs = val()?.parse()?,
            "--poll-ms" => o.poll_ms = val()?.parse()?,
            "--in-flight" => o.in_flight = val()?.parse()?,
            // What `cargo bench` passes on.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "workers [--swaps 300] [--workers 1,2,4] [--block-secs 2] [--poll-ms 500] \
                     [--in-flight 4]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if o.swaps == 0 || o.in_flight == 0 || o.workers.is_empty() || o.workers.contains(&0) {
        anyhow::bail!("--swaps, --workers and --in-flight need positive counts");
    }
    Ok(o)
}

struct Row {
    workers: usize,
    swaps: usize,
    swapped: usize,
    create_secs: f64,
    secs: f64,
    blocks: u64,
    /// Blocks from the last creation until every swap finished.
    tail_blocks: u64,
    /// CPU the server processes used, per swap.
    server_cpu_ms: f64,
    /// CPU this process (the maker and the bench's client) used, per swap.
    maker_cpu_ms: f64,
    /// How busy the machine's cores were (every process), 0 to 1.
    busy: f64,
}

async fn run(workers: usize, o: &Opts) -> Row {
    let c = Cluster::start(
        &format!("bench{workers}"),
        Setup {
            servers: workers,
            swaps: o.swaps,
            lease_ttl: 10.0,
            poll: Duration::from_millis(o.poll_ms),
            block_every: Duration::from_secs_f64(o.block_secs),
        },
    )
    .await;
    c.mine();
    let h0 = c.nodes.btc.height().await;
    let (cpu0, me0, m0) = (
        c.servers_cpu(),
        cluster::proc_cpu("/proc/self/stat"),
        cluster::machine_cpu(),
    );
    let t0 = Instant::now();
    let _ids: Vec<String> = futures::stream::iter(0..o.swaps)
        .map(|k| {
            let c = c.clone();
            async move { c.create_any(k).await }
        })
        .buffer_unordered(o.in_flight)
        .collect()
        .await;
    let create_secs = t0.elapsed().as_secs_f64();
    let (_, tail_blocks) = c.wait_finished(o.swaps, Duration::from_secs(1800)).await;
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, me1, m1) = (
        c.servers_cpu(),
        cluster::proc_cpu("/proc/self/stat"),
        cluster::machine_cpu(),
    );
    let blocks = c.nodes.btc.height().await - h0;
    let per_swap = |d: Duration| d.as_secs_f64() * 1000.0 / o.swaps as f64;
    let swapped = c
        .states()
        .await
        .iter()
        .filter(|(_, s)| matches!(final_outcome(s), Some(Outcome::Swapped)))
        .count();
    Row {
        workers,
        swaps: o.swaps,
        swapped,
        create_secs,
        secs,
        blocks,
        tail_blocks,
        server_cpu_ms: per_swap(cpu1 - cpu0),
        maker_cpu_ms: per_swap(me1 - me0),
        busy: (m1.0 - m0.0) as f64 / (m1.1 - m0.1).max(1) as f64,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let o = parse()?;
    let mut rows = Vec::new();
    for &w in &o.workers {
        eprintln!("running {} swaps on {w} worker(s) ...", o.swaps);
        let row = run(w, &o).await;
        eprintln!(
            "  {w} worker(s): created in {:.1} s, all done in {:.1} s, {} blocks ({} after the \
             last creation)",
            row.create_secs, row.secs, row.blocks, row.tail_blocks
        );
        rows.push(row);
    }
    println!();
    println!(
        "xswap-server workers on one PostgreSQL: {} LTC->ETH swaps through the API ({} \
         creations in flight, round robin), 1 block every {} s, poll {} ms",
        o.swaps, o.in_flight, o.block_secs, o.poll_ms
    );
    println!(
        "{:>8} {:>8} {:>10} {:>10} {:>7} {:>7} {:>12} {:>16} {:>16} {:>14} {:>10}",
        "workers",
        "swapped",
        "create (s)",
        "created/s",
        "blocks",
        "secs",
        "swaps/block",
        "blocks after last",
        "server CPU/swap",
        "maker CPU/swap",
        "cores busy"
    );
    for r in &rows {
        println!(
            "{:>8} {:>8} {:>10.1} {:>10.1} {:>7} {:>7.1} {:>12.1} {:>16} {:>14.1}ms {:>12.1}ms {:>9.0}%",
            r.workers,
            r.swapped,
            r.create_secs,
            r.swaps as f64 / r.create_secs,
            r.blocks,
            r.secs,
            r.swaps as f64 / r.blocks.max(1) as f64,
            r.tail_blocks,
            r.server_cpu_ms,
            r.maker_cpu_ms,
            r.busy * 100.0
        );
    }
    Ok(())
}
