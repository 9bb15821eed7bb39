//! `xswap regtest up|join|mine|down`: local nodes for trying xswap by hand. `up` starts
//! litecoind (or bitcoind, with `BITCOIND_EXE`) and anvil in the background, deploys the HTLC
//! contract, writes this installation's config.toml for them and funds its wallets; `join`
//! points another installation at the same nodes; `mine` makes blocks (moving Ethereum time
//! along); `down` stops both nodes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{bail, Context};
use btc_adapter::rpc::{Auth, RpcClient, RpcConfig};
use devnet::regtest::{RegtestNode, WALLET};
use serde::{Deserialize, Serialize};
use serde_json::json;
use swap_core::{ChainId, ChainParams};

use crate::config::{BtcSection, Config, EthSection};

/// What `up` started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegtestState {
    /// Bitcoin-family chain id (`ltc-regtest`, `btc-regtest`).
    pub btc_chain: String,
    /// Node pid.
    pub btc_pid: u32,
    /// Node data directory.
    pub btc_datadir: PathBuf,
    /// RPC URL.
    pub btc_rpc_url: String,
    /// Cookie file.
    pub btc_cookie: PathBuf,
    /// Mining address (wallet `xswap`).
    pub mining_address: String,
    /// anvil pid.
    pub eth_pid: u32,
    /// anvil URL.
    pub eth_url: String,
    /// Deployed HTLC contract.
    pub htlc: String,
    /// Set in an installation that joined another's nodes (`regtest join`): its `down` only
    /// detaches, the nodes belong to the installation that started them.
    #[serde(default)]
    pub joined_from: Option<PathBuf>,
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("regtest.json")
}

fn load(data_dir: &Path) -> anyhow::Result<RegtestState> {
    let p = state_path(data_dir);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "no regtest nodes recorded in {}: run `xswap regtest up`",
            p.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

fn rpc(state: &RegtestState, wallet: Option<&str>) -> anyhow::Result<RpcClient> {
    Ok(RpcClient::new(RpcConfig {
        url: state.btc_rpc_url.clone(),
        auth: Auth::Cookie(state.btc_cookie.clone()),
        wallet: wallet.map(str::to_owned),
        timeout: Duration::from_secs(60),
    })?)
}

async fn eth_rpc(
    url: &str,
    method: &'static str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let p = ProviderBuilder::new().connect_http(url.parse()?);
    Ok(p.raw_request(method.into(), params).await?)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts both nodes and configures this installation for them.
pub async fn up(data_dir: &Path) -> anyhow::Result<()> {
    if let Ok(s) = load(data_dir) {
        if rpc(&s, None)?.get_block_count().await.is_ok() {
            crate::say!(
                "regtest nodes already up ({}, {})",
                s.btc_rpc_url,
                s.eth_url
            );
            return configure(data_dir, &s, WALLET).await;
        }
    }
    std::fs::create_dir_all(data_dir)?;
    crate::say!("starting the Bitcoin-family node (mining past CLTV activation)...");
    let node = RegtestNode::start().await;
    let btc_chain = node.chain_id();
    let rpc_url = node.rpc_config(None).url;
    let d = node.detach();

    crate::say!("starting anvil...");
    let port = free_port()?;
    let log = std::fs::File::create(data_dir.join("anvil.log"))?;
    let child = Command::new(devnet::anvil::anvil_path())
        .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting anvil (run `npm install` at the repository root)")?;
    let eth_url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while eth_rpc(&eth_url, "eth_chainId", json!([])).await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "anvil did not answer on {eth_url}; see {}",
                data_dir.join("anvil.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deployer = PrivateKeySigner::random();
    eth_rpc(
        &eth_url,
        "anvil_setBalance",
        json!([deployer.address(), "0x3635c9adc5dea00000"]),
    )
    .await?;
    let htlc = eth_adapter::deploy_htlc(&eth_url, deployer)
        .await
        .map_err(|e| anyhow::anyhow!("deploying the HTLC contract: {e}"))?;
    let state = RegtestState {
        btc_chain: btc_chain.to_string(),
        btc_pid: d.pid,
        btc_datadir: d.datadir,
        btc_rpc_url: rpc_url,
        btc_cookie: d.cookie,
        mining_address: d.mining_address,
        eth_pid: child.id(),
        eth_url,
        htlc: htlc.to_string(),
        joined_from: None,
    };
    std::fs::write(state_path(data_dir), serde_json::to_vec_pretty(&state)?)?;
    configure(data_dir, &state, WALLET).await?;
    crate::say!(
        "regtest up: {} at {}, anvil at {}, HTLC {}",
        state.btc_chain,
        state.btc_rpc_url,
        state.eth_url,
        state.htlc
    );
    Ok(())
}

/// Points this installation at the nodes another installation started.
pub async fn join(data_dir: &Path, other: &Path) -> anyhow::Result<()> {
    let mut state = load(other)?;
    state.joined_from = Some(other.to_owned());
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(state_path(data_dir), serde_json::to_vec_pretty(&state)?)?;
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "joined".into());
    configure(data_dir, &state, &format!("xswap-{name}")).await?;
    crate::say!("joined the regtest nodes of {}", other.display());
    Ok(())
}

/// Writes config.toml for the nodes, makes sure `wallet` exists and has coins, and gives the
/// installation's Ethereum account 100 ETH (when it has a keystore).
async fn configure(data_dir: &Path, state: &RegtestState, wallet: &str) -> anyhow::Result<()> {
    let (net, channel, ln) = Config::load(data_dir)
        .map(|c| (c.net, c.channel, c.ln))
        .unwrap_or_else(|_| (Config::default().net, None, None));
    let cfg = Config {
        btc: BtcSection {
            chain: state.btc_chain.clone(),
            rpc_url: state.btc_rpc_url.clone(),
            cookie: Some(state.btc_cookie.clone()),
            user: None,
            password: None,
            wallet: wallet.into(),
        },
        eth: EthSection {
            chain: "eth-regtest".into(),
            rpc_url: state.eth_url.clone(),
            htlc: state.htlc.clone(),
            account: 0,
        },
        net,
        channel,
        ln,
    };
    std::fs::write(Config::path(data_dir), toml::to_string_pretty(&cfg)?)?;
    let node = rpc(state, None)?;
    node.create_or_load_wallet(wallet).await?;
    if wallet != WALLET {
        let addr = node.with_wallet(wallet)?.get_new_address("bech32").await?;
        node.with_wallet(WALLET)?
            .send_to_address(&addr, 10 * 100_000_000)
            .await?;
        node.generate_to_address(1, &state.mining_address).await?;
    }
    if data_dir.join("keystore.json").exists() {
        let ks = crate::config::open_keystore(data_dir)?;
        let who = crate::config::eth_signer(&ks, 0)?.address();
        eth_rpc(
            &state.eth_url,
            "anvil_setBalance",
            json!([who, format!("{:#x}", U256::from(100u128 * 10u128.pow(18)))]),
        )
        .await?;
        crate::say!("funded {who} with 100 ETH");
    }
    crate::say!("config: {}", Config::path(data_dir).display());
    Ok(())
}

/// Mines `n` blocks and moves Ethereum time by the same span.
pub async fn mine(data_dir: &Path, n: u64) -> anyhow::Result<()> {
    let state = load(data_dir)?;
    let node = rpc(&state, None)?;
    node.generate_to_address(n, &state.mining_address).await?;
    let chain: ChainId = state
        .btc_chain
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let secs = n * ChainParams::for_chain(chain).block_interval;
    eth_rpc(&state.eth_url, "evm_increaseTime", json!([secs])).await?;
    eth_rpc(&state.eth_url, "evm_mine", json!([])).await?;
    crate::say!(
        "mined {n} block(s); Ethereum time +{secs} s; height {}",
        node.get_block_count().await?
    );
    Ok(())
}

/// Stops both nodes.
pub async fn down(data_dir: &Path) -> anyhow::Result<()> {
    let state = load(data_dir)?;
    if let Some(owner) = &state.joined_from {
        std::fs::remove_file(state_path(data_dir))?;
        crate::say!(
            "detached from the regtest nodes of {} (they keep running: `xswap --data-dir {} \
             regtest down` stops them)",
            owner.display(),
            owner.display()
        );
        return Ok(());
    }
    let _ = rpc(&state, None)?.stop().await;
    let _ = Command::new("kill").arg(state.eth_pid.to_string()).status();
    std::fs::remove_file(state_path(data_dir))?;
    crate::say!(
        "regtest nodes stopped (node data left in {})",
        state.btc_datadir.display()
    );
    Ok(())
}
