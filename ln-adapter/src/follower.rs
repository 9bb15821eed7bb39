//! The block follower that feeds LDK: every block of the node's main chain, in order, exactly
//! once, and `blocks_disconnected(fork point)` on a reorg. LDK panics on blocks out of order,
//! so each header is rebuilt from the node's bytes, its hash checked, and its parent checked
//! against the last block connected.
//!
//! Blocks are read as `getblock <hash> 2` (each transaction's hex), because a Litecoin block
//! after MWEB activation carries data a Bitcoin block parser rejects; the Litecoin HogEx (the
//! last transaction, MWEB-serialized) is the only one skipped (btc-adapter's
//! [`parse_block_txs`]).

use std::sync::Arc;

use bitcoin::block::Header;
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{BlockHash, Transaction};
use btc_adapter::rpc::RpcClient;
use btc_adapter::scanner::parse_block_txs;
use lightning::chain::{BestBlock, Listen};
use serde_json::{json, Value};

use crate::error::LnError;

/// Something fed blocks (the chain monitor, the channel manager, the sweeper, or one channel
/// monitor while it catches up at start).
pub(crate) type Listener = Arc<dyn Listen + Send + Sync>;

/// A block as LDK takes it.
struct FetchedBlock {
    header: Header,
    txs: Vec<Transaction>,
}

/// Reads block `hash`: the header rebuilt from its bytes with its hash checked, and the
/// transactions without the HogEx.
async fn fetch_block(rpc: &RpcClient, hash: &BlockHash) -> Result<FetchedBlock, LnError> {
    let hex: String = rpc
        .call("getblockheader", vec![json!(hash), json!(false)])
        .await?;
    let header: Header =
        deserialize_hex(&hex).map_err(|e| LnError::Inconsistent(format!("header {hash}: {e}")))?;
    if header.block_hash() != *hash {
        return Err(LnError::Inconsistent(format!(
            "header of {hash} hashes to {}",
            header.block_hash()
        )));
    }
    let block = rpc.get_block_verbose(hash).await?;
    let txs = parse_block_txs(
        &hash.to_string(),
        block.tx.iter().map(|t| (t.txid.as_str(), t.hex.as_str())),
    )
    .map_err(|e| LnError::Inconsistent(e.to_string()))?;
    Ok(FetchedBlock { header, txs })
}

/// The deepest reorg the follower hands to LDK. A deeper one is refused with an error that
/// stops the follower: LDK would un-confirm every channel funded above the fork point and
/// close it, and what looks like a deep reorg is more often a node that is reindexing, was
/// pointed at another chain, or had blocks invalidated by hand. An operator looks first.
pub const MAX_REORG_DEPTH: u32 = 6;

/// The last block of `from`'s chain that is on the node's main chain (`from` itself when it
/// is), found by walking back through the parents of stale blocks, at most
/// [`MAX_REORG_DEPTH`] blocks.
async fn fork_point(rpc: &RpcClient, from: BestBlock) -> Result<BestBlock, LnError> {
    let mut hash = from.block_hash;
    loop {
        let header: Value = rpc.get_block_header(&hash).await?;
        let confirmations = header
            .get("confirmations")
            .and_then(Value::as_i64)
            .ok_or_else(|| LnError::Inconsistent(format!("header {hash} without confirmations")))?;
        let height = header
            .get("height")
            .and_then(Value::as_u64)
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| LnError::Inconsistent(format!("header {hash} without a height")))?;
        if confirmations >= 0 {
            return Ok(BestBlock::new(hash, height));
        }
        if from.height.saturating_sub(height) >= MAX_REORG_DEPTH {
            return Err(LnError::Inconsistent(format!(
                "the node's chain left ours more than {MAX_REORG_DEPTH} blocks below our \
                 block at height {} (is it reindexing, or on another chain?): refusing to \
                 disconnect lightning blocks that deep",
                from.height
            )));
        }
        hash = header
            .get("previousblockhash")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LnError::Inconsistent(format!("stale block {hash} without a parent")))?;
    }
}

/// Brings `listeners`, all at `best`, to the node's tip: disconnects to the fork point if
/// `best` left the main chain, then connects every block after it. `best` follows each block
/// fed, also when a later read fails, so the next call resumes exactly there. A reorg during
/// the walk is handled by the next round of the loop.
pub(crate) async fn sync_listeners(
    rpc: &RpcClient,
    listeners: &[Listener],
    best: &mut BestBlock,
) -> Result<(), LnError> {
    loop {
        let tip: BlockHash = rpc.call("getbestblockhash", vec![]).await?;
        if tip == best.block_hash {
            return Ok(());
        }
        let fork = fork_point(rpc, *best).await?;
        if fork.block_hash != best.block_hash {
            tracing::info!(
                from = best.height,
                fork = fork.height,
                "reorg: disconnecting lightning blocks"
            );
            for l in listeners {
                l.blocks_disconnected(fork);
            }
            *best = fork;
        }
        let tip_height = rpc.get_block_count().await?;
        let tip_height = u32::try_from(tip_height)
            .map_err(|_| LnError::Inconsistent(format!("height {tip_height}")))?;
        while best.height < tip_height {
            let height = best.height + 1;
            let hash = rpc.get_block_hash(u64::from(height)).await?;
            let block = fetch_block(rpc, &hash).await?;
            if block.header.prev_blockhash != best.block_hash {
                // The chain changed under us: find the fork point again.
                break;
            }
            let txdata: Vec<(usize, &Transaction)> = block.txs.iter().enumerate().collect();
            for l in listeners {
                l.filtered_block_connected(&block.header, &txdata, height);
            }
            *best = BestBlock::new(hash, height);
        }
    }
}

/// The follower of the running node: one best block for all listeners, one sync at a time.
pub(crate) struct Follower {
    rpc: Arc<RpcClient>,
    listeners: Vec<Listener>,
    best: tokio::sync::Mutex<BestBlock>,
}

impl Follower {
    pub(crate) fn new(rpc: Arc<RpcClient>, listeners: Vec<Listener>, best: BestBlock) -> Self {
        Self {
            rpc,
            listeners,
            best: tokio::sync::Mutex::new(best),
        }
    }

    /// Feeds every block up to the node's tip; returns the height reached.
    pub(crate) async fn sync(&self) -> Result<u32, LnError> {
        let mut best = self.best.lock().await;
        sync_listeners(&self.rpc, &self.listeners, &mut best).await?;
        Ok(best.height)
    }

    /// Runs `f` with the last block fed, while no block can be fed (so what LDK does in `f`
    /// happens at that height).
    pub(crate) async fn at_best<T>(&self, f: impl FnOnce(BestBlock) -> T) -> T {
        let best = self.best.lock().await;
        f(*best)
    }

    /// The last block fed.
    pub(crate) async fn best(&self) -> BestBlock {
        *self.best.lock().await
    }
}
