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
use lightning::chain::BestBlock;
use lightning::ln::channelmanager::{ChainParameters, ChannelManagerReadArgs};
use lightning::ln::peer_handler::{IgnoringMessageHandler, MessageHandler};
use lightning::routing::gossip::NetworkGraph as LdkNetworkGraph;
use lightning::routing::scoring::{
    ProbabilisticScorer, ProbabilisticScoringDecayParameters, ProbabilisticScoringFeeParameters,
};
use lightning::sign::{EntropySource, KeysManager, NodeSigner};
use lightning::util::config::UserConfig;
use lightning::util::persist::{
    MonitorUpdatingPersister, CHANNEL_MANAGER_PERSISTENCE_KEY,
    CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE, CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
    OUTPUT_SWEEPER_PERSISTENCE_KEY, OUTPUT_SWEEPER_PERSISTENCE_PRIMARY_NAMESPACE,
    OUTPUT_SWEEPER_PERSISTENCE_SECONDARY_NAMESPACE,
};
use lightning::util::ser::ReadableArgs;
use lightning::util::sweep::OutputSweeper;
use swap_core::{ChainFamily, ChainId, Network};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::{LnConfig, Seed};
use crate::error::{api, LnError};
use crate::events::{EventHandler, LnEvent};
use crate::follower::{Follower, Listener};
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
    /// LDK timer ticks taken (see `node/ticker.rs`).
    pub(crate) ticks: Arc<ticker::TickCounts>,
    /// The peers' answers LDK handled, per channel (the ticker reads them).
    pub(crate) answers: Arc<answers::Answers>,
    /// Nanoseconds LDK's background processor spent being polled (benches print its share).
    pub(crate) background_busy: Arc<std::sync::atomic::AtomicU64>,
    /// The legs (payment hashes) a swap's payment is being handed to LDK for right now: one
    /// hand-over at a time per leg (each has a payment id of its own, so two at once would
    /// be two payments; see `LnRail::pay`).
    pub(crate) paying: Mutex<std::collections::HashSet<[u8; 32]>>,
    /// Legs whose payment no channel had room for, woken when an HTLC leaves one.
    pub(crate) room: Arc<crate::room::Room>,
}

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
    if let Some(msat) = config.max_dust_htlc_exposure_msat {
        c.channel_config.max_dust_htlc_exposure =
            lightning::util::config::MaxDustHTLCExposure::FixedLimitMsat(msat);
    }
    c.accept_inbound_channels = true;
    c.manually_accept_inbound_channels = config.anchors;
    c
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
        let persister = Arc::new(crate::gate::GatedPersister::new(
            MonitorUpdatingPersister::new(
                Arc::clone(&store),
                Arc::clone(&logger),
                MAX_PENDING_MONITOR_UPDATES,
                Arc::clone(&keys),
                Arc::clone(&wallet_keys),
                Arc::clone(&broadcaster),
                Arc::clone(&fees),
            ),
            Arc::clone(&store),
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
        let monitors = restore::read_monitors(&persister, &broadcaster, &fees, &logger)?;
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
        let (sweeper_best, sweeper): (BestBlock, Arc<Sweeper>) = match sweeper_bytes {
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

        let manager_best = restore::catch_up(
            &rpc,
            monitors,
            &channel_manager,
            (&sweeper, sweeper_best),
            &chain_monitor,
        )
        .await?;
        // From here on monitor writes wait for a channel manager that knows them. Nothing
        // before this line may make the manager process its background events (a timer tick,
        // a message, a close): the monitor updates it replays at a start must go through the
        // gate, or LDK sees completed and in-progress persistence mixed, and panics.
        store.gate().start(&store, &channel_manager, &chain_monitor);
        crate::gate::reconcile_started(&channel_manager, &chain_monitor);
        // From here on one follower feeds them all, in order. The chain monitor before the
        // manager: a whole monitor the chain monitor writes for a block is committed with
        // the manager write the manager's block handling asks for (`gate.rs`).
        let listeners: Vec<Listener> = vec![
            chain_monitor.clone(),
            channel_manager.clone(),
            sweeper.clone(),
        ];
        let follower = Arc::new(Follower::new(Arc::clone(&rpc), listeners, manager_best));

        let binding = Arc::new(crate::handshake::ChainBinding::new(config.chain));
        let answers = Arc::new(answers::Answers::default());
        let peer_manager: Arc<PeerManager> = Arc::new(PeerManager::new(
            MessageHandler {
                chan_handler: Arc::new(answers::Answering {
                    manager: Arc::clone(&channel_manager),
                    answers: Arc::clone(&answers),
                }),
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
        let (stop, _) = watch::channel(false);
        let fatal: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));

        let open_requests = Arc::new(ticker::OpenRequests::default());
        let room = Arc::new(crate::room::Room::default());
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
            open_requests: Arc::clone(&open_requests),
            room: Arc::clone(&room),
        });
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
            background: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            fatal,
            ticks: Arc::default(),
            answers,
            background_busy: Arc::default(),
            paying: Mutex::default(),
            room,
        };
        node.spawn_background(handler);
        node.spawn_gate_watch();
        node.spawn_listener(listener);
        if let Some(every) = node.config.htlc_processing_interval {
            node.spawn_htlc_processing(every);
        }
        node.spawn_ticker(open_requests);
        node.spawn_follower(wallet_keys);
        tracing::info!(node_id = %node.node_id(), listen = %listen_addr, "lightning node started");
        Ok(node)
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
        // A seal and a commit: off the tokio workers.
        let store = Arc::clone(&self.store);
        if let Err(e) = tokio::task::spawn_blocking(move || close_gate(&store)).await {
            tracing::warn!(error = %e, "channel manager kept in memory, at the stop");
        }
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
/// processor's last persist), without waiting for the persist; the manager kept in memory,
/// if any, is committed on the dropping thread (one seal and commit).
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
        close_gate(&self.store);
        let _ = self.stop.send(true);
    }
}

/// From here on the channel manager's writes are committed at once (the background
/// processor's last one included), and one kept in memory is committed now (`gate.rs`).
fn close_gate(store: &Store) {
    if let Err(e) = store.gate().close(store) {
        tracing::warn!(error = %e, "channel manager kept in memory, at the stop");
    }
}

pub(crate) mod answers;
mod restore;
mod tasks;
pub(crate) mod ticker;

pub(crate) use restore::write_peers;
use restore::{read_key, read_peers, tip};
pub(crate) use tasks::connect_outbound;

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
