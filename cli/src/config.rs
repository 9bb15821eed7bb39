//! `config.toml` in the data directory, with environment overrides, and building an engine
//! from it.
//!
//! ```toml
//! [btc]
//! chain = "ltc-regtest"            # btc-mainnet, btc-testnet, btc-signet, btc-regtest, ltc-...
//! rpc_url = "http://127.0.0.1:19443"
//! cookie = "/home/me/.litecoin/regtest/.cookie"   # or user = "..." / password = "..."
//! wallet = "xswap"                 # the node wallet that funds locks and receives claims
//!
//! [eth]
//! chain = "eth-regtest"            # eth-mainnet, eth-sepolia, eth-regtest
//! rpc_url = "http://127.0.0.1:8545"
//! htlc = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
//! account = 0                      # BIP-44 index of the seed's Ethereum account
//!
//! [net]
//! listen = "127.0.0.1:7700"        # where `xswap maker` accepts takers
//! public = "maker.example.org:7700" # what offers tell takers (default: `listen`)
//!
//! [channel]                        # optional: payment channels (`xswap channel`)
//! contract = "0x..."               # the deployed Channel contract
//! listen = "127.0.0.1:7701"        # where `xswap channel serve` / `xswap maker` accept peers
//! challenge_period = 86400         # of the channels this installation opens
//!
//! [ln]                             # optional: the Lightning node (`xswap ln`); these defaults
//! listen = "127.0.0.1:9735"        # where the node accepts Lightning peers (`xswap ln serve`,
//!                                  # or `xswap maker` / `take` / `resume`, which run it too)
//! data_dir = "ln"                  # its state, relative to the installation's data directory
//! min_confirmations = 3            # before a channel opened to us is usable
//! # anchors = true                 # anchor outputs: on for Bitcoin, off for Litecoin
//! # anchor_reserve_sats = 25000    # wallet coins kept per anchor channel for its fees
//! ```
//!
//! The Lightning node runs on the `[btc]` node and funds channels from its wallet.
//!
//! Every value can be overridden by an environment variable: `XSWAP_BTC_CHAIN`,
//! `XSWAP_BTC_RPC_URL`, `XSWAP_BTC_COOKIE`, `XSWAP_BTC_USER`, `XSWAP_BTC_PASSWORD`,
//! `XSWAP_BTC_WALLET`, `XSWAP_ETH_CHAIN`, `XSWAP_ETH_RPC_URL`, `XSWAP_ETH_HTLC`,
//! `XSWAP_ETH_ACCOUNT`, `XSWAP_LISTEN`, `XSWAP_PUBLIC`, `XSWAP_CHANNEL_CONTRACT`,
//! `XSWAP_CHANNEL_LISTEN`, `XSWAP_LN_LISTEN`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use anyhow::{anyhow, Context};
use btc_adapter::rpc::{Auth, RpcConfig};
use btc_adapter::{BtcChain, BtcConfig};
use eth_adapter::{EthChain, EthConfig};
use serde::{Deserialize, Serialize};
use swap_core::{ChainId, ChainParams, DriverConfig, Rail};
use swap_net::Identity;

use crate::engine::Engine;
use crate::keystore::Keystore;

/// The Bitcoin-family node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BtcSection {
    /// Which chain (`btc-mainnet`, `ltc-regtest`, ...).
    pub chain: String,
    /// The node's JSON-RPC URL.
    pub rpc_url: String,
    /// The node's cookie file (preferred over user/password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<PathBuf>,
    /// RPC user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// RPC password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The wallet that funds locks and receives claims and refunds.
    pub wallet: String,
}

/// The Ethereum node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EthSection {
    /// Which chain (`eth-mainnet`, `eth-sepolia`, `eth-regtest`).
    pub chain: String,
    /// The node's JSON-RPC URL.
    pub rpc_url: String,
    /// The deployed HTLC contract.
    pub htlc: String,
    /// BIP-44 index of the seed's Ethereum account.
    #[serde(default)]
    pub account: u32,
}

/// The transport.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetSection {
    /// Where `xswap maker` listens.
    pub listen: String,
    /// The address offers tell takers to connect to (`host:port`), when it is not `listen`
    /// (a listener on 0.0.0.0, behind NAT or a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
}

impl NetSection {
    /// The address offers carry: `public`, else `listen`.
    pub fn offer_address(&self) -> &str {
        self.public.as_deref().unwrap_or(&self.listen)
    }
}

/// Payment channels (`xswap channel`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelSection {
    /// The deployed `Channel` contract.
    pub contract: String,
    /// Where `xswap channel serve` (and `xswap maker`) accept channel peers; none: channel
    /// peers are not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The challenge period of the channels this installation opens, in seconds.
    #[serde(default = "default_challenge_period")]
    pub challenge_period: u64,
}

fn default_challenge_period() -> u64 {
    24 * 3600
}

/// The Lightning node (`xswap ln`), on the `[btc]` node and wallet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LnSection {
    /// Where the node accepts Lightning peers (`host:port`).
    #[serde(default = "default_ln_listen")]
    pub listen: String,
    /// Its state (LDK's files, the lock, the control socket, our invoices' preimages);
    /// relative paths are under the installation's data directory.
    #[serde(default = "default_ln_dir")]
    pub data_dir: PathBuf,
    /// Confirmations before a channel opened to us is usable.
    #[serde(default = "default_ln_confirmations")]
    pub min_confirmations: u32,
    /// Anchor outputs on the channels (`ln_adapter::LnConfig::anchors`); unset: the chain's
    /// default (on for Bitcoin, off for Litecoin, whose nodes do not relay 330-sat outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<bool>,
    /// Wallet coins kept per anchor channel for its force-close fees; unset: 25,000 sat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_reserve_sats: Option<u64>,
}

fn default_ln_listen() -> String {
    "127.0.0.1:9735".into()
}

fn default_ln_dir() -> PathBuf {
    PathBuf::from("ln")
}

fn default_ln_confirmations() -> u32 {
    3
}

impl Default for LnSection {
    fn default() -> Self {
        Self {
            listen: default_ln_listen(),
            data_dir: default_ln_dir(),
            min_confirmations: default_ln_confirmations(),
            anchors: None,
            anchor_reserve_sats: None,
        }
    }
}

impl LnSection {
    /// The node's state directory for the installation in `installation_dir`.
    pub fn dir(&self, installation_dir: &Path) -> PathBuf {
        installation_dir.join(&self.data_dir)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    /// Bitcoin-family node.
    pub btc: BtcSection,
    /// Ethereum node.
    pub eth: EthSection,
    /// Transport.
    pub net: NetSection,
    /// Payment channels (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelSection>,
    /// The Lightning node (optional: defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ln: Option<LnSection>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            btc: BtcSection {
                chain: "btc-mainnet".into(),
                rpc_url: "http://127.0.0.1:8332".into(),
                cookie: None,
                user: None,
                password: None,
                wallet: "xswap".into(),
            },
            eth: EthSection {
                chain: "eth-mainnet".into(),
                rpc_url: "http://127.0.0.1:8545".into(),
                htlc: "0x0000000000000000000000000000000000000000".into(),
                account: 0,
            },
            net: NetSection {
                listen: "127.0.0.1:7700".into(),
                public: None,
            },
            channel: None,
            ln: None,
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// The config file of a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("config.toml")
    }

    /// Reads `config.toml` (defaults when absent) and applies environment overrides.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        let mut c = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("reading {}: fix or delete it", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let set = |slot: &mut String, var: &str| {
            if let Some(v) = env(var) {
                *slot = v;
            }
        };
        set(&mut c.btc.chain, "XSWAP_BTC_CHAIN");
        set(&mut c.btc.rpc_url, "XSWAP_BTC_RPC_URL");
        set(&mut c.btc.wallet, "XSWAP_BTC_WALLET");
        set(&mut c.eth.chain, "XSWAP_ETH_CHAIN");
        set(&mut c.eth.rpc_url, "XSWAP_ETH_RPC_URL");
        set(&mut c.eth.htlc, "XSWAP_ETH_HTLC");
        set(&mut c.net.listen, "XSWAP_LISTEN");
        if let Some(v) = env("XSWAP_PUBLIC") {
            c.net.public = Some(v);
        }
        if let Some(v) = env("XSWAP_BTC_COOKIE") {
            c.btc.cookie = Some(v.into());
        }
        if let Some(v) = env("XSWAP_BTC_USER") {
            c.btc.user = Some(v);
        }
        if let Some(v) = env("XSWAP_BTC_PASSWORD") {
            c.btc.password = Some(v);
        }
        if let Some(v) = env("XSWAP_CHANNEL_CONTRACT") {
            c.channel
                .get_or_insert_with(|| ChannelSection {
                    contract: String::new(),
                    listen: None,
                    challenge_period: default_challenge_period(),
                })
                .contract = v;
        }
        if let (Some(v), Some(ch)) = (env("XSWAP_CHANNEL_LISTEN"), c.channel.as_mut()) {
            ch.listen = Some(v);
        }
        if let Some(v) = env("XSWAP_LN_LISTEN") {
            c.ln.get_or_insert_with(LnSection::default).listen = v;
        }
        if let Some(v) = env("XSWAP_ETH_ACCOUNT") {
            c.eth.account = v.parse().context("XSWAP_ETH_ACCOUNT must be a number")?;
        }
        Ok(c)
    }

    /// Writes the config file (refusing to overwrite one).
    pub fn write_new(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(data_dir);
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(data_dir)?;
        std::fs::write(&path, toml::to_string_pretty(self)?)?;
        Ok(())
    }

    /// The Bitcoin-family chain.
    pub fn btc_chain(&self) -> anyhow::Result<ChainId> {
        self.btc.chain.parse().map_err(|e: String| anyhow!(e))
    }

    /// The Lightning section (defaults when absent).
    pub fn ln(&self) -> LnSection {
        self.ln.clone().unwrap_or_default()
    }

    /// The RPC settings of the `[btc]` node, bound to its wallet.
    pub fn btc_rpc(&self) -> anyhow::Result<RpcConfig> {
        let auth = match (&self.btc.cookie, &self.btc.user, &self.btc.password) {
            (Some(c), _, _) => Auth::Cookie(c.clone()),
            (None, Some(u), Some(p)) => Auth::UserPass(u.clone(), p.clone()),
            _ => anyhow::bail!("[btc] needs `cookie` or `user` and `password` in config.toml"),
        };
        Ok(RpcConfig {
            url: self.btc.rpc_url.clone(),
            auth,
            wallet: Some(self.btc.wallet.clone()),
            timeout: Duration::from_secs(30),
        })
    }

    /// The Ethereum chain.
    pub fn eth_chain(&self) -> anyhow::Result<ChainId> {
        self.eth.chain.parse().map_err(|e: String| anyhow!(e))
    }
}

/// The Ethereum account `index` of the seed (BIP-44 `m/44'/60'/0'/0/index`, as wallets
/// derive it).
pub fn eth_signer(ks: &Keystore, index: u32) -> anyhow::Result<PrivateKeySigner> {
    use bitcoin::bip32::{DerivationPath, Xpriv};
    use bitcoin::secp256k1::Secp256k1;
    let seed = ks.seed()?;
    let master = Xpriv::new_master(bitcoin::NetworkKind::Main, &seed[..])?;
    let path: DerivationPath = format!("m/44'/60'/0'/0/{index}").parse()?;
    let key = master.derive_priv(&Secp256k1::new(), &path)?;
    Ok(PrivateKeySigner::from_slice(
        &key.private_key.secret_bytes(),
    )?)
}

/// The password that opened a keystore in this process: a command that runs several parts
/// (the engine, the Lightning node, the channel node) asks only once.
static OPENED_WITH: std::sync::OnceLock<(PathBuf, zeroize::Zeroizing<String>)> =
    std::sync::OnceLock::new();

/// Opens the keystore (password from `XSWAP_PASSWORD`, or asked on the terminal once per
/// process).
pub fn open_keystore(data_dir: &Path) -> anyhow::Result<Keystore> {
    let path = data_dir.join("keystore.json");
    if let Some((p, pw)) = OPENED_WITH.get() {
        if *p == path {
            return Ok(Keystore::open(&path, pw)?);
        }
    }
    let password = zeroize::Zeroizing::new(password("keystore password: ")?);
    let ks = Keystore::open(&path, &password)?;
    let _ = OPENED_WITH.set((path, password));
    Ok(ks)
}

/// A new keystore password: `XSWAP_PASSWORD`, or asked twice on the terminal. Empty is
/// refused (the keystore holds the seed of every swap key).
pub fn new_password() -> anyhow::Result<String> {
    let pw = match std::env::var("XSWAP_PASSWORD").ok() {
        Some(p) => p,
        None => {
            let first = rpassword::prompt_password("new keystore password: ")?;
            if first.is_empty() {
                anyhow::bail!("an empty password is refused: the keystore holds your seed");
            }
            let again = rpassword::prompt_password("the same password again: ")?;
            if again != first {
                anyhow::bail!("the two passwords differ: nothing was created");
            }
            first
        }
    };
    if pw.is_empty() {
        anyhow::bail!("an empty password is refused: the keystore holds your seed");
    }
    Ok(pw)
}

/// The password from `XSWAP_PASSWORD`, or asked on the terminal.
pub fn password(prompt: &str) -> anyhow::Result<String> {
    match env("XSWAP_PASSWORD") {
        Some(p) => Ok(p),
        None => Ok(rpassword::prompt_password(prompt)?),
    }
}

/// The installation's on-chain adapters (its `[btc]` node and wallet, its `[eth]` node, contract
/// and account), recording every funding in `outbox` before it is broadcast.
pub fn adapters(
    cfg: &Config,
    ks: &Keystore,
    outbox: Arc<dyn swap_core::store::Outbox>,
) -> anyhow::Result<(Arc<BtcChain>, Arc<EthChain>)> {
    let btc = Arc::new(
        BtcChain::new(
            BtcConfig::new(cfg.btc_chain()?, cfg.btc_rpc()?),
            &ks.seed()?[..],
        )
        .map_err(|e| anyhow!("bitcoin adapter: {e}"))?
        .with_outbox(outbox.clone()),
    );
    let htlc = cfg
        .eth
        .htlc
        .parse()
        .with_context(|| format!("[eth] htlc {:?} is not an address", cfg.eth.htlc))?;
    let eth_cfg = EthConfig::new(
        cfg.eth.rpc_url.clone(),
        htlc,
        ChainParams::for_chain(cfg.eth_chain()?),
    );
    let eth = Arc::new(
        EthChain::new(eth_cfg, eth_signer(ks, cfg.eth.account)?)
            .map_err(|e| anyhow!("ethereum adapter: {e}"))?
            .with_outbox(outbox),
    );
    Ok((btc, eth))
}

/// Builds the engine of a data directory: keystore, store (guarded against loss, see
/// [`crate::guard`]), both adapters, identity.
pub async fn engine(data_dir: &Path, driver: DriverConfig) -> anyhow::Result<Arc<Engine>> {
    let ks = open_keystore(data_dir)?;
    Ok(installation(data_dir, &ks, driver).await?.0)
}

/// The engine of the installation in `data_dir`, and its Ethereum adapter (for what only it
/// can do: `xswap recover` reads the contract's events for our locks).
pub async fn installation(
    data_dir: &Path,
    ks: &Keystore,
    driver: DriverConfig,
) -> anyhow::Result<(Arc<Engine>, Arc<EthChain>)> {
    installation_with(data_dir, ks, driver, Vec::new()).await
}

/// [`engine`] with the channel rails this process hosts (see [`crate::hosted`]) registered
/// beside the on-chain ones.
pub async fn engine_with(
    data_dir: &Path,
    driver: DriverConfig,
    channel_rails: Vec<Arc<dyn Rail>>,
) -> anyhow::Result<Arc<Engine>> {
    let ks = open_keystore(data_dir)?;
    Ok(installation_with(data_dir, &ks, driver, channel_rails)
        .await?
        .0)
}

/// [`installation`] with `channel_rails` (Lightning, Ethereum channel) registered beside
/// the on-chain rails.
pub async fn installation_with(
    data_dir: &Path,
    ks: &Keystore,
    driver: DriverConfig,
    channel_rails: Vec<Arc<dyn Rail>>,
) -> anyhow::Result<(Arc<Engine>, Arc<EthChain>)> {
    let cfg = Config::load(data_dir)?;
    let store = crate::guard::open(data_dir, ks.store_key()?, true).await?;
    // Fundings are recorded in the swap store before they are broadcast (another connection to
    // the same file), so that another `xswap` process on this data directory, or this one after
    // a crash, broadcasts them again instead of funding twice.
    let outbox = Arc::new(swap_core::store::SqliteStore::open_with_key(
        crate::guard::db_path(data_dir),
        ks.store_key()?,
    )?);
    let (btc, eth) = adapters(&cfg, ks, outbox)?;
    let identity = Identity::from_private(&ks.purpose_key("noise")?[..])?;
    let mut rails = vec![btc as Arc<dyn Rail>, eth.clone() as Arc<dyn Rail>];
    rails.extend(channel_rails);
    // Open quotes in the swap store's file too: they survive a restart, and every `xswap`
    // process on this data directory serves the same ones.
    let quotes = Arc::new(
        swap_engine::SqliteQuotes::open(crate::guard::db_path(data_dir))
            .map_err(|e| anyhow!("{e}"))?,
    );
    Ok((
        Engine::with_quotes("xswap", store, rails, identity, driver, quotes),
        eth,
    ))
}
