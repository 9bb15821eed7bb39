//! [`BtcChain`]: `swap_core::Chain` for Bitcoin and Litecoin over a node's JSON-RPC.
//!
//! One [`Scanner`] serves every watched HTLC: each call syncs it (reorg check, new blocks via
//! `getblock <hash> 2`, mempool) and answers from it. Actions check the chain first, hold the
//! state lock from that check to their broadcast, and are idempotent:
//! - `lock` funds from the node wallet only when no funding is on chain, in the mempool, or
//!   already sent by this process; it never funds twice. Concurrent locks are funded together:
//!   one wallet transaction with one output per HTLC (see `lock` in the `Chain` impl).
//! - `claim` / `refund` return the existing spend when there is one. When that spend is still
//!   unconfirmed `bump_after_blocks` blocks after it was sent, they replace it with a higher
//!   fee (BIP-125); [`BtcChain::bump_fees`] does the same for every pending spend.
//! - `claim` when the funding is spent by the counterparty's *unconfirmed* refund replaces that
//!   refund (BIP-125: the claim branch has no timelock, so it stays valid after the expiry).
//!   Never the other way round: a refund does not replace the counterparty's claim (the claim
//!   reveals the secret, and our side goes on with it).

use std::collections::HashMap;

use async_trait::async_trait;
use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};
use swap_core::{
    Account, Amount, Asset, Cause, Chain, ChainError, ChainFamily, ChainId, ChainParams, ChainTip,
    Height, HtlcParams, HtlcStatus, ObservedLock, Preimage, PublicKeyBytes, Sats, Timestamp, TxRef,
};
use tokio::sync::{oneshot, Mutex};
use tracing::{info, warn};

use crate::htlc::{extract_preimage, Htlc};
use crate::keys::{KeySource, SwapKey};
use crate::rpc::{RpcClient, RpcConfig, RpcError};
use crate::scanner::{
    is_mweb_serialization, parse_block_txs, Funding, ScanError, Scanner, ScriptView, Spend,
};
use crate::tx::{
    build_claim, build_refund, build_replacement_claim, FeePolicy, HtlcOutput, Replaced,
    ReplacementPolicy, SignedSpend, TxError,
};

/// RPC error code for "no such mempool transaction".
const RPC_INVALID_ADDRESS_OR_KEY: i64 = -5;
/// Mempool transactions fetched per JSON-RPC batch.
const MEMPOOL_BATCH: usize = 500;
/// RPC error code for an invalid parameter (e.g. a block height above the tip).
const RPC_INVALID_PARAMETER: i64 = -8;
/// HTLC outputs one funding transaction pays at most (~11 kvB of outputs); a larger batch is
/// funded by several transactions, one after the other.
const MAX_FUNDING_OUTPUTS: usize = 250;
/// Node wallet addresses fetched at most in one batch for payouts (see `payout_script`).
const PAYOUT_PREFETCH: usize = 64;

/// Fee settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeConfig {
    /// Feerate (sat/vB) when `estimatesmartfee` has no estimate (fresh regtest, new node).
    pub fallback_sat_vb: u64,
    /// Lowest feerate used.
    pub min_sat_vb: u64,
    /// Highest feerate used, fee bumps included.
    pub max_sat_vb: u64,
    /// Largest fee of a claim or refund, in basis points of the HTLC amount.
    pub max_fee_bps: u32,
    /// Confirmation target for `estimatesmartfee`.
    pub conf_target: u32,
    /// Replace an unconfirmed claim or refund after this many blocks.
    pub bump_after_blocks: u32,
}

impl Default for FeeConfig {
    fn default() -> Self {
        Self {
            fallback_sat_vb: 10,
            min_sat_vb: 1,
            max_sat_vb: 1_000,
            max_fee_bps: 500,
            conf_target: 3,
            bump_after_blocks: 2,
        }
    }
}

/// What to pay, for funding an HTLC from an external wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The HTLC's P2WSH address.
    pub address: String,
    /// The exact amount, in satoshis (litoshis).
    pub sats: u64,
    /// A BIP-21 URI with address and amount.
    pub uri: String,
}

/// Where claims and refunds pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payout {
    /// A fresh `bech32` (P2WPKH) address of the node's wallet per HTLC.
    NodeWallet,
    /// A fixed output script.
    Script(ScriptBuf),
}

/// Everything [`BtcChain::new`] needs besides the seed.
#[derive(Debug, Clone)]
pub struct BtcConfig {
    /// The expiry-rule parameters (use `ChainParams::for_chain`).
    pub params: ChainParams,
    /// The node (with the wallet that funds locks).
    pub rpc: RpcConfig,
    /// Fees.
    pub fees: FeeConfig,
    /// Where claims and refunds pay.
    pub payout: Payout,
    /// `htlc_status` answers from the last scan when it is younger than this (and no new HTLC
    /// was registered since). Zero (the default): every call scans. Actions always scan.
    /// With many swaps on a busy node, a few seconds saves re-reading the mempool per swap.
    pub status_max_age: std::time::Duration,
    /// `tip` answers from the last tip read when it is younger than this. Zero (the default):
    /// every call asks the node. With many swaps, each step asks for the tip; a poll interval
    /// or less keeps that to a few node calls per interval instead of two per swap.
    pub tip_max_age: std::time::Duration,
}

impl BtcConfig {
    /// Default parameters, fees and payout for `chain`.
    pub fn new(chain: ChainId, rpc: RpcConfig) -> Self {
        Self {
            params: ChainParams::for_chain(chain),
            rpc,
            fees: FeeConfig::default(),
            payout: Payout::NodeWallet,
            status_max_age: std::time::Duration::ZERO,
            tip_max_age: std::time::Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SpendKind {
    Claim,
    Refund,
}

#[derive(Debug, Clone)]
struct Pending {
    kind: SpendKind,
    txid: Txid,
    feerate: u64,
    broadcast_height: u64,
    /// When it was sent (or first seen by this process).
    sent_at: std::time::Instant,
}

#[derive(Debug, Clone)]
struct Watched {
    params: HtlcParams,
    htlc: Htlc,
}

/// A lock whose HTLC was found unfunded, waiting in [`State::lock_queue`] for the next funding
/// batch.
#[derive(Debug)]
struct LockRequest {
    w: Watched,
    script: ScriptBuf,
    address: String,
    amount: u64,
    /// [`State::sync_gen`] of the scan that found the HTLC unfunded.
    checked_gen: u64,
    /// Where the funding's txid (or the error) goes; closed when the caller gave up.
    reply: oneshot::Sender<Result<TxRef, ChainError>>,
}

/// One HTLC output of a funding batch: the first request for its script decides address and
/// amount; later requests for the same script (the same HTLC) are answered from the same output.
#[derive(Debug)]
struct FundingOutput {
    requests: Vec<LockRequest>,
}

impl FundingOutput {
    fn first(&self) -> &LockRequest {
        // Never empty: made with one request, only ever added to.
        &self.requests[0]
    }
}

/// Why a funding transaction was not sent.
#[derive(Debug)]
enum FundingFailure {
    /// The wallet could not build it: funding the same HTLCs separately may still work (one
    /// output the wallet refuses or cannot afford, or a too large transaction, fails a batch).
    WalletRefused(ChainError),
    /// Anything else (transient errors, a funding that does not pay what was asked, the node
    /// rejecting the broadcast): the error is every request's answer.
    Final(ChainError),
}

#[derive(Debug, Default)]
struct State {
    scanner: Scanner,
    swaps: HashMap<ScriptBuf, Watched>,
    pending: HashMap<ScriptBuf, Pending>,
    /// Fundings this process built, by HTLC script (a batch's scripts share one transaction),
    /// recorded before they are broadcast.
    locks_sent: HashMap<ScriptBuf, (Transaction, std::time::Instant)>,
    /// Locks waiting for a funding batch (see `lock` in the `Chain` impl).
    lock_queue: Vec<LockRequest>,
    /// Counts the syncs started: a request checked at the current value was checked against
    /// the latest scan, with no sync (complete or failed) since.
    sync_gen: u64,
    payout: HashMap<ScriptBuf, ScriptBuf>,
    /// Node wallet output scripts fetched ahead, each for one future payout.
    payout_pool: Vec<ScriptBuf>,
    /// Mempool transactions fetched so far (`None`: an MWEB transaction, not parseable).
    mempool: HashMap<Txid, Option<Transaction>>,
    tip: u64,
    compiled: HashMap<HtlcTerms, Htlc>,
    /// When the last full sync finished.
    synced_at: Option<std::time::Instant>,
    /// When the last full sync that completed had started: it reflects the node as of then
    /// or later, so an action asked before that needs no sync of its own.
    synced_from: Option<std::time::Instant>,
    /// A watch changed what must be scanned since the last sync.
    dirty: bool,
}

/// What an HTLC script is made of (the cache key of compiled HTLCs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HtlcTerms {
    sender: Account,
    recipient: Account,
    hashlock: swap_core::Hashlock,
    expiry: swap_core::Expiry,
}

/// `swap_core::Chain` for Bitcoin or Litecoin.
#[derive(Debug)]
pub struct BtcChain {
    params: ChainParams,
    rpc: RpcClient,
    /// `None` for a watch-only adapter (it observes; it never locks, claims or refunds).
    keys: Option<KeySource>,
    fees: FeeConfig,
    payout: Payout,
    status_max_age: std::time::Duration,
    tip_max_age: std::time::Duration,
    /// The last tip read; held while reading, so concurrent callers wait for one read.
    tip_cache: Mutex<Option<(std::time::Instant, ChainTip)>>,
    state: Mutex<State>,
    /// Held by the lock call that funds the queued locks (the batch leader). Taken without
    /// the state lock held, and before it (never the other way round).
    funder: Mutex<()>,
    /// The last feerate estimate and when it was read (see `feerate`).
    fee_cache: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

fn watch_only() -> ChainError {
    ChainError::new(
        Cause::Invalid,
        "this adapter is watch-only: it holds no keys and sends nothing",
    )
}

/// A request this adapter cannot serve (wrong chain, amount or key).
fn permanent(e: impl std::fmt::Display) -> ChainError {
    ChainError::new(Cause::Invalid, e)
}

fn scan_error(e: ScanError) -> ChainError {
    ChainError::permanent(e)
}

fn tx_error(e: TxError) -> ChainError {
    match e {
        // Feerates fall again: worth retrying (the engine's deadlines bound the retries).
        TxError::FeeTooHigh { .. } | TxError::FeerateTooHigh { .. } => {
            ChainError::new(Cause::FeeCapped, e)
        }
        _ => ChainError::new(Cause::Invalid, e),
    }
}

impl BtcChain {
    /// An adapter for `config.params.chain`, with per-swap keys derived from `seed`.
    pub fn new(config: BtcConfig, seed: &[u8]) -> Result<Self, ChainError> {
        let mut adapter = Self::with_keys(config, None)?;
        adapter.keys = Some(KeySource::from_seed(seed, adapter.params.chain).map_err(permanent)?);
        Ok(adapter)
    }

    /// An adapter that only observes (statuses, tips, secrets revealed by claims): it holds no
    /// key and needs no node wallet; every lock, claim or refund is refused with
    /// [`Cause::Invalid`] before anything is sent. For services that watch swaps.
    pub fn watch_only(config: BtcConfig) -> Result<Self, ChainError> {
        Self::with_keys(config, None)
    }

    fn with_keys(config: BtcConfig, keys: Option<KeySource>) -> Result<Self, ChainError> {
        let chain = config.params.chain;
        if !matches!(chain.family, ChainFamily::Bitcoin | ChainFamily::Litecoin) {
            return Err(permanent(format!("{chain} is not a Bitcoin-family chain")));
        }
        Ok(Self {
            params: config.params,
            rpc: RpcClient::new(config.rpc)?,
            keys,
            fees: config.fees,
            payout: config.payout,
            status_max_age: config.status_max_age,
            tip_max_age: config.tip_max_age,
            tip_cache: Mutex::new(None),
            state: Mutex::new(State::default()),
            funder: Mutex::new(()),
            fee_cache: std::sync::Mutex::new(None),
        })
    }

    /// What the node wallet can spend now (confirmed and trusted, in satoshis) and what one
    /// lock's funding may cost in fees (300 vB at the fallback feerate): checked before a swap is
    /// agreed, so a party that cannot fund its lock says so before the other side locks.
    pub async fn funds(&self) -> Result<(u64, u64), ChainError> {
        let balance = self.rpc.get_balance().await?;
        let rate = self.fees.fallback_sat_vb.max(self.fees.min_sat_vb);
        Ok((balance, rate.saturating_mul(300)))
    }

    /// The node client.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// This installation's key for swap `key_index` (put its public key in the swap terms).
    pub fn swap_key(&self, key_index: u32) -> Result<SwapKey, ChainError> {
        self.keys
            .as_ref()
            .ok_or_else(watch_only)?
            .swap_key(key_index)
            .map_err(permanent)
    }

    /// How many HTLC scripts the shared scan watches (finished swaps are forgotten by the
    /// engine).
    pub async fn watched_htlcs(&self) -> usize {
        self.state.lock().await.scanner.watched_len()
    }

    /// True for an adapter made by [`BtcChain::watch_only`].
    pub fn is_watch_only(&self) -> bool {
        self.keys.is_none()
    }

    /// This installation's public key for swap `key_index`, as swap terms carry it.
    pub fn swap_public_key(&self, key_index: u32) -> Result<PublicKeyBytes, ChainError> {
        Ok(self.swap_key(key_index)?.public_key_bytes())
    }

    /// The asset this chain moves.
    pub fn asset(&self) -> Asset {
        match self.params.chain.family {
            ChainFamily::Litecoin => Asset::Ltc,
            _ => Asset::Btc,
        }
    }

    /// The HTLC of `params` (checks asset, amount unit and expiry kind).
    pub fn htlc(&self, params: &HtlcParams) -> Result<Htlc, ChainError> {
        if params.asset != self.asset() {
            return Err(permanent(format!(
                "asset {:?} is not {:?}",
                params.asset,
                self.asset()
            )));
        }
        sats(params)?;
        Htlc::from_params(params).map_err(permanent)
    }

    /// The HTLC's address on this chain.
    pub fn htlc_address(&self, params: &HtlcParams) -> Result<String, ChainError> {
        self.htlc(params)?
            .address(self.params.chain)
            .map_err(permanent)
    }

    /// For a lock paid from an external wallet: the HTLC address, the exact amount, and a
    /// BIP-21 URI (`bitcoin:` or `litecoin:`) a wallet can scan. The payment is detected by the
    /// block scan like any other funding ([`Chain::htlc_status`]); an amount other than the
    /// exact one is reported as found with its real amount, which the engine refuses.
    pub fn payment_request(&self, params: &HtlcParams) -> Result<PaymentRequest, ChainError> {
        let address = self.htlc_address(params)?;
        let sats = match params.amount {
            Amount::Sats(s) => s.0,
            other => return Err(permanent(format!("{other} is not a Bitcoin-family amount"))),
        };
        let scheme = match self.params.chain.family {
            ChainFamily::Litecoin => "litecoin",
            _ => "bitcoin",
        };
        let uri = format!(
            "{scheme}:{address}?amount={}.{:08}&label=xswap%20{}",
            sats / 100_000_000,
            sats % 100_000_000,
            params.swap_id
        );
        Ok(PaymentRequest { address, sats, uri })
    }

    fn register(
        &self,
        st: &mut State,
        params: &HtlcParams,
    ) -> Result<(Watched, ScriptBuf), ChainError> {
        // Compiling the policy takes milliseconds: compile each HTLC once.
        let terms = HtlcTerms {
            sender: params.sender,
            recipient: params.recipient,
            hashlock: params.hashlock,
            expiry: params.expiry,
        };
        let htlc = match st.compiled.get(&terms) {
            Some(h) => h.clone(),
            None => {
                let h = self.htlc(params)?;
                st.compiled.insert(terms, h.clone());
                h
            }
        };
        if params.asset != self.asset() {
            return Err(permanent(format!(
                "asset {:?} is not {:?}",
                params.asset,
                self.asset()
            )));
        }
        sats(params)?;
        let script = htlc.script_pubkey();
        let before = (st.scanner.watched_len(), st.scanner.next_height());
        st.scanner.watch(script.clone(), params.watch_from.0);
        if before != (st.scanner.watched_len(), st.scanner.next_height()) {
            st.dirty = true;
        }
        let w = Watched {
            params: params.clone(),
            htlc,
        };
        st.swaps.insert(script.clone(), w.clone());
        Ok((w, script))
    }

    /// Brings the scanner up to date with the node: blocks (with reorg handling), then the
    /// mempool. Repeated when the best block changed meanwhile, so that a transaction mined
    /// between the block scan and the mempool read is never missed by both (which would make a
    /// funding look absent to `lock`).
    async fn sync(&self, st: &mut State) -> Result<(), ChainError> {
        // Even a sync that fails may have changed the scan (e.g. rolled back a reorged block):
        // what was checked before it is stale.
        st.sync_gen = st.sync_gen.wrapping_add(1);
        let started = std::time::Instant::now();
        // Until this sync completes, no earlier one counts as fresh: a sync that fails half
        // way (after rolling back a reorged block, before reading the mempool again) leaves
        // a scan that must not be answered from.
        st.synced_at = None;
        st.synced_from = None;
        for _ in 0..5 {
            let info = self.rpc.get_blockchain_info().await?;
            let (Some(tip), Some(best)) = (
                info.get("blocks").and_then(serde_json::Value::as_u64),
                info.get("bestblockhash")
                    .and_then(serde_json::Value::as_str),
            ) else {
                return Err(permanent(format!(
                    "unexpected getblockchaininfo answer: {info}"
                )));
            };
            let best = best.to_owned();
            self.sync_once(st, tip).await?;
            let after = self.rpc.get_best_block_hash().await?;
            if after.to_string() == best {
                st.synced_at = Some(std::time::Instant::now());
                st.synced_from = Some(started);
                st.dirty = false;
                return Ok(());
            }
        }
        Err(ChainError::new(
            Cause::Inconsistent,
            "the best block kept changing during the scan",
        ))
    }

    async fn sync_once(&self, st: &mut State, tip: u64) -> Result<(), ChainError> {
        // Roll back to the last block still on the node's best chain.
        while let Some(h) = st.scanner.last_height() {
            if h > tip {
                st.scanner.rollback_to(tip);
                continue;
            }
            let node_hash = self.rpc.get_block_hash(h).await?;
            if st.scanner.hash_at(h) == Some(node_hash) {
                break;
            }
            info!(chain = %self.params.chain, height = h, "reorg: rolling back");
            match h.checked_sub(1) {
                Some(prev) => st.scanner.rollback_to(prev),
                None => break,
            }
        }
        // Scan forward.
        let mut retries = 0;
        while let Some(next) = st.scanner.next_height() {
            if next > tip {
                break;
            }
            let hash = match self.rpc.get_block_hash(next).await {
                Ok(h) => h,
                // The chain got shorter since `tip` was read: the caller retries.
                Err(e) if e.code() == Some(RPC_INVALID_PARAMETER) => break,
                Err(e) => return Err(e.into()),
            };
            let block = self.rpc.get_block_verbose(&hash).await?;
            let txs = parse_block_txs(
                &hash.to_string(),
                block.tx.iter().map(|t| (t.txid.as_str(), t.hex.as_str())),
            )
            .map_err(scan_error)?;
            match st
                .scanner
                .apply_block(next, hash, block.previousblockhash, &txs)
            {
                Ok(()) => {}
                Err(ScanError::Disconnected { .. }) if retries < 100 => {
                    // The chain changed under us: step back and re-check.
                    retries += 1;
                    st.scanner.rollback_to(next.saturating_sub(2));
                }
                Err(e) => return Err(scan_error(e)),
            }
        }
        // Confirmations count only up to what was scanned.
        st.tip = match st.scanner.last_height() {
            Some(h) => h.min(tip),
            None => tip,
        };
        // Mempool.
        let txids = self.rpc.get_raw_mempool().await?;
        let current: std::collections::HashSet<Txid> = txids.iter().copied().collect();
        st.mempool.retain(|t, _| current.contains(t));
        let missing: Vec<Txid> = txids
            .into_iter()
            .filter(|t| !st.mempool.contains_key(t))
            .collect();
        for chunk in missing.chunks(MEMPOOL_BATCH) {
            let answers = self.rpc.get_raw_transactions_hex(chunk).await?;
            for (txid, answer) in chunk.iter().zip(answers) {
                let hex = match answer {
                    Ok(h) => h,
                    // Left the mempool since getrawmempool.
                    Err(e) if e.code() == Some(RPC_INVALID_ADDRESS_OR_KEY) => continue,
                    Err(e) => return Err(e.into()),
                };
                let raw = hex::decode(&hex).map_err(permanent)?;
                match bitcoin::consensus::encode::deserialize::<Transaction>(&raw) {
                    Ok(tx) => {
                        st.mempool.insert(*txid, Some(tx));
                    }
                    Err(_) if is_mweb_serialization(&raw) => {
                        // A Litecoin MWEB transaction: its canonical part reaches the chain in
                        // a block, where it is scanned; only 0-conf visibility is lost.
                        warn!(%txid, "skipping unparseable MWEB mempool transaction");
                        st.mempool.insert(*txid, None);
                    }
                    Err(e) => {
                        return Err(scan_error(ScanError::Parse {
                            txid: txid.to_string(),
                            block: "mempool".into(),
                            detail: e.to_string(),
                        }))
                    }
                }
            }
        }
        let txs: Vec<&Transaction> = st.mempool.values().flatten().collect();
        st.scanner.set_mempool(txs);
        Ok(())
    }

    /// Syncs unless a sync that started at or after `asked` has completed since and nothing
    /// was registered since: concurrent actions (hundreds of claims when a batch of swaps
    /// completes) then share one scan instead of one each, and each still acts on what the
    /// node said after it was asked.
    async fn sync_since(
        &self,
        st: &mut State,
        asked: std::time::Instant,
    ) -> Result<(), ChainError> {
        if !st.dirty && st.synced_from.is_some_and(|from| from >= asked) {
            return Ok(());
        }
        self.sync(st).await
    }

    /// When the last full sync finished, if it is younger than `status_max_age` and nothing
    /// was registered since (never with the default zero age).
    fn recent_sync(&self, st: &State) -> Option<std::time::Instant> {
        if st.dirty || self.status_max_age.is_zero() {
            return None;
        }
        st.synced_at.filter(|t| t.elapsed() < self.status_max_age)
    }

    /// The status, the funding it is about and the spend of that funding, if any.
    fn status(
        &self,
        st: &State,
        w: &Watched,
        script: &ScriptBuf,
    ) -> (HtlcStatus, Option<Funding>, Option<Spend>) {
        derive_status(
            &st.scanner.view(script),
            &w.params,
            &w.htlc,
            st.tip,
            self.asset(),
        )
    }

    /// The feerate to pay (sat/vB): the node's estimate within the configured bounds. Reused
    /// for `status_max_age` (one estimate for a burst of claims, not one each).
    async fn feerate(&self) -> Result<u64, ChainError> {
        let max_age = self.status_max_age;
        if !max_age.is_zero() {
            let cached = *self
                .fee_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, rate)) = cached.filter(|(at, _)| at.elapsed() < max_age) {
                return Ok(rate);
            }
        }
        let estimate = self.rpc.estimate_smart_fee(self.fees.conf_target).await?;
        let rate = estimate.unwrap_or(self.fees.fallback_sat_vb).clamp(
            self.fees.min_sat_vb,
            self.fees.max_sat_vb.max(self.fees.min_sat_vb),
        );
        *self
            .fee_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), rate));
        Ok(rate)
    }

    async fn payout_script(
        &self,
        st: &mut State,
        script: &ScriptBuf,
    ) -> Result<ScriptBuf, ChainError> {
        if let Some(s) = st.payout.get(script) {
            return Ok(s.clone());
        }
        let s = match &self.payout {
            Payout::Script(s) => s.clone(),
            Payout::NodeWallet => match st.payout_pool.pop() {
                Some(s) => s,
                None => {
                    // New wallet addresses for this and the other watched swaps that will
                    // want one (one batch request instead of two calls per claim or refund;
                    // each swap still gets its own address).
                    let waiting = st.swaps.len().saturating_sub(st.payout.len());
                    let n = waiting.clamp(1, PAYOUT_PREFETCH);
                    let addrs = self.rpc.get_new_addresses(n, "bech32").await?;
                    let mut pool = addrs
                        .iter()
                        .map(|a| crate::network::address_script(self.params.chain, a))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| permanent(format!("node wallet address: {e}")))?;
                    let s = pool
                        .pop()
                        .ok_or_else(|| permanent("node gave no address"))?;
                    st.payout_pool = pool;
                    s
                }
            },
        };
        st.payout.insert(script.clone(), s.clone());
        Ok(s)
    }

    fn our_key(&self, params: &HtlcParams, role: SpendKind) -> Result<SwapKey, ChainError> {
        let key = self.swap_key(params.key_index)?;
        let expected = match role {
            SpendKind::Claim => params.recipient,
            SpendKind::Refund => params.sender,
        };
        if expected != Account::PublicKey(key.public_key_bytes()) {
            return Err(permanent(format!(
                "our key {} (index {}) is not the HTLC's {} key",
                key.public_key(),
                params.key_index,
                match role {
                    SpendKind::Claim => "claim",
                    SpendKind::Refund => "refund",
                }
            )));
        }
        Ok(key)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        w: &Watched,
        kind: SpendKind,
        key: &SwapKey,
        preimage: Option<&Preimage>,
        funding: &Funding,
        destination: &ScriptBuf,
        feerate: u64,
    ) -> Result<SignedSpend, ChainError> {
        let out = HtlcOutput {
            outpoint: funding.outpoint,
            value: funding.value,
        };
        let fee = FeePolicy {
            feerate_sat_vb: feerate,
            max_fee_bps: self.fees.max_fee_bps,
        };
        match (kind, preimage) {
            (SpendKind::Claim, Some(p)) => build_claim(&w.htlc, out, destination, fee, key, p),
            (SpendKind::Refund, _) => build_refund(&w.htlc, out, destination, fee, key),
            (SpendKind::Claim, None) => Err(TxError::WrongPreimage),
        }
        .map_err(tx_error)
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        match self.rpc.send_raw_transaction(tx).await {
            Ok(txid) => Ok(txid),
            Err(e) if e.is_non_final() => Err(ChainError::new(
                Cause::NotReady { until: None },
                format!("not final yet (timelock): {e}"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a first claim or refund for `funding`.
    #[allow(clippy::too_many_arguments)]
    async fn spend(
        &self,
        st: &mut State,
        w: &Watched,
        script: &ScriptBuf,
        kind: SpendKind,
        key: &SwapKey,
        preimage: Option<&Preimage>,
        funding: &Funding,
    ) -> Result<TxRef, ChainError> {
        let destination = self.payout_script(st, script).await?;
        let feerate = self.feerate().await?;
        let signed = self.build(w, kind, key, preimage, funding, &destination, feerate)?;
        let txid = self.broadcast(&signed.tx).await?;
        info!(chain = %self.params.chain, swap_id = %w.params.swap_id, %txid, vsize = signed.vsize, fee = signed.fee, ?kind, "htlc spend sent");
        // Shown in the mempool view at once: a status read from the scan made before this
        // broadcast would otherwise still say "funded" and ask for the claim again.
        record_spend(st, script, kind, feerate, None, signed.tx);
        Ok(TxRef(txid.to_string()))
    }

    /// Replaces an unconfirmed spend with a higher fee when it has waited long enough.
    #[allow(clippy::too_many_arguments)]
    async fn maybe_bump(
        &self,
        st: &mut State,
        w: &Watched,
        script: &ScriptBuf,
        kind: SpendKind,
        key: &SwapKey,
        preimage: Option<&Preimage>,
        funding: &Funding,
        current: &Spend,
    ) -> Result<TxRef, ChainError> {
        let pending = match st.pending.get(script) {
            Some(p) if p.txid == current.txid => p.clone(),
            _ => {
                // Sent before a restart (or by another instance): start the clock now.
                let out: u64 = current.tx.output.iter().map(|o| o.value.to_sat()).sum();
                let vsize = current.tx.vsize() as u64;
                let p = Pending {
                    kind,
                    txid: current.txid,
                    feerate: funding.value.saturating_sub(out) / vsize.max(1),
                    broadcast_height: st.tip,
                    sent_at: std::time::Instant::now(),
                };
                st.pending.insert(script.clone(), p.clone());
                p
            }
        };
        let current_ref = TxRef(current.txid.to_string());
        if st.tip < pending.broadcast_height + u64::from(self.fees.bump_after_blocks) {
            return Ok(current_ref);
        }
        let (incremental, _) = self.rpc.relay_feerates().await?;
        let estimate = self.feerate().await?;
        let feerate = estimate
            .max(pending.feerate + pending.feerate / 4)
            .max(pending.feerate + incremental)
            .min(self.fees.max_sat_vb);
        if feerate <= pending.feerate {
            warn!(swap_id = %w.params.swap_id, "spend stuck at the maximum feerate");
            return Ok(current_ref);
        }
        // Pay the same destination as the spend being replaced.
        let destination = match current.tx.output.first() {
            Some(o) => o.script_pubkey.clone(),
            None => self.payout_script(st, script).await?,
        };
        let signed = match self.build(w, kind, key, preimage, funding, &destination, feerate) {
            Ok(s) => s,
            Err(e) => {
                warn!(swap_id = %w.params.swap_id, error = %e, "fee bump refused");
                return Ok(current_ref);
            }
        };
        let txid = match self.broadcast(&signed.tx).await {
            Ok(txid) => txid,
            Err(e) if !e.is_transient() => {
                // E.g. a Litecoin node without -mempoolreplacement ("txn-mempool-conflict"):
                // the original spend stays valid and pending.
                warn!(swap_id = %w.params.swap_id, error = %e, "fee bump rejected by the node");
                return Ok(current_ref);
            }
            Err(e) => return Err(e),
        };
        info!(chain = %self.params.chain, swap_id = %w.params.swap_id, old = %current.txid, %txid, feerate, "fee bump sent");
        record_spend(st, script, kind, feerate, Some(current.txid), signed.tx);
        Ok(TxRef(txid.to_string()))
    }

    /// Claims `funding` by replacing `refund`, the counterparty's unconfirmed refund of it
    /// (BIP-125; our claims and refunds signal RBF). The claim pays the least fee the node
    /// accepts for the replacement (the refund's fee plus the incremental relay feerate times
    /// the claim's vsize, at a feerate strictly above the refund's), or our usual feerate if
    /// that is more, within `max_sat_vb` and `max_fee_bps` (else the transient fee-too-high
    /// error). A rejection by the node (e.g. the refund was bumped meanwhile, or mined) is
    /// transient: the retry acts on a fresh scan.
    #[allow(clippy::too_many_arguments)]
    async fn replace_refund(
        &self,
        st: &mut State,
        w: &Watched,
        script: &ScriptBuf,
        key: &SwapKey,
        preimage: Option<&Preimage>,
        funding: &Funding,
        refund: &Spend,
    ) -> Result<TxRef, ChainError> {
        let Some(preimage) = preimage else {
            return Err(tx_error(TxError::WrongPreimage));
        };
        // What the refund pays: the funding minus its outputs. (Ours have no other input; a
        // refund with more inputs, or with children in the mempool, needs more than this: the
        // node rejects the claim, a transient error, until the refund is mined.)
        let out: u64 = refund.tx.output.iter().map(|o| o.value.to_sat()).sum();
        let replaced = Replaced {
            fee: funding.value.saturating_sub(out),
            vsize: refund.tx.vsize() as u64,
        };
        let (incremental, _) = self.rpc.relay_feerates().await?;
        let policy = ReplacementPolicy {
            feerate_sat_vb: self.feerate().await?,
            incremental_sat_vb: incremental,
            max_sat_vb: self.fees.max_sat_vb,
            max_fee_bps: self.fees.max_fee_bps,
            replaced,
        };
        let destination = self.payout_script(st, script).await?;
        let output = HtlcOutput {
            outpoint: funding.outpoint,
            value: funding.value,
        };
        let signed = build_replacement_claim(&w.htlc, output, &destination, policy, key, preimage)
            .map_err(tx_error)?;
        let txid = match self.rpc.send_raw_transaction(&signed.tx).await {
            Ok(txid) => txid,
            Err(e) => {
                warn!(chain = %self.params.chain, swap_id = %w.params.swap_id, replaced = %refund.txid, error = %e, "claim replacing the refund rejected");
                return Err(ChainError::transient(format!(
                    "claim replacing refund {} rejected: {e}",
                    refund.txid
                )));
            }
        };
        info!(chain = %self.params.chain, swap_id = %w.params.swap_id, replaced = %refund.txid, %txid, fee = signed.fee, refund_fee = replaced.fee, vsize = signed.vsize, "claim sent, replacing the counterparty's refund");
        record_spend(
            st,
            script,
            SpendKind::Claim,
            signed.feerate_sat_vb,
            Some(refund.txid),
            signed.tx,
        );
        Ok(TxRef(txid.to_string()))
    }

    /// Replaces every claim or refund of this process that has waited `bump_after_blocks`
    /// unconfirmed, with a higher fee. Returns the replacements.
    pub async fn bump_fees(
        &self,
        preimages: &HashMap<swap_core::SwapId, Preimage>,
    ) -> Result<Vec<TxRef>, ChainError> {
        let mut st = self.state.lock().await;
        self.sync(&mut st).await?;
        let mut out = Vec::new();
        let pending: Vec<(ScriptBuf, Pending)> = st
            .pending
            .iter()
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect();
        for (script, p) in pending {
            let Some(w) = st.swaps.get(&script).cloned() else {
                continue;
            };
            let (_, funding, spend) = self.status(&st, &w, &script);
            let (Some(funding), Some(spend)) = (funding, spend) else {
                continue;
            };
            if spend.height.is_some() {
                continue;
            }
            // Our refund was replaced by the counterparty's claim (or the other way round):
            // that spend is theirs, not ours to bump. (A refund never replaces a claim: the
            // claim reveals the secret.)
            let spent_as = match classify(&w.htlc, &spend, st.tip) {
                HtlcStatus::Claimed { .. } => SpendKind::Claim,
                _ => SpendKind::Refund,
            };
            if spent_as != p.kind {
                continue;
            }
            let key = self.our_key(&w.params, p.kind)?;
            let preimage = preimages.get(&w.params.swap_id);
            if p.kind == SpendKind::Claim && preimage.is_none() {
                continue;
            }
            let r = self
                .maybe_bump(
                    &mut st, &w, &script, p.kind, &key, preimage, &funding, &spend,
                )
                .await?;
            if r.0 != spend.txid.to_string() {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Rebroadcasts a funding this process sent that the node no longer shows.
    async fn rebroadcast_lock(&self, tx: &Transaction) -> Result<TxRef, ChainError> {
        match self.rpc.send_raw_transaction(tx).await {
            Ok(txid) => Ok(TxRef(txid.to_string())),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => Err(permanent(format!(
                "our funding {} is no longer valid ({e}); not funding twice",
                tx.compute_txid()
            ))),
        }
    }

    /// The batch leader's work (called with `funder` held): takes every queued lock request,
    /// answers those whose HTLC got funded since they were checked, and funds the others with
    /// as few transactions as [`MAX_FUNDING_OUTPUTS`] allows. Every request taken is answered
    /// (or dropped with this future, which its caller sees as a transient error).
    async fn fund_queued(&self) {
        let mut st = self.state.lock().await;
        let mut queue = std::mem::take(&mut st.lock_queue);
        // A caller that gave up does not get funded (it may never want to be again).
        queue.retain(|r| !r.reply.is_closed());
        if queue.is_empty() {
            return;
        }
        // Each request was checked against a fresh scan, but the leader may have waited since:
        // scan again, unless no sync started since every request was checked (a lone lock).
        if queue.iter().any(|r| r.checked_gen != st.sync_gen) {
            if let Err(e) = self.sync(&mut st).await {
                for r in queue {
                    let _ = r.reply.send(Err(e.clone()));
                }
                return;
            }
        }
        let mut outputs: Vec<FundingOutput> = Vec::new();
        let mut by_script: HashMap<ScriptBuf, usize> = HashMap::new();
        let mut sent: HashMap<Txid, (Transaction, Vec<LockRequest>)> = HashMap::new();
        for r in queue {
            if let (_, Some(funding), _) = self.status(&st, &r.w, &r.script) {
                let _ = r.reply.send(Ok(TxRef(funding.outpoint.txid.to_string())));
            } else if let Some((tx, _)) = st.locks_sent.get(&r.script) {
                // Funded by us after this request was checked (e.g. a concurrent call for the
                // same HTLC): make sure it is out, never fund again.
                sent.entry(tx.compute_txid())
                    .or_insert_with(|| (tx.clone(), Vec::new()))
                    .1
                    .push(r);
            } else if let Some(&i) = by_script.get(&r.script) {
                outputs[i].requests.push(r);
            } else {
                by_script.insert(r.script.clone(), outputs.len());
                outputs.push(FundingOutput { requests: vec![r] });
            }
        }
        for (tx, requests) in sent.into_values() {
            let answer = self.rebroadcast_lock(&tx).await;
            for r in requests {
                let _ = r.reply.send(answer.clone());
            }
        }
        let mut outputs = outputs.into_iter();
        loop {
            let batch: Vec<FundingOutput> = outputs.by_ref().take(MAX_FUNDING_OUTPUTS).collect();
            if batch.is_empty() {
                break;
            }
            self.fund_batch(&mut st, batch).await;
        }
    }

    /// Funds `batch` with one transaction and answers its requests. When the wallet cannot
    /// build that transaction, funds each output on its own, so that one output the wallet
    /// refuses or cannot afford does not fail the others.
    async fn fund_batch(&self, st: &mut State, batch: Vec<FundingOutput>) {
        let failure = match self.send_funding(st, &batch).await {
            Ok(txid) => {
                info!(chain = %self.params.chain, count = batch.len(), %txid, "funding batch sent");
                for output in batch {
                    self.answer_funded(output, txid);
                }
                return;
            }
            Err(FundingFailure::WalletRefused(e)) if batch.len() > 1 => {
                warn!(chain = %self.params.chain, count = batch.len(), error = %e, "funding batch refused; funding its HTLCs one by one");
                for output in batch {
                    match self.send_funding(st, std::slice::from_ref(&output)).await {
                        Ok(txid) => self.answer_funded(output, txid),
                        Err(FundingFailure::WalletRefused(e) | FundingFailure::Final(e)) => {
                            for r in output.requests {
                                let _ = r.reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
                return;
            }
            Err(FundingFailure::WalletRefused(e) | FundingFailure::Final(e)) => e,
        };
        for output in batch {
            for r in output.requests {
                let _ = r.reply.send(Err(failure.clone()));
            }
        }
    }

    fn answer_funded(&self, output: FundingOutput, txid: Txid) {
        let first = output.first();
        info!(chain = %self.params.chain, swap_id = %first.w.params.swap_id, %txid, amount = first.amount, "htlc funded");
        for r in output.requests {
            let _ = r.reply.send(Ok(TxRef(txid.to_string())));
        }
    }

    /// Builds, signs and broadcasts one wallet transaction paying every output of `batch`
    /// (recorded in `locks_sent` before the broadcast).
    async fn send_funding(
        &self,
        st: &mut State,
        batch: &[FundingOutput],
    ) -> Result<Txid, FundingFailure> {
        let built = |e: RpcError| {
            if e.is_transient() {
                FundingFailure::Final(e.into())
            } else {
                FundingFailure::WalletRefused(e.into())
            }
        };
        let feerate = self.feerate().await.map_err(FundingFailure::Final)?;
        let pay: Vec<(&str, u64)> = batch
            .iter()
            .map(|o| (o.first().address.as_str(), o.first().amount))
            .collect();
        let psbt = self
            .rpc
            .wallet_create_funded_psbt(&pay, feerate)
            .await
            .map_err(built)?;
        let psbt = self.rpc.wallet_process_psbt(&psbt).await.map_err(built)?;
        let tx = self.rpc.finalize_psbt(&psbt).await.map_err(built)?;
        for o in batch {
            let paying = tx
                .output
                .iter()
                .filter(|out| {
                    out.script_pubkey == o.first().script && out.value.to_sat() == o.first().amount
                })
                .count();
            if paying != 1 {
                return Err(FundingFailure::Final(permanent(
                    "wallet built a funding that does not pay each HTLC exactly once",
                )));
            }
        }
        let now = std::time::Instant::now();
        for o in batch {
            st.locks_sent
                .insert(o.first().script.clone(), (tx.clone(), now));
        }
        match self.rpc.send_raw_transaction(&tx).await {
            Ok(txid) => Ok(txid),
            Err(e) if e.is_transient() => Err(FundingFailure::Final(e.into())),
            Err(e) => {
                // Rejected: nothing was sent, a retry may build a new one. (Not split up: the
                // node's reasons, such as a too long chain of unconfirmed transactions or a low
                // feerate, would reject each part as well.)
                for o in batch {
                    st.locks_sent.remove(&o.first().script);
                }
                Err(FundingFailure::Final(e.into()))
            }
        }
    }

    /// Reads the best block's height and time from the node.
    async fn read_tip(&self) -> Result<ChainTip, ChainError> {
        let hash = self.rpc.get_best_block_hash().await?;
        let header = self.rpc.get_block_header(&hash).await?;
        let field = |f: &str| {
            header
                .get(f)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    ChainError::from(RpcError::Decode {
                        method: "getblockheader".into(),
                        detail: format!("no {f}"),
                    })
                })
        };
        Ok(ChainTip {
            height: Height(field("height")?),
            time: Timestamp(field("time")?),
        })
    }

    async fn spend_or_bump(
        &self,
        params: &HtlcParams,
        kind: SpendKind,
        preimage: Option<&Preimage>,
    ) -> Result<TxRef, ChainError> {
        let asked = std::time::Instant::now();
        let key = self.our_key(params, kind)?;
        let mut st = self.state.lock().await;
        let (w, script) = self.register(&mut st, params)?;
        if let Some(synced) = self.recent_sync(&st) {
            // Our spend of this kind is pending and no fee bump is due yet: it is either in
            // the recent scan or was sent after it. (Anything else takes the full path.)
            if let Some(p) = st.pending.get(&script).filter(|p| p.kind == kind) {
                let (_, _, spend) = self.status(&st, &w, &script);
                let seen = spend.as_ref().is_some_and(|s| s.txid == p.txid);
                let bump_due =
                    st.tip >= p.broadcast_height + u64::from(self.fees.bump_after_blocks);
                if (seen || p.sent_at >= synced) && !bump_due {
                    return Ok(TxRef(p.txid.to_string()));
                }
            }
        }
        self.sync_since(&mut st, asked).await?;
        let (_, funding, spend) = self.status(&st, &w, &script);
        let Some(funding) = funding else {
            return Err(ChainError::new(
                Cause::NotReady { until: None },
                "HTLC not funded (or funding not seen yet)",
            ));
        };
        match spend {
            // The funding we act on is spent: by us (idempotent answer, maybe a fee bump) or
            // through the other branch.
            Some(spend) => match (classify(&w.htlc, &spend, st.tip), kind) {
                (HtlcStatus::Claimed { .. }, SpendKind::Refund) => Err(permanent(
                    "HTLC already claimed: the secret is in htlc_status",
                )),
                // Their refund is only in the mempool: our claim replaces it (BIP-125).
                (HtlcStatus::Refunded { .. }, SpendKind::Claim) if spend.height.is_none() => {
                    self.replace_refund(&mut st, &w, &script, &key, preimage, &funding, &spend)
                        .await
                }
                (HtlcStatus::Refunded { .. }, SpendKind::Claim) => Err(ChainError::new(
                    Cause::AlreadySpent,
                    "HTLC already refunded",
                )),
                _ if spend.height.is_some() => Ok(TxRef(spend.txid.to_string())),
                _ => {
                    self.maybe_bump(&mut st, &w, &script, kind, &key, preimage, &funding, &spend)
                        .await
                }
            },
            None => {
                if kind == SpendKind::Refund && st.tip < u64::from(w.htlc.expiry_height()) {
                    return Err(ChainError::new(
                        Cause::NotReady {
                            until: Some(swap_core::Expiry::Height(Height(u64::from(
                                w.htlc.expiry_height(),
                            )))),
                        },
                        format!(
                            "not refundable before height {} (tip {})",
                            w.htlc.expiry_height(),
                            st.tip
                        ),
                    ));
                }
                self.spend(&mut st, &w, &script, kind, &key, preimage, &funding)
                    .await
            }
        }
    }
}

/// Records `tx`, our broadcast spend of `script` (replacing the unconfirmed spend `replaced`,
/// if any), as its pending spend, and shows it in the mempool view right away.
fn record_spend(
    st: &mut State,
    script: &ScriptBuf,
    kind: SpendKind,
    feerate: u64,
    replaced: Option<Txid>,
    tx: Transaction,
) {
    let txid = tx.compute_txid();
    st.pending.insert(
        script.clone(),
        Pending {
            kind,
            txid,
            feerate,
            broadcast_height: st.tip,
            sent_at: std::time::Instant::now(),
        },
    );
    if let Some(replaced) = replaced {
        st.mempool.remove(&replaced);
    }
    st.mempool.insert(txid, Some(tx));
    let txs: Vec<&Transaction> = st.mempool.values().flatten().collect();
    st.scanner.set_mempool(txs);
}

fn confirmations(tip: u64, height: Option<u64>) -> u32 {
    match height {
        Some(h) if tip >= h => u32::try_from(tip - h + 1).unwrap_or(u32::MAX),
        _ => 0,
    }
}

/// What a spend of the HTLC is: a claim (with the preimage) or a refund.
fn classify(htlc: &Htlc, spend: &Spend, tip: u64) -> HtlcStatus {
    let confirmations = confirmations(tip, spend.height);
    let txref = TxRef(spend.txid.to_string());
    match extract_preimage(htlc.hashlock(), spend.witness.iter().map(Vec::as_slice)) {
        Some(p) => HtlcStatus::Claimed {
            preimage: Preimage::from_bytes(p),
            txref,
            confirmations,
        },
        None => HtlcStatus::Refunded {
            txref,
            confirmations,
        },
    }
}

/// The status of an HTLC from what the scanner knows about its script.
///
/// - The *primary* funding is the first output with exactly the agreed amount, else the first
///   one (confirmed before mempool): it is what `claim`/`refund` spend and what `Funded`
///   reports, with the amount found on chain.
/// - If the primary is spent, its spend decides: `Claimed` (the witness holds a 32-byte
///   preimage of the hashlock) or `Refunded`.
/// - If the primary is unspent but another output of the same script was claimed, the secret
///   is out: `Claimed` with that spend, so that the other party learns it. (`claim`/`refund`
///   still act on the unspent primary.)
fn derive_status(
    view: &ScriptView,
    params: &HtlcParams,
    htlc: &Htlc,
    tip: u64,
    asset: Asset,
) -> (HtlcStatus, Option<Funding>, Option<Spend>) {
    let agreed = sats(params).unwrap_or(0);
    let primary = view
        .fundings
        .iter()
        .find(|(f, _)| f.value == agreed)
        .or_else(|| view.fundings.first());
    let Some((funding, spend)) = primary else {
        return (HtlcStatus::Absent, None, None);
    };
    let status = match spend {
        Some(spend) => classify(htlc, spend, tip),
        None => {
            let revealed = view
                .fundings
                .iter()
                .filter_map(|(_, s)| s.as_ref())
                .map(|s| classify(htlc, s, tip))
                .find(|st| matches!(st, HtlcStatus::Claimed { .. }));
            revealed.unwrap_or_else(|| HtlcStatus::Funded {
                lock: ObservedLock {
                    txref: TxRef(funding.outpoint.txid.to_string()),
                    asset,
                    amount: Amount::Sats(Sats(funding.value)),
                    sender: params.sender,
                    recipient: params.recipient,
                    hashlock: params.hashlock,
                    expiry: params.expiry,
                },
                confirmations: confirmations(tip, funding.height),
            })
        }
    };
    (status, Some(funding.clone()), spend.clone())
}

fn sats(params: &HtlcParams) -> Result<u64, ChainError> {
    match params.amount {
        Amount::Sats(Sats(s)) if s > 0 => Ok(s),
        other => Err(permanent(format!(
            "amount {other} is not a positive sat amount"
        ))),
    }
}

#[async_trait]
impl Chain for BtcChain {
    fn params(&self) -> &ChainParams {
        &self.params
    }

    async fn tip(&self) -> Result<ChainTip, ChainError> {
        if self.tip_max_age.is_zero() {
            return self.read_tip().await;
        }
        let mut cache = self.tip_cache.lock().await;
        if let Some((at, tip)) = *cache {
            if at.elapsed() < self.tip_max_age {
                return Ok(tip);
            }
        }
        let tip = self.read_tip().await?;
        *cache = Some((std::time::Instant::now(), tip));
        Ok(tip)
    }

    async fn watch(&self, htlc: &HtlcParams) -> Result<(), ChainError> {
        let mut st = self.state.lock().await;
        self.register(&mut st, htlc)?;
        Ok(())
    }

    async fn htlc_status(&self, htlc: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        let mut st = self.state.lock().await;
        let (w, script) = self.register(&mut st, htlc)?;
        let fresh = !st.dirty
            && st
                .synced_at
                .is_some_and(|t| t.elapsed() < self.status_max_age);
        if !fresh {
            self.sync(&mut st).await?;
        }
        Ok(self.status(&st, &w, &script).0)
    }

    /// Funds the HTLC unless a funding is on chain, in the mempool or already sent by this
    /// process (then answers its txid; one we sent that is no longer visible is rebroadcast).
    ///
    /// Concurrent calls are funded together by one wallet transaction with one output per HTLC:
    /// a call that finds its HTLC unfunded queues a request and takes the `funder` lock; the
    /// holder (the leader) funds every queued request, and the others get its txid. While a
    /// leader funds, new requests queue up for the next one, so under load most calls share a
    /// transaction, and a lone call funds at once, with the same node calls as unbatched.
    ///
    /// The leader re-checks every request against a fresh scan (unless none was started since
    /// they were checked) and `locks_sent`, and holds the state lock from that check until the
    /// broadcast, so nothing is funded twice. A caller that gives up (its future dropped) before
    /// the leader takes its request is not funded; if a leader is dropped mid-batch, the
    /// requests it took are answered with a transient error: the retry sees the funding if it
    /// was sent (it is in `locks_sent` from before the broadcast) and funds only if not.
    async fn forget(&self, htlc: &HtlcParams) {
        let Ok(h) = self.htlc(htlc) else {
            return;
        };
        let script = h.script_pubkey();
        let mut st = self.state.lock().await;
        st.scanner.unwatch(&script);
        st.swaps.remove(&script);
        st.pending.remove(&script);
        st.locks_sent.remove(&script);
        st.payout.remove(&script);
        st.compiled.remove(&HtlcTerms {
            sender: htlc.sender,
            recipient: htlc.recipient,
            hashlock: htlc.hashlock,
            expiry: htlc.expiry,
        });
    }

    async fn lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        if self.is_watch_only() {
            return Err(watch_only());
        }
        let asked = std::time::Instant::now();
        let amount = sats(htlc)?;
        let mut reply = {
            let mut st = self.state.lock().await;
            let (w, script) = self.register(&mut st, htlc)?;
            if let Some(synced) = self.recent_sync(&st) {
                // Answers that a fresh scan could not change: the funding is in the recent
                // scan, or we sent it after that scan. (Funding is only ever sent after a
                // fresh scan.)
                if let (_, Some(funding), _) = self.status(&st, &w, &script) {
                    return Ok(TxRef(funding.outpoint.txid.to_string()));
                }
                if let Some((tx, sent_at)) = st.locks_sent.get(&script) {
                    if *sent_at >= synced {
                        return Ok(TxRef(tx.compute_txid().to_string()));
                    }
                }
            }
            self.sync_since(&mut st, asked).await?;
            if let (_, Some(funding), _) = self.status(&st, &w, &script) {
                return Ok(TxRef(funding.outpoint.txid.to_string()));
            }
            if let Some((tx, _)) = st.locks_sent.get(&script).cloned() {
                // Sent by us but not visible (node restarted, or reorged out): rebroadcast
                // it, never fund a second time.
                return self.rebroadcast_lock(&tx).await;
            }
            let address = w.htlc.address(self.params.chain).map_err(permanent)?;
            let (tx, rx) = oneshot::channel();
            let checked_gen = st.sync_gen;
            st.lock_queue.push(LockRequest {
                w,
                script,
                address,
                amount,
                checked_gen,
                reply: tx,
            });
            rx
        };
        let interrupted = || {
            ChainError::transient(
                "the funding batch of this lock was interrupted; retry (it checks for the funding first)",
            )
        };
        tokio::select! {
            answer = &mut reply => return answer.unwrap_or_else(|_| Err(interrupted())),
            funder = self.funder.lock() => {
                match reply.try_recv() {
                    Ok(answer) => return answer,
                    Err(oneshot::error::TryRecvError::Closed) => return Err(interrupted()),
                    // Still queued (only `funder` holders take requests): fund the queue.
                    Err(oneshot::error::TryRecvError::Empty) => self.fund_queued().await,
                }
                drop(funder);
            }
        }
        reply.await.unwrap_or_else(|_| Err(interrupted()))
    }

    async fn claim(&self, htlc: &HtlcParams, preimage: &Preimage) -> Result<TxRef, ChainError> {
        if self.is_watch_only() {
            return Err(watch_only());
        }
        if !htlc.hashlock.matches(preimage) {
            return Err(permanent("preimage does not match the hashlock"));
        }
        self.spend_or_bump(htlc, SpendKind::Claim, Some(preimage))
            .await
    }

    async fn refund(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        if self.is_watch_only() {
            return Err(watch_only());
        }
        self.spend_or_bump(htlc, SpendKind::Refund, None).await
    }
}

/// The txid of a transaction reference produced by this adapter.
pub fn txid_of(txref: &TxRef) -> Result<Txid, ChainError> {
    txref.0.parse().map_err(permanent)
}

/// An outpoint's txid as a [`TxRef`].
pub fn txref_of(outpoint: &OutPoint) -> TxRef {
    TxRef(outpoint.txid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_as_a_shared_chain_object() {
        fn assert_dyn(_: std::sync::Arc<dyn Chain>) {}
        let rpc = RpcConfig {
            url: "http://127.0.0.1:1".into(),
            auth: crate::rpc::Auth::UserPass("u".into(), "p".into()),
            wallet: None,
            timeout: std::time::Duration::from_secs(1),
        };
        let chain_id = ChainId::new(ChainFamily::Litecoin, swap_core::Network::Regtest);
        let chain = BtcChain::new(BtcConfig::new(chain_id, rpc.clone()), &[3; 32]).unwrap();
        assert_eq!(chain.asset(), Asset::Ltc);
        assert!(format!("{chain:?}").contains("redacted"));
        assert_dyn(std::sync::Arc::new(chain));
        let eth = ChainId::new(ChainFamily::Ethereum, swap_core::Network::Mainnet);
        assert!(BtcChain::new(BtcConfig::new(eth, rpc), &[3; 32]).is_err());
    }

    fn fixture() -> (HtlcParams, Htlc, Preimage) {
        let s = Preimage::from_bytes([7; 32]);
        let c = SwapKey::from_secret(bitcoin::secp256k1::SecretKey::from_slice(&[1; 32]).unwrap());
        let r = SwapKey::from_secret(bitcoin::secp256k1::SecretKey::from_slice(&[2; 32]).unwrap());
        let params = HtlcParams {
            swap_id: swap_core::SwapId([1; 16]),
            key_index: 0,
            hashlock: s.hashlock(),
            asset: Asset::Btc,
            amount: Amount::Sats(Sats(1_000)),
            sender: Account::PublicKey(r.public_key_bytes()),
            recipient: Account::PublicKey(c.public_key_bytes()),
            expiry: swap_core::Expiry::Height(Height(500)),
            watch_from: Height(100),
        };
        let htlc = Htlc::from_params(&params).unwrap();
        (params, htlc, s)
    }

    fn funding(b: u8, value: u64, height: Option<u64>) -> Funding {
        Funding {
            outpoint: OutPoint::new(bitcoin::hashes::Hash::from_byte_array([b; 32]), 0),
            value,
            height,
        }
    }

    fn spend(b: u8, height: Option<u64>, witness: Vec<Vec<u8>>) -> Spend {
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::from_consensus(b as u32),
            input: vec![],
            output: vec![],
        };
        Spend {
            txid: tx.compute_txid(),
            height,
            witness,
            tx,
        }
    }

    #[test]
    fn status_rules() {
        let (p, htlc, s) = fixture();
        let st = |view: ScriptView| derive_status(&view, &p, &htlc, 110, Asset::Btc);
        assert_eq!(st(ScriptView::default()).0, HtlcStatus::Absent);

        // Wrong amount reported as found; confirmations from the tip.
        let (status, f, _) = st(ScriptView {
            fundings: vec![(funding(1, 999, Some(105)), None)],
        });
        match status {
            HtlcStatus::Funded {
                lock,
                confirmations,
            } => {
                assert_eq!(lock.amount, Amount::Sats(Sats(999)));
                assert_eq!(confirmations, 6);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.unwrap().value, 999);

        // The exact-amount output is the primary even when it comes later.
        let (status, f, _) = st(ScriptView {
            fundings: vec![
                (funding(1, 999, Some(105)), None),
                (funding(2, 1_000, None), None),
            ],
        });
        assert!(matches!(
            status,
            HtlcStatus::Funded {
                confirmations: 0,
                ..
            }
        ));
        assert_eq!(f.unwrap().value, 1_000);

        // Claim: preimage extracted. Refund: no preimage.
        let claim = spend(3, Some(110), vec![s.as_bytes().to_vec(), vec![1; 71]]);
        let (status, _, sp) = st(ScriptView {
            fundings: vec![(funding(1, 1_000, Some(105)), Some(claim.clone()))],
        });
        assert_eq!(
            status,
            HtlcStatus::Claimed {
                preimage: s.clone(),
                txref: TxRef(claim.txid.to_string()),
                confirmations: 1
            }
        );
        assert!(sp.is_some());
        let refund = spend(4, None, vec![vec![1; 71], vec![], vec![0x51]]);
        let (status, _, _) = st(ScriptView {
            fundings: vec![(funding(1, 1_000, Some(105)), Some(refund))],
        });
        assert!(matches!(
            status,
            HtlcStatus::Refunded {
                confirmations: 0,
                ..
            }
        ));
        // A 32-byte item that is not the preimage is not a claim.
        let fake = spend(5, None, vec![vec![9; 32]]);
        let (status, _, _) = st(ScriptView {
            fundings: vec![(funding(1, 1_000, Some(105)), Some(fake))],
        });
        assert!(matches!(status, HtlcStatus::Refunded { .. }));

        // Secret revealed by a claim of another output: reported, primary stays unspent.
        let (status, f, sp) = st(ScriptView {
            fundings: vec![
                (funding(1, 500, Some(104)), Some(claim.clone())),
                (funding(2, 1_000, Some(105)), None),
            ],
        });
        assert!(matches!(status, HtlcStatus::Claimed { .. }));
        assert_eq!(f.unwrap().value, 1_000);
        assert!(sp.is_none());
    }

    #[tokio::test]
    async fn unreachable_node_is_transient() {
        let rpc = RpcConfig {
            url: "http://127.0.0.1:1".into(),
            auth: crate::rpc::Auth::UserPass("u".into(), "p".into()),
            wallet: None,
            timeout: std::time::Duration::from_secs(1),
        };
        let chain_id = ChainId::new(ChainFamily::Bitcoin, swap_core::Network::Regtest);
        let chain = BtcChain::new(BtcConfig::new(chain_id, rpc), &[3; 32]).unwrap();
        assert!(chain.tip().await.unwrap_err().is_transient());
    }
}
