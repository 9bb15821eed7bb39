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

/// [`ChainView`] over an RPC provider, reading at a fixed block tag (`Finalized` in
/// production; a devnet without finality may pass `Latest`).
#[derive(Debug, Clone)]
pub struct RpcChain {
    /// The provider.
    pub provider: alloy::providers::DynProvider,
    /// The block read.
    pub at: alloy::eips::BlockNumberOrTag,
}

#[async_trait::async_trait]
impl ChainView for RpcChain {
    async fn on_chain(&self, chan: &ChannelRef) -> Result<OnChain, SessionError> {
        chan.on_chain(&self.provider, self.at)
            .await
            .map_err(|e| SessionError::Chain(e.to_string()))
    }

    async fn open_at_final(&self, chan: &ChannelRef) -> Result<Option<OnChain>, SessionError> {
        crate::announce::rpc_open_at_final(self, chan).await
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
        use alloy::providers::Provider;
        let b = self
            .provider
            .get_block_by_number(self.at)
            .await
            .map_err(|e| SessionError::Chain(eth_adapter::scrub_urls(&e.to_string())))?
            .ok_or_else(|| SessionError::Chain(format!("no block {}", self.at)))?;
        Ok(b.header.number)
    }

    async fn chain_time(&self) -> Result<u64, SessionError> {
        eth_adapter::tx::latest(&self.provider)
            .await
            .map(|t| t.timestamp)
            .map_err(|e| SessionError::Chain(e.to_string()))
    }
}
