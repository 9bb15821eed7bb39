//! One shared log scan over the HTLC contract for every watched swap, with reorg detection.

use std::collections::{HashMap, HashSet, VecDeque};

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

/// The block the scan reached (or any block read with [`latest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanTip {
    /// The block number.
    pub number: u64,
    /// The block hash.
    pub hash: B256,
    /// The block's timestamp.
    pub timestamp: u64,
    /// The block's base fee (EIP-1559), if it has one.
    pub base_fee: Option<u128>,
    /// The block's gas limit.
    pub gas_limit: u64,
}

const CHECKPOINTS: usize = 256;

/// The scan state: watched swap ids and hashlocks, the events found for them, and recent block
/// hashes.
///
/// The forward scan asks for every event of the contract in the new blocks (one `eth_getLogs`
/// per refresh, whatever the number of watched swaps) and keeps those that concern a watched
/// swap: its own events, and any lock under a watched hashlock with other parameters (with
/// that lock's later claim or refund), which is how a wrong lock by a counterparty is found
/// without a lookup per swap.
#[derive(Default)]
pub(crate) struct Scanner {
    watched: HashMap<B256, u64>,
    /// The hashlock of each watched swap.
    watched_hashlock: HashMap<B256, B256>,
    hashlocks: HashMap<B256, u64>,
    /// Ids of locks found under a watched hashlock (their claims and refunds are kept too).
    foreign: HashSet<B256>,
    backfill: Vec<(B256, B256)>,
    scanned_to: Option<u64>,
    checkpoints: VecDeque<(u64, B256)>,
    /// Events by swap id, in chain order.
    by_id: HashMap<B256, Vec<Event>>,
    /// Ids of locks by hashlock.
    by_hashlock: HashMap<B256, Vec<B256>>,
    /// Claims waiting in the node's mempool, by hashlock: the preimage and the transaction.
    pending_claims: HashMap<B256, (B256, B256)>,
    /// Watched ids whose storage slot was read once (a lock made before the watch window is
    /// invisible to the scan but sets the slot; anything later is in the scanned events).
    slot_seen: HashSet<B256>,
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
        base_fee: b.header.base_fee_per_gas.map(u128::from),
        gas_limit: b.header.gas_limit,
    }))
}

/// Fetches the current tip.
pub async fn latest(p: &DynProvider) -> Result<ScanTip, EthError> {
    block_at(p, BlockNumberOrTag::Latest)
        .await?
        .ok_or_else(|| EthError::Rpc("node has no latest block".into()))
}

/// The events matching `filter` (address and topics; its block range is set here) in
/// `[from, to]`, one `eth_getLogs` per `chunk` blocks, in chain order.
async fn chunked_logs(
    p: &DynProvider,
    filter: Filter,
    from: u64,
    to: u64,
    chunk: u64,
) -> Result<Vec<Event>, EthError> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = to.min(start.saturating_add(chunk.max(1) - 1));
        let f = filter.clone().from_block(start).to_block(end);
        let logs = p.get_logs(&f).await.map_err(rpc_err)?;
        out.extend(logs.iter().filter(|l| !l.removed).filter_map(parse_log));
        if end == u64::MAX {
            break;
        }
        start = end + 1;
    }
    out.sort_by_key(|e| (e.block, e.log_index));
    Ok(out)
}

/// The contract's `Locked`, `Claimed` and `Refunded` events.
fn htlc_events(contract: Address) -> Filter {
    Filter::new().address(contract).event_signature(vec![
        HTLC::Locked::SIGNATURE_HASH,
        HTLC::Claimed::SIGNATURE_HASH,
        HTLC::Refunded::SIGNATURE_HASH,
    ])
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
    let filter = Filter::new()
        .address(contract)
        .event_signature(HTLC::Locked::SIGNATURE_HASH)
        .topic2(hashlock);
    chunked_logs(p, filter, from, to, chunk).await
}

/// All contract events for `ids` in `[from, to]`, in chunks of `chunk` blocks.
pub(crate) async fn logs_for(
    p: &DynProvider,
    contract: Address,
    ids: &[B256],
    from: u64,
    to: u64,
    chunk: u64,
) -> Result<Vec<Event>, EthError> {
    if ids.is_empty() || from > to {
        return Ok(Vec::new());
    }
    let filter = htlc_events(contract).topic1(ids.to_vec());
    chunked_logs(p, filter, from, to, chunk).await
}

/// Every `Locked`, `Claimed` and `Refunded` event of the contract in `[from, to]`, in chunks.
pub(crate) async fn all_logs(
    p: &DynProvider,
    contract: Address,
    from: u64,
    to: u64,
    chunk: u64,
) -> Result<Vec<Event>, EthError> {
    chunked_logs(p, htlc_events(contract), from, to, chunk).await
}

/// A lock found under a watched hashlock, as the scan knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScannedLock {
    pub(crate) id: B256,
    pub(crate) htlc: EthHtlc,
    pub(crate) tx: B256,
    pub(crate) block: u64,
    /// Neither claimed nor refunded since (as far as the scan reached).
    pub(crate) locked: bool,
}

/// Counts only: the mempool claims hold preimages.
impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("watched", &self.watched.len())
            .field("hashlocks", &self.hashlocks.len())
            .field("scanned_to", &self.scanned_to)
            .field("swaps_with_events", &self.by_id.len())
            .field("pending_claims", &self.pending_claims.len())
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// Registers a swap (its id and hashlock); its history from `from` is fetched on the next
    /// refresh.
    pub(crate) fn watch(&mut self, id: B256, hashlock: B256, from: u64) {
        self.watched_hashlock.insert(id, hashlock);
        let new_id = match self.watched.get(&id) {
            Some(&old) if old <= from => false,
            _ => {
                self.watched.insert(id, from);
                true
            }
        };
        let new_hashlock = match self.hashlocks.get(&hashlock) {
            Some(&old) if old <= from => false,
            _ => {
                self.hashlocks.insert(hashlock, from);
                true
            }
        };
        if (new_id || new_hashlock) && !self.backfill.contains(&(id, hashlock)) {
            self.backfill.push((id, hashlock));
        }
    }

    /// Stops watching a swap and forgets its events (and its hashlock, when no other watched
    /// swap has it).
    pub(crate) fn unwatch(&mut self, id: B256, hashlock: B256) {
        self.watched.remove(&id);
        self.watched_hashlock.remove(&id);
        self.by_id.remove(&id);
        self.slot_seen.remove(&id);
        self.backfill.retain(|(i, _)| *i != id);
        let others = self.watched_hashlock.values().any(|h| *h == hashlock);
        if let Some(ids) = self.by_hashlock.get_mut(&hashlock) {
            ids.retain(|i| *i != id);
        }
        if !others {
            self.hashlocks.remove(&hashlock);
            for foreign in self.by_hashlock.remove(&hashlock).unwrap_or_default() {
                self.foreign.remove(&foreign);
                self.by_id.remove(&foreign);
            }
            self.pending_claims.remove(&hashlock);
        }
    }

    /// How many swaps are watched.
    pub(crate) fn watched_len(&self) -> usize {
        self.watched.len()
    }

    /// Whether the swap's storage slot was read since it was first watched.
    pub(crate) fn slot_seen(&self, id: B256) -> bool {
        self.slot_seen.contains(&id)
    }

    /// Records that the swap's storage slot was read.
    pub(crate) fn set_slot_seen(&mut self, id: B256) {
        self.slot_seen.insert(id);
    }

    /// Whether newly watched swaps wait for their history to be scanned.
    pub(crate) fn has_backfill(&self) -> bool {
        !self.backfill.is_empty()
    }

    /// Events for one id, in chain order.
    pub(crate) fn events(&self, id: B256) -> Vec<Event> {
        self.by_id.get(&id).cloned().unwrap_or_default()
    }

    /// Every lock under `hashlock` the scan found, oldest first.
    pub(crate) fn locks_with_hashlock(&self, hashlock: B256) -> Vec<ScannedLock> {
        let mut out = Vec::new();
        for id in self.by_hashlock.get(&hashlock).into_iter().flatten() {
            let events = self.by_id.get(id).map(Vec::as_slice).unwrap_or_default();
            // Each lock of this id, and whether something spent it afterwards.
            for (k, e) in events.iter().enumerate() {
                if let EventKind::Locked(htlc) = &e.kind {
                    let spent = events[k + 1..]
                        .iter()
                        .any(|a| !matches!(a.kind, EventKind::Locked(_)));
                    out.push(ScannedLock {
                        id: *id,
                        htlc: *htlc,
                        tx: e.tx,
                        block: e.block,
                        locked: !spent,
                    });
                }
            }
        }
        out.sort_by_key(|l| l.block);
        out
    }

    /// A claim of a swap under `hashlock` seen in the node's mempool at the last refresh
    /// (only with mempool reading on): the preimage and the transaction.
    pub(crate) fn pending_claim(&self, hashlock: B256) -> Option<(B256, B256)> {
        self.pending_claims.get(&hashlock).copied()
    }

    /// Replaces the mempool claims (by hashlock).
    pub(crate) fn set_pending_claims(&mut self, claims: HashMap<B256, (B256, B256)>) {
        self.pending_claims = claims;
    }

    /// Keeps the events (in chain order) that concern what is watched: events of watched
    /// ids, locks under watched hashlocks, and later events of those locks.
    fn add(&mut self, events: Vec<Event>) {
        for e in events {
            let keep = self.watched.contains_key(&e.id)
                || self.foreign.contains(&e.id)
                || matches!(&e.kind, EventKind::Locked(h) if self.hashlocks.contains_key(&h.hashlock));
            if !keep {
                continue;
            }
            let list = self.by_id.entry(e.id).or_default();
            if list.contains(&e) {
                continue;
            }
            if let EventKind::Locked(h) = &e.kind {
                if self.hashlocks.contains_key(&h.hashlock) {
                    self.foreign.insert(e.id);
                    let ids = self.by_hashlock.entry(h.hashlock).or_default();
                    if !ids.contains(&e.id) {
                        ids.push(e.id);
                    }
                }
            }
            list.push(e);
            list.sort_by_key(|e| (e.block, e.log_index));
        }
    }

    /// Forgets every event after block `fork` (a reorg), or all of them.
    fn rollback(&mut self, fork: Option<u64>) {
        for list in self.by_id.values_mut() {
            list.retain(|e| fork.is_some_and(|f| e.block <= f));
        }
        self.by_id.retain(|_, l| !l.is_empty());
        let by_id = &self.by_id;
        for ids in self.by_hashlock.values_mut() {
            ids.retain(|id| by_id.contains_key(id));
        }
        self.by_hashlock.retain(|_, ids| !ids.is_empty());
        self.foreign.retain(|id| by_id.contains_key(id));
        self.scanned_to = fork;
    }

    /// Brings the scan up to the node's tip. Returns the tip and whether a reorg was detected.
    ///
    /// Calls per refresh, whatever the number of watched swaps: the tip, one block hash per
    /// checkpoint re-checked (one without a reorg), the new blocks' logs, and the tip again.
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
                let now = if h == tip.number {
                    Some(tip)
                } else {
                    block_at(p, BlockNumberOrTag::Number(h)).await?
                };
                if now.map(|b| b.hash) == Some(hash) {
                    break;
                }
                self.checkpoints.pop_back();
                dropped = true;
            }
            if dropped {
                reorged = true;
                let fork = self.checkpoints.back().map(|&(f, _)| f);
                self.rollback(fork);
                tracing::warn!(chain = "eth", fork = ?self.scanned_to, "reorg detected, rescanning");
            }
            // History of newly watched swaps, up to where the others were scanned.
            if let Some(done) = self.scanned_to {
                let new = std::mem::take(&mut self.backfill);
                let from = new
                    .iter()
                    .filter_map(|(id, hashlock)| {
                        let a = self.watched.get(id).copied().unwrap_or(u64::MAX);
                        let b = self.hashlocks.get(hashlock).copied().unwrap_or(u64::MAX);
                        Some(a.min(b)).filter(|&m| m != u64::MAX)
                    })
                    .min();
                if let Some(from) = from.filter(|&f| f <= done) {
                    match all_logs(p, contract, from, done, chunk).await {
                        Ok(ev) => self.add(ev),
                        Err(e) => {
                            self.backfill = new;
                            return Err(e);
                        }
                    }
                }
            } else {
                self.backfill.clear();
            }
            let start = match self.scanned_to {
                Some(s) => s + 1,
                None => self.watched.values().min().copied().unwrap_or(tip.number),
            };
            let ev = if start <= tip.number {
                all_logs(p, contract, start, tip.number, chunk).await?
            } else {
                Vec::new()
            };
            // The logs (even none) must come from the chain whose tip we saw; otherwise start
            // over.
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
