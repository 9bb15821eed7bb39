//! The CLI as a person uses it: `xswap init` twice, `regtest up` / `join`, `offer`, `maker`,
//! `take`, `list --json`, `show --json`, `regtest mine`, `regtest down`, all as real
//! processes against the nodes `regtest up` started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xswap_tests::{offer_in, succeeded, xswap_cmd};

fn cmd(dir: &Path, args: &[&str]) -> Command {
    xswap_cmd(dir, args, "warn")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    succeeded(cmd(dir, args).output().unwrap(), args)
}

/// Publishes an offer (`xswap offer ARGS`) and returns its string.
fn publish(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["offer"];
    all.extend_from_slice(args);
    offer_in(&ok(dir, &all))
}

/// An offer selling the Bitcoin-family `coin` for ETH (the taker gives ETH): 0.0025 to 2.5 ETH
/// per swap, 250,000,000,000 wei per sat.
fn sell_coin_for_eth(dir: &Path, coin: &str) -> String {
    publish(
        dir,
        &[
            "--sell",
            coin,
            "--buy",
            "eth",
            "--rate",
            "1/250000000000",
            "--min",
            "2500000000000000",
            "--max",
            "2500000000000000000",
        ],
    )
}

/// Starts `xswap maker` (aborting after `abort_after` state changes, when given) and waits
/// until it says it is listening (a fixed sleep was too short on a loaded machine: the taker
/// then found nobody to talk to and the test went on with no swap).
fn start_maker(dir: &Path, abort_after: Option<&str>) -> Child {
    let mut c = cmd(dir, &["maker"]);
    if let Some(k) = abort_after {
        c.env("XSWAP_TEST_ABORT_AFTER_STATES", k);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Read to the end, so the maker never blocks on a full pipe.
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(" listening on ") {
                let _ = tx.send(());
            }
        }
    });
    let start = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => return child,
            Err(_) => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("the maker exited ({status}) before listening");
                }
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "the maker never said it was listening"
                );
            }
        }
    }
}

/// Runs `take ARGS` with `envs` (its output read as it comes, its log in `log`), mining
/// `blocks` blocks every 300 ms once the swap is agreed (mined during the negotiation, they
/// would move the maker's tip past the one block of slack the terms keep, and the maker would
/// rightly refuse), until it exits (within `secs`, or a failure naming `what`): its exit
/// status, its output and its log.
fn take_mining_once_agreed(
    a: &Path,
    b: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    log: &Path,
    (blocks, secs, what): (&str, u64, &str),
) -> (std::process::ExitStatus, String, String) {
    let mut all = vec!["take"];
    all.extend_from_slice(args);
    let mut taker = cmd(b, &all)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = taker.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut all = lines.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        })
    };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = taker.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        if lines.lock().unwrap().contains(" agreed;") {
            ok(a, &["regtest", "mine", blocks]);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    reader.join().unwrap();
    let text = lines.lock().unwrap().clone();
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    (status, text, logged)
}

/// Runs `take` with the crash hook set to `abort_after` state changes, mining once the swap
/// is agreed, until it exits, and checks that it did stop at the hook (and not, say, on an
/// error before any swap existed).
fn take_and_abort(a: &Path, b: &Path, offer: &str, give: &str, abort_after: &str) {
    let (_, text, logged) = take_mining_once_agreed(
        a,
        b,
        &[offer, "--give", give, "--yes"],
        &[("XSWAP_TEST_ABORT_AFTER_STATES", abort_after)],
        &b.with_extension("take.log"),
        ("1", 90, "taker did not stop"),
    );
    assert!(
        logged.contains("XSWAP_TEST_ABORT_AFTER_STATES reached"),
        "the taker ended before its crash point:\n{text}\nlog:\n{logged}"
    );
}

/// Mines a block every 300 ms until `child` exits (or `secs` pass: a failure naming `what`).
fn mine_until_exit(a: &Path, child: &mut Child, secs: u64, what: &str) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        ok(a, &["regtest", "mine", "1"]);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Two installations (maker, taker) on nodes the maker started, and the maker's offer.
struct Setup {
    _root: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    offer: String,
    /// `ltc` or `btc`: the Bitcoin-family asset of the nodes.
    coin: &'static str,
    _down: Down,
}

fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("maker"), root.path().join("taker"));
    ok(&a, &["init"]);
    ok(&b, &["init"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = std::fs::read_to_string(a.join("config.toml")).unwrap();
    std::fs::write(
        a.join("config.toml"),
        cfg.replace("127.0.0.1:7700", &format!("127.0.0.1:{port}")),
    )
    .unwrap();

    let up = ok(&a, &["regtest", "up"]);
    assert!(up.contains("regtest up"), "{up}");
    let down = Down(a.clone());
    ok(&b, &["regtest", "join", a.to_str().unwrap()]);
    let coin = if up.contains("ltc-regtest") {
        "ltc"
    } else {
        "btc"
    };
    let offer = publish(
        &a,
        &[
            "--sell",
            "eth",
            "--buy",
            coin,
            "--rate",
            "250000000000/1",
            "--min",
            "10000",
            "--max",
            "10000000",
        ],
    );
    Setup {
        _root: root,
        a,
        b,
        offer,
        coin,
        _down: down,
    }
}

#[test]
fn two_installations_swap_through_the_cli() {
    let Setup {
        _root,
        a,
        b,
        offer,
        _down: guard,
        ..
    } = setup();

    let mut maker = start_maker(&a, None);
    // 0.01 coins, written as people do (1,000,000 base units).
    let mut taker = cmd(&b, &["take", &offer, "--give", "0.01", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The reader goes away at once (as `xswap take ... | head -1` would): the taker must not
    // panic on the closed pipe but run its swap to the end and exit 0.
    drop(taker.stdout.take());
    let start = Instant::now();
    mine_until_exit(&a, &mut taker, 90, "take did not finish");
    assert!(taker.wait().unwrap().success());
    // The maker finishes too.
    let id = loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "maker did not finish"
        );
        let list: serde_json::Value = serde_json::from_str(&ok(&a, &["list", "--json"])).unwrap();
        if list[0]["state"] == "done" {
            assert_eq!(list[0]["outcome"], "swapped");
            assert_eq!(list[0]["role"], "responder");
            break list[0]["id"].as_str().unwrap().to_owned();
        }
        ok(&a, &["regtest", "mine", "1"]);
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = maker.kill();
    let _ = maker.wait();
    // With the maker gone, a take says where it could not reach it.
    let out = cmd(&b, &["take", &offer, "--give", "0.01", "--yes"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot reach the maker at 127.0.0.1:"),
        "{err}"
    );
    let show: serde_json::Value = serde_json::from_str(&ok(&b, &["show", &id, "--json"])).unwrap();
    assert_eq!(show["outcome"], "swapped");
    assert_eq!(show["role"], "initiator");
    let states: Vec<&str> = show["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"negotiated"));
    assert!(states.contains(&"claiming"), "{states:?}");
    // The claim phase writes its four rows once (no claiming <-> claim_sent loop).
    let claim_rows = states
        .iter()
        .filter(|s| ["claiming", "claim_sent", "claimed"].contains(s))
        .count();
    assert!(claim_rows <= 3, "{states:?}");
    // The taker's lock and claim transactions are listed.
    let kinds: Vec<&str> = show["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"lock") && kinds.contains(&"claim"),
        "{show}"
    );
    // A manual refund is refused: the taker's lock was claimed (or is not yet refundable).
    let out = cmd(&b, &["refund", &id]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not refundable yet") || err.contains("nothing to refund"),
        "{err}"
    );
    // The short id that progress lines print finds the swap; errors say what to do.
    let short: serde_json::Value =
        serde_json::from_str(&ok(&b, &["show", &id[..8], "--json"])).unwrap();
    assert_eq!(short["id"], id.as_str());
    let human = ok(&b, &["show", &id[..8]]);
    assert!(human.contains("outcome  swapped"), "{human}");
    assert!(human.contains("sent     claim"), "{human}");
    assert!(!human.contains("Some("), "{human}");
    let out = cmd(&b, &["show", "zz"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a swap id"));
    let unknown = if id.starts_with("0000") {
        "ffff"
    } else {
        "0000"
    };
    let out = cmd(&b, &["show", unknown]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no swap id starts with"));
    // A joined installation's `down` only detaches: the nodes keep running for the other.
    assert!(ok(&b, &["regtest", "down"]).contains("detached"));
    ok(&a, &["regtest", "mine", "1"]);
    drop(guard);
    // After `down` the nodes are gone.
    let out = cmd(&a, &["regtest", "mine", "1"]).output().unwrap();
    assert!(!out.status.success());
}

/// Stops the nodes even when the test fails.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = cmd(&self.0, &["regtest", "down"]).output();
    }
}

#[test]
fn manual_refund_after_the_maker_vanishes() {
    let Setup {
        _root,
        a,
        b,
        offer,
        _down,
        ..
    } = setup();

    // The maker accepts, then dies at its first state change and never comes back.
    let mut maker = start_maker(&a, Some("1"));
    // The taker locks and then stops too: killed at its second state change after the
    // agreement (Locking, then Locked or, when the lock confirmed before the next poll,
    // LockConfirmed), so after its lock is sent and seen.
    take_and_abort(&a, &b, &offer, "1000000", "2");
    let _ = maker.kill();
    let _ = maker.wait();
    let list: serde_json::Value = serde_json::from_str(&ok(&b, &["list", "--json"])).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    // Too early: refused, saying when.
    let out = cmd(&b, &["refund", &id]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not refundable yet"));
    // Past our expiry the refund goes through.
    let expiry: u64 = list[0]["our_expiry"]
        .as_str()
        .unwrap()
        .trim_start_matches("height ")
        .parse()
        .unwrap();
    ok(&a, &["regtest", "mine", &(expiry + 1).to_string()]);
    let sent = ok(&b, &["refund", &id]);
    assert!(sent.contains("refund sent"), "{sent}");
    ok(&a, &["regtest", "mine", "1"]);
    // And the engine, resumed, records the swap as refunded.
    let mut resume = cmd(&b, &["resume"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    mine_until_exit(&a, &mut resume, 60, "resume did not finish");
    let show: serde_json::Value = serde_json::from_str(&ok(&b, &["show", &id, "--json"])).unwrap();
    assert_eq!(show["outcome"], "refunded", "{show}");
}

/// Issue 9, item 1: with an HTLC address that holds no contract (a typo, a wrong
/// `XSWAP_ETH_HTLC`), neither side agrees to anything or sends anything: `take` and `maker`
/// refuse at once, saying why, and the taker's store holds no swap.
#[test]
fn a_wrong_contract_address_is_refused_before_anything_moves() {
    let Setup {
        _root,
        a,
        b,
        offer: _,
        coin,
        _down,
    } = setup();
    // The taker gives ETH here: the path that lost funds.
    let offer = sell_coin_for_eth(&a, coin);
    let mut maker = start_maker(&a, None);
    let wrong = "0x000000000000000000000000000000000000dEaD";
    let out = cmd(&b, &["take", &offer, "--give", "2500000000000000", "--yes"])
        .env("XSWAP_ETH_HTLC", wrong)
        .output()
        .unwrap();
    let _ = maker.kill();
    let _ = maker.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "take went ahead: {err}");
    assert!(err.contains("not the xswap HTLC contract"), "{err}");
    let list: serde_json::Value = serde_json::from_str(&ok(&b, &["list", "--json"])).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    // A maker so configured does not serve offers at all.
    let out = cmd(&a, &["maker"])
        .env("XSWAP_ETH_HTLC", wrong)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not the xswap HTLC contract"), "{err}");
}

/// Issue 9, items 4 and 7: a maker reserves the liquidity of every swap it accepted, so a
/// second taker whose amount it could no longer fund is refused (and told why) before it
/// locks anything; a taker whose own wallet cannot fund its lock, or is missing, is refused
/// before anything is agreed.
#[test]
fn the_maker_reserves_liquidity_and_takers_check_their_funds() {
    let Setup {
        _root,
        a,
        b,
        coin,
        _down,
        ..
    } = setup();
    let c = _root.path().join("taker2");
    ok(&c, &["init"]);
    ok(&c, &["regtest", "join", a.to_str().unwrap()]);
    let mut maker = start_maker(&a, None);
    // Published while the maker runs: served without a restart.
    // 1 sat buys 10^13 wei: 6,000,000 sats buy 60 ETH of the maker's 100.
    let offer = publish(
        &a,
        &[
            "--sell",
            "eth",
            "--buy",
            coin,
            "--rate",
            "10000000000000/1",
            "--min",
            "10000",
            "--max",
            "2000000000",
        ],
    );
    let mut first = cmd(&b, &["take", &offer, "--give", "6000000", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let list: serde_json::Value = serde_json::from_str(&ok(&b, &["list", "--json"])).unwrap();
        if list.as_array().map(Vec::len) == Some(1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first take was not agreed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // `balance` shows what the accepted swap will still lock (until the maker locks it).
    let bal: serde_json::Value = serde_json::from_str(&ok(&a, &["balance", "--json"])).unwrap();
    let eth = bal
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "ETH")
        .unwrap()
        .clone();
    let reserved: u128 = eth["reserved"].as_str().unwrap().parse().unwrap();
    assert!(reserved == 0 || reserved == 60 * 10u128.pow(18), "{bal}");
    // 60 more ETH: the maker has promised 60 of its 100 already.
    let out = cmd(&c, &["take", &offer, "--give", "6000000", "--yes"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    // Beyond its own wallet (10 coins): refused before the maker is asked.
    let poor = cmd(&c, &["take", &offer, "--give", "1100000000", "--yes"])
        .output()
        .unwrap();
    let missing = cmd(&c, &["take", &offer, "--give", "10000", "--yes"])
        .env("XSWAP_BTC_WALLET", "no-such-wallet")
        .output()
        .unwrap();
    let _ = first.kill();
    let _ = first.wait();
    let _ = maker.kill();
    let _ = maker.wait();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not enough liquidity"), "{err}");
    let poor_err = String::from_utf8_lossy(&poor.stderr);
    assert!(!poor.status.success(), "{poor_err}");
    assert!(poor_err.contains("not enough funds"), "{poor_err}");
    let missing_err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{missing_err}");
    assert!(missing_err.contains("wallet"), "{missing_err}");
    let list: serde_json::Value = serde_json::from_str(&ok(&c, &["list", "--json"])).unwrap();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "nothing agreed: {list}"
    );
}

fn fails(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut c = cmd(dir, args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "xswap {args:?} should fail: {err}");
    err
}

/// Issue 9, item 5: offers are checked before they are published, listed, shown and removed;
/// an unreachable listen address needs a public one; a line-wrapped offer string still reads.
/// (No nodes needed: offers are made offline.)
#[test]
fn offers_are_checked_listed_shown_and_removed() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("maker");
    ok(&a, &["init"]);
    let offer = |extra: &[&str]| {
        let mut args = vec![
            "offer",
            "--sell",
            "eth",
            "--buy",
            "btc",
            "--rate",
            "250000000000/1",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str], envs: &[(&str, &str)]| {
        let args = offer(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&a, &args, envs)
    };
    let zero = run(&["--min", "0", "--max", "10"], &[]);
    assert!(zero.contains("--min") && zero.contains("zero"), "{zero}");
    assert!(run(&["--min", "20", "--max", "10"], &[]).contains("at most --max"));
    assert!(run(&["--min", "1", "--max", "10", "--hours", "0"], &[]).contains("--hours"));
    let same = fails(
        &a,
        &[
            "offer", "--sell", "eth", "--buy", "eth", "--rate", "1/1", "--min", "1", "--max", "2",
        ],
        &[],
    );
    assert!(same.contains("same asset"), "{same}");
    let unreachable = run(
        &["--min", "1", "--max", "10"],
        &[("XSWAP_LISTEN", "0.0.0.0:7700")],
    );
    assert!(unreachable.contains("public"), "{unreachable}");

    let mut c = cmd(
        &a,
        &offer(&["--min", "1000", "--max", "100000"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    c.env("XSWAP_LISTEN", "0.0.0.0:7700")
        .env("XSWAP_PUBLIC", "maker.example:7700");
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let offer_string = offer_in(&text);
    // Short enough for a phone to scan: the compact form, and the QR code holds it in upper
    // case (alphanumeric mode), which reads the same.
    assert!(offer_string.len() <= 250, "{offer_string}");

    let list: serde_json::Value =
        serde_json::from_str(&ok(&a, &["offer", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["address"], "maker.example:7700");
    assert_eq!(list[0]["expired"], false);

    // Cut into lines, as a mail or chat client would.
    let wrapped: String = offer_string
        .as_bytes()
        .chunks(60)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let shown = ok(&a, &["offer", "show", &wrapped]);
    assert!(shown.contains("maker.example:7700"), "{shown}");
    assert!(shown.contains("1000 sat"), "{shown}");
    let scanned = ok(&a, &["offer", "show", &offer_string.to_ascii_uppercase()]);
    assert_eq!(scanned, shown);
    let damaged = fails(
        &a,
        &["offer", "show", &offer_string[..offer_string.len() - 3]],
        &[],
    );
    assert!(damaged.contains("copy the whole string"), "{damaged}");

    // Taking asks first; a script must say --yes. Amounts outside the limits are refused
    // with the limits, before anyone is contacted.
    let b = root.path().join("taker");
    let err = fails(&b, &["init"], &[("XSWAP_PASSWORD", "")]);
    assert!(err.contains("empty password is refused"), "{err}");
    ok(&b, &["init"]);
    let err = fails(&b, &["take", &offer_string, "--give", "0.00001btc"], &[]);
    assert!(err.contains("--yes"), "{err}");
    let err = fails(&b, &["take", &offer_string, "--give", "1btc", "--yes"], &[]);
    assert!(err.contains("0.00001 BTC to 0.001 BTC"), "{err}");
    let err = fails(
        &b,
        &["take", &offer_string, "--give", "0.5eth", "--yes"],
        &[],
    );
    assert!(err.contains("does not fit"), "{err}");

    assert!(fails(&a, &["offer", "remove", "7"], &[]).contains("from 1 to 1"));
    assert!(ok(&a, &["offer", "remove", "1"]).contains("removed 1 offer(s), 0 left"));
    assert!(ok(&a, &["offer", "list"]).contains("no saved offers"));
}

/// Issue 9, item 6: with its swap database deleted while its Ether is locked, an installation
/// refuses to start (naming `xswap recover`) instead of resuming "0 swaps"; `recover` restores
/// the automatic backup, and with no backup at all still finds the lock on chain and refunds
/// it once it expires.
#[test]
fn a_lost_store_is_refused_loudly_and_recover_refunds_from_the_chain() {
    let Setup {
        _root,
        a,
        b,
        coin,
        _down,
        ..
    } = setup();
    let offer = sell_coin_for_eth(&a, coin);
    // The maker accepts and dies; the taker locks its Ether and dies.
    let mut maker = start_maker(&a, Some("1"));
    take_and_abort(&a, &b, &offer, "2500000000000000", "2");
    let _ = maker.kill();
    let _ = maker.wait();

    let delete_store = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(b.join(format!("swaps.sqlite{suffix}")));
        }
    };
    delete_store();
    for args in [&["list"][..], &["resume"][..]] {
        let err = fails(&b, args, &[]);
        assert!(err.contains("xswap recover"), "{args:?}: {err}");
    }
    let out = ok(&b, &["recover"]);
    assert!(out.contains("restored"), "{out}");
    assert!(out.contains("1 Ethereum lock(s)"), "{out}");
    assert!(out.contains("locked until"), "{out}");
    let list: serde_json::Value = serde_json::from_str(&ok(&b, &["list", "--json"])).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // No database and no backup: the chain alone.
    delete_store();
    std::fs::remove_dir_all(b.join("backups")).unwrap();
    let out = ok(&b, &["recover"]);
    assert!(out.contains("no backup to restore"), "{out}");
    assert!(out.contains("locked until"), "{out}");
    let mut refunded = false;
    for _ in 0..40 {
        ok(&a, &["regtest", "mine", "100"]);
        let out = ok(&b, &["recover"]);
        if out.contains("refund sent") {
            refunded = true;
            break;
        }
        assert!(out.contains("locked until"), "{out}");
    }
    assert!(refunded, "the lock never became refundable");
    ok(&a, &["regtest", "mine", "1"]);
    let out = ok(&b, &["recover"]);
    assert!(out.contains("0 Ethereum lock(s)"), "{out}");
}

/// Issue 9, item 8: a `take` whose maker accepted and vanished ends refunded, and says so with
/// a non-zero exit code (3), not 0.
#[test]
fn take_exits_non_zero_when_the_swap_is_refunded() {
    let Setup {
        _root,
        a,
        b,
        offer,
        _down,
        ..
    } = setup();
    let mut maker = start_maker(&a, Some("1"));
    // Its log goes to a file (a pipe nobody reads would fill up), shown if the test fails; 20
    // blocks a poll once agreed.
    let (status, text, logged) = take_mining_once_agreed(
        &a,
        &b,
        &[&offer, "--give", "1000000", "--yes"],
        &[],
        &_root.path().join("taker.log"),
        ("20", 180, "take never ended"),
    );
    let _ = maker.kill();
    let _ = maker.wait();
    assert_eq!(status.code(), Some(3), "{text}\nlog:\n{logged}");
    assert!(
        text.contains("refunded: we got our own asset back"),
        "{text}"
    );
    assert!(!text.contains("Some("), "{text}");
}
