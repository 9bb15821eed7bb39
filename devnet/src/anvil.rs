//! A real anvil for tests: started per test on a free port, stopped on drop.
//!
//! The binary is `node_modules/.bin/anvil` at the workspace root (`npm ci` installs it from the
//! pinned `@foundry-rs/anvil`), or `ANVIL_EXE`. A missing binary panics with the install
//! command: tests never skip silently.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};

/// Where the anvil binary is: `ANVIL_EXE`, else the native binary that `npm install` (run by `scripts/test`) put under
/// `<workspace>/node_modules/@foundry-rs/anvil-<platform>/bin/anvil`, else `anvil` on the
/// `PATH` (an installed `xswap` away from its source tree). (The
/// `node_modules/.bin/anvil` wrapper is a node script that would outlive a killed child, so the
/// native binary is started directly.)
///
/// # Panics
/// When the binary does not exist, with a message naming the install command.
pub fn anvil_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ANVIL_EXE") {
        let path = PathBuf::from(p);
        if !path.exists() {
            panic!("ANVIL_EXE={} does not exist", path.display());
        }
        return path;
    }
    let scope = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node_modules/@foundry-rs");
    let native = std::fs::read_dir(&scope).ok().and_then(|dir| {
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("anvil-"))
            .map(|e| e.path().join("bin/anvil"))
            .find(|p| p.exists())
    });
    let wrapper = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node_modules/.bin/anvil");
    match native {
        Some(p) => p,
        // Unknown platform package layout: the npm wrapper works too (but a killed wrapper
        // may leave its anvil child running).
        None if wrapper.exists() => wrapper,
        // An installed `xswap` far from its source tree: anvil on the PATH.
        None => std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("anvil"))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| {
                panic!(
                    "anvil not found (not under {}, not on PATH): run `npm install` at the \
                     workspace root, or `npm install -g @foundry-rs/anvil@1.7.1`, or set ANVIL_EXE",
                    scope.display()
                )
            }),
    }
}

/// A running anvil with its funded dev accounts.
#[derive(Debug)]
pub struct Devnet {
    child: Option<Child>,
    port: u16,
    keys: Vec<PrivateKeySigner>,
    args: Vec<String>,
    provider: DynProvider,
}

fn spawn(port: u16, args: &[String]) -> Result<(Child, u16, Vec<PrivateKeySigner>), String> {
    let mut child = Command::new(anvil_path())
        .arg("--port")
        .arg(port.to_string())
        .arg("--host")
        .arg("127.0.0.1")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start anvil: {e}"))?;
    let stdout = child.stdout.take().ok_or("no anvil stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        // Keep draining stdout for the node's whole life so it never blocks on a full pipe.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut keys = Vec::new();
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("anvil did not print its listening address in 30 s".into());
            }
        };
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('(') {
            if let Some((_, key)) = rest.split_once(") ") {
                let key = key.trim();
                if key.len() == 66 && key.starts_with("0x") {
                    if let Ok(k) = key.parse::<PrivateKeySigner>() {
                        keys.push(k);
                    }
                }
            }
        }
        if let Some(addr) = t.strip_prefix("Listening on ") {
            let port = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.trim().parse::<u16>().ok())
                .ok_or_else(|| format!("cannot parse anvil address {addr:?}"))?;
            return Ok((child, port, keys));
        }
    }
}

impl Devnet {
    /// Starts anvil on a free port (automine, chain id 31337).
    ///
    /// # Panics
    /// When anvil is missing or does not start.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts anvil with extra command-line arguments (e.g. `["--block-time", "1"]`).
    ///
    /// # Panics
    /// When anvil is missing or does not start.
    pub async fn start_with(args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, port, keys) = match spawn(0, &args) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        let provider = connect(port);
        let net = Self {
            child: Some(child),
            port,
            keys,
            args,
            provider,
        };
        net.wait_ready().await;
        net
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.provider.get_chain_id().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("anvil on port {} did not answer eth_chainId", self.port);
    }

    /// The HTTP JSON-RPC endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port anvil listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A provider without wallet, for queries and dev RPCs.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The `i`-th funded dev account's key.
    ///
    /// # Panics
    /// When there is no such account.
    pub fn signer(&self, i: usize) -> PrivateKeySigner {
        match self.keys.get(i) {
            Some(k) => k.clone(),
            None => panic!("anvil has {} dev accounts, asked for {i}", self.keys.len()),
        }
    }

    /// The `i`-th funded dev account's address.
    pub fn address(&self, i: usize) -> Address {
        self.signer(i).address()
    }

    /// Sends a raw JSON-RPC request (dev methods such as `anvil_reorg`).
    ///
    /// # Panics
    /// When the node answers with an error.
    pub async fn rpc(&self, method: &'static str, params: Value) -> Value {
        match self
            .provider
            .raw_request::<_, Value>(method.into(), params)
            .await
        {
            Ok(v) => v,
            Err(e) => panic!("{method} failed: {e}"),
        }
    }

    /// Mines `n` blocks.
    pub async fn mine(&self, n: u64) {
        self.rpc("anvil_mine", json!([format!("0x{n:x}")])).await;
    }

    /// Moves the clock forward by `secs` and mines a block carrying the new time.
    pub async fn advance_time(&self, secs: u64) {
        self.rpc("evm_increaseTime", json!([secs])).await;
        self.mine(1).await;
    }

    /// Replaces the last `depth` blocks with `depth` empty blocks: their transactions are gone.
    pub async fn reorg(&self, depth: u64) {
        self.rpc("anvil_reorg", json!([depth, []])).await;
    }

    /// Sets an account's ETH balance.
    pub async fn set_balance(&self, who: Address, wei: U256) {
        self.rpc("anvil_setBalance", json!([who, format!("0x{wei:x}")]))
            .await;
    }

    /// Stops the node (its state is lost unless [`Devnet::restart`] is used).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the node for `down` and starts it again on the same port with the same chain.
    ///
    /// # Panics
    /// When the node cannot be restarted.
    pub async fn restart(&mut self, down: Duration) {
        let state = self.stop_keeping_state().await;
        tokio::time::sleep(down).await;
        self.resume(state).await;
    }

    /// Dumps the chain (`anvil_dumpState`) and stops the node; [`Devnet::resume`] brings it back.
    pub async fn stop_keeping_state(&mut self) -> Value {
        let state = self.rpc("anvil_dumpState", json!([])).await;
        self.stop();
        state
    }

    /// Starts the node again on the same port and loads `state` (`anvil_loadState`).
    ///
    /// # Panics
    /// When the node cannot be started.
    pub async fn resume(&mut self, state: Value) {
        let mut last_err = String::new();
        for _ in 0..50 {
            match spawn(self.port, &self.args) {
                Ok((child, _, _)) => {
                    self.child = Some(child);
                    self.wait_ready().await;
                    self.rpc("anvil_loadState", json!([state])).await;
                    return;
                }
                Err(e) => {
                    last_err = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("cannot restart anvil on port {}: {last_err}", self.port);
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop();
    }
}

fn connect(port: u16) -> DynProvider {
    let url = match format!("http://127.0.0.1:{port}").parse() {
        Ok(u) => u,
        Err(e) => panic!("bad url: {e}"),
    };
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url)
        .erased()
}
