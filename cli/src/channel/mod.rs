//! `xswap channel`: Ethereum payment channels from the command line (issue 10).
//!
//! A channel is opened by its party A ([`cmd::open`]): recorded in `channels.sqlite` of the
//! data directory first (so a crash after the deposit never loses track of the funds), then
//! funded on chain, then announced to party B (`Open` / `Opened`, see
//! [`eth_channel::Node::announce`]). Party B runs `xswap channel serve` (or `xswap maker` with
//! `[channel] listen`), which accepts announced channels, answers updates and runs the
//! channel watcher every tick.
//!
//! Keys: the Ethereum account of the seed (`[eth] account`) signs states and transactions;
//! the transport key is the installation's Noise key (the one offers carry). Neither is ever
//! printed.

pub mod args;
pub mod cmd;
mod serve;

use std::path::Path;
use std::sync::Arc;

use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context;
use eth_channel::{Node, RpcChain, SessionConfig, SqliteChannelStore};
use swap_core::Network;
use swap_net::{Identity, PeerKey};

use crate::config::{self, ChannelSection, Config};

pub use serve::{serve, serve_with};

/// What `xswap channel` refuses or cannot do, typed (the exit code of [`ChannelCliError::exit_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelCliError {
    /// No `[channel]` section.
    #[error("no [channel] section in config.toml: add `[channel]` with `contract = \"0x...\"` (the deployed Channel contract)")]
    NotConfigured,
    /// Not a channel of this installation.
    #[error("no channel {0} here (see `xswap channel list`)")]
    UnknownChannel(String),
    /// Where the peer listens is not known.
    #[error("the peer's address of channel {0} is not known: give --addr HOST:PORT (`close --force` closes without the peer)")]
    NoPeerAddress(B256),
    /// The peer did not answer: nothing was closed.
    #[error(
        "peer unreachable ({detail}): channel {channel} was NOT closed and your funds are safe.\n\
         Without the peer, close it unilaterally: `xswap channel close {channel} --force` puts \
         the latest co-signed state (version {version}) on chain and starts the challenge \
         period ({challenge_period} s); the peer may only answer with a later co-signed state. \
         After the deadline `xswap channel serve` (or `xswap maker`) settles it and pays both \
         parties; keep one of them running until then."
    )]
    PeerUnreachable {
        /// The channel.
        channel: B256,
        /// The latest co-signed version.
        version: u64,
        /// Its challenge period.
        challenge_period: u64,
        /// What failed (the transport's words; no secrets in them).
        detail: String,
    },
    /// The peer refused.
    #[error("the peer refused ({code:?}): {text}")]
    Refused {
        /// Its code.
        code: eth_channel::RejectCode,
        /// Its text.
        text: String,
    },
    /// A transaction reverted.
    #[error("transaction {tx} ({what}) reverted")]
    Reverted {
        /// What it did.
        what: &'static str,
        /// Its hash.
        tx: B256,
    },
    /// The chain disagrees with what we recorded.
    #[error("channel {channel}: {detail}")]
    OnChainMismatch {
        /// The channel.
        channel: B256,
        /// What.
        detail: String,
    },
}

impl ChannelCliError {
    /// The process exit code of this error (1 for most; 4 for an unreachable peer, so that
    /// scripts can tell).
    pub fn exit_code(&self) -> i32 {
        match self {
            ChannelCliError::PeerUnreachable { .. } => 4,
            _ => 1,
        }
    }
}

/// Everything a channel command needs.
pub struct Ctx {
    /// The configuration.
    pub cfg: Config,
    /// Its `[channel]` section.
    pub section: ChannelSection,
    /// The contract.
    pub contract: Address,
    /// The chain id (read from the node).
    pub chain_id: u64,
    /// Our Ethereum account.
    pub signer: PrivateKeySigner,
    /// Reads.
    pub provider: DynProvider,
    /// Sends (signs with `signer`).
    pub wallet: DynProvider,
    /// The block tag read as final (latest on a regtest chain).
    pub at: BlockNumberOrTag,
    /// The store.
    pub store: Arc<SqliteChannelStore>,
    /// The node (every stored channel added with its peer).
    pub node: Node,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("contract", &self.contract)
            .field("chain_id", &self.chain_id)
            .field("me", &self.signer.address())
            .finish_non_exhaustive()
    }
}

/// The channel store of a data directory.
pub fn store_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("channels.sqlite")
}

impl Ctx {
    /// Loads config, keystore, store and node of `data_dir`.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let cfg = Config::load(data_dir)?;
        let section = cfg.channel.clone().ok_or(ChannelCliError::NotConfigured)?;
        let contract: Address = section.contract.parse().with_context(|| {
            format!(
                "[channel] contract {:?} is not an address",
                section.contract
            )
        })?;
        let ks = config::open_keystore(data_dir)?;
        let signer = config::eth_signer(&ks, cfg.eth.account)?;
        let identity = Identity::from_private(&ks.purpose_key("noise")?[..])?;
        let url = cfg
            .eth
            .rpc_url
            .parse()
            .context("[eth] rpc_url is not a URL")?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        let wallet = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer.clone()))
            .connect_http(
                cfg.eth
                    .rpc_url
                    .parse()
                    .context("[eth] rpc_url is not a URL")?,
            )
            .erased();
        let chain_id = provider.get_chain_id().await.map_err(|e| {
            anyhow::anyhow!(
                "reading the Ethereum node's chain id: {}",
                eth_adapter::scrub_urls(&e.to_string())
            )
        })?;
        let at = if cfg.eth_chain()?.network == Network::Regtest {
            BlockNumberOrTag::Latest
        } else {
            BlockNumberOrTag::Finalized
        };
        // Its secrets (claims' preimages, the watcher's reveals) sealed with the installation's
        // key, as the swap store's are.
        let store = Arc::new(SqliteChannelStore::open_with_key(
            &store_path(data_dir),
            ks.store_key()?,
        )?);
        let node = Node::new(
            identity,
            signer.clone(),
            eth_channel::Config::default(),
            SessionConfig::default(),
            store.clone(),
            Arc::new(RpcChain::new(provider.clone(), at)),
        );
        node.accept_opens(chain_id, contract);
        for id in store.channel_ids()? {
            if let Some(p) = store.peer(id)? {
                node.add_channel(id, PeerKey(p.key))?;
            }
        }
        Ok(Self {
            cfg,
            section,
            contract,
            chain_id,
            signer,
            provider,
            wallet,
            at,
            store,
            node,
        })
    }

    /// A stored channel id from its hex (or a unique prefix of at least 6 hex digits).
    pub fn find(&self, s: &str) -> anyhow::Result<B256> {
        let t = s.trim().trim_start_matches("0x").to_ascii_lowercase();
        let ids = self.store.channel_ids()?;
        let found: Vec<B256> = ids
            .into_iter()
            .filter(|id| t.len() >= 6 && hex::encode(id).starts_with(&t))
            .collect();
        match found.as_slice() {
            [id] => Ok(*id),
            _ => Err(ChannelCliError::UnknownChannel(s.to_owned()).into()),
        }
    }

    /// Dials channel `id`'s peer (at `addr`, else where it was recorded).
    pub async fn dial(&self, id: B256, addr: Option<&str>) -> Result<PeerKey, DialError> {
        let peer = self
            .store
            .peer(id)
            .map_err(|e| DialError::Other(e.into()))?
            .ok_or_else(|| {
                DialError::Other(ChannelCliError::UnknownChannel(id.to_string()).into())
            })?;
        let addr = addr
            .map(str::to_owned)
            .or(peer.addr)
            .ok_or(DialError::Other(ChannelCliError::NoPeerAddress(id).into()))?;
        let key = PeerKey(peer.key);
        let dial = self.node.connect(addr.as_str(), key);
        match tokio::time::timeout(std::time::Duration::from_secs(15), dial).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(DialError::Unreachable(e.to_string())),
            Err(_) => return Err(DialError::Unreachable("no answer in 15 s".into())),
        }
        for _ in 0..100 {
            if self.node.connected(key) {
                return Ok(key);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(DialError::Unreachable("connection not up".into()))
    }
}

/// Why a peer could not be dialed.
#[derive(Debug)]
pub enum DialError {
    /// It did not answer.
    Unreachable(String),
    /// Anything else (no address, no such channel, store).
    Other(anyhow::Error),
}
