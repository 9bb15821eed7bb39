//! `xswap-bench`: runs N concurrent BTC->ETH swaps (litecoind regtest -> anvil) between two
//! engines in this process and prints, per N: how many Bitcoin-family blocks and seconds pass
//! until every swap of both engines is done, the engines' CPU time per swap, the process's
//! peak RSS, and the JSON-RPC calls per block the engines send to each chain.
//!
//! The two engines are two `swap_engine::Engine`s with their own keys, node wallet, anvil
//! account, SQLite store and quote book; bob offers ether for coins and alice takes the offer N
//! times through the engine (quote request, proposal, the maker's policy and reservation
//! checks, both records stored: what an exchange does, in-process with `Direct` instead of the
//! network), [`TAKERS`] takes at a time. Each swap runs as soon as it is agreed, so the clock
//! and the block count start before the first proposal. A miner task lets one block interval pass every
//! `--block-secs` seconds ([`Nodes::advance`]: one Bitcoin-family block, the same span of time
//! and one block on anvil).
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-bench cargo run --release -p xswap-bench -- --swaps 1,100,1000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use btc_adapter::BtcChain;
use eth_adapter::EthChain;
use serde_json::{json, Value};
use swap_core::store::SqliteStore;
use swap_core::*;

use futures::StreamExt;
use swap_engine::{Direct, OfferRates};
use swap_net::{OfferLeg, Peer};
use xswap_bench::{cpu_time, reset_peak_rss, status_kb};
use xswap_cli::regtest::Nodes;

/// How many takes are negotiated at once.
const TAKERS: usize = 16;

/// Satoshis (litoshis) each swap's Bitcoin-family leg moves.
const SATS: u64 = 1_000_000;
/// Wei each swap's Ethereum leg moves (0.01 ETH).
const WEI: u128 = 10_000_000_000_000_000;

/// Command-line settings.
#[derive(Debug, Clone)]
struct Opts {
    swaps: Vec<usize>,
    block_secs: f64,
    poll_ms: u64,
    max_blocks: u64,
    /// Anvil mines only at each block interval (its pool waits, each block holds what its gas
    /// limit allows), instead of mining every transaction at once.
    eth_blocks: bool,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        swaps: vec![1, 100, 1000],
        block_secs: 2.0,
        poll_ms: 500,
        max_blocks: 400,
        eth_blocks: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--swaps" => {
                o.swaps = val()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--swaps takes a comma-separated list of counts")?;
            }
            "--block-secs" => o.block_secs = val()?.parse()?,
            "--poll-ms" => o.poll_ms = val()?.parse()?,
            "--max-blocks" => o.max_blocks = val()?.parse()?,
            "--eth-blocks" => o.eth_blocks = true,
            "-h" | "--help" => {
                println!(
                    "xswap-bench [--swaps 1,100,1000] [--block-secs 2] [--poll-ms 500] [--max-blocks 400] [--eth-blocks]\n\
                     --swaps       concurrent swap counts to run, each on fresh regtest nodes\n\
                     --block-secs  wall time between two Bitcoin-family blocks\n\
                     --poll-ms     the drivers' poll interval (also the adapters' cache age)\n\
                     --max-blocks  give up on a run after this many blocks\n\
                     --eth-blocks  anvil mines only once per block interval (block space binds),\n\
                     \x20             instead of mining each transaction as it arrives"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if o.swaps.is_empty() || o.swaps.contains(&0) {
        bail!("--swaps needs positive counts");
    }
    Ok(o)
}

/// One engine: keys, node wallet, anvil account, store, quote book and driver.
struct Engine {
    btc: Arc<BtcChain>,
    eth: Arc<EthChain>,
    engine: Arc<swap_engine::Engine>,
    _db: tempfile::TempDir,
}

impl Engine {
    async fn new(
        nodes: &Nodes,
        wallet: &str,
        seed: u8,
        eth_account: usize,
        o: &Opts,
    ) -> Result<Self> {
        let (bcfg, mut ecfg) = nodes
            .adapter_configs(wallet, Duration::from_millis(50))
            .await?;
        let poll = Duration::from_millis(o.poll_ms);
        let db = tempfile::tempdir()?;
        let path = db.path().join("swaps.sqlite");
        // Secrets sealed and the outbox on its own connection to the same file, as the CLI
        // opens them.
        let key = swap_core::store::StoreKey::from_bytes(&[seed; 32]);
        let store = Arc::new(SqliteStore::open_with_key(&path, key.clone())?);
        let outbox = Arc::new(SqliteStore::open_with_key(&path, key)?);
        let btc = Arc::new(BtcChain::new(bcfg, &[seed; 64])?.with_outbox(outbox.clone()));
        ecfg.receipt_timeout = Duration::from_secs(120);
        let eth = Arc::new(EthChain::new(ecfg, nodes.eth.signer(eth_account))?.with_outbox(outbox));
        let engine = swap_engine::Engine::with_quotes(
            wallet,
            store,
            [btc.clone() as Arc<dyn Rail>, eth.clone() as Arc<dyn Rail>],
            swap_net::Identity::generate()?,
            DriverConfig {
                poll_interval: poll,
                max_backoff: poll * 8,
            },
            Arc::new(swap_engine::SqliteQuotes::open(&path)?),
        );
        Ok(Self {
            btc,
            eth,
            engine,
            _db: db,
        })
    }

    fn driver(&self) -> &Arc<Driver> {
        &self.engine.driver
    }

    fn by_method(&self) -> (Counts, Counts) {
        (
            self.btc.rpc().counts_by_method(),
            self.eth.rpc_calls_by_method(),
        )
    }

    fn rpc_counts(&self) -> (u64, u64) {
        (self.btc.rpc().counts().calls, self.eth.rpc_calls())
    }
}

/// How many swap sides are in each state.
async fn census(engines: &[&Engine], ids: &[SwapId]) -> String {
    let mut m: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for e in engines {
        for id in ids {
            if let Ok((_, st)) = e.driver().store().load(id).await {
                *m.entry(swap_core::driver::state_name(&st)).or_default() += 1;
            }
        }
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

type Counts = std::collections::BTreeMap<String, u64>;

/// Calls per method of both engines during the run, per block, busiest first.
fn breakdown(before: [&Counts; 2], after: [&Counts; 2], blocks: u64) -> String {
    let mut m: Counts = Counts::new();
    for c in after {
        for (k, v) in c {
            *m.entry(k.clone()).or_default() += v;
        }
    }
    for c in before {
        for (k, v) in c {
            if let Some(e) = m.get_mut(k) {
                *e -= v;
            }
        }
    }
    let mut v: Vec<(String, u64)> = m.into_iter().filter(|(_, n)| *n > 0).collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.iter()
        .map(|(k, n)| format!("{k} {:.1}", *n as f64 / blocks.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Gas of one ETH lock (`cargo bench -p eth-adapter --bench gas`).
const ETH_LOCK_GAS: u64 = 47_577;
/// Gas per claim in a full `claimBatch` of 100 (31,690 for the first, 7,040 per extra one).
const ETH_CLAIM_GAS: u64 = (31_690 + 99 * 7_040) / 100;
/// Virtual size of one Bitcoin-family HTLC claim (one P2WSH input with signature, preimage and
/// script; one output), rounded up.
const COIN_CLAIM_VB: u64 = 150;
/// Virtual size per HTLC output of a funding of 250 outputs (its inputs included).
const COIN_LOCK_VB: u64 = 80;
/// A Bitcoin-family block's virtual size (4M weight units).
const COIN_BLOCK_VB: u64 = 1_000_000;

/// The blocks one swap takes when nothing competes for block space, when `--swaps` has no run
/// of 1 to measure it (measured on this machine: the same): each step waits for the block that
/// mines the one before. With anvil mining at once only the coin steps take blocks (the coin
/// lock's, the coin claim's); with `--eth-blocks` four steps do (coin lock, ETH lock, ETH claim,
/// coin claim).
fn one_swap_blocks(eth_blocks: bool) -> u64 {
    if eth_blocks {
        4
    } else {
        2
    }
}

/// How many blocks `n` swaps need by the chains' block space alone. Two lower bounds, the
/// larger wins:
/// - per step: one swap's blocks, plus the extra blocks of the step with the least room (its
///   operations spill over `ceil(n / per_block) - 1` more blocks; the other steps run in those
///   blocks too);
/// - with `--eth-blocks`, the two Ethereum steps share one gas limit: their gas,
///   `n * (lock + claim)`, fills `ceil(n * (lock + claim) / limit)` blocks (at least the two
///   they take for one swap), and those blocks replace the two of one swap's blocks that the
///   Ethereum steps take (the coin lock comes before them, the coin claim after).
///
/// The claims' gas is the least the engine spends per claim (full `claimBatch`es of 100).
/// Printed beside the measured blocks: the engine is not the bottleneck when it stays within
/// one of it. With anvil mining each transaction at once (`eth_blocks` false) only the coin
/// steps bind.
fn block_space_need(n: u64, one: u64, eth_gas_limit: u64, eth_blocks: bool) -> (u64, String) {
    let eth = [
        ("ETH locks", eth_gas_limit / ETH_LOCK_GAS),
        ("ETH claims", eth_gas_limit / ETH_CLAIM_GAS),
    ];
    let coin = [
        ("coin locks", COIN_BLOCK_VB / COIN_LOCK_VB),
        ("coin claims", COIN_BLOCK_VB / COIN_CLAIM_VB),
    ];
    let per_block: Vec<(&str, u64)> = if eth_blocks {
        eth.into_iter().chain(coin).collect()
    } else {
        coin.to_vec()
    };
    let spill = |cap: u64| n.div_ceil(cap.max(1)).saturating_sub(1);
    let (name, cap) = per_block
        .iter()
        .copied()
        .max_by_key(|(_, cap)| spill(*cap))
        .unwrap_or(("none", u64::MAX));
    let per_step = one + spill(cap);
    let text = per_block
        .iter()
        .map(|(k, c)| format!("{k} {c}/block"))
        .collect::<Vec<_>>()
        .join(", ");
    if !eth_blocks {
        return (
            per_step,
            format!(
                "{text}; the tightest: {name} (anvil mines at once: ETH block space not counted)"
            ),
        );
    }
    let eth_gas = n.saturating_mul(ETH_LOCK_GAS + ETH_CLAIM_GAS);
    let eth_steps_blocks = eth_gas.div_ceil(eth_gas_limit.max(1)).max(2);
    let shared = one.saturating_sub(2) + eth_steps_blocks;
    (
        per_step.max(shared),
        format!(
            "{text}; the tightest step: {name}, {per_step} blocks; ETH locks and claims together \
             {:.1}M gas = {eth_steps_blocks} blocks of the gas limit {eth_gas_limit}, \
             {shared} blocks",
            eth_gas as f64 / 1e6
        ),
    )
}

/// One run's figures.
#[derive(Debug, Clone)]
struct Row {
    n: usize,
    swapped: usize,
    failed: usize,
    blocks: u64,
    secs: f64,
    cpu_per_swap_ms: f64,
    peak_rss_mb: f64,
    rss_before_mb: f64,
    btc_calls_per_block: f64,
    eth_calls_per_block: f64,
    setup_secs: f64,
    /// Seconds until the last swap was agreed.
    negotiate_secs: f64,
    /// Anvil's block gas limit.
    eth_gas_limit: u64,
}

async fn run(n: usize, o: &Opts) -> Result<Row> {
    let setup = Instant::now();
    let nodes = Nodes::start().await?;
    let alice = Engine::new(&nodes, "alice", 0xa1, 1, o).await?; // initiator: sells LTC
    let bob = Engine::new(&nodes, "bob", 0xb0, 2, o).await?; // responder: sells ETH

    // Pre-split: one confirmed UTXO per swap (and a spare) in alice's wallet, so concurrent
    // locks never chain unconfirmed change (the 25-descendant limit).
    let awallet = nodes.btc.rpc().with_wallet("alice")?;
    let mut outputs = serde_json::Map::new();
    // Asked in batches (one request of 10,000 outlasts the client's timeout).
    while outputs.len() <= n {
        let want = (n + 1 - outputs.len()).min(500);
        for addr in awallet.get_new_addresses(want, "bech32").await? {
            outputs.insert(
                addr,
                Value::String(btc_adapter::rpc::sats_to_coin_string(2 * SATS)),
            );
        }
    }
    let miner_wallet = nodes.btc.rpc();
    for chunk in outputs
        .into_iter()
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|c| c.iter().cloned().collect::<serde_json::Map<_, _>>())
    {
        let _: Value = miner_wallet
            .wallet_call("sendmany", vec![json!(""), Value::Object(chunk)])
            .await
            .context("sendmany (splitting the funding)")?;
    }
    nodes.btc.mine(1).await;
    // Enough ether for every lock and its gas.
    let need = alloy::primitives::U256::from(WEI * (n as u128 + 10) * 2);
    nodes.eth.set_balance(bob.eth.address(), need).await;

    // Bob's offer: ether for coins at the bench's rate, exactly one swap's amounts.
    let offer = bob.engine.offer(
        "bench.invalid:7700".into(),
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: nodes.eth_params().chain,
            asset: Asset::Eth,
            max: Amount::Wei(Wei(WEI)),
            min: Amount::Wei(Wei(WEI)),
        },
        OfferLeg {
            rail: swap_core::RailKind::OnChain,
            chain: nodes.btc_params().chain,
            asset: nodes.btc_asset(),
            max: Amount::Sats(Sats(SATS)),
            min: Amount::Sats(Sats(SATS)),
        },
        (WEI / u128::from(SATS), 1),
        Timestamp(Timestamp::now().0 + 24 * 3600),
    );
    let maker = bob
        .engine
        .maker(Arc::new(vec![offer.clone()]), Arc::new(OfferRates));
    // As many customers as takes at once, each with its own key and address (the maker
    // bounds open quotes per key and per address, as it would for real customers).
    let peers: Vec<Peer> = (0..4 * TAKERS)
        .map(|k| {
            Ok(Peer {
                key: swap_net::Identity::generate()?.public(),
                ip: std::net::IpAddr::from([127, 0, 1, u8::try_from(k)?]),
            })
        })
        .collect::<Result<_>>()?;
    let setup_secs = setup.elapsed().as_secs_f64();
    let latest: Value = nodes
        .eth
        .rpc("eth_getBlockByNumber", json!(["latest", false]))
        .await;
    let eth_gas_limit = latest["gasLimit"]
        .as_str()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .context("anvil's block gas limit")?;

    if o.eth_blocks {
        // Ethereum's block space binds as on a real chain: transactions wait in anvil's pool
        // and each block interval mines one block of at most the gas limit.
        nodes.eth.rpc("evm_setAutomine", json!([false])).await;
    }

    // Measure from here: the swaps start.
    let peak_reset = reset_peak_rss();
    let rss_before_mb = status_kb("VmRSS:") as f64 / 1024.0;
    let cpu0 = cpu_time();
    let (ab0, ae0) = alice.rpc_counts();
    let (bb0, be0) = bob.rpc_counts();
    let (am0, bm0) = (alice.by_method(), bob.by_method());
    let h0 = nodes.btc.height().await;
    let t0 = Instant::now();

    let nodes = Arc::new(nodes);
    let miner = {
        let nodes = nodes.clone();
        let every = Duration::from_secs_f64(o.block_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                nodes.advance(1).await;
            }
        })
    };

    // Alice takes the offer n times through the engine (quote, proposal, the maker's checks,
    // both records stored); each swap starts running as soon as it is agreed, so the clock
    // and the block count started before the first proposal.
    let takes: Vec<Result<SwapId, swap_engine::EngineError>> = futures::stream::iter(0..n)
        .map(|k| {
            let (engine, offer, maker) = (alice.engine.clone(), offer.clone(), maker.clone());
            let peer = peers[k % peers.len()];
            async move {
                engine
                    .take_via(&mut Direct::new(maker, peer), &offer, u128::from(SATS))
                    .await
            }
        })
        .buffer_unordered(TAKERS)
        .collect::<Vec<_>>()
        .await;
    let negotiate_secs = t0.elapsed().as_secs_f64();
    // A take the maker refuses (say, its store busy past the timeout) is counted and
    // reported, not fatal: the swaps agreed run on.
    let mut ids = Vec::with_capacity(n);
    let mut refused = 0usize;
    for t in takes {
        match t {
            Ok(id) => ids.push(id),
            Err(e) => {
                refused += 1;
                if refused <= 5 {
                    eprintln!("take refused: {e}");
                }
            }
        }
    }
    if refused > 0 {
        eprintln!("n={n}: {refused} of {n} takes refused");
    }
    let mut tasks = SwapTasks::new();
    for id in &ids {
        alice.driver().spawn(&mut tasks, *id);
        bob.driver().spawn(&mut tasks, *id);
    }
    let (mut swapped, mut failed, mut done) = (0usize, 0usize, 0usize);
    let mut last_report = Instant::now();
    let gave_up = loop {
        let next = tokio::time::timeout(Duration::from_secs(1), tasks.join_next()).await;
        match next {
            Ok(None) => break false,
            Ok(Some(joined)) => {
                done += 1;
                match joined {
                    Ok((_, Ok(Outcome::Swapped))) => swapped += 1,
                    Ok((id, other)) => {
                        failed += 1;
                        eprintln!("swap {id}: {other:?}");
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("task: {e}");
                    }
                }
            }
            Err(_) => {}
        }
        let blocks = nodes.btc.height().await - h0;
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  n={n}: {done}/{} swap sides done after {blocks} blocks, {:.0} s; states: {}",
                2 * n,
                t0.elapsed().as_secs_f64(),
                census(&[&alice, &bob], &ids).await
            );
        }
        if blocks >= o.max_blocks {
            break true;
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    // The block count when the last swap finished (no block is mined between the last
    // join and this read that the swaps waited for).
    let blocks = nodes.btc.height().await - h0;
    let cpu = cpu_time() - cpu0;
    let peak_kb = status_kb("VmHWM:");
    let (ab1, ae1) = alice.rpc_counts();
    let (bb1, be1) = bob.rpc_counts();
    let (am1, bm1) = (alice.by_method(), bob.by_method());
    eprintln!(
        "n={n} BTC calls/block by method: {}",
        breakdown([&am0.0, &bm0.0], [&am1.0, &bm1.0], blocks)
    );
    eprintln!(
        "n={n} ETH calls/block by method: {}",
        breakdown([&am0.1, &bm0.1], [&am1.1, &bm1.1], blocks)
    );
    miner.abort();
    let _ = miner.await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // The last owner: dropping it stops both nodes.
    drop(nodes);
    if gave_up {
        eprintln!(
            "n={n}: gave up after {blocks} blocks ({done}/{} sides done)",
            2 * n
        );
    }
    if !peak_reset {
        eprintln!("note: could not reset VmHWM; peak RSS includes earlier runs");
    }
    let per_block = |c: u64| c as f64 / blocks.max(1) as f64;
    Ok(Row {
        n,
        swapped: swapped / 2,
        failed,
        blocks,
        secs,
        cpu_per_swap_ms: cpu.as_secs_f64() * 1000.0 / n as f64,
        peak_rss_mb: peak_kb as f64 / 1024.0,
        rss_before_mb,
        btc_calls_per_block: per_block((ab1 - ab0) + (bb1 - bb0)),
        eth_calls_per_block: per_block((ae1 - ae0) + (be1 - be0)),
        setup_secs,
        negotiate_secs,
        eth_gas_limit,
    })
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
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &n in &o.swaps {
        eprintln!("running {n} concurrent swaps ...");
        let row = rt.block_on(run(n, &o))?;
        eprintln!("{row:?}");
        rows.push(row);
    }
    print_table(&rows, &o);
    Ok(())
}

fn print_table(rows: &[Row], o: &Opts) {
    println!();
    println!(
        "xswap-bench: BTC(litecoind regtest)->ETH(anvil) swaps, 2 engines in one process; \
         1 block every {} s, poll {} ms; anvil {}",
        o.block_secs,
        o.poll_ms,
        if o.eth_blocks {
            "mines one block per interval (block space binds)"
        } else {
            "mines each transaction at once (automine)"
        }
    );
    println!(
        "{:>6} {:>8} {:>7} {:>8} {:>9} {:>10} {:>13} {:>13} {:>11} {:>10}",
        "N",
        "swapped",
        "blocks",
        "seconds",
        "CPU/swap",
        "peak RSS",
        "BTC calls/blk",
        "ETH calls/blk",
        "setup (s)",
        "agreed (s)"
    );
    for r in rows {
        println!(
            "{:>6} {:>8} {:>7} {:>8.1} {:>7.1}ms {:>7.1} MB {:>13.1} {:>13.1} {:>11.1} {:>10.1}",
            r.n,
            r.swapped,
            r.blocks,
            r.secs,
            r.cpu_per_swap_ms,
            r.peak_rss_mb,
            r.btc_calls_per_block,
            r.eth_calls_per_block,
            r.setup_secs,
            r.negotiate_secs
        );
    }
    let one = rows.iter().find(|r| r.n == 1).map(|r| r.blocks);
    println!();
    for r in rows {
        let blocks = match one {
            Some(b) if r.n > 1 => format!(
                "{} blocks = {:.2}x one swap's {} (target <= 1.2x): {}",
                r.blocks,
                r.blocks as f64 / b.max(1) as f64,
                b,
                if (r.blocks as f64) <= 1.2 * b as f64 {
                    "met"
                } else {
                    "NOT met"
                }
            ),
            _ => format!("{} blocks", r.blocks),
        };
        let one_swap = one.unwrap_or(one_swap_blocks(o.eth_blocks));
        let (need, why) = block_space_need(r.n as u64, one_swap, r.eth_gas_limit, o.eth_blocks);
        let why = format!(
            "{why}; one swap's {one_swap} blocks {}",
            if one.is_some() {
                "as measured"
            } else {
                "by its steps (run --swaps 1 to measure)"
            }
        );
        println!(
            "N={}: block space needs {need} blocks ({why}); measured {}: {}",
            r.n,
            r.blocks,
            if r.blocks <= need + 1 {
                "within one block of it"
            } else {
                "the engine is slower than block space"
            }
        );
        // Per engine: 200 MB up to 1,000 swaps, 500 MB at 10,000 (issue "Rails").
        let target = if r.n > 1000 { 500.0 } else { 200.0 };
        println!(
            "N={}: {}/{} swapped, {} failed sides; {}; peak RSS {:.1} MB for both engines \
             (RSS {:.1} MB at start; target < {} MB per engine: {})",
            r.n,
            r.swapped,
            r.n,
            r.failed,
            blocks,
            r.peak_rss_mb,
            r.rss_before_mb,
            target,
            if r.peak_rss_mb < target {
                "met by both together"
            } else if r.peak_rss_mb / 2.0 < target {
                "met if the two engines use about the same"
            } else {
                "NOT met"
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounds printed beside the runs of the README: 30M gas, one swap's 4 blocks.
    #[test]
    fn block_space_counts_eth_claims_in_the_blocks_the_locks_fill() {
        // 2,000: the locks' 4 blocks (630 per block) bind; locks and claims fit in 4.
        assert_eq!(block_space_need(2_000, 4, 30_000_000, true).0, 7);
        // 10,000: locks alone 16 blocks (19 by steps), with claims 548.6M gas = 19 blocks.
        assert_eq!(block_space_need(10_000, 4, 30_000_000, true).0, 21);
        // One swap: its own blocks.
        assert_eq!(block_space_need(1, 4, 30_000_000, true).0, 4);
        // Anvil mining at once: only coin space, 6,666 claims per block.
        assert_eq!(block_space_need(10_000, 2, 30_000_000, false).0, 3);
    }
}
