//! `xswap-channel-bench`: channel-linked swaps between two engines in this process, once their
//! channels are open: a Lightning channel on the Bitcoin-family regtest node (litecoind, or
//! bitcoind with `BITCOIND_EXE`) and an Ethereum payment channel on anvil. The maker sells ETH
//! in the Ethereum channel for LTC over Lightning; the taker takes the offer `--swaps` times
//! with at most `--in-flight` swaps running at once (quote, proposal and the maker's checks
//! in process through `Direct`, as an exchange does; both records stored in SQLite).
//!
//! Prints: swaps per second sustained, latency from proposal to both legs settled (p50, p90,
//! p99, max), CPU per swap, on-chain transactions per 1,000 swaps (during the swaps: none
//! expected; the channels' opens and closes are counted apart), and the measured cost of one
//! secp256k1 signature and verification with the ceiling it puts on swaps per second.
//!
//! ```sh
//! cargo run --release -p xswap-bench --bin xswap-channel-bench -- --swaps 1000 --in-flight 100
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use anyhow::{ensure, Context, Result};
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use futures::StreamExt;
use swap_core::*;
use swap_engine::{Direct, Engine, OfferRates};
use swap_net::{Offer, Peer};
use xswap_bench::{cpu_time, percentile};
use xswap_cli::demo_channels::{
    btc_txs_since, channel_engine, channel_offer, eth_txs, WEI_PER_SAT,
};
use xswap_cli::regtest::Nodes;
use xswap_cli::regtest_channels::{ln_node_with, open_eth_channel, open_ln_channel};

/// Satoshis per swap (the taker pays them over Lightning).
const SATS: u64 = 1_000;
/// The Lightning channel: the largest without the large-channel feature.
const LN_CAPACITY: u64 = 16_000_000;
/// The maker's side of the Ethereum channel (the taker's is empty: it only receives).
const ETH_DEPOSIT: u128 = 100 * 10u128.pow(18);
/// Signatures and verifications per swap, roughly: a Lightning add and fulfil (two commitment
/// updates each way, HTLC signatures) plus two Ethereum channel updates (lock, claim: each
/// signed by one side, verified and countersigned by the other, verified again).
const SIG_OPS_PER_SWAP: f64 = 30.0;

struct Opts {
    swaps: usize,
    in_flight: usize,
    poll: Duration,
    /// [`ln_adapter::LnConfig::timer_tick_interval`] of both Lightning nodes.
    ln_tick: Option<Duration>,
    /// [`ln_adapter::LnConfig::forget_payments_above`] of both Lightning nodes (`off`: none;
    /// 200 if not given).
    forget_above: Option<Option<usize>>,
    /// [`ln_adapter::LnConfig::forget_tick_gap`] of both Lightning nodes (100 ms if not
    /// given).
    forget_gap: Option<Duration>,
    /// Tokio worker threads (the machine's cores by default).
    workers: usize,
    /// [`ln_adapter::LnConfig::htlc_processing_interval`] of both Lightning nodes (their
    /// default if not given).
    htlc_every: Option<Duration>,
    /// [`ln_adapter::LnConfig::max_dust_htlc_exposure_msat`] of both Lightning nodes, in sats.
    dust_sats: Option<u64>,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        swaps: 1_000,
        in_flight: 100,
        // The rails wake the engines on every channel message and Lightning event; the poll
        // only catches what no rail tells (a 10 ms poll cost CPU and gained nothing: see the
        // README's figures).
        poll: Duration::from_millis(250),
        ln_tick: None,
        // The payer forgets what it paid within ~1 s under load (the nodes' defaults, 1,000
        // and 1 s, keep ~8 s of payments in every write of its channel manager).
        forget_above: Some(Some(200)),
        forget_gap: Some(Duration::from_millis(100)),
        workers: 2,
        htlc_every: None,
        dust_sats: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context("a value after the flag");
        match a.as_str() {
            "--swaps" => o.swaps = value()?.parse()?,
            "--in-flight" => o.in_flight = value()?.parse()?,
            "--poll-ms" => o.poll = Duration::from_millis(value()?.parse()?),
            "--ln-tick-ms" => o.ln_tick = Some(Duration::from_millis(value()?.parse()?)),
            "--forget-gap-ms" => o.forget_gap = Some(Duration::from_millis(value()?.parse()?)),
            "--forget-above" => {
                o.forget_above = Some(match value()?.as_str() {
                    "off" => None,
                    n => Some(n.parse()?),
                })
            }
            "--workers" => o.workers = value()?.parse()?,
            "--htlc-ms" => o.htlc_every = Some(Duration::from_millis(value()?.parse()?)),
            "--dust-exposure-sats" => o.dust_sats = Some(value()?.parse()?),
            "--bench" => {}
            other => {
                anyhow::bail!(
                    "unknown argument {other} (--swaps N --in-flight N --poll-ms N --ln-tick-ms N --forget-above N|off --forget-gap-ms N --workers N --htlc-ms N --dust-exposure-sats N)"
                )
            }
        }
    }
    ensure!(
        o.swaps > 0 && o.in_flight > 0 && o.workers > 0,
        "--swaps, --in-flight and --workers must be positive"
    );
    ensure!(
        u64::try_from(o.swaps)? * SATS * 1_100 / 1_000 < LN_CAPACITY,
        "at most {} swaps fit the Lightning channel",
        LN_CAPACITY / SATS * 1_000 / 1_100
    );
    Ok(o)
}

/// Microseconds per secp256k1 ECDSA signature and verification on this machine.
fn sig_costs() -> (f64, f64) {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let pubkey = key.public_key(&secp);
    let n = 2_000u32;
    let msgs: Vec<Message> = (0..n)
        .map(|i| {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            d[31] = 1;
            Message::from_digest(d)
        })
        .collect();
    let t = Instant::now();
    let sigs: Vec<_> = msgs.iter().map(|m| secp.sign_ecdsa(m, &key)).collect();
    let sign = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let t = Instant::now();
    for (m, s) in msgs.iter().zip(&sigs) {
        assert!(secp.verify_ecdsa(m, s, &pubkey).is_ok());
    }
    let verify = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    (sign, verify)
}

/// Takes `offer` once for `SATS` and waits until both engines are done with the swap; returns
/// the time from the proposal to both legs settled. `negotiating` bounds the takes being
/// negotiated at once: the maker holds at most `MAX_QUOTES_PER_KEY` open quotes per peer.
async fn one_swap(
    taker: &Arc<Engine>,
    maker: &Arc<Engine>,
    offer: &Offer,
    negotiating: &tokio::sync::Semaphore,
) -> Result<Duration> {
    let handler = maker.maker(Arc::new(vec![offer.clone()]), Arc::new(OfferRates));
    let peer = Peer {
        key: taker.identity.public(),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let t = Instant::now();
    let id = {
        let _turn = negotiating.acquire().await?;
        taker
            .take_via(&mut Direct::new(handler, peer), offer, u128::from(SATS))
            .await?
    };
    let (a, b) = (taker.wait(&id).await?, maker.wait(&id).await?);
    ensure!(
        a == Outcome::Swapped && b == Outcome::Swapped,
        "swap {id} ended {} / {}",
        a.name(),
        b.name()
    );
    Ok(t.elapsed())
}

struct Run {
    swaps: usize,
    in_flight: usize,
    secs: f64,
    lat: Vec<Duration>,
    cpu: Duration,
}

async fn run(
    taker: &Arc<Engine>,
    maker: &Arc<Engine>,
    offer: &Offer,
    swaps: usize,
    in_flight: usize,
) -> Result<Run> {
    let negotiating = tokio::sync::Semaphore::new(swap_engine::maker::MAX_QUOTES_PER_KEY);
    let cpu0 = cpu_time();
    let t = Instant::now();
    let results: Vec<Result<Duration>> = futures::stream::iter(0..swaps)
        .map(|_| one_swap(taker, maker, offer, &negotiating))
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    let mut lat = results.into_iter().collect::<Result<Vec<_>>>()?;
    lat.sort();
    Ok(Run {
        swaps,
        in_flight,
        secs,
        lat,
        cpu,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn print_run(r: &Run, ceiling: f64) {
    let rate = r.swaps as f64 / r.secs;
    println!(
        "{:>6} {:>9} {:>8.2} {:>8.1} {:>7} {:>7} {:>7} {:>7} {:>9.2} {:>8.1}%",
        r.swaps,
        r.in_flight,
        r.secs,
        rate,
        ms(percentile(&r.lat, 50)),
        ms(percentile(&r.lat, 90)),
        ms(percentile(&r.lat, 99)),
        ms(*r.lat.last().unwrap_or(&Duration::ZERO)),
        r.cpu.as_secs_f64() * 1e3 / r.swaps as f64,
        rate / ceiling * 100.0
    );
}

/// mimalloc: glibc's malloc serializes frees of memory another thread allocated, the common
/// case under tokio's work stealing (README, figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let o = parse_args()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.workers)
        .enable_all()
        .build()?;
    rt.block_on(bench(o))
}

async fn bench(o: Opts) -> Result<()> {
    let (sign, verify) = sig_costs();
    let ceiling = 2.0 * 1e6 / (SIG_OPS_PER_SWAP * (sign + verify) / 2.0);
    let nodes = Nodes::start().await?;
    let dir = tempfile::tempdir()?;
    let tick = |c: &mut ln_adapter::LnConfig| {
        c.timer_tick_interval = o.ln_tick;
        if let Some(above) = o.forget_above {
            c.forget_payments_above = above;
        }
        if let Some(gap) = o.forget_gap {
            c.forget_tick_gap = gap;
        }
        if let Some(every) = o.htlc_every {
            c.htlc_processing_interval = Some(every);
        }
        if let Some(sats) = o.dust_sats {
            c.max_dust_htlc_exposure_msat = Some(sats * 1_000);
        }
    };
    let taker_ln = ln_node_with(&nodes, "taker-ln", [0x11; 32], dir.path(), tick).await?;
    let maker_ln = ln_node_with(&nodes, "maker-ln", [0x22; 32], dir.path(), tick).await?;
    open_ln_channel(&nodes, "taker-ln", (&taker_ln, &maker_ln), LN_CAPACITY).await?;
    let (maker_chan, taker_chan, chan, _) =
        open_eth_channel(&nodes, (5, 6), (ETH_DEPOSIT, 0)).await?;
    let driver = DriverConfig {
        poll_interval: o.poll,
        max_backoff: Duration::from_millis(200),
    };
    let taker = channel_engine(
        "taker",
        dir.path(),
        taker_ln.clone(),
        &taker_chan.rail,
        driver,
    )?;
    let maker = channel_engine(
        "maker",
        dir.path(),
        maker_ln.clone(),
        &maker_chan.rail,
        driver,
    )?;
    let offer = channel_offer(
        &maker,
        &nodes,
        "maker.example:7700".into(),
        (10u128.pow(18), 100_000),
        Timestamp(Timestamp::now().0 + 24 * 3600),
    );
    let wallets = ["taker-ln", "maker-ln"];
    let accounts = [nodes.eth.address(5), nodes.eth.address(6)];
    let (btc0, eth0) = (nodes.btc.height().await, eth_txs(&nodes, &accounts).await?);

    println!("channel-linked swaps, LTC over Lightning for ETH in an Ethereum channel, two engines in one process");
    println!(
        "Lightning nodes forget completed payments above {} with LDK timer ticks {} apart at the quickest",
        match o.forget_above {
            Some(Some(n)) => n.to_string(),
            Some(None) => "never (off)".into(),
            None => "their default".into(),
        },
        o.forget_gap
            .map_or("their default".into(), |g| format!("{} ms", g.as_millis())),
    );
    println!(
        "secp256k1 here: sign {sign:.1} us, verify {verify:.1} us; ~{SIG_OPS_PER_SWAP} per swap on 2 cores: ceiling {ceiling:.0} swaps/s"
    );
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9}",
        "swaps",
        "in flight",
        "secs",
        "swaps/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "CPU ms/sw",
        "of ceil."
    );
    // Warm up, then one at a time (latency without queueing), then many at once.
    run(&taker, &maker, &offer, 5, 1).await?;
    let sequential = run(&taker, &maker, &offer, 50.min(o.swaps), 1).await?;
    print_run(&sequential, ceiling);
    let calls = || {
        let mut all = std::collections::BTreeMap::<String, u64>::new();
        for node in [&taker_ln, &maker_ln] {
            for (m, n) in node.rpc_counts_by_method() {
                *all.entry(m).or_default() += n;
            }
        }
        all
    };
    let calls0 = calls();
    let registry = || {
        let (a, b) = (
            maker_chan.rail.registry_reads(),
            taker_chan.rail.registry_reads(),
        );
        (a.0 + b.0, a.1 + b.1)
    };
    let registry0 = registry();
    let writes0 = [taker_ln.manager_writes(), maker_ln.manager_writes()];
    let busy0 = [taker_ln.background_busy(), maker_ln.background_busy()];
    let threads0 = xswap_bench::thread_cpu_times();
    let loaded = run(&taker, &maker, &offer, o.swaps, o.in_flight).await?;
    print_run(&loaded, ceiling);
    // Each thread's share of the loaded run's wall time: one near 100% is the bottleneck.
    let mut busy: Vec<(String, f64)> = xswap_bench::thread_cpu_times()
        .into_iter()
        .map(|(name, tid, cpu)| {
            let before = threads0
                .iter()
                .find(|t| t.1 == tid)
                .map_or(Duration::ZERO, |t| t.2);
            let share = cpu.saturating_sub(before).as_secs_f64() / loaded.secs;
            (format!("{name}/{tid}"), share * 100.0)
        })
        .filter(|(_, pct)| *pct >= 1.0)
        .collect();
    busy.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "threads busy during the loaded run (% of its wall time): {}",
        busy.iter()
            .map(|(t, pct)| format!("{t} {pct:.0}%"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut per_swap: Vec<(String, f64)> = calls()
        .into_iter()
        .map(|(m, n)| {
            let d = n - calls0.get(&m).copied().unwrap_or(0);
            (m, d as f64 / loaded.swaps as f64)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    per_swap.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "calls to the coin node per swap (both Lightning nodes, loaded run): {}",
        per_swap
            .iter()
            .map(|(m, d)| format!("{m} {d:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let (lookups, reads) = registry();
    println!(
        "reads of the Ethereum secret registry per swap (both channel rails, loaded run): {:.2} hashlocks looked up, {:.2} reads of blocks' reveal events",
        (lookups - registry0.0) as f64 / loaded.swaps as f64,
        (reads - registry0.1) as f64 / loaded.swaps as f64,
    );

    let per = |w: ln_adapter::ManagerWrites, w0: ln_adapter::ManagerWrites| {
        let n = loaded.swaps as f64;
        let per = |a: u64, b: u64| (a - b) as f64 / n;
        format!(
            "{:.2} committed ({:.2} with monitor writes, {:.2} of them kept in memory first), {:.2} kept in memory and replaced unwritten",
            per(w.committed, w0.committed),
            per(w.with_monitor_writes, w0.with_monitor_writes),
            per(w.kept_then_committed, w0.kept_then_committed),
            per(w.kept - w.kept_then_committed, w0.kept - w0.kept_then_committed)
        )
    };
    println!(
        "channel manager writes per swap (loaded run): payer {}; payee {}",
        per(taker_ln.manager_writes(), writes0[0]),
        per(maker_ln.manager_writes(), writes0[1])
    );

    // LDK's background processor is one task per node: its events, the messages it sends,
    // and its channel manager's writes (which every monitor update's messages wait for)
    // happen one after another there.
    let share = |now: std::time::Duration, before: std::time::Duration| {
        now.saturating_sub(before).as_secs_f64() / loaded.secs * 100.0
    };
    println!(
        "LDK's background processor running during the loaded run (% of its wall time): payer {:.0} %, payee {:.0} %",
        share(taker_ln.background_busy(), busy0[0]),
        share(maker_ln.background_busy(), busy0[1])
    );

    // What makes a longer run slower: the payer's channel manager, written whole at each
    // persist, keeps every payment it sent for 7-8 of LDK's timer ticks (its idempotency),
    // which tick every second while it remembers many (`LnConfig::forget_payments_above`).
    let ticks = taker_ln.timer_ticks();
    println!(
        "channel manager written whole at each persist: payer {:.1} KB, payee {:.1} KB after the run; the payer remembers {} completed payments (LDK timer ticks: {} regular, {} quick to forget payments)",
        taker_ln.manager_bytes() as f64 / 1_000.0,
        maker_ln.manager_bytes() as f64 / 1_000.0,
        taker_ln.remembered_payments(),
        ticks.regular,
        ticks.forget
    );
    println!(
        "channel monitor, written whole once every {} of its updates: payer {:.1} KB, payee {:.1} KB (it keeps the HTLC outputs of every revoked commitment)",
        ln_adapter::MAX_PENDING_MONITOR_UPDATES,
        taker_ln.monitor_bytes() as f64 / 1_000.0,
        maker_ln.monitor_bytes() as f64 / 1_000.0
    );

    let total = 5 + sequential.swaps + loaded.swaps;
    let txs =
        btc_txs_since(&nodes, &wallets, btc0).await? + eth_txs(&nodes, &accounts).await? - eth0;
    let (ours, _) = taker_chan.balances(&chan)?;
    ensure!(
        U256::from(ours) == U256::from(total as u128 * u128::from(SATS) * WEI_PER_SAT),
        "the taker holds {ours} wei in the channel after {total} swaps"
    );
    println!(
        "on-chain transactions during the {total} swaps: {txs} ({:.1} per 1,000 swaps); the channels took 2 on Lightning (wallet funding and the channel's) and 3 on Ethereum (contract, deposit) to open",
        txs as f64 * 1_000.0 / total as f64
    );
    taker_ln.stop().await?;
    maker_ln.stop().await?;
    Ok(())
}
