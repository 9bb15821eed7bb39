//! The CLI as a person uses it: `xswap init` twice, `regtest up` / `join`, `offer`, `maker`,
//! `take`, `list --json`, `show --json`, `regtest mine`, `regtest down`, all as real
//! processes against the nodes `regtest up` started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use xswap_tests::xswap_bin;

fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(xswap_bin());
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("XSWAP_PASSWORD", "pw")
        .env("XSWAP_POLL_MS", "200")
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    c
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out: Output = cmd(dir, args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "xswap {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
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
    let offer = ok(
        &a,
        &[
            "offer",
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
    let offer = offer
        .lines()
        .find(|l| l.starts_with("xswap1"))
        .unwrap()
        .to_owned();
    Setup {
        _root: root,
        a,
        b,
        offer,
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
    } = setup();

    let mut maker = cmd(&a, &["maker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let mut taker = cmd(&b, &["take", &offer, "--give", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
            assert_eq!(list[0]["outcome"], "Swapped");
            assert_eq!(list[0]["role"], "responder");
            break list[0]["id"].as_str().unwrap().to_owned();
        }
        ok(&a, &["regtest", "mine", "1"]);
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = maker.kill();
    let _ = maker.wait();
    let show: serde_json::Value = serde_json::from_str(&ok(&b, &["show", &id, "--json"])).unwrap();
    assert_eq!(show["outcome"], "Swapped");
    assert_eq!(show["role"], "initiator");
    let states: Vec<&str> = show["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"negotiated"));
    assert!(states.contains(&"claiming"), "{states:?}");
    // A manual refund is refused: the taker's lock was claimed (or is not yet refundable).
    let out = cmd(&b, &["refund", &id]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not refundable yet") || err.contains("nothing to refund"),
        "{err}"
    );
    // Errors say what to do.
    let out = cmd(&b, &["show", "00ff"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a swap id"));
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
    } = setup();

    // The maker accepts, then dies at its first state change and never comes back.
    let mut maker = cmd(&a, &["maker"])
        .env("XSWAP_TEST_ABORT_AFTER_STATES", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // The taker locks and then stops too: killed at its second state change after the
    // agreement (Locking, then Locked or, when the lock confirmed before the next poll,
    // LockConfirmed), so after its lock is sent and seen.
    let mut taker = cmd(&b, &["take", &offer, "--give", "1000000"])
        .env("XSWAP_TEST_ABORT_AFTER_STATES", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    mine_until_exit(&a, &mut taker, 60, "taker did not stop");
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
    assert_eq!(show["outcome"], "Refunded", "{show}");
}
