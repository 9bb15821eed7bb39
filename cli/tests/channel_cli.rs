//! `xswap channel` as real processes against a real anvil: two installations, party B
//! serving (`xswap channel serve`), party A opening, topping up, withdrawing and closing
//! cooperatively, with exact on-chain balances (gas accounted from the receipts); the `--json`
//! shapes; a close with the peer gone giving the typed exit code and the way out, then
//! `--force` starting the unilateral close.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use devnet::anvil::Devnet;
use eth_adapter::bindings::Channel;
use serde_json::Value;

const ONE: u128 = 1_000_000_000_000_000_000;

struct Inst {
    dir: PathBuf,
    rpc: String,
    contract: Address,
    listen: String,
}

impl Inst {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xswap"));
        c.arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env("XSWAP_PASSWORD", "pw")
            .env("XSWAP_POLL_MS", "300")
            .env("XSWAP_ETH_CHAIN", "eth-regtest")
            .env("XSWAP_ETH_RPC_URL", &self.rpc)
            .env("XSWAP_CHANNEL_CONTRACT", format!("{:#x}", self.contract))
            .env("XSWAP_CHANNEL_LISTEN", &self.listen)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "xswap {args:?} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn inst(root: &Path, name: &str, net: &Devnet, contract: Address) -> Inst {
    let i = Inst {
        dir: root.join(name),
        rpc: net.url(),
        contract,
        listen: format!("127.0.0.1:{}", free_port()),
    };
    i.ok(&["init"]);
    i
}

/// Starts `xswap channel serve` and waits until it accepts connections.
fn serve(i: &Inst) -> Child {
    let mut child = i
        .cmd(&["channel", "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(&i.listen).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve not listening"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// The wei spent on gas by the transactions `txs` (hashes in a command's JSON).
async fn gas(net: &Devnet, v: &Value) -> u128 {
    let mut total = 0;
    for h in v["txs"].as_array().unwrap() {
        let h: B256 = h.as_str().unwrap().parse().unwrap();
        let r = net
            .provider()
            .get_transaction_receipt(h)
            .await
            .unwrap()
            .unwrap();
        assert!(r.status());
        total += u128::from(r.gas_used) * r.effective_gas_price;
    }
    total
}

async fn balance(net: &Devnet, who: Address) -> u128 {
    net.provider()
        .get_balance(who)
        .await
        .unwrap()
        .try_into()
        .unwrap()
}

fn amount(v: &Value) -> u128 {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn open_top_up_withdraw_close_through_the_cli_with_exact_balances() {
    let net = Devnet::start().await;
    let deployer: DynProvider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(0)))
        .connect_http(net.url().parse().unwrap())
        .erased();
    let contract = *Channel::deploy(deployer).await.unwrap().address();
    let root = tempfile::tempdir().unwrap();
    let a = inst(root.path(), "a", &net, contract);
    let b = inst(root.path(), "b", &net, contract);
    let ia = a.json(&["channel", "info", "--json"]);
    let ib = b.json(&["channel", "info", "--json"]);
    for i in [&ia, &ib] {
        assert_eq!(i["address"].as_str().unwrap().len(), 42);
        assert_eq!(i["transport_key"].as_str().unwrap().len(), 64);
        assert_eq!(i["contract"], format!("{contract:#x}"));
    }
    let addr_a: Address = ia["address"].as_str().unwrap().parse().unwrap();
    let addr_b: Address = ib["address"].as_str().unwrap().parse().unwrap();
    net.set_balance(addr_a, U256::from(100 * ONE)).await;
    net.set_balance(addr_b, U256::from(100 * ONE)).await;
    let (a0, b0) = (balance(&net, addr_a).await, balance(&net, addr_b).await);

    let mut server = serve(&b);
    let peer = format!("{}@{}", ib["transport_key"].as_str().unwrap(), b.listen);
    let opened = a.json(&[
        "channel",
        "open",
        "--peer",
        &peer,
        "--peer-address",
        ib["address"].as_str().unwrap(),
        "--amount",
        "2eth",
        "--json",
    ]);
    let id = opened["channel"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 66);
    assert_eq!(opened["token"], "eth");
    assert_eq!(amount(&opened["deposit"]), 2 * ONE);
    let mut spent = gas(&net, &opened).await;

    // Both list it; B's balances and deposits come from the chain.
    let la = a.json(&["channel", "list", "--json"]);
    let lb = b.json(&["channel", "list", "--json"]);
    assert_eq!(la.as_array().unwrap().len(), 1);
    assert_eq!(lb.as_array().unwrap().len(), 1);
    let (ra, rb) = (&la[0], &lb[0]);
    assert_eq!(ra["channel"], id.as_str());
    assert_eq!(rb["channel"], id.as_str());
    assert_eq!(
        (ra["side"].as_str(), rb["side"].as_str()),
        (Some("A"), Some("B"))
    );
    assert_eq!(amount(&ra["balance"]), 2 * ONE);
    assert_eq!(amount(&rb["balance"]), 0);
    assert_eq!(amount(&rb["peer_balance"]), 2 * ONE);
    assert_eq!(rb["on_chain"]["status"], "open");
    assert_eq!(amount(&rb["on_chain"]["deposit_a"]), 2 * ONE);
    assert_eq!(ra["version"], 0);
    assert_eq!(ra["pending_locks"], 0);
    assert_eq!(amount(&ra["locked"]), 0);
    assert_eq!(ra["final"], false);
    assert_eq!(ra["pending_proposal"], Value::Null);
    // Both watch the channel from where it was opened, not from block 0: A from the head
    // before its deposit, B from the block it saw the channel open at.
    let dep: B256 = opened["txs"][0].as_str().unwrap().parse().unwrap();
    let dep_block = net
        .provider()
        .get_transaction_receipt(dep)
        .await
        .unwrap()
        .unwrap()
        .block_number
        .unwrap();
    assert_eq!(ra["watch_from"].as_u64(), Some(dep_block - 1), "{ra}");
    let from_b = rb["watch_from"]
        .as_u64()
        .expect("recorded at the announcement");
    assert!(from_b >= dep_block, "{rb}");

    // Top-up: on chain, then co-signed.
    let dep = a.json(&["channel", "deposit", &id[..12], "--amount", "0.5", "--json"]);
    assert_eq!(dep["version"], 1);
    spent += gas(&net, &dep).await;
    let lb = b.json(&["channel", "list", "--json"]);
    assert_eq!(lb[0]["version"], 1);
    assert_eq!(amount(&lb[0]["peer_balance"]), 5 * ONE / 2);

    // Withdraw 0.25: co-signed, then paid on chain.
    let wd = a.json(&["channel", "withdraw", &id, "--amount", "0.25eth", "--json"]);
    assert_eq!(wd["version"], 2);
    spent += gas(&net, &wd).await;
    let lb = b.json(&["channel", "list", "--json"]);
    assert_eq!(amount(&lb[0]["on_chain"]["withdrawn_a"]), ONE / 4);

    // Cooperative close: one transaction pays the final balances.
    let closed = a.json(&["channel", "close", &id, "--json"]);
    assert_eq!(closed["closed"], "cooperative");
    assert_eq!(closed["version"], 3);
    assert_eq!(amount(&closed["paid_a"]), 9 * ONE / 4);
    assert_eq!(amount(&closed["paid_b"]), 0);
    assert_eq!(closed["txs"].as_array().unwrap().len(), 1);
    spent += gas(&net, &closed).await;
    // A got back everything it put in: it is down exactly the gas it paid. B paid nothing.
    assert_eq!(balance(&net, addr_a).await, a0 - spent);
    assert_eq!(balance(&net, addr_b).await, b0);
    let la = a.json(&["channel", "list", "--json"]);
    assert_eq!(la[0]["on_chain"]["status"], "settled");
    assert_eq!(la[0]["final"], true);
    // Closing again is refused: nothing to close.
    assert!(!a.run(&["channel", "close", &id]).status.success());

    // A second channel, then the peer goes away: a close says so, with the way out.
    let second = a.json(&[
        "channel",
        "open",
        "--peer",
        &peer,
        "--peer-address",
        ib["address"].as_str().unwrap(),
        "--amount",
        "1eth",
        "--json",
    ]);
    let id2 = second["channel"].as_str().unwrap().to_owned();
    server.kill().unwrap();
    server.wait().unwrap();
    let out = a.run(&["channel", "close", &id2]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("peer unreachable"), "{err}");
    assert!(
        err.contains(&format!("xswap channel close {id2} --force")),
        "{err}"
    );
    assert!(err.contains("NOT closed"), "{err}");
    let la = a.json(&["channel", "list", "--json"]);
    let row = la
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel"] == id2.as_str())
        .unwrap();
    assert_eq!(row["on_chain"]["status"], "open");
    // --force starts the unilateral close with the latest co-signed state (version 0 here).
    let forced = a.json(&["channel", "close", &id2, "--force", "--json"]);
    assert_eq!(forced["closed"], "unilateral");
    assert_eq!(forced["version"], 0);
    let la = a.json(&["channel", "list", "--json"]);
    let row = la
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel"] == id2.as_str())
        .unwrap();
    assert_eq!(row["on_chain"]["status"], "closing");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_with_the_peer_unreachable_moves_no_funds() {
    let net = Devnet::start().await;
    let deployer: DynProvider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(0)))
        .connect_http(net.url().parse().unwrap())
        .erased();
    let contract = *Channel::deploy(deployer).await.unwrap().address();
    let root = tempfile::tempdir().unwrap();
    let a = inst(root.path(), "a", &net, contract);
    let ia = a.json(&["channel", "info", "--json"]);
    let addr_a: Address = ia["address"].as_str().unwrap().parse().unwrap();
    net.set_balance(addr_a, U256::from(10 * ONE)).await;
    let nobody = format!("{}@127.0.0.1:{}", "11".repeat(32), free_port());
    let out = a.run(&[
        "channel",
        "open",
        "--peer",
        &nobody,
        "--peer-address",
        &format!("{:#x}", net.address(5)),
        "--amount",
        "1eth",
    ]);
    assert!(!out.status.success());
    assert_eq!(balance(&net, addr_a).await, 10 * ONE);
    assert_eq!(a.json(&["channel", "list", "--json"]), Value::Array(vec![]));
    // Bad input is a clear error, nothing recorded.
    let out = a.run(&[
        "channel",
        "open",
        "--peer",
        "nokey",
        "--peer-address",
        "0x1",
        "--amount",
        "1",
    ]);
    assert!(!out.status.success());
    assert_eq!(a.json(&["channel", "list", "--json"]), Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erc20_channel_opens_tops_up_and_closes_with_exact_token_balances() {
    use devnet::test_contracts::TestToken;
    let net = Devnet::start().await;
    let deployer: DynProvider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(0)))
        .connect_http(net.url().parse().unwrap())
        .erased();
    let contract = *Channel::deploy(deployer.clone()).await.unwrap().address();
    let tok = TestToken::deploy(deployer, "Six".into(), 6).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let a = inst(root.path(), "a", &net, contract);
    let b = inst(root.path(), "b", &net, contract);
    let ia = a.json(&["channel", "info", "--json"]);
    let ib = b.json(&["channel", "info", "--json"]);
    let addr_a: Address = ia["address"].as_str().unwrap().parse().unwrap();
    let addr_b: Address = ib["address"].as_str().unwrap().parse().unwrap();
    net.set_balance(addr_a, U256::from(10 * ONE)).await;
    let minted = U256::from(1_000_000_000u64);
    let r = tok
        .mint(addr_a, minted)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());
    let token_of = |who: Address| {
        let tok = tok.clone();
        async move { tok.balanceOf(who).call().await.unwrap() }
    };
    let a0 = balance(&net, addr_a).await;
    let mut server = serve(&b);
    let peer = format!("{}@{}", ib["transport_key"].as_str().unwrap(), b.listen);
    let spec = format!("erc20:{:#x}:6", tok.address());
    let opened = a.json(&[
        "channel",
        "open",
        "--peer",
        &peer,
        "--peer-address",
        ib["address"].as_str().unwrap(),
        "--amount",
        "10token",
        "--token",
        &spec,
        "--json",
    ]);
    assert_eq!(opened["token"], format!("{:#x}", tok.address()));
    assert_eq!(amount(&opened["deposit"]), 10_000_000);
    // approve + depositToken.
    assert_eq!(opened["txs"].as_array().unwrap().len(), 2);
    let mut spent = gas(&net, &opened).await;
    let id = opened["channel"].as_str().unwrap().to_owned();
    assert_eq!(token_of(addr_a).await, minted - U256::from(10_000_000u64));
    let dep = a.json(&["channel", "deposit", &id, "--amount", "2.5", "--json"]);
    assert_eq!(dep["version"], 1);
    spent += gas(&net, &dep).await;
    let lb = b.json(&["channel", "list", "--json"]);
    assert_eq!(lb[0]["token"], format!("{:#x}", tok.address()));
    assert_eq!(amount(&lb[0]["peer_balance"]), 12_500_000);
    let closed = a.json(&["channel", "close", &id, "--json"]);
    assert_eq!(amount(&closed["paid_a"]), 12_500_000);
    spent += gas(&net, &closed).await;
    assert_eq!(token_of(addr_a).await, minted);
    assert_eq!(token_of(addr_b).await, U256::ZERO);
    assert_eq!(token_of(contract).await, U256::ZERO);
    assert_eq!(balance(&net, addr_a).await, a0 - spent);
    server.kill().unwrap();
    server.wait().unwrap();
}
