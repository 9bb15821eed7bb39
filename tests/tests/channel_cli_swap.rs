//! The CLI's maker and taker on channel legs, as real `xswap` processes on the nodes
//! `regtest up` started: the maker opens an Ethereum channel to the taker and publishes an
//! offer selling ETH in it for LTC over Lightning; `xswap maker` runs its Lightning node and
//! channel service (`xswap ln ...` reach the node through its control socket); a take
//! without a Lightning channel fails with what to open and stores nothing; once the taker
//! opened one, `xswap take` swaps with exact balances in both channels and no transaction on
//! either chain; `list` / `show --json` name each leg's rail and channel. The other direction
//! with an ERC-20 token: the taker pays tokens in a channel it opens to the maker, the maker
//! pays LTC over Lightning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use eth_adapter::bindings::Channel;
use serde_json::Value;
use xswap_tests::{free_port, json_out, offer_in, succeeded, xswap_cmd};

fn cmd(dir: &Path, args: &[&str]) -> Command {
    xswap_cmd(dir, args, "warn")
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

/// Polls `f` every 200 ms until it holds (90 s).
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spawn(dir: &Path, args: &[&str], log: &Path) -> Child {
    cmd(dir, args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// SIGTERM, then waits for the process to end (30 s): it stops on its own (shutting its
/// nodes down), exiting 0, not killed by the signal.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exited with {status} on SIGTERM");
}

struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = cmd(&self.0, &["regtest", "down"]).output();
    }
}

/// Kills a child left running by a failed assertion.
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The one channel row of `xswap ln list --json` on `dir`.
fn ln_channel(dir: &Path) -> Value {
    let list = json(dir, &["ln", "list"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    rows[0].clone()
}

/// The one channel row of `xswap channel list --json` on `dir`.
fn eth_channel(dir: &Path) -> Value {
    let list = json(dir, &["channel", "list"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    rows[0].clone()
}

fn amount(v: &Value) -> u128 {
    v.as_str().unwrap().parse().unwrap()
}

/// anvil's first dev account (the default mnemonic `regtest up` starts anvil with).
const ANVIL_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ONE_ETH: u128 = 1_000_000_000_000_000_000;
const WEI_PER_SAT: u128 = 10_000_000_000;

/// Two installations on the nodes `regtest up` started (the maker's) and joined (the taker's),
/// the Channel contract deployed by anvil's first account, and both with a `[channel]` (a
/// one-hour challenge period) and an `[ln]`.
struct Pair {
    /// Stops the nodes: must drop before `root` (bind it after `root` when destructuring).
    _down: Down,
    root: tempfile::TempDir,
    /// The maker's and the taker's data directories.
    a: PathBuf,
    b: PathBuf,
    /// `regtest.json`: the nodes' endpoints.
    state: Value,
    /// anvil's first account (the contract's deployer).
    provider: alloy::providers::DynProvider,
    /// The maker's and the taker's `[channel] listen`.
    chan_listen: Vec<String>,
    /// What `regtest up` printed.
    up: String,
}

fn pair(rt: &tokio::runtime::Runtime) -> Pair {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("maker"), root.path().join("taker"));
    ok(&a, &["init"]);
    ok(&b, &["init"]);
    let cfg = std::fs::read_to_string(a.join("config.toml")).unwrap();
    std::fs::write(
        a.join("config.toml"),
        cfg.replace("127.0.0.1:7700", &format!("127.0.0.1:{}", free_port())),
    )
    .unwrap();
    let up = ok(&a, &["regtest", "up"]);
    let down = Down(a.clone());
    ok(&b, &["regtest", "join", a.to_str().unwrap()]);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("regtest.json")).unwrap()).unwrap();
    let eth_url = state["eth_url"].as_str().unwrap().to_owned();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(
            ANVIL_KEY_0.parse::<PrivateKeySigner>().unwrap(),
        ))
        .connect_http(eth_url.parse().unwrap())
        .erased();
    let contract = *rt
        .block_on(Channel::deploy(provider.clone()))
        .unwrap()
        .address();
    let mut chan_listen = Vec::new();
    for d in [&a, &b] {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
        cfg.push_str(&format!(
            "\n[channel]\ncontract = \"{contract:#x}\"\nlisten = \"{listen}\"\n\
             challenge_period = 3600\n\n[ln]\nlisten = \"127.0.0.1:{}\"\nmin_confirmations = 1\n",
            free_port()
        ));
        std::fs::write(d.join("config.toml"), cfg).unwrap();
        chan_listen.push(listen);
    }
    Pair {
        _down: down,
        root,
        a,
        b,
        state,
        provider,
        chan_listen,
        up,
    }
}

/// What the chains show of the two installations (their `channel info`): the coin node's
/// height and mempool size, and the nonces of their Ethereum addresses. Equal before and after
/// a swap: no transaction on either chain.
fn chain_view(
    rt: &tokio::runtime::Runtime,
    state: &Value,
    provider: &alloy::providers::DynProvider,
    infos: [&Value; 2],
) -> (u64, usize, Vec<u64>) {
    let btc = btc_adapter::rpc::RpcClient::new(btc_adapter::rpc::RpcConfig {
        url: state["btc_rpc_url"].as_str().unwrap().to_owned(),
        auth: btc_adapter::rpc::Auth::Cookie(state["btc_cookie"].as_str().unwrap().into()),
        wallet: None,
        timeout: Duration::from_secs(30),
    })
    .unwrap();
    rt.block_on(async {
        let mut nonces = Vec::new();
        for i in infos {
            let who: Address = i["address"].as_str().unwrap().parse().unwrap();
            nonces.push(provider.get_transaction_count(who).await.unwrap());
        }
        (
            btc.get_block_count().await.unwrap(),
            btc.get_raw_mempool().await.unwrap().len(),
            nonces,
        )
    })
}

/// `xswap take` on `b` of `offer` for `give`, which must swap (both legs named in its output)
/// within 3 minutes (a take that hangs is killed: the failure shows its output, the maker's
/// log and both sides' channel state) and end swapped on both sides; answers the swap id.
fn take_swapped(a: &Path, b: &Path, offer: &str, give: u64, maker_log: &Path) -> String {
    let give_arg = give.to_string();
    let mut child = cmd(b, &["take", offer, "--give", &give_arg, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes beside the wait (a full pipe would stall the take).
    let pipe = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut out);
            }
            out
        })
    };
    let out = pipe(child.stdout.take().map(|r| Box::new(r) as _));
    let err = pipe(child.stderr.take().map(|r| Box::new(r) as _));
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let hung = child.try_wait().unwrap().is_none();
    if hung {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let (text, stderr) = (
        String::from_utf8_lossy(&out.join().unwrap()).to_string(),
        String::from_utf8_lossy(&err.join().unwrap()).to_string(),
    );
    if hung {
        let list = |d: &Path| {
            String::from_utf8_lossy(&run(d, &["list"]).stdout).to_string()
                + &String::from_utf8_lossy(&run(d, &["channel", "list", "--json"]).stdout)
        };
        panic!(
            "the take did not end in 3 minutes\n{text}\n{stderr}\nmaker: {}\nmaker state: \
             {}\ntaker state: {}",
            std::fs::read_to_string(maker_log).unwrap_or_default(),
            list(a),
            list(b)
        );
    }
    let took = Output {
        status,
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
    };
    assert!(
        took.status.success(),
        "{text}\n{}\nmaker: {}",
        String::from_utf8_lossy(&took.stderr),
        std::fs::read_to_string(maker_log).unwrap_or_default()
    );
    assert!(
        text.contains("(Lightning)") && text.contains("(Ethereum channel)"),
        "{text}"
    );
    let b_rows = json(b, &["list"]);
    assert_eq!(b_rows.as_array().unwrap().len(), 1, "{b_rows}");
    assert_eq!(b_rows[0]["outcome"], "swapped");
    wait_for("the maker's swap swapped", || {
        json(a, &["list"])[0]["outcome"] == "swapped"
    });
    b_rows[0]["id"].as_str().unwrap().to_owned()
}

#[test]
fn lightning_for_eth_in_a_channel_through_the_cli_maker_and_taker() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // `_down` after `root`: bindings drop in reverse order, so the nodes are stopped while
    // the maker's directory (which `regtest down` reads) still exists.
    let Pair {
        root,
        _down,
        a,
        b,
        state,
        provider,
        chan_listen,
        up,
        ..
    } = pair(&rt);
    assert!(
        up.contains("ltc-regtest"),
        "Lightning here is Litecoin's: {up}"
    );
    let mut reap = Reap(Vec::new());

    // The maker's offer to pay ETH in a channel it does not have is refused, saying what to
    // open; nothing is saved.
    let offer_args = [
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
    ];
    let refused = run(&a, &offer_args);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("no Ethereum channel holding") && err.contains("xswap channel open --peer"),
        "{err}"
    );
    assert_eq!(json(&a, &["offer", "list"]), serde_json::json!([]));

    // The Ethereum channel: the taker serves channel peers while the maker opens one to it
    // with 1 ETH on the maker's side (what the maker pays from).
    let ib = json(&b, &["channel", "info"]);
    let ia = json(&a, &["channel", "info"]);
    reap.0.push(spawn(
        &b,
        &["channel", "serve"],
        &root.path().join("b-chan.log"),
    ));
    wait_for("the taker's channel service listening", || {
        std::net::TcpStream::connect(&chan_listen[1]).is_ok()
    });
    let peer = format!(
        "{}@{}",
        ib["transport_key"].as_str().unwrap(),
        chan_listen[1]
    );
    let opened = json(
        &a,
        &[
            "channel",
            "open",
            "--peer",
            &peer,
            "--peer-address",
            ib["address"].as_str().unwrap(),
            "--amount",
            "1eth",
        ],
    );
    let chan_id = opened["channel"].as_str().unwrap().to_owned();
    wait_for("the taker recorded the channel", || {
        json(&b, &["channel", "list"])
            .as_array()
            .is_some_and(|r| r.len() == 1)
    });
    stop(&mut reap.0[0]);
    assert_eq!(amount(&eth_channel(&b)["peer_balance"]), ONE_ETH);

    // The maker's offer: ETH in the channel for LTC over Lightning, 1,000 to 100,000 sats.
    let offer = offer_in(&ok(&a, &offer_args));
    let listed = json(&a, &["offer", "list"]);
    assert_eq!(
        (
            listed[0]["sell_rail"].as_str(),
            listed[0]["buy_rail"].as_str()
        ),
        (Some("eth-channel"), Some("lightning")),
        "{listed}"
    );
    let shown = ok(&a, &["offer", "show", &offer]);
    assert!(
        shown.contains("in an Ethereum channel") && shown.contains("over Lightning"),
        "{shown}"
    );

    // `xswap maker` runs the maker's Lightning node: `xswap ln ...` go through its socket.
    let maker_log = root.path().join("maker.log");
    reap.0.push(spawn(&a, &["maker"], &maker_log));
    wait_for("the maker's Lightning control socket", || {
        a.join("ln/control.sock").exists()
    });
    let a_ln = json(&a, &["ln", "info"]);
    let a_node = a_ln["node_id"].as_str().unwrap().to_owned();
    let a_ln_addr = a_ln["listen"].as_str().unwrap().to_owned();
    let second = run(&a, &["ln", "serve"]);
    assert_eq!(
        second.status.code(),
        Some(5),
        "the maker owns the node: {second:?}"
    );

    // No Lightning channel yet: the take says what to open, exits non-zero, stores nothing.
    let give = 50_000u64;
    let refused = run(&b, &["take", &offer, "--give", &give.to_string(), "--yes"]);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{err}");
    // The maker told the take where its node is: the command names it.
    assert!(
        err.contains(&format!("no Lightning channel with {give} sat outbound"))
            && err.contains(&format!(
                "xswap ln open --peer {a_node}@{a_ln_addr} --amount"
            )),
        "{err}"
    );
    assert_eq!(json(&b, &["list"]), serde_json::json!([]));
    assert_eq!(json(&a, &["list"]), serde_json::json!([]));

    // The taker opens a Lightning channel to the maker's node (running in `xswap maker`).
    let b_serve_log = root.path().join("b-ln.log");
    reap.0.push(spawn(&b, &["ln", "serve"], &b_serve_log));
    wait_for("the taker's ln serve", || {
        b.join("ln/control.sock").exists()
    });
    let capacity = 1_000_000u64;
    json(
        &b,
        &[
            "ln",
            "open",
            "--peer",
            &format!("{a_node}@{a_ln_addr}"),
            "--amount",
            &capacity.to_string(),
        ],
    );
    ok(&a, &["regtest", "mine", "2"]);
    wait_for("the Lightning channel usable on both sides", || {
        ln_channel(&a)["usable"] == true && ln_channel(&b)["usable"] == true
    });
    let b_out0 = ln_channel(&b)["outbound_msat"].as_u64().unwrap();
    assert_eq!(ln_channel(&a)["outbound_msat"], 0);
    stop(&mut reap.0[2]);

    // What the chains look like before the swap.
    let before = chain_view(&rt, &state, &provider, [&ia, &ib]);

    // The take: the taker's node and channel service run in its process for the swap.
    let id = take_swapped(&a, &b, &offer, give, &maker_log);

    // Exact balances: the taker paid `give` over Lightning (direct channel, no fee); the
    // maker holds it less the 1 % reserve the taker asks of it; the ETH moved in the channel.
    let wei = u128::from(give) * WEI_PER_SAT;
    wait_for("no HTLC left in the Lightning channel", || {
        ln_channel(&a)["pending_htlcs"] == 0
    });
    assert_eq!(
        ln_channel(&a)["outbound_msat"],
        give * 1_000 - capacity * 10,
        "the maker's side: what it was paid, less the reserve"
    );
    let (rb, ra) = (eth_channel(&b), eth_channel(&a));
    assert_eq!(ra["channel"], chan_id.as_str());
    assert_eq!(
        (amount(&rb["balance"]), amount(&rb["peer_balance"])),
        (wei, ONE_ETH - wei)
    );
    assert_eq!(
        (amount(&ra["balance"]), amount(&ra["peer_balance"])),
        (ONE_ETH - wei, wei)
    );
    assert_eq!(
        (rb["pending_locks"].as_u64(), ra["pending_locks"].as_u64()),
        (Some(0), Some(0))
    );
    stop(&mut reap.0[1]);
    let b_out1 = ln_channel(&b)["outbound_msat"].as_u64().unwrap();
    assert_eq!(
        b_out0 - b_out1,
        give * 1_000,
        "the taker paid exactly the amount"
    );

    // Neither chain saw a transaction during the swap.
    assert_eq!(
        chain_view(&rt, &state, &provider, [&ia, &ib]),
        before,
        "no transaction on either chain"
    );

    // `list` / `show` name each leg's rail and channel.
    let b_row = &json(&b, &["list"])[0];
    assert_eq!(b_row["gives_rail"]["rail"], "lightning");
    assert_eq!(b_row["gives_rail"]["peer"], a_node.as_str());
    assert_eq!(b_row["gets_rail"]["rail"], "eth-channel");
    assert_eq!(b_row["gets_rail"]["channel"], chan_id.as_str());
    assert_eq!(b_row["gets_rail"]["peer"], ia["address"]);
    let a_show = json(&a, &["show", &id]);
    assert_eq!(a_show["gives_rail"]["rail"], "eth-channel");
    assert_eq!(a_show["gives_rail"]["channel"], chan_id.as_str());
    assert_eq!(a_show["gives_rail"]["peer"], ib["address"]);
    assert_eq!(a_show["gets_rail"]["rail"], "lightning");
    assert_eq!(
        a_show["gets_rail"]["peer"].as_str().map(str::len),
        Some(66),
        "the taker's node id"
    );
    let shown = ok(&b, &["show", &id[..8]]);
    assert!(
        shown.contains(&format!("eth-channel {chan_id}")) && shown.contains("lightning (peer"),
        "{shown}"
    );
    let listed = ok(&b, &["list"]);
    assert!(listed.contains("[lightning"), "{listed}");
}

/// The other direction, with a token: the maker sells LTC over Lightning for an ERC-20 token
/// in an Ethereum channel the taker opens to it. The taker's take without that channel fails
/// with what to open (the `--token` included: without it the channel would hold ETH) and
/// stores nothing; once the taker opened it, the swap moves exactly the token amount in the
/// channel and the coin amount over Lightning, with no transaction on either chain.
#[test]
fn tokens_in_a_channel_for_lightning_through_the_cli_maker_and_taker() {
    use devnet::test_contracts::TestToken;
    let rt = tokio::runtime::Runtime::new().unwrap();
    // `_down` after `root`: bindings drop in reverse order, so the nodes are stopped while
    // the maker's directory (which `regtest down` reads) still exists.
    let Pair {
        root,
        _down,
        a,
        b,
        state,
        provider,
        chan_listen,
        ..
    } = pair(&rt);
    let tok = rt
        .block_on(TestToken::deploy(provider.clone(), "Six".into(), 6))
        .unwrap();
    let spec = format!("erc20:{:#x}:6", tok.address());
    let mut reap = Reap(Vec::new());

    // The Lightning channel, opened by the maker (it pays over Lightning) to the taker.
    reap.0
        .push(spawn(&a, &["ln", "serve"], &root.path().join("a-ln.log")));
    reap.0
        .push(spawn(&b, &["ln", "serve"], &root.path().join("b-ln.log")));
    wait_for("both ln serve", || {
        a.join("ln/control.sock").exists() && b.join("ln/control.sock").exists()
    });
    let b_ln = json(&b, &["ln", "info"]);
    let b_node = b_ln["node_id"].as_str().unwrap().to_owned();
    let capacity = 1_000_000u64;
    json(
        &a,
        &[
            "ln",
            "open",
            "--peer",
            &format!("{b_node}@{}", b_ln["listen"].as_str().unwrap()),
            "--amount",
            &capacity.to_string(),
        ],
    );
    ok(&a, &["regtest", "mine", "2"]);
    wait_for("the Lightning channel usable on both sides", || {
        ln_channel(&a)["usable"] == true && ln_channel(&b)["usable"] == true
    });

    // The offer: LTC over Lightning for the token in an Ethereum channel, 1 sat per 100 token
    // units, 100,000 to 10,000,000 units.
    let offer = offer_in(&ok(
        &a,
        &[
            "offer",
            "--sell",
            "ltc",
            "--sell-rail",
            "ln",
            "--buy",
            &spec,
            "--buy-rail",
            "eth-channel",
            "--rate",
            "1/100",
            "--min",
            "100000",
            "--max",
            "10000000",
        ],
    ));
    let listed = json(&a, &["offer", "list"]);
    assert_eq!(
        (
            listed[0]["sell_rail"].as_str(),
            listed[0]["buy_rail"].as_str()
        ),
        (Some("lightning"), Some("eth-channel")),
        "{listed}"
    );
    // `xswap maker` takes the node over; the taker's node runs in its take.
    stop(&mut reap.0[0]);
    stop(&mut reap.0[1]);
    let maker_log = root.path().join("maker.log");
    reap.0.push(spawn(&a, &["maker"], &maker_log));
    wait_for("the maker's channel service", || {
        std::net::TcpStream::connect(&chan_listen[0]).is_ok()
    });
    let a_out0 = ln_channel(&a)["outbound_msat"].as_u64().unwrap();

    // No Ethereum channel to the maker: the take says what to open (the maker told it where
    // its channel node listens and its Ethereum address; the token included), and stores
    // nothing.
    let give = 5_000_000u64;
    let get = give / 100;
    let refused = run(&b, &["take", &offer, "--give", &give.to_string(), "--yes"]);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{err}");
    let a_info = json(&a, &["channel", "info"]);
    assert!(
        err.contains("no Ethereum channel with the maker")
            && err.contains(&format!(
                "xswap channel open --peer {}@{} --peer-address {} --amount {give} --token {spec}",
                a_info["transport_key"].as_str().unwrap(),
                chan_listen[0],
                a_info["address"].as_str().unwrap(),
            )),
        "{err}"
    );
    assert_eq!(json(&b, &["list"]), serde_json::json!([]));
    assert_eq!(json(&a, &["list"]), serde_json::json!([]));

    // The taker, minted 100 tokens, opens a token channel with 10 of them to the maker (whose
    // channel service runs in `xswap maker`), as the message said.
    let (ia, ib) = (
        json(&a, &["channel", "info"]),
        json(&b, &["channel", "info"]),
    );
    let b_addr: Address = ib["address"].as_str().unwrap().parse().unwrap();
    let r = rt
        .block_on(async {
            tok.mint(b_addr, alloy::primitives::U256::from(100_000_000u64))
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
        })
        .unwrap();
    assert!(r.status());
    let opened = json(
        &b,
        &[
            "channel",
            "open",
            "--peer",
            &format!(
                "{}@{}",
                ia["transport_key"].as_str().unwrap(),
                chan_listen[0]
            ),
            "--peer-address",
            ia["address"].as_str().unwrap(),
            "--amount",
            "10token",
            "--token",
            &spec,
        ],
    );
    let chan_id = opened["channel"].as_str().unwrap().to_owned();
    wait_for("the maker recorded the channel", || {
        json(&a, &["channel", "list"])
            .as_array()
            .is_some_and(|r| r.len() == 1)
    });

    // What the chains look like before the swap.
    let before = chain_view(&rt, &state, &provider, [&ia, &ib]);

    // The take.
    let id = take_swapped(&a, &b, &offer, give, &maker_log);

    // Exact balances: `give` token units moved to the maker in the channel; `get` sats to
    // the taker over Lightning (direct channel, no fee), its side less the 1 % reserve.
    let (rb, ra) = (eth_channel(&b), eth_channel(&a));
    assert_eq!(rb["channel"], chan_id.as_str());
    assert_eq!(rb["token"], format!("{:#x}", tok.address()));
    let ten = 10_000_000u128;
    assert_eq!(
        (amount(&rb["balance"]), amount(&rb["peer_balance"])),
        (ten - u128::from(give), u128::from(give))
    );
    assert_eq!(
        (amount(&ra["balance"]), amount(&ra["peer_balance"])),
        (u128::from(give), ten - u128::from(give))
    );
    assert_eq!(
        (rb["pending_locks"].as_u64(), ra["pending_locks"].as_u64()),
        (Some(0), Some(0))
    );
    wait_for("no HTLC left in the Lightning channel", || {
        ln_channel(&a)["pending_htlcs"] == 0
    });
    assert_eq!(
        a_out0 - ln_channel(&a)["outbound_msat"].as_u64().unwrap(),
        get * 1_000,
        "the maker paid exactly the amount"
    );
    stop(&mut reap.0[2]);
    assert_eq!(
        ln_channel(&b)["outbound_msat"],
        get * 1_000 - capacity * 10,
        "the taker's side: what it was paid, less the reserve"
    );

    // Neither chain saw a transaction during the swap.
    assert_eq!(
        chain_view(&rt, &state, &provider, [&ia, &ib]),
        before,
        "no transaction on either chain"
    );

    // `list` / `show` name each leg's rail and channel.
    let b_row = &json(&b, &["list"])[0];
    assert_eq!(b_row["gives_rail"]["rail"], "eth-channel");
    assert_eq!(b_row["gives_rail"]["channel"], chan_id.as_str());
    assert_eq!(b_row["gets_rail"]["rail"], "lightning");
    let a_show = json(&a, &["show", &id]);
    assert_eq!(a_show["gives_rail"]["rail"], "lightning");
    assert_eq!(a_show["gives_rail"]["peer"], b_node.as_str());
    assert_eq!(a_show["gets_rail"]["rail"], "eth-channel");
    assert_eq!(a_show["gets_rail"]["channel"], chan_id.as_str());
}
