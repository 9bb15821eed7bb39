//! The secret registry's `Revealed` events, read once per block for all legs.
//!
//! A lock in force is `Claimed` once its hashlock is revealed on chain in time; every leg's
//! status asked the registry (`revealedAt`, one `eth_call`) at each new tip, so each swap
//! cost the receiver's rail one call to the node even when no block came. The rail now
//! reads each contract's `Revealed` events block by block from the block it first looked at
//! on, as the chain grows: a leg watched from that block or later that is not among them was
//! not revealed from its swap's start to the tip, with no read of its own. A hashlock found
//! there, a leg watched from an earlier block (one that began before this rail started, or
//! before a reorganisation or a long pause restarted the scan), or a scan that cannot answer
//! (the node's error, a tip it has not reached) is asked about as before (`revealedAt` and
//! its event, with the reveal's time against the lock's expiry).
//!
//! Each block is read by its hash (`eth_getLogs` with `blockHash`: a node that does not have
//! that block answers an error, never an empty list, as a range past a lagging node's head
//! may), and its parent must be the block read before it: the blocks read are one chain. A
//! block whose parent is not the last one read means a reorganisation, and the scan starts
//! again at the tip; so does a gap of more than [`MAX_WALK`] blocks (a rail that looked at
//! nothing for a while), where asking each leg is cheaper than walking the gap.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use eth_adapter::bindings::Channel;
use swap_core::rail::{Cause, ChainError};

use super::errors::eth_err;

/// The most blocks one extension of a scan reads; a longer gap starts the scan again at the
/// tip.
pub(super) const MAX_WALK: u64 = 64;

/// One contract's `Revealed` events from block `from` to the block `through`.
#[derive(Debug)]
struct Scan {
    from: u64,
    /// The last block read and its hash (none yet: `from` is next).
    through: Option<(u64, B256)>,
    /// The hashlocks revealed in those blocks.
    revealed: HashSet<B256>,
}

impl Scan {
    fn at(tip: u64) -> Self {
        Self {
            from: tip,
            through: None,
            revealed: HashSet::new(),
        }
    }
}

/// The scans of the contracts the rail's legs are in (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Reveals {
    scans: std::sync::Mutex<HashMap<Address, Arc<tokio::sync::Mutex<Scan>>>>,
    /// Blocks whose events were read, for tests and figures.
    reads: std::sync::atomic::AtomicU64,
}

impl Reveals {
    /// `Some(false)`: `hashlock` was not revealed in `contract`'s registry from block
    /// `from` through the tip (`tip`, `tip_hash`), as the scan reads; `Some(true)`: it was
    /// (when, and whether in time, is for the caller to ask); `None`: the scan does not
    /// cover `from` to that tip (ask the registry).
    pub(super) async fn revealed_since(
        &self,
        provider: &DynProvider,
        contract: Address,
        hashlock: B256,
        from: u64,
        (tip, tip_hash): (u64, B256),
    ) -> Result<Option<bool>, ChainError> {
        let scan = self.scan_to(provider, contract, tip).await?;
        Ok((scan.from <= from && scan.through == Some((tip, tip_hash)))
            .then(|| scan.revealed.contains(&hashlock)))
    }

    /// Begins `contract`'s scan at block `tip` if it has none yet (or reads it on to there).
    pub(super) async fn begin(
        &self,
        provider: &DynProvider,
        contract: Address,
        tip: u64,
    ) -> Result<(), ChainError> {
        self.scan_to(provider, contract, tip).await.map(drop)
    }

    /// `contract`'s scan (begun at `tip` if there was none), read on to `tip` when it had
    /// not reached it.
    async fn scan_to(
        &self,
        provider: &DynProvider,
        contract: Address,
        tip: u64,
    ) -> Result<tokio::sync::OwnedMutexGuard<Scan>, ChainError> {
        let scan = Arc::clone(
            self.scans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(contract)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Scan::at(tip)))),
        );
        let mut scan = scan.lock_owned().await;
        if scan.through.is_none_or(|(h, _)| h < tip) {
            self.extend(provider, contract, &mut scan, tip).await?;
        }
        Ok(scan)
    }

    /// Blocks whose events were read so far.
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the blocks after the last one read up to height `tip`, each by its hash and
    /// linked to the one before; starts again at `tip` on a reorganisation or a gap of over
    /// [`MAX_WALK`]. What was read stays read if a call fails.
    async fn extend(
        &self,
        provider: &DynProvider,
        contract: Address,
        scan: &mut Scan,
        tip: u64,
    ) -> Result<(), ChainError> {
        let next = scan.through.map_or(scan.from, |(h, _)| h + 1);
        // (`tip < next` only with nothing read yet: a tip below the first block.)
        if tip < next || tip - next >= MAX_WALK {
            *scan = Scan::at(tip);
        }
        let filter = Filter::new()
            .address(contract)
            .event_signature(Channel::Revealed::SIGNATURE_HASH);
        let mut n = scan.through.map_or(scan.from, |(h, _)| h + 1);
        while n <= tip {
            let block = provider
                .get_block_by_number(BlockNumberOrTag::Number(n))
                .await
                .map_err(|e| eth_err(eth_adapter::tx::rpc_err(e)))?
                .ok_or_else(|| ChainError::new(Cause::Unavailable, format!("no block {n}")))?;
            if let Some((_, last)) = scan.through {
                if block.header.parent_hash != last {
                    // A reorganisation: what was read may no longer be the chain.
                    *scan = Scan::at(tip);
                    n = tip;
                    continue;
                }
            }
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let logs = provider
                .get_logs(&filter.clone().at_block_hash(block.header.hash))
                .await
                .map_err(|e| eth_err(eth_adapter::tx::rpc_err(e)))?;
            scan.revealed.extend(
                logs.iter()
                    .filter(|l| !l.removed)
                    // The hashlock is the event's first indexed topic.
                    .filter_map(|l| l.topics().get(1).copied()),
            );
            scan.through = Some((n, block.header.hash));
            n += 1;
        }
        Ok(())
    }
}
