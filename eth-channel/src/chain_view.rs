//! What a [`crate::Node`] reads from the chain: a channel's amounts at a final block, the
//! secret registry, the chain's time.

use alloy::primitives::B256;
use eth_adapter::channel::{ChannelRef, OnChain};

use crate::session::SessionError;

/// What the chain says, for checking states: a channel's amounts at a final block.
#[async_trait::async_trait]
pub trait ChainView: Send + Sync + 'static {
    /// `chan`'s cumulative amounts at a final block (see `ChannelRef::on_chain`).
    async fn on_chain(&self, chan: &ChannelRef) -> Result<OnChain, SessionError>;
    /// `chan`'s amounts at a final block where its deposits reach `deposits` (A's, B's) if
    /// they do at the newest final block: a view that keeps what it read for a while reads
    /// again when the kept amounts fall short (a deposit just made final, which the peer
    /// counts already). The default reads [`ChainView::on_chain`].
    async fn on_chain_covering(
        &self,
        chan: &ChannelRef,
        deposits: (u128, u128),
    ) -> Result<OnChain, SessionError> {
        let _ = deposits;
        self.on_chain(chan).await
    }
    /// `chan`'s amounts at a final block if it is open there, `None` if it is not (never
    /// opened, closing or settled). The default reads [`ChainView::on_chain`] and takes any
    /// failure as a failure.
    async fn open_at_final(&self, chan: &ChannelRef) -> Result<Option<OnChain>, SessionError> {
        self.on_chain(chan).await.map(Some)
    }
    /// When `hashlock`'s secret was first revealed in `chan`'s contract, if it was (the
    /// contract's secret registry, at the latest block: a reveal is final for this purpose as
    /// soon as it is seen, since refusing a cancel costs nothing).
    async fn revealed_at(
        &self,
        chan: &ChannelRef,
        hashlock: B256,
    ) -> Result<Option<u64>, SessionError>;
    /// The number of the block [`ChainView::open_at_final`] reads at, or a lower one: a
    /// channel seen open there has no closing before it (where its watcher may start). The
    /// default is 0, for views without a chain.
    async fn final_block(&self) -> Result<u64, SessionError> {
        Ok(0)
    }
    /// The chain's time: the latest block's timestamp (a lock's expiry is judged by it when
    /// cancelling, as the contract judges reveals by block time). The default is
    /// [`ChainView::now`], for views without a chain.
    async fn chain_time(&self) -> Result<u64, SessionError> {
        Ok(self.now())
    }
    /// Unix seconds now (new lock and withdrawal expiries are checked against it).
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// How long one read of the final block serves [`RpcChain`] before it reads it again. A
/// final block is minutes old anyway (and a channel's amounts at one block never change), so
/// reading it for each state checked bought nothing: at one swap after another it was four
/// calls to the node per channel swap, on the swap's path.
pub const FINAL_BLOCK_READ_FOR: std::time::Duration = std::time::Duration::from_millis(250);

/// The least time between two reads of the final block made because a state counts more
/// deposits than the kept amounts ([`ChainView::on_chain_covering`]): a peer sending states
/// that count deposits never made costs the node at most one read per this interval (each
/// such message waits for its turn), where each would have been a read.
pub const REREAD_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// [`ChainView`] over an RPC provider, reading at a fixed block tag (`Finalized` in
/// production; a devnet without finality may pass `Latest`). Clones share what it read: the
/// final block for [`FINAL_BLOCK_READ_FOR`], and each channel's amounts at that block (by its
/// hash, so a reorganised `Latest` block is read again). A channel not open at a block read
/// before is read again at a fresh block before it is called not open.
#[derive(Debug, Clone)]
pub struct RpcChain {
    /// The provider.
    pub provider: alloy::providers::DynProvider,
    /// The block read.
    pub at: alloy::eips::BlockNumberOrTag,
    reads: std::sync::Arc<FinalReads>,
}

#[derive(Debug, Default)]
struct FinalReads {
    block: std::sync::Mutex<Option<FinalBlock>>,
    /// When [`ChainView::on_chain_covering`] last read the final block again.
    reread: std::sync::Mutex<Option<std::time::Instant>>,
    /// Per channel id: the final block's hash, and the channel's amounts there (channels
    /// open there only; those read at other blocks are dropped when a new block is kept).
    channels: std::sync::Mutex<std::collections::HashMap<B256, (B256, OnChain)>>,
}

#[derive(Debug, Clone, Copy)]
struct FinalBlock {
    read: std::time::Instant,
    number: u64,
    hash: B256,
    time: u64,
}

/// Transport errors quote the URL, which may carry an API key.
fn chain_err(e: &dyn std::fmt::Display) -> SessionError {
    SessionError::Chain(eth_adapter::scrub_urls(&e.to_string()))
}

impl RpcChain {
    /// A view of `provider`'s chain at the block `at`.
    pub fn new(provider: alloy::providers::DynProvider, at: alloy::eips::BlockNumberOrTag) -> Self {
        Self {
            provider,
            at,
            reads: std::sync::Arc::default(),
        }
    }

    /// The final block: the one read less than [`FINAL_BLOCK_READ_FOR`] ago (unless
    /// `fresh`), or a new read; and whether it is a new read.
    async fn final_block_read(&self, fresh: bool) -> Result<(FinalBlock, bool), SessionError> {
        use alloy::providers::Provider;
        let kept = *self
            .reads
            .block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = kept.filter(|b| !fresh && b.read.elapsed() < FINAL_BLOCK_READ_FOR) {
            return Ok((b, false));
        }
        let started = std::time::Instant::now();
        let block = self
            .provider
            .get_block_by_number(self.at)
            .await
            .map_err(|e| chain_err(&e))?
            .ok_or_else(|| SessionError::Chain(format!("no block {}", self.at)))?;
        let read = FinalBlock {
            read: started,
            number: block.header.number,
            hash: block.header.hash,
            time: block.header.timestamp,
        };
        let mut kept = self
            .reads
            .block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Of two reads at once, the later block stays (a read started after the kept one
        // may be lower: a reorganised `Latest`): what `final_block` said is never above what
        // `open_at_final` then reads at.
        if kept.is_none_or(|k| read.number >= k.number || read.read > k.read) {
            if kept.is_none_or(|k| k.hash != read.hash) {
                // Amounts read at other blocks serve no more.
                self.reads
                    .channels
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .retain(|_, (hash, _)| *hash == read.hash);
            }
            *kept = Some(read);
        }
        Ok((read, true))
    }

    /// `chan` at `block`: as read before at that block, or read now.
    async fn open_at_block(
        &self,
        chan: &ChannelRef,
        block: FinalBlock,
    ) -> Result<Option<OnChain>, SessionError> {
        let id = chan.id();
        let channels = || {
            self.reads
                .channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((hash, on)) = channels().get(&id) {
            if *hash == block.hash {
                return Ok(Some(*on));
            }
        }
        let on = chan
            .open_at(
                &self.provider,
                alloy::eips::BlockId::hash(block.hash),
                block.time,
            )
            .await
            .map_err(|e| chain_err(&e))?;
        if let Some(on) = on {
            channels().insert(id, (block.hash, on));
        }
        Ok(on)
    }
}

#[async_trait::async_trait]
impl ChainView for RpcChain {
    async fn on_chain(&self, chan: &ChannelRef) -> Result<OnChain, SessionError> {
        self.open_at_final(chan).await?.ok_or_else(|| {
            SessionError::Chain(format!(
                "channel {} is not open at the final block",
                chan.id()
            ))
        })
    }

    async fn on_chain_covering(
        &self,
        chan: &ChannelRef,
        deposits: (u128, u128),
    ) -> Result<OnChain, SessionError> {
        let on = self.on_chain(chan).await?;
        if on.deposit_a >= deposits.0 && on.deposit_b >= deposits.1 {
            return Ok(on);
        }
        // Kept amounts short of a deposit the state counts: the deposit may have become
        // final since the kept block was read. Read again, but not sooner than `REREAD_GAP`
        // after the last such read: that one may have started before this state was sent,
        // the one after the wait starts after it.
        let wait = self
            .reads
            .reread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map_or(std::time::Duration::ZERO, |at| {
                REREAD_GAP.saturating_sub(at.elapsed())
            });
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        *self
            .reads
            .reread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
        let (block, _) = self.final_block_read(true).await?;
        self.open_at_block(chan, block).await?.ok_or_else(|| {
            SessionError::Chain(format!(
                "channel {} is not open at the final block",
                chan.id()
            ))
        })
    }

    async fn open_at_final(&self, chan: &ChannelRef) -> Result<Option<OnChain>, SessionError> {
        let (block, new) = self.final_block_read(false).await?;
        match self.open_at_block(chan, block).await? {
            // Not open at a block read a moment ago: it may be open at the next one. Only a
            // channel seen open is taken from what was read before.
            None if !new => {
                let (block, _) = self.final_block_read(true).await?;
                self.open_at_block(chan, block).await
            }
            on => Ok(on),
        }
    }

    async fn revealed_at(
        &self,
        chan: &ChannelRef,
        hashlock: B256,
    ) -> Result<Option<u64>, SessionError> {
        chan.revealed_at(&self.provider, hashlock)
            .await
            .map_err(|e| SessionError::Chain(e.to_string()))
    }

    async fn final_block(&self) -> Result<u64, SessionError> {
        Ok(self.final_block_read(false).await?.0.number)
    }

    async fn chain_time(&self) -> Result<u64, SessionError> {
        eth_adapter::tx::latest(&self.provider)
            .await
            .map(|t| t.timestamp)
            .map_err(|e| SessionError::Chain(e.to_string()))
    }
}
