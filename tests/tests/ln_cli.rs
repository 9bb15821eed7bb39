//! `xswap ln` as a person uses it: two installations on one regtest node, `ln serve` on both,
//! a channel opened, invoices paid one way, `list` / `balance` exact, a second `serve` on the
//! same node refused, one-shot commands without `serve`, hold invoices claimed and cancelled,
//! a cooperative close whose output reaches the wallet exactly, a force close swept back to
//! the wallet; a payment through an intermediary; all as real processes of the `xswap`
//! binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use btc_adapter::rpc::{Auth, RpcClient};
use devnet::regtest::RegtestNode;
use serde_json::Value;
use swap_core::Preimage;
use xswap_tests::{free_port, json_out, succeeded, xswap_cmd};

fn cmd(dir: &Path, args: &[&str]) -> Command {
    // Info: the test reads the logs for secrets.
    xswap_cmd(dir, args, "info")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir, args).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    succeeded(run(dir, args), args)
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    json_out(&ok(dir, &all), args)
}

/// `xswap init`, and a config.toml on `node` with the node wallet `wallet`.
fn installation(root: &Path, name: &str, node: &RegtestNode, wallet: &str) -> (PathBuf, u16) {
    let dir = root.join(name);
    ok(&dir, &["init"]);
    let rpc = node.rpc_config(None);
    let Auth::Cookie(cookie) = &rpc.auth else {
        panic!("the harness node uses cookie auth")
    };
    let port = free_port();
    let cfg = format!(
        "[btc]\nchain = \"{}\"\nrpc_url = \"{}\"\ncookie = \"{}\"\nwallet = \"{wallet}\"\n\n\
         [eth]\nchain = \"eth-regtest\"\nrpc_url = \"http://127.0.0.1:1\"\n\
         htlc = \"0x0000000000000000000000000000000000000000\"\n\n\
         [net]\nlisten = \"127.0.0.1:{}\"\n\n\
         [ln]\nlisten = \"127.0.0.1:{port}\"\nmin_confirmations = 3\n",
        node.chain_id(),
        rpc.url,
        cookie.display(),
        free_port(),
    );
    std::fs::write(dir.join("config.toml"), cfg).unwrap();
    (dir, port)
}

/// `xswap ln serve`, its standard error in `log`; returns once its control socket answers.
fn serve(dir: &Path, log: &Path) -> Child {
    let child = cmd(dir, &["ln", "serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.join("ln/control.sock").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ln serve did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Polls `f` every 200 ms until it holds (60 s).
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The one channel of `dir`'s node.
fn channel(dir: &Path) -> Value {
    let list = json(dir, &["ln", "list"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    rows[0].clone()
}

fn stop(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "ln serve exited with {status} on SIGTERM");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ln serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ln_open_pay_list_balance_close_through_the_cli() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt.block_on(RegtestNode::start());
    let wallet = |name: &str| {
        let rpc = RpcClient::new(node.rpc_config(Some(name))).unwrap();
        rt.block_on(rpc.create_or_load_wallet(name)).unwrap();
        rpc
    };
    let a_wallet = wallet("a");
    let b_wallet = wallet("b");
    let addr = rt.block_on(a_wallet.get_new_address("bech32")).unwrap();
    rt.block_on(node.send(&addr, 10_0000_0000));
    rt.block_on(node.mine(1));

    let root = tempfile::tempdir().unwrap();
    let (a, _) = installation(root.path(), "a", &node, "a");
    let (b, b_port) = installation(root.path(), "b", &node, "b");

    // Without `serve`: the command runs the node itself, and releases it when done.
    let b_info = json(&b, &["ln", "info"]);
    let b_id = b_info["node_id"].as_str().unwrap().to_owned();
    assert_eq!(b_info["listen"], format!("127.0.0.1:{b_port}"));
    assert_eq!(b_info["channels"], 0);
    assert_eq!(
        json(&b, &["ln", "info"])["node_id"],
        b_id,
        "same seed, same node"
    );

    let a_log = root.path().join("a-serve.log");
    let b_log = root.path().join("b-serve.log");
    let mut a_serve = serve(&a, &a_log);
    let mut b_serve = serve(&b, &b_log);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.join("ln/control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket is the owner's only"
    );

    // A second node on the same data directory is refused, naming the running one.
    let second = run(&a, &["ln", "serve"]);
    assert_eq!(second.status.code(), Some(5), "{second:?}");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("pid {}", a_serve.id())),
        "names the running process: {err}"
    );
    assert!(
        a_serve.try_wait().unwrap().is_none(),
        "the first still runs"
    );

    // Open a channel from a (funded wallet) to b.
    let capacity: u64 = 1_000_000;
    let opened = json(
        &a,
        &[
            "ln",
            "open",
            "--peer",
            &format!("{b_id}@127.0.0.1:{b_port}"),
            "--amount",
            &capacity.to_string(),
        ],
    );
    let channel_id = opened["channel_id"].as_str().unwrap().to_owned();
    let funding_txid = opened["funding_txid"].as_str().unwrap().to_owned();
    let mempool = rt.block_on(node.rpc().get_raw_mempool()).unwrap();
    assert!(
        mempool.iter().any(|t| t.to_string() == funding_txid),
        "the funding transaction is broadcast when `open` returns"
    );
    rt.block_on(node.mine(3));
    wait_for("channel usable on both sides", || {
        [&a, &b].iter().all(|d| {
            let c = channel(d);
            c["usable"] == true && c["channel_id"] == channel_id.as_str()
        })
    });
    let row = channel(&a);
    assert_eq!(row["capacity_sats"], capacity);
    assert_eq!(row["peer"], b_id.as_str());
    assert_eq!(row["funding_txid"], funding_txid.as_str());
    assert_eq!(row["opened_by_us"], true);
    assert_eq!(row["pending_htlcs"], 0);

    // b invoices (a fresh preimage: its `serve` claims automatically), a pays.
    let inv = json(&b, &["ln", "invoice", "--amount", "50000"]);
    assert_eq!(inv["auto_claim"], true);
    let expected_kind = if node.chain_id().to_string().starts_with("ltc") {
        "line"
    } else {
        "bolt11"
    };
    assert_eq!(inv["kind"], expected_kind);
    let hash = inv["payment_hash"].as_str().unwrap().to_owned();
    let paid = json(&a, &["ln", "pay", inv["invoice"].as_str().unwrap()]);
    assert_eq!(paid["payment_hash"], hash.as_str());
    assert_eq!(paid["amount_msat"], 50_000_000u64);
    assert_eq!(paid["fee_msat"], 0, "a direct channel charges no fee");
    assert_eq!(paid["already_paid"], false);
    let preimage: [u8; 32] = hex::decode(paid["preimage"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        hex::encode(Preimage::from_bytes(preimage).hashlock().0),
        hash,
        "the payer learned the preimage of the payment hash"
    );

    // Paying the same invoice again pays nothing.
    let again = json(&a, &["ln", "pay", inv["invoice"].as_str().unwrap()]);
    assert_eq!(again["already_paid"], true);

    // a's `serve` stopped: a second payment as a one-shot command (it runs the node from its
    // state, reconnects, pays, stops it), in text mode: the preimage is never printed there.
    stop(&mut a_serve);
    assert!(
        !a.join("ln/control.sock").exists(),
        "serve removes its socket"
    );
    let inv2 = json(&b, &["ln", "invoice", "--amount", "20000"]);
    let hash2 = inv2["payment_hash"].as_str().unwrap().to_owned();
    let one_shot = run(&a, &["ln", "pay", inv2["invoice"].as_str().unwrap()]);
    let text = String::from_utf8_lossy(&one_shot.stdout).to_string();
    let one_shot_log = String::from_utf8_lossy(&one_shot.stderr).to_string();
    assert!(one_shot.status.success(), "{text}\n{one_shot_log}");
    assert!(text.contains(&hash2), "{text}");
    assert!(text.contains("fee_msat=0"), "{text}");
    // The payer knows the preimage now (paid before: the same answer, with it).
    let repeat = json(&a, &["ln", "pay", inv2["invoice"].as_str().unwrap()]);
    assert_eq!(repeat["already_paid"], true);
    let preimage2 = repeat["preimage"].as_str().unwrap().to_owned();
    assert_eq!(preimage2.len(), 64);
    // b kept it sealed: no file of its node holds it in clear, as hex or as bytes.
    let raw2 = hex::decode(&preimage2).unwrap();
    for f in files_under(&b.join("ln")) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(64).any(|w| w == preimage2.as_bytes())
                && !bytes.windows(32).any(|w| w == raw2.as_slice()),
            "{} holds our invoice's preimage in clear",
            f.display()
        );
    }
    assert!(
        !text.contains(preimage2.trim()) && !one_shot_log.contains(preimage2.trim()),
        "no preimage in text output or the log"
    );
    // `serve` again, from the state the one-shot command left.
    let a_log2 = root.path().join("a-serve-2.log");
    let mut a_serve = serve(&a, &a_log2);
    for log in [&a_log, &a_log2, &b_log] {
        let log = std::fs::read_to_string(log).unwrap();
        assert!(
            !log.contains(preimage2.trim()) && !log.contains(&hex::encode(preimage)),
            "no preimage in the logs"
        );
    }

    // More than the channel holds: the payment fails (exit 6), nothing moves.
    let big = json(&b, &["ln", "invoice", "--amount", "5000000"]);
    let failed = run(&a, &["ln", "pay", big["invoice"].as_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(6), "{failed:?}");

    // A hold invoice for a hash whose preimage b does not keep: the payment is held (a's
    // `pay` reports it in flight, exit 7), a cooperative close is refused meanwhile, and it
    // settles once b claims it with the preimage (from standard input).
    let secret = Preimage::from_bytes([0x5a; 32]);
    let held_hash = hex::encode(secret.hashlock().0);
    let hold = json(
        &b,
        &["ln", "invoice", "--amount", "10000", "--hash", &held_hash],
    );
    assert_eq!(hold["auto_claim"], false);
    assert_eq!(hold["payment_hash"], held_hash.as_str());
    let line = hold["invoice"].as_str().unwrap().to_owned();
    let pending = run(&a, &["ln", "pay", &line, "--wait", "3"]);
    assert_eq!(pending.status.code(), Some(7), "{pending:?}");
    wait_for("the held HTLC in b's channel", || {
        channel(&b)["pending_htlcs"] == 1
    });
    let refused = run(&b, &["ln", "close", &channel_id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HTLCs pending"),
        "{refused:?}"
    );
    let mut claim = cmd(&b, &["ln", "claim"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = claim.stdin.take().unwrap();
        writeln!(stdin, "{}", hex::encode(secret.as_bytes())).unwrap();
    }
    let claimed = claim.wait_with_output().unwrap();
    assert!(claimed.status.success(), "{claimed:?}");
    let claimed_text = String::from_utf8_lossy(&claimed.stdout);
    assert!(claimed_text.contains("claimed=true"), "{claimed_text}");
    assert!(!claimed_text.contains(&hex::encode(secret.as_bytes())));
    wait_for("the claimed HTLC settled on both sides", || {
        [&a, &b].iter().all(|d| channel(d)["pending_htlcs"] == 0)
    });
    let learned = json(&a, &["ln", "pay", &line]);
    assert_eq!(learned["already_paid"], true);
    assert_eq!(learned["preimage"], hex::encode(secret.as_bytes()));

    // A hold invoice cancelled: the payment goes back, nothing moves.
    let cancelled_hash = hex::encode(Preimage::from_bytes([0x6b; 32]).hashlock().0);
    let hold = json(
        &b,
        &[
            "ln",
            "invoice",
            "--amount",
            "10000",
            "--hash",
            &cancelled_hash,
        ],
    );
    let pending = run(
        &a,
        &[
            "ln",
            "pay",
            hold["invoice"].as_str().unwrap(),
            "--wait",
            "3",
        ],
    );
    assert_eq!(pending.status.code(), Some(7), "{pending:?}");
    wait_for("the held HTLC in b's channel", || {
        channel(&b)["pending_htlcs"] == 1
    });
    let cancelled = json(&b, &["ln", "cancel", &cancelled_hash]);
    assert_eq!(cancelled["failed_back"], true);

    // list and balance, exact: 80,000 sat moved to b (the failed and the cancelled payments
    // moved nothing); each side keeps the 1 % reserve (10,000 sat) the other asks of it out
    // of what it can send.
    let paid_msat: u64 = 80_000_000;
    let reserve_msat: u64 = 10_000_000;
    wait_for("payments settled on both sides", || {
        [&a, &b].iter().all(|d| channel(d)["pending_htlcs"] == 0)
    });
    let a_row = channel(&a);
    let b_row = channel(&b);
    assert_eq!(b_row["outbound_msat"], paid_msat - reserve_msat, "{b_row}");
    assert_eq!(a_row["inbound_msat"], paid_msat - reserve_msat, "{a_row}");
    assert_eq!(
        a_row["outbound_msat"],
        capacity * 1000 - paid_msat - reserve_msat,
        "{a_row}"
    );
    assert_eq!(b_row["inbound_msat"], a_row["outbound_msat"], "{b_row}");
    assert_eq!(b_row["opened_by_us"], false);
    for (d, r) in [(&a, &a_row), (&b, &b_row)] {
        let bal = json(d, &["ln", "balance"]);
        assert_eq!(bal["channels"], 1);
        assert_eq!(bal["usable_channels"], 1);
        assert_eq!(bal["outbound_msat"], r["outbound_msat"]);
        assert_eq!(bal["inbound_msat"], r["inbound_msat"]);
        assert_eq!(bal["pending_htlcs"], 0);
        assert_eq!(bal["closing_sats"], 0);
        // The wallet's reserve for anchor channels' force closes: never short after an open
        // (an anchor channel is neither opened nor accepted without it).
        assert_eq!(bal["anchor_reserve_short"], false);
        assert_eq!(
            bal["anchor_reserve_needed_sats"].as_u64(),
            bal["anchor_channels"].as_u64().map(|n| n * 25_000)
        );
    }

    // Cooperative close (from b, which did not open it): the closing transaction pays b
    // exactly what it was paid (the opener pays the closing fee).
    let b_before = rt.block_on(b_wallet.get_balance()).unwrap();
    let closed = json(&b, &["ln", "close", &channel_id[..12]]);
    assert_eq!(closed["closed"], "cooperative");
    assert_eq!(closed["closing_tx_broadcast"], true);
    rt.block_on(node.mine(1));
    wait_for("the channel gone on both sides", || {
        [&a, &b]
            .iter()
            .all(|d| json(d, &["ln", "list"]) == serde_json::json!([]))
    });
    for d in [&a, &b] {
        assert_eq!(json(d, &["ln", "balance"])["channels"], 0);
    }
    wait_for("b's wallet has the close", || {
        rt.block_on(b_wallet.get_balance()).unwrap() == b_before + paid_msat / 1000
    });

    // Unknown channel: a typed error.
    let unknown = run(&a, &["ln", "close", "abcdef"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no channel abcdef"));

    // Force close by the opener of a second channel: its balance shows as closing once the
    // peer's delay (144 blocks) has passed, until `serve` swept it to the wallet.
    let peer = format!("{b_id}@127.0.0.1:{b_port}");
    assert_eq!(json(&a, &["ln", "connect", &peer])["connected"], true);
    let forced_capacity: u64 = 200_000;
    let opened = json(
        &a,
        &[
            "ln",
            "open",
            "--peer",
            &peer,
            "--amount",
            &forced_capacity.to_string(),
        ],
    );
    let forced_id = opened["channel_id"].as_str().unwrap().to_owned();
    rt.block_on(node.mine(3));
    wait_for("the second channel usable", || {
        [&a, &b].iter().all(|d| channel(d)["usable"] == true)
    });
    let forced = json(&a, &["ln", "close", &forced_id, "--force"]);
    assert_eq!(forced["closed"], "force");
    assert_eq!(forced["closing_tx_broadcast"], true);
    assert_eq!(json(&a, &["ln", "list"]), serde_json::json!([]));
    let a_before = rt.block_on(a_wallet.get_balance()).unwrap();
    rt.block_on(node.mine(150));
    let started = Instant::now();
    let mut closing_seen = 0;
    loop {
        let closing = json(&a, &["ln", "balance"])["closing_sats"]
            .as_u64()
            .unwrap();
        closing_seen = closing_seen.max(closing);
        if closing_seen > 0 && closing == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let log = std::fs::read_to_string(&a_log2).unwrap();
            let tail: String = log
                .lines()
                .filter(|l| l.contains("sweep") || l.contains("broadcast") || l.contains("WARN"))
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "the force close was not swept (closing {closing}, seen {closing_seen}):\n{tail}"
            );
        }
        rt.block_on(node.mine(1));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        closing_seen > forced_capacity - 10_000 && closing_seen < forced_capacity,
        "a's side less the commitment fee: {closing_seen}"
    );
    let a_after = rt.block_on(a_wallet.get_balance()).unwrap();
    assert!(
        a_after > a_before + closing_seen - 5_000 && a_after < a_before + closing_seen,
        "swept to the wallet, less the sweep's fee: {a_before} -> {a_after} ({closing_seen})"
    );

    stop(&mut a_serve);
    stop(&mut b_serve);
    assert!(
        !a.join("ln/control.sock").exists(),
        "serve removes its socket"
    );
    // With no serve left, a one-shot command runs the node again from its state.
    assert_eq!(json(&a, &["ln", "balance"])["channels"], 0);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The `outbound_msat` and `inbound_msat` of `dir`'s channel with `peer`.
fn balances_with(dir: &Path, peer: &str) -> (u64, u64) {
    let list = json(dir, &["ln", "list"]);
    let rows: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["peer"] == peer)
        .collect();
    assert_eq!(rows.len(), 1, "one channel with {peer}: {list}");
    (
        rows[0]["outbound_msat"].as_u64().unwrap(),
        rows[0]["inbound_msat"].as_u64().unwrap(),
    )
}

/// `xswap ln pay` through one intermediary: `a` has a channel to `b` only, `b` one to `c`;
/// `c`'s invoice carries a route hint (its unannounced channel from `b`), `a` pays it through
/// `b`, which forwards for its advertised fee; every balance moves by exactly the amount
/// and the fee.
#[test]
fn ln_pay_through_an_intermediary_through_the_cli() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt.block_on(RegtestNode::start());
    for name in ["a", "b", "c"] {
        let rpc = RpcClient::new(node.rpc_config(Some(name))).unwrap();
        rt.block_on(rpc.create_or_load_wallet(name)).unwrap();
        if name != "c" {
            let addr = rt.block_on(rpc.get_new_address("bech32")).unwrap();
            rt.block_on(node.send(&addr, 5_0000_0000));
        }
    }
    rt.block_on(node.mine(1));
    let root = tempfile::tempdir().unwrap();
    let mut serving = Serving(Vec::new());
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let (dir, port) = installation(root.path(), name, &node, name);
        serving
            .0
            .push(serve(&dir, &root.path().join(format!("{name}.log"))));
        let id = json(&dir, &["ln", "info"])["node_id"]
            .as_str()
            .unwrap()
            .to_owned();
        nodes.push((dir, id, port));
    }
    let [(a, a_id, _), (b, b_id, b_port), (c, c_id, c_port)] = &nodes[..] else {
        unreachable!()
    };
    let capacity = 1_000_000u64.to_string();
    for (from, to_id, to_port) in [(a, b_id, b_port), (b, c_id, c_port)] {
        json(
            from,
            &[
                "ln",
                "open",
                "--peer",
                &format!("{to_id}@127.0.0.1:{to_port}"),
                "--amount",
                &capacity,
            ],
        );
    }
    rt.block_on(node.mine(3));
    wait_for("both channels usable", || {
        json(b, &["ln", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["usable"] == true)
            .count()
            == 2
    });
    assert!(
        json(a, &["ln", "list"])
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["peer"] != c_id.as_str()),
        "no channel between payer and payee"
    );

    // `c` invoices once `b` told it its forwarding terms: the invoice names `b` as the way in.
    let amount_sats = 40_000u64;
    let mut inv = Value::Null;
    wait_for("an invoice with a route hint", || {
        inv = json(c, &["ln", "invoice", "--amount", &amount_sats.to_string()]);
        inv["route_hints"] == 1
    });
    let text = inv["invoice"].as_str().unwrap();
    let target = if inv["kind"] == "line" {
        ln_adapter::PaymentTarget::from_line(text, node.chain_id())
    } else {
        ln_adapter::PaymentTarget::from_bolt11(text, node.chain_id())
    }
    .unwrap();
    let [hint] = target.route_hints[..] else {
        panic!("one hint: {text}")
    };
    assert_eq!(hex::encode(hint.src_node_id.0), *b_id, "the hint names b");
    // Each side's view of both channels (what the sender can send, and what the receiver can
    // still receive: the receiver's own balance starts below its reserve, so its `outbound`
    // would not show all of it).
    let before = [
        balances_with(a, b_id),
        balances_with(b, a_id),
        balances_with(b, c_id),
        balances_with(c, b_id),
    ];
    // An intermediary that would hold our coins too long is refused, and nothing is sent.
    let mut greedy = target.clone();
    greedy.route_hints[0].cltv_expiry_delta =
        u16::try_from(ln_adapter::MAX_PAY_CLTV_BLOCKS + 1 - target.final_cltv_delta).unwrap();
    let refused = run(a, &["ln", "pay", &greedy.to_line(node.chain_id())]);
    assert_eq!(refused.status.code(), Some(6), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("at most 1008"), "{err}");
    assert_eq!(balances_with(a, b_id), before[0], "nothing sent");

    let paid = json(a, &["ln", "pay", text]);
    assert_eq!(paid["already_paid"], false);
    let fee = paid["fee_msat"].as_u64().unwrap();
    let amount_msat = amount_sats * 1_000;
    assert!(fee > 0);
    assert_eq!(
        fee,
        u64::from(hint.fee_base_msat)
            + amount_msat * u64::from(hint.fee_proportional_millionths) / 1_000_000,
        "b's advertised fee"
    );
    let hash = paid["payment_hash"].as_str().unwrap();
    assert_eq!(hash, inv["payment_hash"].as_str().unwrap());
    let preimage = hex::decode(paid["preimage"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex::encode(
            Preimage::from_bytes(preimage.try_into().unwrap())
                .hashlock()
                .0
        ),
        hash
    );
    wait_for("every channel settled", || {
        nodes.iter().all(|(d, _, _)| {
            json(d, &["ln", "list"])
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["pending_htlcs"] == 0)
        })
    });
    let after = [
        balances_with(a, b_id),
        balances_with(b, a_id),
        balances_with(b, c_id),
        balances_with(c, b_id),
    ];
    let sent = amount_msat + fee;
    assert_eq!(after[0].0, before[0].0 - sent, "a sent amount + fee");
    assert_eq!(after[1].1, before[1].1 - sent, "b received amount + fee");
    assert_eq!(
        after[2].0,
        before[2].0 - amount_msat,
        "b forwarded the amount"
    );
    assert_eq!(
        after[3].1,
        before[3].1 - amount_msat,
        "c received the amount"
    );
    assert!(after[1].0 > before[1].0 && after[3].0 > before[3].0);
    for s in &mut serving.0 {
        stop(s);
    }
}

/// `serve` processes, killed when dropped (a failed assertion leaves none running).
struct Serving(Vec<Child>);

impl Drop for Serving {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
