//! The embedded LDK node: assembled from the seed and the Bitcoin-family node, loaded from its
//! data directory when it has run before, driven by tokio tasks (LDK's background processor,
//! the block follower, the Lightning port).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::PublicKey;
use bitcoin::BlockHash;
use btc_adapter::rpc::RpcClient;
use lightning::chain::chainmonitor::ChainMonitor as LdkChainMonitor;
use lightning::chain::{BestBlock, Watch};
use lightning::ln::channelmanager::{ChainParameters, ChannelManagerReadArgs};
use lightning::ln::peer_handler::{IgnoringMessageHandler, MessageHandler};
use lightning::routing::gossip::NetworkGraph as LdkNetworkGraph;
use lightning::routing::scoring::{
    ProbabilisticScorer, ProbabilisticScoringDecayParameters, ProbabilisticScoringFeeParameters,
};
use lightning::sign::{EntropySource, KeysManager, NodeSigner};
use lightning::util::config::UserConfig;
use lightning::util::persist::{
    KVStoreSync, MonitorUpdatingPersister, CHANNEL_MANAGER_PERSISTENCE_KEY,
    CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE, CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
    OUTPUT_SWEEPER_PERSISTENCE_KEY, OUTPUT_SWEEPER_PERSISTENCE_PRIMARY_NAMESPACE,
    OUTPUT_SWEEPER_PERSISTENCE_SECONDARY_NAMESPACE,
};
use lightning::util::ser::ReadableArgs;
use lightning::util::sweep::OutputSweeper;
use lightning_background_processor::{
    process_events_async, GossipSync, NO_LIQUIDITY_MANAGER, NO_ONION_MESSENGER,
};
use swap_core::{ChainFamily, ChainId, Network};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::{LnConfig, Seed};
use crate::error::{api, LnError};
use crate::events::{EventHandler, LnEvent};
use crate::follower::{sync_listeners, Follower, Listener};
use crate::io::{Broadcaster, FeeCache, TracingLogger, WalletChange, WalletKeys};
use crate::router::PinnedCltvRouter;
use crate::types::{
    ChainMonitor, ChannelManager, DefaultRouter, MessageRouter, NetworkGraph, NoFilter,
    PeerManager, Router, Scorer, Store, Sweeper, MAX_PENDING_MONITOR_UPDATES,
};

/// An embedded Lightning node (LDK) on a Bitcoin-family node.
pub struct LnNode {
    pub(crate) config: LnConfig,
    pub(crate) rpc: Arc<RpcClient>,
    pub(crate) channel_manager: Arc<ChannelManager>,
    pub(crate) peer_manager: Arc<PeerManager>,
    /// The chain bound in the handshake: which peers were refused for being on another.
    pub(crate) binding: Arc<crate::handshake::ChainBinding>,
    pub(crate) follower: Arc<Follower>,
    pub(crate) sweeper: Arc<Sweeper>,
    pub(crate) events: broadcast::Sender<LnEvent>,
    /// Where the events told are fed (see [`LnNode::changes`]).
    pub(crate) changed: swap_core::ChangeFeed,
    /// Peers to keep connected (reconnected by the follower task).
    pub(crate) peers: Arc<Mutex<HashMap<PublicKey, SocketAddr>>>,
    pub(crate) store: Arc<Store>,
    pub(crate) broadcaster: Arc<Broadcaster>,
    pub(crate) chain_monitor: Arc<ChainMonitor>,
    /// Fee estimates from the node (refreshed by the follower task at each block).
    pub(crate) fees: Arc<FeeCache>,
    listen_addr: SocketAddr,
    stop: watch::Sender<bool>,
    background: Mutex<Option<JoinHandle<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Set when the background processing ended on an error (see [`LnNode::fatal`]).
    fatal: Arc<Mutex<Option<String>>>,
}

/// A channel monitor while it catches up at start (LDK's `Listen` for one monitor).
type MonitorListener = (
    lightning::chain::channelmonitor::ChannelMonitor<lightning::sign::InMemorySigner>,
    Arc<Broadcaster>,
    Arc<FeeCache>,
    Arc<TracingLogger>,
);

impl std::fmt::Debug for LnNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LnNode")
            .field("node_id", &self.node_id())
            .field("listen", &self.listen_addr)
            .finish_non_exhaustive()
    }
}

/// The network LDK is told. LDK only compares the peers' chain hashes, so a Litecoin node
/// presents Bitcoin's; the handshake binds a node to its chain on top of that
/// ([`crate::handshake`]: Litecoin and Bitcoin nodes refuse each other). Lightning on Litecoin
/// is still refused outside regtest: other Litecoin Lightning implementations expect Litecoin's
/// chain hash (only xswap nodes would talk to ours), and Litecoin's relay settings have only
/// been checked on regtest. Ethereum is not a Lightning chain.
fn ldk_network(chain: ChainId) -> Result<bitcoin::Network, LnError> {
    match (chain.family, chain.network) {
        (ChainFamily::Bitcoin | ChainFamily::Litecoin, Network::Regtest) => {
            Ok(bitcoin::Network::Regtest)
        }
        (ChainFamily::Bitcoin, Network::Mainnet) => Ok(bitcoin::Network::Bitcoin),
        (ChainFamily::Bitcoin, Network::Testnet) => Ok(bitcoin::Network::Testnet),
        (ChainFamily::Bitcoin, Network::Signet) => Ok(bitcoin::Network::Signet),
        _ => Err(LnError::Config(format!(
            "no Lightning on {chain:?} yet (on Litecoin only regtest: LDK presents Bitcoin's \
             chain hash, which other Litecoin Lightning nodes refuse)"
        ))),
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Our clock, in unix seconds.
pub(crate) fn unix_now() -> u64 {
    now().as_secs()
}

/// LDK's settings for swaps on this chain: anchors where configured (then inbound channels are
/// accepted by us, after checking the wallet's reserve: `events.rs`), unannounced channels
/// (forwarded between, for a fee), the whole channel may be in flight, many HTLCs.
fn user_config(config: &LnConfig) -> UserConfig {
    let mut c = UserConfig::default();
    c.channel_handshake_config.minimum_depth = config.min_confirmations;
    c.channel_handshake_config.announce_for_forwarding = false;
    c.channel_handshake_config
        .negotiate_anchors_zero_fee_htlc_tx = config.anchors;
    c.channel_handshake_config
        .negotiate_anchor_zero_fee_commitments = false;
    c.channel_handshake_config
        .max_inbound_htlc_value_in_flight_percent_of_channel =
        config.max_inbound_in_flight_percent.min(100);
    c.channel_handshake_config.our_max_accepted_htlcs = config.max_accepted_htlcs.min(483);
    c.channel_handshake_config.our_htlc_minimum_msat = config.htlc_minimum_msat;
    c.channel_handshake_limits
        .force_announced_channel_preference = false;
    // Our channels are unannounced: forwarding between them is what an intermediary does.
    c.accept_forwards_to_priv_channels = true;
    c.channel_config.forwarding_fee_base_msat = config.forwarding_fee_base_msat;
    c.channel_config.forwarding_fee_proportional_millionths = config.forwarding_fee_ppm;
    c.accept_inbound_channels = true;
    c.manually_accept_inbound_channels = config.anchors;
    c
}

/// The node's tip.
async fn tip(rpc: &RpcClient) -> Result<BestBlock, LnError> {
    let hash: BlockHash = rpc.call("getbestblockhash", vec![]).await?;
    let header = rpc.get_block_header(&hash).await?;
    let height = header
        .get("height")
        .and_then(serde_json::Value::as_u64)
        .and_then(|h| u32::try_from(h).ok())
        .ok_or_else(|| LnError::Inconsistent(format!("header {hash} without a height")))?;
    Ok(BestBlock::new(hash, height))
}

fn read_key(
    store: &Store,
    primary: &str,
    secondary: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, LnError> {
    match KVStoreSync::read(store, primary, secondary, key) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == lightning::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LnError::Store(std::io::Error::other(format!("{key}: {e}")))),
    }
}

/// Where the peers to keep connected are stored (`<node id>@<address>` lines).
const PEERS_NAMESPACE: &str = "xswap";
const PEERS_KEY: &str = "peers";

fn read_peers(store: &Store) -> Result<HashMap<PublicKey, SocketAddr>, LnError> {
    let Some(bytes) = read_key(store, PEERS_NAMESPACE, "", PEERS_KEY)? else {
        return Ok(HashMap::new());
    };
    let text = String::from_utf8(bytes).map_err(|e| LnError::Decode(format!("peers: {e}")))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (id, addr) = line
                .split_once('@')
                .ok_or_else(|| LnError::Decode(format!("peers: {line}")))?;
            let id = id
                .parse()
                .map_err(|e| LnError::Decode(format!("peer id: {e}")))?;
            let addr = addr
                .parse()
                .map_err(|e| LnError::Decode(format!("peer address: {e}")))?;
            Ok((id, addr))
        })
        .collect()
}

pub(crate) fn write_peers(
    store: &Store,
    peers: &HashMap<PublicKey, SocketAddr>,
) -> Result<(), LnError> {
    let text: String = peers.iter().map(|(k, a)| format!("{k}@{a}\n")).collect();
    KVStoreSync::write(store, PEERS_NAMESPACE, "", PEERS_KEY, text.into_bytes())
        .map_err(|e| LnError::Store(std::io::Error::other(format!("peers: {e}"))))
}

impl LnNode {
    /// Starts the node: a new one, or the one whose state is in `config.data_dir` (channels,
    /// monitors and sweeper are read back and brought to the node's tip before anything runs).
    /// Must be called inside a tokio runtime.
    pub async fn start(config: LnConfig, seed: &Seed) -> Result<Self, LnError> {
        let runtime = tokio::runtime::Handle::current();
        let rpc = Arc::new(RpcClient::new(config.rpc.clone())?);
        let network = ldk_network(config.chain)?;
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Arc::new(crate::sealed::SealedStore::open(
            config.data_dir.clone(),
            config.store_key.clone(),
        )?);
        let logger = Arc::new(TracingLogger);
        let fees = Arc::new(FeeCache::new(config.fees));
        fees.refresh(&rpc).await?;
        let started = now();
        let keys = Arc::new(KeysManager::new(
            &seed.lightning_seed(),
            started.as_secs(),
            started.subsec_nanos(),
            true,
        ));
        let wallet_keys = Arc::new(WalletKeys::new(Arc::clone(&keys)));
        wallet_keys.refill(&rpc).await?;
        let broadcaster = Arc::new(Broadcaster::new(
            Arc::clone(&rpc),
            runtime.clone(),
            Arc::clone(&store),
        )?);
        let persister = Arc::new(MonitorUpdatingPersister::new(
            Arc::clone(&store),
            Arc::clone(&logger),
            MAX_PENDING_MONITOR_UPDATES,
            Arc::clone(&keys),
            Arc::clone(&wallet_keys),
            Arc::clone(&broadcaster),
            Arc::clone(&fees),
        ));
        let chain_monitor: Arc<ChainMonitor> = Arc::new(LdkChainMonitor::new(
            None::<NoFilter>,
            Arc::clone(&broadcaster),
            Arc::clone(&logger),
            Arc::clone(&fees),
            Arc::clone(&persister),
            Arc::clone(&keys),
            keys.get_peer_storage_key(),
        ));
        let graph: Arc<NetworkGraph> = Arc::new(LdkNetworkGraph::new(network, Arc::clone(&logger)));
        let scorer: Arc<RwLock<Scorer>> = Arc::new(RwLock::new(ProbabilisticScorer::new(
            ProbabilisticScoringDecayParameters::default(),
            Arc::clone(&graph),
            Arc::clone(&logger),
        )));
        let router: Arc<Router> = Arc::new(PinnedCltvRouter(DefaultRouter::new(
            Arc::clone(&graph),
            Arc::clone(&logger),
            Arc::clone(&keys),
            scorer,
            ProbabilisticScoringFeeParameters::default(),
        )));
        let message_router: Arc<MessageRouter> = Arc::new(
            lightning::onion_message::messenger::DefaultMessageRouter::new(
                Arc::clone(&graph),
                Arc::clone(&keys),
            ),
        );
        let user_config = user_config(&config);
        let change = Arc::new(WalletChange::new(Arc::clone(&rpc)));

        // Read back what a previous run left (nothing on a first start).
        let mut monitors: Vec<(BestBlock, Arc<MonitorListener>)> = Vec::new();
        // Monitors written whole by earlier versions (no update records) read the same way.
        for (_, monitor) in persister
            .read_all_channel_monitors_with_updates()
            .map_err(|e| LnError::Decode(format!("channel monitors: {e}")))?
        {
            let best = monitor.current_best_block();
            monitors.push((
                best,
                Arc::new((
                    monitor,
                    Arc::clone(&broadcaster),
                    Arc::clone(&fees),
                    Arc::clone(&logger),
                )),
            ));
        }
        // Update records already folded into a monitor written whole (a crash can leave
        // them behind: they are never read again), removed without waiting.
        if let Err(e) = persister.cleanup_stale_updates(true) {
            tracing::warn!(error = %e, "stale channel monitor updates not removed");
        }
        let manager_bytes = read_key(
            &store,
            CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
            CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
            CHANNEL_MANAGER_PERSISTENCE_KEY,
        )?;
        if manager_bytes.is_none() && !monitors.is_empty() {
            // A new channel manager beside existing monitors would know none of their channels
            // (and force-close them): the manager was lost or the directory mixed up.
            return Err(LnError::Decode(format!(
                "{} channel monitors but no channel manager in {}: refusing to start a new node \
                 over existing channels (restore the manager from a backup)",
                monitors.len(),
                config.data_dir.display()
            )));
        }
        let channel_manager: Arc<ChannelManager> = match manager_bytes {
            Some(bytes) => {
                let args = ChannelManagerReadArgs::new(
                    Arc::clone(&keys),
                    Arc::clone(&keys),
                    Arc::clone(&wallet_keys),
                    Arc::clone(&fees),
                    Arc::clone(&chain_monitor),
                    Arc::clone(&broadcaster),
                    Arc::clone(&router),
                    Arc::clone(&message_router),
                    Arc::clone(&logger),
                    user_config,
                    monitors.iter().map(|(_, m)| &m.0).collect(),
                );
                let (_, manager) = <(BlockHash, ChannelManager)>::read(&mut &bytes[..], args)
                    .map_err(|e| LnError::Decode(format!("channel manager: {e:?}")))?;
                Arc::new(manager)
            }
            None => Arc::new(lightning::ln::channelmanager::ChannelManager::new(
                Arc::clone(&fees),
                Arc::clone(&chain_monitor),
                Arc::clone(&broadcaster),
                router,
                message_router,
                Arc::clone(&logger),
                Arc::clone(&keys),
                Arc::clone(&keys),
                Arc::clone(&wallet_keys),
                user_config,
                ChainParameters {
                    network,
                    best_block: tip(&rpc).await?,
                },
                u32::try_from(started.as_secs()).unwrap_or(u32::MAX),
            )),
        };
        let sweeper_bytes = read_key(
            &store,
            OUTPUT_SWEEPER_PERSISTENCE_PRIMARY_NAMESPACE,
            OUTPUT_SWEEPER_PERSISTENCE_SECONDARY_NAMESPACE,
            OUTPUT_SWEEPER_PERSISTENCE_KEY,
        )?;
        let (mut sweeper_best, sweeper): (BestBlock, Arc<Sweeper>) = match sweeper_bytes {
            Some(bytes) => {
                let args = (
                    Arc::clone(&broadcaster),
                    Arc::clone(&fees),
                    None::<NoFilter>,
                    Arc::clone(&keys),
                    Arc::clone(&change),
                    Arc::clone(&store),
                    Arc::clone(&logger),
                );
                let (best, sweeper) = <(BestBlock, Sweeper)>::read(&mut &bytes[..], args)
                    .map_err(|e| LnError::Decode(format!("sweeper: {e:?}")))?;
                (best, Arc::new(sweeper))
            }
            None => {
                let best = channel_manager.current_best_block();
                let sweeper = OutputSweeper::new(
                    best,
                    Arc::clone(&broadcaster),
                    Arc::clone(&fees),
                    None::<NoFilter>,
                    Arc::clone(&keys),
                    change,
                    Arc::clone(&store),
                    Arc::clone(&logger),
                );
                (best, Arc::new(sweeper))
            }
        };

        // Each part catches up from its own best block, alone, until all stand on the tip.
        let mut manager_best = channel_manager.current_best_block();
        loop {
            let target = tip(&rpc).await?;
            for (best, monitor) in &mut monitors {
                let l: Listener = monitor.clone();
                sync_listeners(&rpc, &[l], best).await?;
            }
            let l: Listener = channel_manager.clone();
            sync_listeners(&rpc, &[l], &mut manager_best).await?;
            let l: Listener = sweeper.clone();
            sync_listeners(&rpc, &[l], &mut sweeper_best).await?;
            let aligned = [manager_best, sweeper_best]
                .iter()
                .chain(monitors.iter().map(|(b, _)| b))
                .all(|b| b.block_hash == target.block_hash);
            if aligned {
                break;
            }
        }
        for (_, monitor) in monitors {
            let (monitor, ..) = Arc::try_unwrap(monitor)
                .map_err(|_| LnError::Inconsistent("monitor still shared after sync".into()))?;
            let channel_id = monitor.channel_id();
            chain_monitor
                .watch_channel(channel_id, monitor)
                .map_err(|()| LnError::Inconsistent(format!("monitor {channel_id} refused")))?;
        }
        // From here on one follower feeds them all, in order.
        let listeners: Vec<Listener> = vec![
            chain_monitor.clone(),
            channel_manager.clone(),
            sweeper.clone(),
        ];
        let follower = Arc::new(Follower::new(Arc::clone(&rpc), listeners, manager_best));

        let binding = Arc::new(crate::handshake::ChainBinding::new(config.chain));
        let peer_manager: Arc<PeerManager> = Arc::new(PeerManager::new(
            MessageHandler {
                chan_handler: Arc::clone(&channel_manager),
                route_handler: Arc::new(IgnoringMessageHandler {}),
                onion_message_handler: Arc::new(IgnoringMessageHandler {}),
                custom_message_handler: Arc::clone(&binding),
                send_only_message_handler: Arc::clone(&chain_monitor),
            },
            u32::try_from(started.as_secs()).unwrap_or(u32::MAX),
            &keys.get_secure_random_bytes(),
            Arc::clone(&logger),
            Arc::clone(&keys),
        ));

        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let listen_addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(1024);
        let changed = swap_core::ChangeFeed::new();
        let (stop, stop_rx) = watch::channel(false);
        let fatal: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));

        let handler = Arc::new(EventHandler {
            channel_manager: Arc::clone(&channel_manager),
            rpc: Arc::clone(&rpc),
            chain: config.chain,
            fees: Arc::clone(&fees),
            sweeper: Arc::clone(&sweeper),
            notify: events.clone(),
            changed: changed.clone(),
            store: Arc::clone(&store),
            bumper: Arc::new(crate::anchors::Bumper::new(
                Arc::clone(&broadcaster),
                Arc::new(lightning::events::bump_transaction::Wallet::new(
                    Arc::new(crate::anchors::NodeWallet::new(Arc::clone(&rpc))),
                    Arc::clone(&logger),
                )),
                Arc::clone(&wallet_keys),
                Arc::clone(&logger),
            )),
            anchor_reserve_sats: config.anchor_reserve_sats,
            chain_monitor: Arc::clone(&chain_monitor),
        });
        let background = {
            let sleeper_rx = stop_rx.clone();
            let sleeper = move |d: Duration| {
                let mut rx = sleeper_rx.clone();
                Box::pin(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => false,
                        _ = rx.changed() => true,
                    }
                })
            };
            let store = Arc::clone(&store);
            let chain_monitor = Arc::clone(&chain_monitor);
            let channel_manager = Arc::clone(&channel_manager);
            let peer_manager = Arc::clone(&peer_manager);
            let sweeper = Arc::clone(&sweeper);
            let logger = Arc::clone(&logger);
            let fatal = Arc::clone(&fatal);
            let stopping = stop.clone();
            let peers_down = Arc::clone(&peer_manager);
            tokio::spawn(async move {
                let result = process_events_async(
                    store,
                    move |event| {
                        let handler = Arc::clone(&handler);
                        async move { handler.handle(event).await }
                    },
                    chain_monitor,
                    channel_manager,
                    NO_ONION_MESSENGER,
                    GossipSync::none(),
                    peer_manager,
                    NO_LIQUIDITY_MANAGER,
                    Some(sweeper),
                    logger,
                    None::<Arc<RwLock<Scorer>>>,
                    sleeper,
                    false,
                    || Some(now()),
                )
                .await;
                if let Err(e) = result {
                    // The channel manager can no longer be persisted: updating channels on
                    // would leave it behind its monitors (LDK force-closes those at the next
                    // start). Stop everything and refuse every operation.
                    tracing::error!(error = %e, "lightning background processing stopped: the node stops");
                    *fatal.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(format!("background processing stopped: {e}"));
                    peers_down.disconnect_all_peers();
                    let _ = stopping.send(true);
                }
            })
        };

        let node = Self {
            config,
            rpc,
            channel_manager,
            peer_manager,
            binding,
            follower,
            sweeper: Arc::clone(&sweeper),
            events,
            changed,
            peers: Arc::new(Mutex::new(read_peers(&store)?)),
            store: Arc::clone(&store),
            broadcaster: Arc::clone(&broadcaster),
            chain_monitor: Arc::clone(&chain_monitor),
            fees: Arc::clone(&fees),
            listen_addr,
            stop,
            background: Mutex::new(Some(background)),
            tasks: Mutex::new(Vec::new()),
            fatal,
        };
        node.spawn_listener(listener);
        if let Some(every) = node.config.htlc_processing_interval {
            node.spawn_htlc_processing(every, stop_rx.clone());
        }
        if let Some(every) = node.config.timer_tick_interval {
            node.spawn_timer_ticks(every.max(crate::config::MIN_TIMER_TICK), stop_rx.clone());
        }
        node.spawn_follower(fees, wallet_keys, stop_rx);
        tracing::info!(node_id = %node.node_id(), listen = %listen_addr, "lightning node started");
        Ok(node)
    }

    fn spawn_listener(&self, listener: tokio::net::TcpListener) {
        let peer_manager = Arc::clone(&self.peer_manager);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => match no_delay(stream) {
                        Ok(stream) => {
                            tokio::spawn(lightning_net_tokio::setup_inbound(
                                Arc::clone(&peer_manager),
                                stream,
                            ));
                        }
                        Err(e) => tracing::warn!(error = %e, "lightning connection"),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "lightning port accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        self.task(task);
    }

    /// LDK's timer tick every `every`, beside the background processor's
    /// ([`LnConfig::timer_tick_interval`]).
    fn spawn_timer_ticks(&self, every: Duration, stop: watch::Receiver<bool>) {
        let cm = Arc::clone(&self.channel_manager);
        self.spawn_every(every, stop, move || cm.timer_tick_occurred());
    }

    /// Runs `f` every `every` until the node stops.
    fn spawn_every(
        &self,
        every: Duration,
        mut stop: watch::Receiver<bool>,
        f: impl Fn() + Send + 'static,
    ) {
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
                f();
            }
        });
        self.task(task);
    }

    /// Processes received HTLCs as soon as they are there, checked every `every`, instead of
    /// after LDK's random batch delay ([`LnConfig::htlc_processing_interval`]). LDK guards
    /// the processing against running twice at once, so the background processor's own
    /// calls are harmless.
    fn spawn_htlc_processing(&self, every: Duration, stop: watch::Receiver<bool>) {
        let cm = Arc::clone(&self.channel_manager);
        self.spawn_every(every, stop, move || {
            if cm.needs_pending_htlc_processing() {
                cm.process_pending_htlc_forwards();
            }
        });
    }

    /// The follower task: new blocks to LDK, fee estimates and wallet scripts refreshed,
    /// lost peers reconnected.
    fn spawn_follower(
        &self,
        fees: Arc<FeeCache>,
        wallet_keys: Arc<WalletKeys>,
        mut stop: watch::Receiver<bool>,
    ) {
        let follower = Arc::clone(&self.follower);
        let broadcaster = Arc::clone(&self.broadcaster);
        let rpc = Arc::clone(&self.rpc);
        let peers = Arc::clone(&self.peers);
        let peer_manager = Arc::clone(&self.peer_manager);
        let binding = Arc::clone(&self.binding);
        let interval = self.config.poll_interval;
        let reserve = self.config.anchors.then(|| {
            crate::anchors::ReserveWatch::new(
                Arc::clone(&self.channel_manager),
                Arc::clone(&self.chain_monitor),
                self.config.anchor_reserve_sats,
            )
        });
        let task = tokio::spawn(async move {
            let mut last_height = None;
            let mut reconnect = crate::reconnect::Reconnect::new(interval);
            let mut reserve = reserve;
            loop {
                match follower.sync().await {
                    Ok(height) => {
                        if last_height != Some(height) {
                            last_height = Some(height);
                            if let Err(e) = fees.refresh(&rpc).await {
                                tracing::warn!(error = %e, "fee estimates not refreshed");
                            }
                            if let Some(watch) = reserve.as_mut() {
                                watch.check(&rpc).await;
                            }
                        }
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "lightning block follower")
                    }
                    // A deep reorg or data that does not fit: LDK is not fed until it is
                    // looked into (see `MAX_REORG_DEPTH`).
                    Err(e) => tracing::error!(error = %e, "lightning block follower halted"),
                }
                broadcaster.retry().await;
                if let Err(e) = wallet_keys.refill(&rpc).await {
                    tracing::warn!(error = %e, "wallet scripts not refilled");
                }
                let wanted: Vec<(PublicKey, SocketAddr)> = peers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|(k, a)| (*k, *a))
                    .collect();
                reconnect.pass(wanted, &peer_manager, &binding).await;
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => return,
                }
            }
        });
        self.task(task);
    }

    fn task(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// This node's id (its public key on the Lightning network).
    pub fn node_id(&self) -> PublicKey {
        self.channel_manager.get_our_node_id()
    }

    /// Where this node accepts Lightning peers.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Why the node stopped working on its own, if it did (its background processing ended:
    /// the channel manager could not be persisted). Every operation then fails with it.
    pub fn fatal(&self) -> Option<String> {
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fails when the node stopped working on its own (see [`LnNode::fatal`]).
    pub(crate) fn alive(&self) -> Result<(), LnError> {
        match self.fatal() {
            Some(why) => Err(LnError::Stopped(why)),
            None => Ok(()),
        }
    }

    /// Events from now on (subscribe before the action whose outcome you wait for).
    pub fn subscribe(&self) -> broadcast::Receiver<LnEvent> {
        self.events.subscribe()
    }

    /// Tells each event (after what it records is written), by its payment hash when it has
    /// one: a swap engine steps that swap's Lightning leg then instead of at its next poll.
    pub fn changes(&self) -> swap_core::ChangeSubscription {
        self.changed.subscribe()
    }

    /// Feeds LDK every block up to the node's tip now (the follower task also does, every
    /// poll interval); returns the height reached.
    pub async fn sync(&self) -> Result<u32, LnError> {
        self.follower.sync().await
    }

    /// Transactions waiting to be sent again because the node could not be reached.
    pub fn queued_broadcasts(&self) -> usize {
        self.broadcaster.queued()
    }

    /// The last block LDK was given.
    pub async fn best_block(&self) -> (BlockHash, u32) {
        let best = self.follower.best().await;
        (best.block_hash, best.height)
    }

    /// Stops the node: the Lightning port and the follower stop and peers are disconnected
    /// first, so that no message changes the channels any more; then the background processor
    /// persists the channel manager a last time and ends. The state stays in the data
    /// directory. (A channel manager persisted behind its monitors makes LDK force-close the
    /// channel at the next start, so this order matters.)
    pub async fn stop(&self) -> Result<(), LnError> {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        self.peer_manager.disconnect_all_peers();
        let _ = self.stop.send(true);
        let background = self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(background) = background {
            background.await.map_err(api)?;
        }
        self.alive()
    }
}

/// Dropped without [`LnNode::stop`]: the same order (tasks, peers, then the background
/// processor's last persist), without waiting for the persist.
impl Drop for LnNode {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        self.peer_manager.disconnect_all_peers();
        let _ = self.stop.send(true);
    }
}

/// A Lightning connection's socket for `lightning_net_tokio`, with Nagle's algorithm off.
///
/// LDK writes each message as it is produced (an `update_add_htlc`, then its
/// `commitment_signed`): with Nagle on, the second write waits for the peer's delayed ACK
/// (40 ms on Linux) at each of a payment's round trips, which was most of a payment's latency
/// between two nodes on one machine.
fn no_delay(stream: tokio::net::TcpStream) -> std::io::Result<std::net::TcpStream> {
    stream.set_nodelay(true)?;
    stream.into_std()
}

/// Connects to a peer (10 s at most) and returns the connection's future, to be spawned;
/// `None` when the peer cannot be reached. `lightning_net_tokio::connect_outbound` with the
/// socket set up by [`no_delay`].
pub(crate) async fn connect_outbound(
    peer_manager: Arc<PeerManager>,
    node_id: PublicKey,
    addr: SocketAddr,
) -> Option<impl std::future::Future<Output = ()>> {
    let connect = tokio::net::TcpStream::connect(addr);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(stream)) => match no_delay(stream) {
            Ok(stream) => Some(lightning_net_tokio::setup_outbound(
                peer_manager,
                node_id,
                stream,
            )),
            Err(e) => {
                tracing::warn!(error = %e, "lightning connection");
                None
            }
        },
        _ => None,
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
