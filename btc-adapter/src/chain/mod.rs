//! [`BtcChain`]: `swap_core::Rail` for Bitcoin and Litecoin over a node's JSON-RPC.
//!
//! One [`Scanner`] serves every watched HTLC: each call syncs it (reorg check, new blocks via
//! `getblock <hash> 2`, mempool) and answers from it. Actions check the chain first, hold the
//! state lock from that check to their broadcast, and are idempotent:
//! - `lock` funds from the node wallet only when no funding is on chain, in the mempool, or
//!   already sent by this process; it never funds twice. Concurrent locks are funded together:
//!   one wallet transaction with one output per HTLC (see `lock` in the `Rail` impl).
//! - `claim` / `refund` return the existing spend when there is one. When that spend is still
//!   unconfirmed `bump_after_blocks` blocks after it was sent, they replace it with a higher
//!   fee (BIP-125); [`BtcChain::bump_fees`] does the same for every pending spend.
//! - `claim` when the funding is spent by the counterparty's *unconfirmed* refund replaces that
//!   refund (BIP-125: the claim branch has no timelock, so it stays valid after the expiry).
//!   Never the other way round: a refund does not replace the counterparty's claim (the claim
//!   reveals the secret, and our side goes on with it).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};
use swap_core::store::{Outbox, SharedOutbox};
use swap_core::{
    Account, Amount, Asset, Cause, ChainError, ChainFamily, ChainId, ChainParams, ChainTip, Height,
    HtlcParams, HtlcStatus, Observation, ObservedLock, Preimage, PublicKeyBytes, Rail, RailOp,
    Sats, Timestamp, TxRef,
};
use tokio::sync::Mutex;
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
/// The longest a funding round rests before it starts (see `funding.rs`).
const MAX_FUNDING_REST: std::time::Duration = std::time::Duration::from_secs(5);
/// Node wallet addresses fetched at most in one batch for payouts (see `payout_script`).
const PAYOUT_PREFETCH: usize = 64;

mod cancel;
mod config;
mod funding;
mod spend;
mod status;
mod sync;

pub use config::{BtcConfig, FeeConfig, PaymentRequest, Payout};
use funding::{QueuedLock, RoundPace};
use status::sats;

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
}

#[derive(Debug, Clone)]
struct Watched {
    params: HtlcParams,
    htlc: Htlc,
}

/// Why a funding transaction was not sent.
#[derive(Debug)]
enum FundingFailure {
    /// The wallet could not build it: funding the same HTLCs separately may still work (one
    /// output the wallet refuses or cannot afford, or a too large transaction, fails a batch).
    WalletRefused(ChainError),
    /// Not sent (transient errors before the broadcast, a funding that does not pay what was
    /// asked, no outbox record, the node rejecting the broadcast): nothing stays recorded.
    Final(ChainError),
    /// Recorded in the outbox and maybe sent: the record stays, a later round broadcasts it
    /// again.
    Recorded(ChainError),
}

impl FundingFailure {
    fn into_error(self) -> ChainError {
        match self {
            FundingFailure::WalletRefused(e)
            | FundingFailure::Final(e)
            | FundingFailure::Recorded(e) => e,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    scanner: Scanner,
    swaps: HashMap<ScriptBuf, Watched>,
    pending: HashMap<ScriptBuf, Pending>,
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
    /// Recorded fundings the node refused whose coins a mined transaction spent, with the tip
    /// (height and hash) at which that was first seen (see `funding.rs`,
    /// `recorded_funding_dead`).
    dead_fundings: HashMap<Txid, (u64, bitcoin::BlockHash)>,
}

/// What an HTLC script is made of (the cache key of compiled HTLCs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HtlcTerms {
    sender: Account,
    recipient: Account,
    hashlock: swap_core::Hashlock,
    expiry: swap_core::Expiry,
}

/// `swap_core::Rail` for Bitcoin or Litecoin.
#[derive(Debug)]
pub struct BtcChain {
    params: ChainParams,
    rpc: RpcClient,
    /// `None` for a watch-only adapter (it observes; it never locks, claims or refunds).
    keys: Option<KeySource>,
    fees: FeeConfig,
    payout: Payout,
    state: Mutex<State>,
    /// Where fundings are recorded before their broadcast (see `funding.rs`).
    outbox: SharedOutbox,
    /// Held by a funding round, from its outbox reads to its broadcast (see `funding.rs`).
    /// Taken before `state`, never while holding it.
    funding: Mutex<RoundPace>,
    /// Locks asked and not yet taken by a funding round: the next round takes them all (see
    /// `funding.rs`).
    fund_queue: std::sync::Mutex<Vec<QueuedLock>>,
    /// One more than the height of the last scan; zero before the first (see `feerate`).
    scanned_height: std::sync::atomic::AtomicU64,
    /// The last feerate estimate and the scanned height it was read at (see `feerate`).
    fee_cache: std::sync::Mutex<Option<(u64, u64)>>,
    /// Tip reads shared by the callers asking together (see `tip_since`).
    tip_reads: swap_core::shared_read::SharedReads<(), ChainTip>,
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
            state: Mutex::new(State::default()),
            outbox: SharedOutbox::default(),
            funding: Mutex::new(RoundPace::default()),
            fund_queue: std::sync::Mutex::new(Vec::new()),
            scanned_height: std::sync::atomic::AtomicU64::new(0),
            fee_cache: std::sync::Mutex::new(None),
            tip_reads: swap_core::shared_read::SharedReads::new(),
        })
    }

    /// The name of this adapter's wallet for the outbox's spend guard
    /// ([`swap_core::store::Outbox::spend_guard`]), held from choosing a funding's coins to its
    /// broadcast: the node's URL and the wallet's name (processes that reach one node by
    /// different URLs do not exclude each other).
    pub fn spend_guard_name(&self) -> String {
        let config = self.rpc.config();
        format!(
            "bitcoin-family wallet {:?} at {}",
            config.wallet.as_deref().unwrap_or(""),
            config.url
        )
    }

    /// Records fundings in `outbox` (the swap store, so that every process on it shares it)
    /// before broadcasting them; without it, in this process's memory only.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = SharedOutbox(outbox);
        self
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
        // Only Bitcoin-family chains get here (checked when the adapter is made).
        self.params.chain.family.native_asset()
    }

    /// The HTLC of `params` (checks asset, amount unit and expiry kind).
    pub fn htlc(&self, params: &HtlcParams) -> Result<Htlc, ChainError> {
        self.check_amount(params)?;
        Htlc::from_params(params).map_err(permanent)
    }

    /// The leg's asset is this chain's coin and its amount is in satoshis.
    fn check_amount(&self, params: &HtlcParams) -> Result<u64, ChainError> {
        if params.asset != self.asset() {
            return Err(permanent(format!(
                "asset {:?} is not {:?}",
                params.asset,
                self.asset()
            )));
        }
        sats(params)
    }

    /// The HTLC's address on this chain.
    pub fn htlc_address(&self, params: &HtlcParams) -> Result<String, ChainError> {
        self.htlc(params)?
            .address(self.params.chain)
            .map_err(permanent)
    }

    /// For a lock paid from an external wallet: the HTLC address, the exact amount, and a
    /// BIP-21 URI (`bitcoin:` or `litecoin:`) a wallet can scan. The payment is detected by the
    /// block scan like any other funding ([`Rail::htlc_status`]); an amount other than the
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
        // Checked for a compiled HTLC too: the cache is keyed by the script's terms alone.
        self.check_amount(params)?;
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
}

#[async_trait]
impl Rail for BtcChain {
    fn params(&self) -> &ChainParams {
        &self.params
    }

    /// The swap public key at `key_index` (an error on a watch-only adapter).
    async fn account(&self, key_index: u32) -> Result<Account, ChainError> {
        Ok(Account::PublicKey(self.swap_public_key(key_index)?))
    }

    /// The node wallet's trusted balance; one lock's fees (300 vB at the fallback feerate) come
    /// out of it.
    async fn funds(&self, asset: &Asset) -> Result<swap_core::Funds, ChainError> {
        if *asset != self.asset() {
            return Err(permanent(format!("{asset:?} is not {:?}", self.asset())));
        }
        let (balance, fee) = BtcChain::funds(self).await?;
        Ok(swap_core::Funds {
            balance: u128::from(balance),
            fee_balance: u128::from(balance),
            fee_allowance: u128::from(fee),
            fees_from_asset: true,
        })
    }

    async fn tip(&self) -> Result<ChainTip, ChainError> {
        self.tip_since(std::time::Instant::now()).await
    }

    async fn watch(&self, htlc: &HtlcParams) -> Result<(), ChainError> {
        let mut st = self.state.lock().await;
        self.register(&mut st, htlc)?;
        Ok(())
    }

    /// One look for every leg: the tip, then one scan of the node (none if a scan started
    /// after this call already), and every status derived from it.
    async fn observe(&self, htlcs: &[HtlcParams]) -> Result<Observation, ChainError> {
        let asked = std::time::Instant::now();
        let tip = self.tip().await?;
        let mut st = self.state.lock().await;
        let registered: Vec<_> = htlcs.iter().map(|h| self.register(&mut st, h)).collect();
        self.sync_since(&mut st, asked).await?;
        let statuses = registered
            .into_iter()
            .map(|r| r.map(|(w, script)| self.status(&st, &w, &script).0))
            .collect();
        Ok(Observation { tip, statuses })
    }

    /// All at once: the locks are funded by one wallet transaction (see `funding.rs`), the
    /// claims and refunds sent concurrently.
    async fn execute(&self, ops: &[RailOp]) -> Vec<Result<TxRef, ChainError>> {
        let locks: Vec<&HtlcParams> = ops.iter().filter_map(RailOp::as_lock).collect();
        // One scan that started after the round was asked serves all its spends (each takes
        // the state lock in turn; none scans again unless something changed).
        let asked = std::time::Instant::now();
        let spends = futures::future::join_all(ops.iter().map(|op| async move {
            match op {
                RailOp::Lock(_) => None,
                RailOp::Claim(h, p) => Some(self.claim_since(h, p, asked).await),
                RailOp::Refund(h) => Some(self.refund_since(h, asked).await),
                RailOp::CancelLock(h) => Some(self.cancel_funding(h).await),
            }
        }));
        let (funded, spent) = futures::join!(self.fund(&locks), spends);
        let mut funded = funded.into_iter();
        spent
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    funded
                        .next()
                        .unwrap_or_else(|| Err(ChainError::transient("lock not handled")))
                })
            })
            .collect()
    }

    async fn htlc_status(&self, htlc: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        let asked = std::time::Instant::now();
        let mut st = self.state.lock().await;
        let (w, script) = self.register(&mut st, htlc)?;
        self.sync_since(&mut st, asked).await?;
        Ok(self.status(&st, &w, &script).0)
    }

    async fn forget(&self, htlc: &HtlcParams) {
        let Ok(h) = self.htlc(htlc) else {
            return;
        };
        let script = h.script_pubkey();
        let mut st = self.state.lock().await;
        st.scanner.unwatch(&script);
        st.swaps.remove(&script);
        st.pending.remove(&script);
        st.payout.remove(&script);
        st.compiled.remove(&HtlcTerms {
            sender: htlc.sender,
            recipient: htlc.recipient,
            hashlock: htlc.hashlock,
            expiry: htlc.expiry,
        });
    }

    /// Funds the HTLC unless it is funded on chain or in the mempool, or has a funding in the
    /// outbox (then broadcasts that one again): see `funding.rs`.
    async fn lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        self.fund(&[htlc])
            .await
            .pop()
            .unwrap_or_else(|| Err(ChainError::transient("lock not handled")))
    }

    async fn claim(&self, htlc: &HtlcParams, preimage: &Preimage) -> Result<TxRef, ChainError> {
        self.claim_since(htlc, preimage, std::time::Instant::now())
            .await
    }

    /// Spends an input of a recorded funding that is not on chain back to the wallet (see
    /// `cancel.rs`).
    async fn cancel_lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        self.cancel_funding(htlc).await
    }

    async fn refund(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        self.refund_since(htlc, std::time::Instant::now()).await
    }
}

impl BtcChain {
    /// [`Rail::claim`] acting on a scan that started at or after `asked`.
    async fn claim_since(
        &self,
        htlc: &HtlcParams,
        preimage: &Preimage,
        asked: std::time::Instant,
    ) -> Result<TxRef, ChainError> {
        if self.is_watch_only() {
            return Err(watch_only());
        }
        if !htlc.hashlock.matches(preimage) {
            return Err(permanent("preimage does not match the hashlock"));
        }
        self.spend_or_bump(htlc, SpendKind::Claim, Some(preimage), asked)
            .await
    }

    /// [`Rail::refund`] acting on a scan that started at or after `asked`.
    async fn refund_since(
        &self,
        htlc: &HtlcParams,
        asked: std::time::Instant,
    ) -> Result<TxRef, ChainError> {
        if self.is_watch_only() {
            return Err(watch_only());
        }
        self.spend_or_bump(htlc, SpendKind::Refund, None, asked)
            .await
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
