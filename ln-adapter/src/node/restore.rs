//! What a previous run left in the node's data directory, read back (the peers to keep,
//! the channel monitors), and the node's parts brought to the chain's tip before anything
//! runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bitcoin::secp256k1::PublicKey;
use bitcoin::BlockHash;
use btc_adapter::rpc::RpcClient;
use lightning::chain::{BestBlock, Watch};
use lightning::util::persist::KVStoreSync;

use crate::error::LnError;
use crate::follower::{sync_listeners, Listener};
use crate::io::{Broadcaster, FeeCache, TracingLogger};
use crate::types::{ChainMonitor, ChannelManager, Persister, Store, Sweeper};

/// A channel monitor while it catches up at start (LDK's `Listen` for one monitor).
pub(super) type MonitorListener = (
    lightning::chain::channelmonitor::ChannelMonitor<lightning::sign::InMemorySigner>,
    Arc<Broadcaster>,
    Arc<FeeCache>,
    Arc<TracingLogger>,
);

/// The node's tip.
pub(super) async fn tip(rpc: &RpcClient) -> Result<BestBlock, LnError> {
    let hash: BlockHash = rpc.call("getbestblockhash", vec![]).await?;
    let header = rpc.get_block_header(&hash).await?;
    let height = header
        .get("height")
        .and_then(serde_json::Value::as_u64)
        .and_then(|h| u32::try_from(h).ok())
        .ok_or_else(|| LnError::Inconsistent(format!("header {hash} without a height")))?;
    Ok(BestBlock::new(hash, height))
}

pub(super) fn read_key(
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

pub(super) fn read_peers(store: &Store) -> Result<HashMap<PublicKey, SocketAddr>, LnError> {
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

/// The channel monitors stored, each with the block it stands on. Update records already
/// folded into a monitor written whole (a crash can leave them behind: they are never read
/// again) are removed without waiting.
pub(super) fn read_monitors(
    persister: &Persister,
    broadcaster: &Arc<Broadcaster>,
    fees: &Arc<FeeCache>,
    logger: &Arc<TracingLogger>,
) -> Result<Vec<(BestBlock, Arc<MonitorListener>)>, LnError> {
    let mut monitors: Vec<(BestBlock, Arc<MonitorListener>)> = Vec::new();
    // Monitors written whole by earlier versions (no update records) read the same way.
    for (_, monitor) in persister
        .records()
        .read_all_channel_monitors_with_updates()
        .map_err(|e| LnError::Decode(format!("channel monitors: {e}")))?
    {
        let best = monitor.current_best_block();
        monitors.push((
            best,
            Arc::new((
                monitor,
                Arc::clone(broadcaster),
                Arc::clone(fees),
                Arc::clone(logger),
            )),
        ));
    }
    if let Err(e) = persister.records().cleanup_stale_updates(true) {
        tracing::warn!(error = %e, "stale channel monitor updates not removed");
    }
    Ok(monitors)
}

/// Each part (the monitors, the channel manager, the sweeper) catches up from its own best
/// block, alone, until all stand on the tip; the monitors are then handed to the chain
/// monitor. Returns the block they all stand on.
pub(super) async fn catch_up(
    rpc: &RpcClient,
    mut monitors: Vec<(BestBlock, Arc<MonitorListener>)>,
    channel_manager: &Arc<ChannelManager>,
    (sweeper, mut sweeper_best): (&Arc<Sweeper>, BestBlock),
    chain_monitor: &ChainMonitor,
) -> Result<BestBlock, LnError> {
    let mut manager_best = channel_manager.current_best_block();
    loop {
        let target = tip(rpc).await?;
        for (best, monitor) in &mut monitors {
            let l: Listener = monitor.clone();
            sync_listeners(rpc, &[l], best).await?;
        }
        let l: Listener = channel_manager.clone();
        sync_listeners(rpc, &[l], &mut manager_best).await?;
        let l: Listener = sweeper.clone();
        sync_listeners(rpc, &[l], &mut sweeper_best).await?;
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
    Ok(manager_best)
}
