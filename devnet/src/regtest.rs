//! A real regtest node for tests: litecoind (Bitcoin Core 0.21 with Litecoin parameters) or
//! bitcoind, started on free ports in a temporary directory and killed on drop.
//!
//! Which binary: `BITCOIND_EXE` (if set, bitcoind), else `LITECOIND_EXE`, else `litecoind` or
//! `bitcoind` on `PATH`. A missing binary panics with the install command: tests never skip.
//!
//! litecoind quirks handled at start (see the project's nodes.md): the MWEB peg-in at height 431
//! (mining fails from height 432 without one) and CLTV, which activates only at height 1351.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::{BlockHash, Transaction, Txid};
use serde_json::{json, Value};
use swap_core::{ChainFamily, ChainId, Network};

use btc_adapter::rpc::{Auth, RpcClient, RpcConfig, RpcError};

/// Test-harness failures are loud panics with context (never silent skips).
trait Must<T> {
    fn must(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> Must<T> for Result<T, E> {
    fn must(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("regtest harness: {what}: {e}"),
        }
    }
}

impl<T> Must<T> for Option<T> {
    fn must(self, what: &str) -> T {
        match self {
            Some(v) => v,
            None => panic!("regtest harness: {what}: missing"),
        }
    }
}

/// The wallet the harness creates and funds.
pub const WALLET: &str = "xswap";

/// Which node software.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Litecoin Core (0.21 line).
    Litecoind,
    /// Bitcoin Core.
    Bitcoind,
}

impl NodeKind {
    /// The chain this node's regtest is.
    pub fn chain_id(self) -> ChainId {
        match self {
            NodeKind::Litecoind => ChainId::new(ChainFamily::Litecoin, Network::Regtest),
            NodeKind::Bitcoind => ChainId::new(ChainFamily::Bitcoin, Network::Regtest),
        }
    }
}

/// A running regtest node with a funded wallet ([`WALLET`]), CLTV active.
#[derive(Debug)]
pub struct RegtestNode {
    kind: NodeKind,
    exe: PathBuf,
    child: Option<Child>,
    datadir: tempfile::TempDir,
    rpc_port: u16,
    rpc: RpcClient,
    mining_address: String,
    wallets: Vec<String>,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Finds the node binary: `BITCOIND_EXE`, `LITECOIND_EXE`, then `litecoind`/`bitcoind` on `PATH`.
/// Panics, naming the install command, when there is none.
pub fn find_node() -> (NodeKind, PathBuf) {
    find_node_with(|var| std::env::var_os(var), find_on_path)
}

/// [`find_node`] with the environment and the `PATH` search given (testable without changing
/// the process's environment).
pub fn find_node_with(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    on_path: impl Fn(&str) -> Option<PathBuf>,
) -> (NodeKind, PathBuf) {
    if let Some(p) = env("BITCOIND_EXE").filter(|p| !p.is_empty()) {
        return (NodeKind::Bitcoind, PathBuf::from(p));
    }
    if let Some(p) = env("LITECOIND_EXE").filter(|p| !p.is_empty()) {
        return (NodeKind::Litecoind, PathBuf::from(p));
    }
    if let Some(p) = on_path("litecoind") {
        return (NodeKind::Litecoind, p);
    }
    if let Some(p) = on_path("bitcoind") {
        return (NodeKind::Bitcoind, p);
    }
    panic!(
        "no Bitcoin-family node found: run `apt-get install -y litecoind` (or set LITECOIND_EXE / \
         BITCOIND_EXE to a litecoind / bitcoind binary). Integration tests never skip."
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .must("no free port")
}

impl RegtestNode {
    /// Starts the node [`find_node`] picks and prepares its wallet and chain.
    pub async fn start() -> Self {
        let (kind, exe) = find_node();
        Self::start_with(kind, exe).await
    }

    /// Starts a given binary.
    pub async fn start_with(kind: NodeKind, exe: PathBuf) -> Self {
        let datadir = tempfile::Builder::new()
            .prefix("xswap-regtest-")
            .tempdir()
            .must("tempdir");
        let rpc_port = free_port();
        let rpc = RpcClient::new(RpcConfig {
            url: format!("http://127.0.0.1:{rpc_port}"),
            auth: Auth::Cookie(datadir.path().join("regtest").join(".cookie")),
            wallet: Some(WALLET.to_owned()),
            timeout: Duration::from_secs(60),
        })
        .must("rpc client");
        let mut node = Self {
            kind,
            exe,
            child: None,
            datadir,
            rpc_port,
            rpc,
            mining_address: String::new(),
            wallets: Vec::new(),
        };
        node.spawn().await;
        node.rpc
            .create_or_load_wallet(WALLET)
            .await
            .must("createwallet");
        node.mining_address = node.rpc.get_new_address("bech32").await.must("address");
        node.prepare_chain().await;
        node
    }

    async fn spawn(&mut self) {
        let dir = self.datadir.path();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("-regtest")
            .arg(format!("-datadir={}", dir.display()))
            .arg("-server=1")
            .arg("-listen=0")
            .arg("-dnsseed=0")
            .arg(format!("-rpcport={}", self.rpc_port))
            .arg("-rpcbind=127.0.0.1")
            .arg("-rpcallowip=127.0.0.1")
            .arg("-fallbackfee=0.0001")
            .arg("-rpcthreads=8")
            .arg("-rpcworkqueue=64")
            .arg("-printtoconsole=0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // What the node says before its debug.log exists (bad arguments, a port in use).
            .stderr(
                std::fs::File::create(dir.join("stderr.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        if self.kind == NodeKind::Litecoind {
            // Litecoin Core relays BIP-125 replacements only with this flag (fee-bump tests).
            cmd.arg("-mempoolreplacement=1");
            // Litecoin's default dust relay fee is 10x Bitcoin's: outputs LDK (and
            // rust-bitcoin's `minimal_non_dust`) consider relayable would be refused. Bitcoin's
            // value, as the project's `channels.md` says Lightning on Litecoin needs.
            cmd.arg("-dustrelayfee=0.00003");
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); install it with `apt-get install -y litecoind`",
                self.exe.display()
            )
        });
        self.child = Some(child);
        let started = Instant::now();
        loop {
            match self.rpc.get_block_count().await {
                Ok(_) => break,
                Err(e) if e.is_transient() => {}
                Err(e) => panic!("node RPC error while starting: {e}"),
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited during start ({status}); debug.log tail:\n{}",
                        self.exe.display(),
                        self.log_tail()
                    );
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                panic!("node did not answer RPC in 120 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = self.datadir.path().join("regtest").join("debug.log");
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let stderr =
            std::fs::read_to_string(self.datadir.path().join("stderr.log")).unwrap_or_default();
        format!(
            "{}\nstderr: {}",
            lines[lines.len().saturating_sub(30)..].join("\n"),
            stderr.trim()
        )
    }

    async fn prepare_chain(&self) {
        let height = self.rpc.get_block_count().await.must("getblockcount");
        match self.kind {
            NodeKind::Litecoind => {
                if height < 431 {
                    self.mine(431 - height).await;
                    // MWEB activates at 432: without a peg-in, mining fails from there on.
                    let mweb = self.rpc.get_new_address("mweb").await.must("mweb address");
                    self.rpc
                        .send_to_address(&mweb, 100_000_000)
                        .await
                        .must("mweb peg-in");
                }
                let height = self.rpc.get_block_count().await.must("getblockcount");
                // CLTV (BIP65) activates at 1351 on litecoind regtest.
                if height < 1400 {
                    self.mine(1400 - height).await;
                }
            }
            NodeKind::Bitcoind => {
                if height < 200 {
                    self.mine(200 - height).await;
                }
            }
        }
    }

    /// Node software.
    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// The chain (`ltc-regtest` or `btc-regtest`).
    pub fn chain_id(&self) -> ChainId {
        self.kind.chain_id()
    }

    /// RPC settings for this node (cookie auth), bound to `wallet`.
    pub fn rpc_config(&self, wallet: Option<&str>) -> RpcConfig {
        let mut c = self.rpc.config().clone();
        c.wallet = wallet.map(str::to_owned);
        c
    }

    /// The node's data directory.
    pub fn datadir(&self) -> &Path {
        self.datadir.path()
    }

    /// A client bound to the harness wallet.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// The wallet address blocks are mined to.
    pub fn mining_address(&self) -> &str {
        &self.mining_address
    }

    /// Mines `n` blocks to the harness wallet.
    pub async fn mine(&self, n: u64) -> Vec<BlockHash> {
        let mut out = Vec::new();
        let mut left = n;
        while left > 0 {
            let step = left.min(500);
            out.extend(
                self.rpc
                    .generate_to_address(step, &self.mining_address)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "generatetoaddress: {e}; debug.log tail:\n{}",
                            self.log_tail()
                        )
                    }),
            );
            left -= step;
        }
        out
    }

    /// Current height.
    pub async fn height(&self) -> u64 {
        self.rpc.get_block_count().await.must("getblockcount")
    }

    /// Disconnects the top `n` blocks (`invalidateblock`); their transactions go back to the
    /// mempool.
    pub async fn invalidate(&self, n: u64) {
        let tip = self.height().await;
        let hash = self
            .rpc
            .get_block_hash(tip + 1 - n)
            .await
            .must("getblockhash");
        self.rpc
            .invalidate_block(&hash)
            .await
            .must("invalidateblock");
    }

    /// Replaces the top `n` blocks with `n` new ones (mined to fresh addresses, so that they
    /// differ from the invalidated ones even with the same timestamp).
    pub async fn reorg(&self, n: u64) -> Vec<BlockHash> {
        self.invalidate(n).await;
        self.mine_fresh(n).await
    }

    /// Mines `n` blocks, each to a fresh wallet address: after [`RegtestNode::invalidate`] use
    /// this, not [`RegtestNode::mine`], which could recreate an invalidated block byte for byte.
    pub async fn mine_fresh(&self, n: u64) -> Vec<BlockHash> {
        let mut out = Vec::new();
        for _ in 0..n {
            let addr = self.rpc.get_new_address("bech32").await.must("address");
            out.extend(
                self.rpc
                    .generate_to_address(1, &addr)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "generatetoaddress: {e}; debug.log tail:\n{}",
                            self.log_tail()
                        )
                    }),
            );
        }
        out
    }

    /// Sends `sats` from the harness wallet to `address`.
    pub async fn send(&self, address: &str, sats: u64) -> Txid {
        self.rpc
            .send_to_address(address, sats)
            .await
            .must("sendtoaddress")
    }

    /// Replaces an unconfirmed transaction of `wallet` by one spending the same inputs back to
    /// that wallet with a higher fee (BIP-125), so it will never confirm.
    pub async fn double_spend(&self, wallet: &RpcClient, txid: &Txid) -> Txid {
        let tx: Transaction = self
            .rpc
            .get_raw_transaction(txid, None)
            .await
            .must("tx in mempool");
        let mut total_in = 0u64;
        let mut inputs = Vec::new();
        for input in &tx.input {
            let prev: Value = wallet
                .wallet_call("gettransaction", vec![json!(input.previous_output.txid)])
                .await
                .must("gettransaction");
            let hex = prev["hex"].as_str().must("hex");
            let prev_tx: Transaction =
                bitcoin::consensus::encode::deserialize_hex(hex).must("prev tx");
            total_in += prev_tx.output[input.previous_output.vout as usize]
                .value
                .to_sat();
            inputs.push(
                json!({"txid": input.previous_output.txid, "vout": input.previous_output.vout}),
            );
        }
        let total_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        let fee = total_in - total_out + 20_000;
        let addr = wallet.get_new_address("bech32").await.must("address");
        let raw: String = self
            .rpc
            .call(
                "createrawtransaction",
                vec![
                    json!(inputs),
                    json!([{ addr: btc_adapter::rpc::sats_to_coin_string(total_in - fee) }]),
                    json!(0),
                    json!(true),
                ],
            )
            .await
            .must("createrawtransaction");
        let signed: Value = wallet
            .wallet_call("signrawtransactionwithwallet", vec![json!(raw)])
            .await
            .must("sign");
        let hex = signed["hex"].as_str().must("hex");
        self.rpc
            .call("sendrawtransaction", vec![json!(hex)])
            .await
            .must("replacement accepted")
    }

    /// Stops the node (RPC `stop`) and waits for the process to exit. The data directory stays;
    /// the wallets loaded now are loaded again by [`RegtestNode::start_again`].
    pub async fn stop(&mut self) {
        if let Ok(w) = self.rpc.call::<Vec<String>>("listwallets", vec![]).await {
            self.wallets = w;
        }
        let _ = self.rpc.stop().await;
        if let Some(mut child) = self.child.take() {
            let started = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Starts the node again on the same data directory and port, and reloads the wallets.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Starts a stopped node again (after [`RegtestNode::stop`]) and reloads the wallets that
    /// were loaded when it stopped.
    pub async fn start_again(&mut self) {
        self.spawn().await;
        let mut wallets = self.wallets.clone();
        if !wallets.iter().any(|w| w == WALLET) {
            wallets.push(WALLET.to_owned());
        }
        for w in wallets {
            self.rpc.create_or_load_wallet(&w).await.must("loadwallet");
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until an RPC call stops failing transiently (after a restart).
    pub async fn wait_ready(&self) -> Result<(), RpcError> {
        for _ in 0..600 {
            match self.rpc.get_block_count().await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(e),
            }
        }
        Err(RpcError::Transport("node not ready".into()))
    }
}

/// A node left running by [`RegtestNode::detach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// Its process id.
    pub pid: u32,
    /// Its data directory (no longer deleted).
    pub datadir: PathBuf,
    /// Its RPC port.
    pub rpc_port: u16,
    /// Its RPC cookie file.
    pub cookie: PathBuf,
    /// Where mined coins go (in wallet [`WALLET`]).
    pub mining_address: String,
}

impl RegtestNode {
    /// Leaves the node running after this value is gone (for `xswap regtest up`): its data
    /// directory is kept, and it must be stopped by RPC `stop` (or its pid).
    pub fn detach(mut self) -> Detached {
        let pid = self.child.take().map(|c| c.id()).unwrap_or(0);
        let datadir =
            std::mem::replace(&mut self.datadir, tempfile::tempdir().expect("tempdir")).keep();
        Detached {
            pid,
            cookie: datadir.join("regtest").join(".cookie"),
            datadir,
            rpc_port: self.rpc_port,
            mining_address: self.mining_address.clone(),
        }
    }
}

impl Drop for RegtestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
