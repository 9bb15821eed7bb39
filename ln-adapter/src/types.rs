//! The concrete LDK types of the embedded node.

use std::sync::{Arc, RwLock};

use lightning::chain::chainmonitor;
use lightning::chain::Filter;
use lightning::ln::channelmanager;
use lightning::ln::peer_handler::{self, IgnoringMessageHandler};
use lightning::onion_message::messenger::DefaultMessageRouter;
use lightning::routing::gossip;
use lightning::routing::router;
use lightning::routing::scoring::{ProbabilisticScorer, ProbabilisticScoringFeeParameters};
use lightning::sign::{InMemorySigner, KeysManager};
use lightning::util::sweep;

use crate::io::{Broadcaster, FeeCache, TracingLogger, WalletChange, WalletKeys};

/// No chain filter: the follower passes every transaction of every block.
pub(crate) type NoFilter = Arc<dyn Filter + Send + Sync>;

/// LDK's store: files in the node's data directory, sealed with the installation's key when
/// it has one (see `sealed.rs`).
pub(crate) type Store = crate::sealed::SealedStore;

/// How the channel monitors are persisted in [`Store`]: each update as a small record of its
/// own, the whole monitor rewritten once every [`MAX_PENDING_MONITOR_UPDATES`] updates (a
/// monitor keeps what it needs to punish every revoked commitment, so it grows with the
/// channel's history: rewriting it whole on every update made each payment cost more than
/// the last); committed only with a channel manager that knows them (`gate.rs`).
pub(crate) type Persister = crate::gate::GatedPersister;

/// Monitor updates kept as records before the monitor is written whole again. A monitor grows
/// by ~330 bytes per swap on a busy channel (1.6 MB after 5,000), so the whole rewrite costs
/// each update size/this: 1,000 (from 100) took 18.6 -> 15.1 ms of CPU off a swap at 5,000
/// swaps (README). The price is at start: up to 1,000 small records (~1.4 KB each) read and
/// replayed per channel.
pub const MAX_PENDING_MONITOR_UPDATES: u64 = 1000;

/// The chain monitor (channel monitors, persisted in [`Store`] through [`Persister`]).
pub(crate) type ChainMonitor = chainmonitor::ChainMonitor<
    InMemorySigner,
    NoFilter,
    Arc<Broadcaster>,
    Arc<FeeCache>,
    Arc<TracingLogger>,
    Arc<Persister>,
    Arc<KeysManager>,
>;

/// The (empty) network graph: channels are direct and unannounced for now.
pub(crate) type NetworkGraph = gossip::NetworkGraph<Arc<TracingLogger>>;

/// The scorer the router uses.
pub(crate) type Scorer = ProbabilisticScorer<Arc<NetworkGraph>, Arc<TracingLogger>>;

/// LDK's payment router.
pub(crate) type DefaultRouter = router::DefaultRouter<
    Arc<NetworkGraph>,
    Arc<TracingLogger>,
    Arc<KeysManager>,
    Arc<RwLock<Scorer>>,
    ProbabilisticScoringFeeParameters,
    Scorer,
>;

/// The payment router: LDK's, with the final CLTV pinned.
pub(crate) type Router = crate::router::PinnedCltvRouter;

/// The onion-message router.
pub(crate) type MessageRouter =
    DefaultMessageRouter<Arc<NetworkGraph>, Arc<TracingLogger>, Arc<KeysManager>>;

/// The channel manager.
pub(crate) type ChannelManager = channelmanager::ChannelManager<
    Arc<ChainMonitor>,
    Arc<Broadcaster>,
    Arc<KeysManager>,
    Arc<KeysManager>,
    Arc<WalletKeys>,
    Arc<FeeCache>,
    Arc<Router>,
    Arc<MessageRouter>,
    Arc<TracingLogger>,
>;

/// The peer manager over tokio sockets.
pub(crate) type PeerManager = peer_handler::PeerManager<
    lightning_net_tokio::SocketDescriptor,
    Arc<crate::node::answers::Answering>,
    Arc<IgnoringMessageHandler>,
    Arc<IgnoringMessageHandler>,
    Arc<TracingLogger>,
    Arc<crate::handshake::ChainBinding>,
    Arc<KeysManager>,
    Arc<ChainMonitor>,
>;

/// The output sweeper (to-self outputs after closes, back to the wallet).
pub(crate) type Sweeper = sweep::OutputSweeper<
    Arc<Broadcaster>,
    Arc<WalletChange>,
    Arc<FeeCache>,
    NoFilter,
    Arc<Store>,
    Arc<TracingLogger>,
    Arc<KeysManager>,
>;
