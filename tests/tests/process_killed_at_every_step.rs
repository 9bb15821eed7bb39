//! Real processes: a maker (`xswap maker`) and a taker (`xswap take`) swap LTC/BTC for ETH
//! on regtest nodes. In each run one of them is killed (the process aborts) right after its
//! k-th state change is committed, before that state's actions are sent; it is restarted from
//! its data directory (`xswap resume` or `xswap maker`), and the swap must still complete with
//! exact balances. k runs over every protocol step of both roles; one more run kills the
//! taker with SIGKILL from outside in the middle of the swap (once it has stored two states:
//! while it may be sending its lock).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use swap_core::store::SqliteStore;
use swap_core::*;
use xswap_tests::*;

struct Install {
    dir: tempfile::TempDir,
    wallet: &'static str,
}

fn xswap(dir: &Path, args: &[&str], abort_after: Option<u64>) -> Command {
    let mut c = Command::new(xswap_bin());
    c.args(args)
        .env("XSWAP_DATA_DIR", dir)
        .env("XSWAP_PASSWORD", "test-password")
        .env("XSWAP_POLL_MS", "150")
        .env(
            "RUST_LOG",
            std::env::var("XSWAP_TEST_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr_log(dir));
    match abort_after {
        Some(k) => c.env("XSWAP_TEST_ABORT_AFTER_STATES", k.to_string()),
        None => c.env_remove("XSWAP_TEST_ABORT_AFTER_STATES"),
    };
    c
}

/// Where a process's warnings go: `xswap.log` in its data directory, appended to by every
/// process of that install (read back when a run takes too long).
fn stderr_log(dir: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("xswap.log"))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// The last `n` lines each process of `dir` logged.
fn log_tail(dir: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(dir.join("xswap.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn install(nodes: &Nodes, wallet: &'static str) -> Install {
    install_with(nodes, wallet, "").await
}

/// [`install`] with `extra` appended to its config.toml.
async fn install_with(nodes: &Nodes, wallet: &'static str, extra: &str) -> Install {
    let dir = tempfile::tempdir().unwrap();
    let out = xswap(dir.path(), &["init"], None).output().unwrap();
    assert!(out.status.success(), "xswap init failed");
    nodes.btc.rpc().create_or_load_wallet(wallet).await.unwrap();
    let rpc = nodes.btc.rpc_config(None);
    let cookie = match rpc.auth {
        btc_adapter::rpc::Auth::Cookie(p) => p,
        _ => unreachable!(),
    };
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let config = format!(
        "[btc]\nchain = \"{}\"\nrpc_url = \"{}\"\ncookie = \"{}\"\nwallet = \"{wallet}\"\n\n\
         [eth]\nchain = \"eth-regtest\"\nrpc_url = \"{}\"\nhtlc = \"{}\"\naccount = 0\n\n\
         [net]\nlisten = \"{listen}\"\n{extra}",
        nodes.btc.chain_id(),
        rpc.url,
        cookie.display(),
        nodes.eth.url(),
        nodes.htlc
    );
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    Install { dir, wallet }
}

fn eth_address(dir: &Path) -> alloy::primitives::Address {
    let ks =
        xswap_cli::keystore::Keystore::open(&dir.join("keystore.json"), "test-password").unwrap();
    xswap_cli::config::eth_signer(&ks, 0).unwrap().address()
}

/// The store of an installation's database, opened with the installation's key as `xswap`
/// opens it (its secrets are sealed); the key is derived once per installation.
fn store(db: &Path) -> Option<SqliteStore> {
    static KEYS: std::sync::Mutex<Vec<(std::path::PathBuf, swap_core::store::StoreKey)>> =
        std::sync::Mutex::new(Vec::new());
    let mut keys = KEYS.lock().unwrap();
    let key = match keys.iter().find(|(p, _)| p == db) {
        Some((_, k)) => k.clone(),
        None => {
            let ks = xswap_cli::keystore::Keystore::open(
                &db.parent()?.join("keystore.json"),
                "test-password",
            )
            .ok()?;
            let k = ks.store_key().ok()?;
            keys.push((db.to_owned(), k.clone()));
            k
        }
    };
    drop(keys);
    SqliteStore::open_with_key(db, key).ok()
}

async fn history_len(db: &Path, id: &SwapId) -> usize {
    match store(db) {
        Some(s) => s.history(id).await.map(|h| h.len()).unwrap_or(0),
        None => 0,
    }
}

async fn outcome(db: &Path, id: &SwapId) -> Option<Outcome> {
    let (_, state) = store(db)?.load(id).await.ok()?;
    swap_core::driver::final_outcome(&state)
}

async fn newest_swap(db: &Path) -> Option<SwapId> {
    store(db)?.list().await.ok()?.first().copied()
}

fn alive(c: &mut Child) -> bool {
    matches!(c.try_wait(), Ok(None))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Victim {
    Taker(u64),
    Maker(u64),
    /// SIGKILL from outside once the taker has stored this many states (mid-swap, wherever
    /// its actions happen to be at that moment).
    TakerSigkillAtStates(usize),
}

/// Runs one swap with one kill; returns whether the victim died before the swap ended.
async fn one_run(
    nodes: &Nodes,
    maker: &Install,
    taker: &Install,
    offer: &str,
    victim: Victim,
) -> bool {
    one_run_giving(nodes, maker, taker, offer, victim, "1000000", true).await
}

/// [`one_run`] giving `give`, mining a block every round when `mine` (a swap on channels
/// needs none).
async fn one_run_giving(
    nodes: &Nodes,
    maker: &Install,
    taker: &Install,
    offer: &str,
    victim: Victim,
    give: &str,
    mine: bool,
) -> bool {
    let (mk, tk) = match victim {
        Victim::Maker(k) => (Some(k), None),
        Victim::Taker(k) => (None, Some(k)),
        Victim::TakerSigkillAtStates(_) => (None, None),
    };
    let maker_db = maker.dir.path().join("swaps.sqlite");
    let taker_db = taker.dir.path().join("swaps.sqlite");
    let before = newest_swap(&taker_db).await;
    let mut maker_p = xswap(maker.dir.path(), &["maker"], mk).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await; // listening
    let mut taker_p = xswap(
        taker.dir.path(),
        &["take", offer, "--give", give, "--yes"],
        tk,
    )
    .spawn()
    .unwrap();
    let start = Instant::now();
    let mut died = false;
    let mut id = None;
    let mut sigkilled = false;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{victim:?}: no end in 180 s\n-- maker's log:\n{}\n-- taker's log:\n{}",
            log_tail(maker.dir.path(), 40),
            log_tail(taker.dir.path(), 40)
        );
        // The outside kill comes before the taker's lock can confirm: no blocks until then
        // (negotiating and sending the lock need none), so it always lands mid-swap.
        if mine && (!matches!(victim, Victim::TakerSigkillAtStates(_)) || sigkilled) {
            nodes.advance(1).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        if id.is_none() {
            id = newest_swap(&taker_db).await.filter(|n| Some(*n) != before);
        }
        if let (Victim::TakerSigkillAtStates(n), false, Some(id)) = (victim, sigkilled, id) {
            if history_len(&taker_db, &id).await >= n && outcome(&taker_db, &id).await.is_none() {
                taker_p.kill().unwrap(); // SIGKILL
                let _ = taker_p.wait();
                sigkilled = true;
                died = true;
                taker_p = xswap(taker.dir.path(), &["resume"], None).spawn().unwrap();
            }
        }
        if !alive(&mut maker_p) {
            died |= matches!(victim, Victim::Maker(_));
            maker_p = xswap(maker.dir.path(), &["maker"], None).spawn().unwrap();
        }
        if !alive(&mut taker_p) {
            if let Some(id) = id {
                if outcome(&taker_db, &id).await.is_none() {
                    died |= matches!(victim, Victim::Taker(_));
                    taker_p = xswap(taker.dir.path(), &["resume"], None).spawn().unwrap();
                }
            } else {
                // Died before agreeing: nothing stored, nothing at stake. Take again.
                died |= matches!(victim, Victim::Taker(_));
                taker_p = xswap(
                    taker.dir.path(),
                    &["take", offer, "--give", give, "--yes"],
                    None,
                )
                .spawn()
                .unwrap();
            }
        }
        if let Some(id) = id {
            let (a, b) = (outcome(&taker_db, &id).await, outcome(&maker_db, &id).await);
            if a.is_some() && b.is_some() {
                assert_eq!(
                    (a, b),
                    (Some(Outcome::Swapped), Some(Outcome::Swapped)),
                    "{victim:?}"
                );
                break;
            }
        }
    }
    if mine {
        let _ = maker_p.kill();
        let _ = taker_p.kill();
        let _ = maker_p.wait();
        let _ = taker_p.wait();
    } else {
        // Channel runs: the run's kill was its victim's; the processes left are stopped
        // cleanly (a SIGKILL here, while LDK may still be settling the claim's commitment
        // update, could leave its manager behind its monitors: see the channel test). The
        // taker's process ends on its own once what it paid has settled in its channels (it
        // waits up to 60 s for that with the maker online): a stop before then leaves the
        // HTLC pending until the two next meet, so it is given that time first.
        // A maker killed at its last state, after the loop above saw both outcomes, is
        // restarted here too: the taker's HTLC settles only with the maker online.
        let start = Instant::now();
        while alive(&mut taker_p) && start.elapsed() < Duration::from_secs(90) {
            if !alive(&mut maker_p) {
                died |= matches!(victim, Victim::Maker(_));
                maker_p = xswap(maker.dir.path(), &["maker"], None).spawn().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if start.elapsed() > Duration::from_secs(10) {
            println!(
                "{victim:?}: the taker took {:?} to settle and end",
                start.elapsed()
            );
            if let Ok(d) = std::env::var("XSWAP_TEST_KEEP_LOGS") {
                for (who, dir) in [("maker", maker.dir.path()), ("taker", taker.dir.path())] {
                    let _ = std::fs::copy(dir.join("xswap.log"), format!("{d}/{who}.log"));
                }
            }
        }
        term(&mut taker_p);
        term(&mut maker_p);
    }
    let id = id.unwrap();
    println!(
        "{victim:?}: died {died}, taker {} states, maker {} states",
        history_len(&taker_db, &id).await,
        history_len(&maker_db, &id).await
    );
    died
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_party_killed_at_every_step_still_swaps() {
    let nodes = start_nodes().await;
    let maker = install(&nodes, "maker").await;
    let taker = install(&nodes, "taker").await;
    // Coins to the taker, ether to the maker's seed-derived account.
    let addr = nodes
        .btc
        .rpc()
        .with_wallet(taker.wallet)
        .unwrap()
        .get_new_address("bech32")
        .await
        .unwrap();
    nodes.btc.send(&addr, 40_000_000).await;
    nodes.btc.mine(1).await;
    let maker_eth = eth_address(maker.dir.path());
    let taker_eth = eth_address(taker.dir.path());
    nodes
        .eth
        .set_balance(maker_eth, U256::from(100u128 * 10u128.pow(18)))
        .await;
    nodes
        .eth
        .set_balance(taker_eth, U256::from(10u128.pow(18)))
        .await;

    let asset = match nodes.btc.chain_id().family {
        ChainFamily::Litecoin => "ltc",
        _ => "btc",
    };
    let out = xswap(
        maker.dir.path(),
        &[
            "offer",
            "--sell",
            "eth",
            "--buy",
            asset,
            "--rate",
            "250000000000/1",
            "--min",
            "10000",
            "--max",
            "10000000",
        ],
        None,
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let offer = offer_in(&String::from_utf8(out.stdout).unwrap());

    let taker_btc0 = nodes
        .btc
        .rpc()
        .with_wallet(taker.wallet)
        .unwrap()
        .get_balance()
        .await
        .unwrap();
    let taker_eth0 = nodes.eth_balance(taker_eth).await.unwrap();
    let mut runs = 0u32;
    for role in ["taker", "maker"] {
        for k in 1..=12u64 {
            let victim = if role == "taker" {
                Victim::Taker(k)
            } else {
                Victim::Maker(k)
            };
            let died = one_run(&nodes, &maker, &taker, &offer, victim).await;
            runs += 1;
            if !died {
                break; // k is past this role's last step
            }
        }
    }
    assert!(
        one_run(
            &nodes,
            &maker,
            &taker,
            &offer,
            Victim::TakerSigkillAtStates(2)
        )
        .await
    );
    runs += 1;
    println!("{runs} runs");
    assert!(runs >= 10, "too few steps exercised: {runs}");

    // Every run swapped 0.01 coin for 0.25 ETH: exact ETH (minus claim gas) and coins (minus fees).
    nodes.advance(1).await;
    let swaps = runs as u128;
    let got_eth = nodes.eth_balance(taker_eth).await.unwrap() - taker_eth0;
    let expected = U256::from(swaps * 250_000_000_000_000_000u128);
    assert!(
        got_eth <= expected && got_eth > expected - U256::from(swaps * 10u128.pow(16)),
        "{got_eth}"
    );
    let spent = taker_btc0
        - nodes
            .btc
            .rpc()
            .with_wallet(taker.wallet)
            .unwrap()
            .get_balance()
            .await
            .unwrap();
    assert!(
        spent >= swaps as u64 * 1_000_000 && spent < swaps as u64 * 1_010_000,
        "{spent}"
    );
}

/// The standard output of `xswap ARGS` on `dir` as JSON (`--json` added); it must succeed.
fn json_of(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = xswap(dir, &all, None).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "xswap {all:?} failed: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{all:?}: {e}: {text}"))
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// SIGTERM, then waits for the process to end.
fn term(c: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let start = Instant::now();
    while alive(c) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 300 ms (mining a block first when `mine`) until it holds (90 s).
async fn until(nodes: &Nodes, what: &str, mine: bool, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out: {what}"
        );
        if mine {
            nodes.btc.mine(1).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The channel pair through the CLI: the maker sells ETH in an Ethereum channel for the
/// coin over Lightning. Each party is killed right after each of its state changes (then
/// restarted: `xswap maker`, `xswap resume`); every swap must end swapped, and both channels
/// hold exactly what the swaps moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_pair_each_party_killed_at_every_step_still_swaps() {
    use alloy::network::EthereumWallet;
    use alloy::providers::{Provider, ProviderBuilder};
    let nodes = start_nodes().await;
    assert_eq!(
        nodes.btc.chain_id().family,
        ChainFamily::Litecoin,
        "Lightning here runs on Litecoin regtest"
    );
    let deployer = ProviderBuilder::new()
        .wallet(EthereumWallet::from(nodes.eth.signer(0)))
        .connect_http(nodes.eth.url().parse().unwrap())
        .erased();
    let contract = *eth_adapter::bindings::Channel::deploy(deployer)
        .await
        .unwrap()
        .address();
    let extra = |chan_listen: &str| {
        format!(
            "\n[channel]\ncontract = \"{contract:#x}\"\nlisten = \"{chan_listen}\"\n\
             challenge_period = 3600\n\n[ln]\nlisten = \"{}\"\nmin_confirmations = 1\n",
            free_addr()
        )
    };
    let (maker_chan, taker_chan) = (free_addr(), free_addr());
    let maker = install_with(&nodes, "cmaker", &extra(&maker_chan)).await;
    let taker = install_with(&nodes, "ctaker", &extra(&taker_chan)).await;
    let (m, t) = (maker.dir.path(), taker.dir.path());
    let addr = nodes
        .btc
        .rpc()
        .with_wallet(taker.wallet)
        .unwrap()
        .get_new_address("bech32")
        .await
        .unwrap();
    nodes.btc.send(&addr, 40_000_000).await;
    nodes.btc.mine(1).await;
    let one_eth = 10u128.pow(18);
    for d in [m, t] {
        nodes
            .eth
            .set_balance(eth_address(d), U256::from(10 * one_eth))
            .await;
    }

    // The Ethereum channel: the maker opens it to the taker with 1 ETH on its side.
    let mut serving = xswap(t, &["channel", "serve"], None).spawn().unwrap();
    until(&nodes, "the taker's channel service", false, || {
        std::net::TcpStream::connect(&taker_chan).is_ok()
    })
    .await;
    let ti = json_of(t, &["channel", "info"]);
    json_of(
        m,
        &[
            "channel",
            "open",
            "--peer",
            &format!("{}@{taker_chan}", ti["transport_key"].as_str().unwrap()),
            "--peer-address",
            ti["address"].as_str().unwrap(),
            "--amount",
            "1eth",
        ],
    );
    until(&nodes, "the taker recorded the channel", false, || {
        json_of(t, &["channel", "list"]).as_array().map(Vec::len) == Some(1)
    })
    .await;
    term(&mut serving);

    // The Lightning channel: the taker opens it to the maker (both nodes serving).
    let mut m_ln = xswap(m, &["ln", "serve"], None).spawn().unwrap();
    let mut t_ln = xswap(t, &["ln", "serve"], None).spawn().unwrap();
    until(&nodes, "both Lightning nodes serving", false, || {
        m.join("ln/control.sock").exists() && t.join("ln/control.sock").exists()
    })
    .await;
    let mi = json_of(m, &["ln", "info"]);
    json_of(
        t,
        &[
            "ln",
            "open",
            "--peer",
            &format!(
                "{}@{}",
                mi["node_id"].as_str().unwrap(),
                mi["listen"].as_str().unwrap()
            ),
            "--amount",
            "1000000",
        ],
    );
    let usable = |d: &Path| json_of(d, &["ln", "list"])[0]["usable"] == true;
    until(&nodes, "the Lightning channel usable", true, || {
        usable(m) && usable(t)
    })
    .await;
    let out0 = json_of(t, &["ln", "list"])[0]["outbound_msat"]
        .as_u64()
        .unwrap();
    term(&mut m_ln);
    term(&mut t_ln);

    let out = xswap(
        m,
        &[
            "offer",
            "--sell",
            "eth",
            "--sell-rail",
            "eth-channel",
            "--buy",
            "ltc",
            "--buy-rail",
            "ln",
            "--rate",
            "10000000000/1",
            "--min",
            "1000",
            "--max",
            "100000",
        ],
        None,
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let offer = offer_in(&String::from_utf8(out.stdout).unwrap());

    let give = 10_000u64;
    let mut runs = 0u64;
    for role in ["taker", "maker"] {
        for k in 1..=12u64 {
            let victim = if role == "taker" {
                Victim::Taker(k)
            } else {
                Victim::Maker(k)
            };
            let died = one_run_giving(
                &nodes,
                &maker,
                &taker,
                &offer,
                victim,
                &give.to_string(),
                false,
            )
            .await;
            runs += 1;
            // LDK force-closes, when a node starts, a channel whose ChannelManager on disk is
            // older than its monitors. The node's store never holds such a pair (monitor
            // writes are committed with a manager that knows them: ln-adapter's `gate.rs`),
            // so no kill, wherever it lands, closes the channel.
            for (who, d) in [("maker", m), ("taker", t)] {
                let channels = json_of(d, &["ln", "list"]);
                assert_eq!(
                    channels.as_array().map(Vec::len),
                    Some(1),
                    "after {victim:?} the {who}'s Lightning channel is gone (force-closed at a \
                     restart?): {channels}\n{}",
                    log_tail(d, 40)
                );
            }
            if !died {
                break;
            }
        }
    }
    println!("{runs} channel runs");
    assert!(runs >= 8, "too few steps exercised: {runs}");

    // Every run swapped `give` sats for `give` * 10^10 wei: exact in both channels.
    let ln = json_of(t, &["ln", "list"]);
    assert_eq!(ln[0]["pending_htlcs"], 0, "{ln}");
    assert_eq!(
        out0 - ln[0]["outbound_msat"].as_u64().unwrap(),
        runs * give * 1_000,
        "the taker paid exactly every swap over Lightning"
    );
    let chan = json_of(t, &["channel", "list"]);
    assert_eq!(
        chan[0]["balance"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap(),
        u128::from(runs * give) * 10_000_000_000,
        "{chan}"
    );
    assert_eq!(chan[0]["pending_locks"], 0, "{chan}");
}
