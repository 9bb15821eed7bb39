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
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match abort_after {
        Some(k) => c.env("XSWAP_TEST_ABORT_AFTER_STATES", k.to_string()),
        None => c.env_remove("XSWAP_TEST_ABORT_AFTER_STATES"),
    };
    c
}

async fn install(nodes: &Nodes, wallet: &'static str) -> Install {
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
         [net]\nlisten = \"{listen}\"\n",
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
        &["take", offer, "--give", "1000000", "--yes"],
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
            start.elapsed() < Duration::from_secs(120),
            "{victim:?}: no end in 120 s"
        );
        // The outside kill comes before the taker's lock can confirm: no blocks until then
        // (negotiating and sending the lock need none), so it always lands mid-swap.
        if !matches!(victim, Victim::TakerSigkillAtStates(_)) || sigkilled {
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
                    &["take", offer, "--give", "1000000", "--yes"],
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
    let _ = maker_p.kill();
    let _ = taker_p.kill();
    let _ = maker_p.wait();
    let _ = taker_p.wait();
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
