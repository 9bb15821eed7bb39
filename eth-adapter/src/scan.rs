//! One shared log scan over the HTLC contract for every watched swap, with reorg detection.

use std::collections::{HashMap, VecDeque};

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{BlockNumberOrTag, Filter, Log};
use alloy::sol_types::SolEvent;

use crate::bindings::HTLC;
use crate::error::{rpc_err, EthError};
use crate::htlc::EthHtlc;

/// What a contract event says about a swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventKind {
    Locked(EthHtlc),
    Claimed(B256),
    Refunded,
}

/// One contract event for a watched swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) id: B256,
    pub(crate) kind: EventKind,
    pub(crate) block: u64,
    pub(crate) log_index: u64,
    pub(crate) tx: B256,
}

/// The block the scan reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanTip {
    pub(crate) number: u64,
    pub(crate) hash: B256,
    pub(crate) timestamp: u64,
}

const CHECKPOINTS: usize = 256;

/// The scan state: watched swap ids, events found so far and recent block hashes.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    watched: HashMap<B256, u64>,
    backfill: Vec<B256>,
    scanned_to: Option<u64>,
    checkpoints: VecDeque<(u64, B256)>,
    events: Vec<Event>,
}

/// Parses a contract log into an event (None for other logs).
pub(crate) fn parse_log(log: &Log) -> Option<Event> {
    let topic0 = *log.topic0()?;
    let id = *log.topics().get(1)?;
    let kind = if topic0 == HTLC::Locked::SIGNATURE_HASH {
        let e = log.log_decode::<HTLC::Locked>().ok()?.inner.data;
        let expiry = u64::try_from(e.expiry).ok()?;
        EventKind::Locked(EthHtlc {
            hashlock: e.hashlock,
            amount: e.amount,
            token: e.token,
            sender: e.sender,
            recipient: e.recipient,
            expiry,
        })
    } else if topic0 == HTLC::Claimed::SIGNATURE_HASH {
        EventKind::Claimed(log.log_decode::<HTLC::Claimed>().ok()?.inner.data.preimage)
    } else if topic0 == HTLC::Refunded::SIGNATURE_HASH {
        EventKind::Refunded
    } else {
        return None;
    };
    Some(Event {
        id,
        kind,
        block: log.block_number?,
        log_index: log.log_index?,
        tx: log.transaction_hash?,
    })
}

async fn block_at(p: &DynProvider, tag: BlockNumberOrTag) -> Result<Option<ScanTip>, EthError> {
    let b = p.get_block_by_number(tag).await.map_err(rpc_err)?;
    Ok(b.map(|b| ScanTip {
        number: b.header.number,
        hash: b.header.hash,
        timestamp: b.header.timestamp,
    }))
}

/// Fetches the current tip.
pub(crate) async fn latest(p: &DynProvider) -> Result<ScanTip, EthError> {
    block_at(p, BlockNumberOrTag::Latest)
        .await?
        .ok_or_else(|| EthError::Rpc("node has no latest block".into()))
}

/// `Locked` events with this hashlock in `[from, to]` (any parameters), in chunks.
pub(crate) async fn locks_with_hashlock(
    p: &DynProvider,
    contract: Address,
    hashlock: B256,
    from: u64,
    to: u64,
    chunk: u64,
) -> Result<Vec<Event>, EthError> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = to.min(start.saturating_add(chunk.max(1) - 1));
        let filter = Filter::new()
            .address(contract)
            .event_signature(HTLC::Locked::SIGNATURE_HASH)
            .topic2(hashlock)
            .from_block(start)
            .to_block(end);
        let logs = p.get_logs(&filter).await.map_err(rpc_err)?;
        out.extend(logs.iter().filter(|l| !l.removed).filter_map(parse_log));
        if end == u64::MAX {
            break;
        }
        start = end + 1;
    }
    Ok(out)
}

/// All contract logs for `ids` in `[from, to]`, in chunks of `chunk` blocks.
pub(crate) async fn logs_for(
    p: &DynProvider,
    contract: Address,
    ids: &[B256],
    from: u64,
    to: u64,
    chunk: u64,
) -> Result<Vec<Event>, EthError> {
    let mut out = Vec::new();
    if ids.is_empty() || from > to {
        return Ok(out);
    }
    let mut start = from;
    while start <= to {
        let end = to.min(start.saturating_add(chunk.max(1) - 1));
        let filter = Filter::new()
            .address(contract)
            .event_signature(vec![
                HTLC::Locked::SIGNATURE_HASH,
                HTLC::Claimed::SIGNATURE_HASH,
                HTLC::Refunded::SIGNATURE_HASH,
            ])
            .topic1(ids.to_vec())
            .from_block(start)
            .to_block(end);
        let logs = p.get_logs(&filter).await.map_err(rpc_err)?;
        out.extend(logs.iter().filter(|l| !l.removed).filter_map(parse_log));
        if end == u64::MAX {
            break;
        }
        start = end + 1;
    }
    Ok(out)
}

impl Scanner {
    /// Registers a swap id; its history from `from` is fetched on the next refresh.
    pub(crate) fn watch(&mut self, id: B256, from: u64) {
        match self.watched.get(&id) {
            Some(&old) if old <= from => {}
            _ => {
                self.watched.insert(id, from);
                if !self.backfill.contains(&id) {
                    self.backfill.push(id);
                }
            }
        }
    }

    /// Whether newly watched swaps wait for their history to be scanned.
    pub(crate) fn has_backfill(&self) -> bool {
        !self.backfill.is_empty()
    }

    /// Events for one id, in chain order.
    pub(crate) fn events(&self, id: B256) -> Vec<Event> {
        let mut v: Vec<Event> = self.events.iter().filter(|e| e.id == id).cloned().collect();
        v.sort_by_key(|e| (e.block, e.log_index));
        v
    }

    fn add(&mut self, events: Vec<Event>) {
        for e in events {
            if !self.events.contains(&e) {
                self.events.push(e);
            }
        }
    }

    /// Brings the scan up to the node's tip. Returns the tip and whether a reorg was detected.
    pub(crate) async fn refresh(
        &mut self,
        p: &DynProvider,
        contract: Address,
        chunk: u64,
    ) -> Result<(ScanTip, bool), EthError> {
        let mut reorged = false;
        for _attempt in 0..5 {
            let tip = latest(p).await?;
            // Reorg detection: the newest checkpoint still on the chain is the fork point.
            let mut dropped = false;
            while let Some(&(h, hash)) = self.checkpoints.back() {
                let now = block_at(p, BlockNumberOrTag::Number(h)).await?;
                if now.map(|b| b.hash) == Some(hash) {
                    break;
                }
                self.checkpoints.pop_back();
                dropped = true;
            }
            if dropped {
                reorged = true;
                match self.checkpoints.back() {
                    Some(&(fork, _)) => {
                        self.events.retain(|e| e.block <= fork);
                        self.scanned_to = Some(fork);
                    }
                    None => {
                        self.events.clear();
                        self.scanned_to = None;
                    }
                }
                tracing::warn!(chain = "eth", fork = ?self.scanned_to, "reorg detected, rescanning");
            }
            // History of newly watched swaps, up to where the others were scanned.
            if let Some(done) = self.scanned_to {
                let ids = std::mem::take(&mut self.backfill);
                let from = ids
                    .iter()
                    .filter_map(|id| self.watched.get(id))
                    .min()
                    .copied();
                if let Some(from) = from {
                    match logs_for(p, contract, &ids, from, done, chunk).await {
                        Ok(ev) => self.add(ev),
                        Err(e) => {
                            self.backfill = ids;
                            return Err(e);
                        }
                    }
                }
            } else {
                self.backfill.clear();
            }
            let ids: Vec<B256> = self.watched.keys().copied().collect();
            let start = match self.scanned_to {
                Some(s) => s + 1,
                None => self.watched.values().min().copied().unwrap_or(tip.number),
            };
            let ev = logs_for(p, contract, &ids, start, tip.number, chunk).await?;
            // The logs must come from the chain whose tip we saw; otherwise start over.
            if block_at(p, BlockNumberOrTag::Number(tip.number))
                .await?
                .map(|b| b.hash)
                != Some(tip.hash)
            {
                continue;
            }
            self.add(ev);
            if tip.number + 1 >= start {
                self.scanned_to = Some(tip.number);
            }
            if self.checkpoints.back().map(|c| c.0) != Some(tip.number) {
                self.checkpoints.push_back((tip.number, tip.hash));
            }
            while self.checkpoints.len() > CHECKPOINTS {
                self.checkpoints.pop_front();
            }
            return Ok((tip, reorged));
        }
        Err(EthError::Inconsistent(
            "chain tip kept changing during the log scan".into(),
        ))
    }
}
