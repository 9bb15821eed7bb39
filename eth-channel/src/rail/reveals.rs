//! The secret registry's `Revealed` events, read once per block for all legs.
//!
//! A lock in force is `Claimed` once its hashlock is revealed on chain in time; every leg's
//! status asked the registry (`revealedAt`, one `eth_call`) at each new tip, so each swap
//! cost the receiver's rail one call to the node even when no block came. The rail now
//! reads each contract's `Revealed` events from the block it first looked at on, a range at
//! a time as the chain grows: a leg watched from that block or later that is not among
//! them was not revealed from its swap's start to the tip, with no read of its own. A
//! hashlock found there, or a leg watched from an earlier block (one that began before
//! this rail started, or before a reorganisation restarted the scan), is asked about as
//! before (`revealedAt` and its event, with the reveal's time against the lock's expiry).
//!
//! Reorganisations: each extension first checks that the block the scan reached is still
//! the chain's block at that height (a block's hash commits to all before it), and the tip
//! it extends to is read again after the events: any difference starts the scan again from
//! the current tip, and until it covers a leg's start that leg is asked about on its own.

use std::collections::{HashMap, HashSet};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use eth_adapter::bindings::Channel;
use swap_core::rail::{Cause, ChainError};

use super::errors::eth_err;
use super::LOG_CHUNK;

/// One contract's `Revealed` events from block `from` to block `through` (inclusive).
#[derive(Debug)]
struct Scan {
    from: u64,
    /// The last block read and its hash (none yet: `from` is next).
    through: Option<(u64, B256)>,
    /// The hashlocks revealed in those blocks.
    revealed: HashSet<B256>,
}

/// The scans of the contracts the rail's legs are in (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Reveals {
    scans: tokio::sync::Mutex<HashMap<Address, Scan>>,
    /// Event reads made, for tests and figures.
    reads: std::sync::atomic::AtomicU64,
}

impl Reveals {
    /// `Some(false)`: `hashlock` was not revealed in `contract`'s registry from block
    /// `from` through the tip (`tip`, `tip_hash`), as the scan reads; `Some(true)`: it was
    /// (when, and whether in time, is for the caller to ask); `None`: the scan does not
    /// cover `from` (ask the registry).
    pub(super) async fn revealed_since(
        &self,
        provider: &DynProvider,
        contract: Address,
        hashlock: B256,
        from: u64,
        (tip, tip_hash): (u64, B256),
    ) -> Result<Option<bool>, ChainError> {
        let mut scans = self.scans.lock().await;
        let scan = match scans.remove(&contract) {
            Some(s) if s.through == Some((tip, tip_hash)) => s,
            Some(s) => self.extend(provider, contract, s, (tip, tip_hash)).await?,
            None => self.start(provider, contract, (tip, tip_hash)).await?,
        };
        let answer = (scan.from <= from && scan.through == Some((tip, tip_hash)))
            .then(|| scan.revealed.contains(&hashlock));
        scans.insert(contract, scan);
        Ok(answer)
    }

    /// Reads of events made so far.
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A scan of the tip block alone.
    async fn start(
        &self,
        provider: &DynProvider,
        contract: Address,
        tip: (u64, B256),
    ) -> Result<Scan, ChainError> {
        let mut scan = Scan {
            from: tip.0,
            through: None,
            revealed: HashSet::new(),
        };
        self.read_to(provider, contract, &mut scan, tip).await?;
        Ok(scan)
    }

    /// `scan` extended to `tip`, or started again at `tip` when the chain no longer holds
    /// the block it reached (or went back below it).
    async fn extend(
        &self,
        provider: &DynProvider,
        contract: Address,
        mut scan: Scan,
        tip: (u64, B256),
    ) -> Result<Scan, ChainError> {
        let moved_on = match scan.through {
            Some((h, hash)) => tip.0 > h && block_hash(provider, h).await? == hash,
            None => tip.0 >= scan.from,
        };
        if !moved_on {
            return self.start(provider, contract, tip).await;
        }
        self.read_to(provider, contract, &mut scan, tip).await?;
        Ok(scan)
    }

    /// Reads the events of the blocks after `scan.through` to `tip`; sets `through` to
    /// `tip` only if the chain's block at the tip's height is still `tip` afterwards (else
    /// the scan stays where it was, and answers nothing at this tip).
    async fn read_to(
        &self,
        provider: &DynProvider,
        contract: Address,
        scan: &mut Scan,
        tip: (u64, B256),
    ) -> Result<(), ChainError> {
        let filter = Filter::new()
            .address(contract)
            .event_signature(Channel::Revealed::SIGNATURE_HASH);
        let mut found = Vec::new();
        let mut start = scan.through.map_or(scan.from, |(h, _)| h + 1);
        while start <= tip.0 {
            let end = tip.0.min(start.saturating_add(LOG_CHUNK - 1));
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let logs = provider
                .get_logs(&filter.clone().from_block(start).to_block(end))
                .await
                .map_err(|e| eth_err(eth_adapter::tx::rpc_err(e)))?;
            for log in logs.iter().filter(|l| !l.removed) {
                // The hashlock is the event's first indexed topic.
                if let Some(h) = log.topics().get(1) {
                    found.push(*h);
                }
            }
            start = end + 1;
        }
        if block_hash(provider, tip.0).await? == tip.1 {
            scan.revealed.extend(found);
            scan.through = Some(tip);
        }
        Ok(())
    }
}

/// The hash of the chain's block at `height`.
async fn block_hash(provider: &DynProvider, height: u64) -> Result<B256, ChainError> {
    let b = provider
        .get_block_by_number(BlockNumberOrTag::Number(height))
        .await
        .map_err(|e| eth_err(eth_adapter::tx::rpc_err(e)))?
        .ok_or_else(|| ChainError::new(Cause::Unavailable, format!("no block {height}")))?;
    Ok(b.header.hash)
}
