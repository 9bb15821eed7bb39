//! [`EthChain`]: the swap engine's view of Ethereum.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::Signer;
use alloy::sol_types::{SolCall, SolStruct};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use swap_core::chain::{Chain, ChainError, HtlcParams, HtlcStatus, ObservedLock};
use swap_core::params::{ChainParams, ChainTip};
use swap_core::types::{Account, Expiry, Height, Preimage, Timestamp, TxRef};
use tokio::sync::{oneshot, Mutex, OnceCell};

use crate::bindings::{IERC20Permit, Permit, HTLC};
use crate::error::{rpc_err, EthError};
use crate::htlc::{core_addr, decode_revert, EthHtlc, Revert};
use crate::nonce::NonceManager;
use crate::scan::{self, EventKind, ScanTip, Scanner};

/// How to reach the node and which contract to use.
///
/// `Debug` shows only the scheme and host of `rpc_url` (provider URLs often carry an API key).
#[derive(Clone)]
pub struct EthConfig {
    /// HTTP JSON-RPC endpoint.
    pub rpc_url: String,
    /// The deployed HTLC contract.
    pub htlc: Address,
    /// The chain parameters the engine's expiry rules use.
    pub params: ChainParams,
    /// Never pay more than this per gas (wei). Sending fails transiently while the base fee is
    /// above it.
    pub max_fee_per_gas: u128,
    /// Upper bound for the priority fee (wei per gas).
    pub max_priority_fee_per_gas: u128,
    /// How long to wait for a receipt before reporting a (transient) timeout.
    pub receipt_timeout: Duration,
    /// How often to poll for receipts.
    pub poll_interval: Duration,
    /// Largest block range per `eth_getLogs` request.
    pub log_chunk: u64,
    /// Look for pending claims in the node's mempool (`txpool_content`) to learn a preimage
    /// before the claim is mined (reported as `Claimed` with 0 confirmations). Off by default:
    /// on a mainnet node the whole txpool is megabytes per status poll; turn it on for a node
    /// with a small pool (or a private one) when learning the secret one block earlier matters.
    pub mempool_preimages: bool,
    /// The numeric chain id the node must report (checked by [`EthChain::connect`]); `None`
    /// accepts any.
    pub expected_chain_id: Option<u64>,
    /// `htlc_status` reuses the last log scan of the shared scanner when it is younger than
    /// this and no newly watched swap needs a backfill. Zero (the default): every call scans.
    /// With many swaps, a fraction of the poll interval turns one scan per swap into one scan
    /// per interval. `lock`, `claim` and `refund` always act on a scan that started after they
    /// were called (concurrent actions share one).
    pub status_max_age: Duration,
    /// `tip` answers from the last tip read when it is younger than this. Zero (the default):
    /// every call asks the node.
    pub tip_max_age: Duration,
}

/// `scheme://host[:port]` of a URL, without path, query or credentials.
fn redact_url(url: &str) -> String {
    match url.parse::<alloy::transports::http::reqwest::Url>() {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<unparsable url>".into(),
    }
}

impl std::fmt::Debug for EthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthConfig")
            .field("rpc_url", &redact_url(&self.rpc_url))
            .field("htlc", &self.htlc)
            .field("params", &self.params)
            .field("max_fee_per_gas", &self.max_fee_per_gas)
            .field("max_priority_fee_per_gas", &self.max_priority_fee_per_gas)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("log_chunk", &self.log_chunk)
            .field("mempool_preimages", &self.mempool_preimages)
            .field("expected_chain_id", &self.expected_chain_id)
            .field("status_max_age", &self.status_max_age)
            .field("tip_max_age", &self.tip_max_age)
            .finish()
    }
}

/// The EIP-155 chain id of a public network (`None` for a local chain, whose id varies).
pub fn known_chain_id(network: swap_core::Network) -> Option<u64> {
    match network {
        swap_core::Network::Mainnet => Some(1),
        swap_core::Network::Sepolia => Some(11_155_111),
        _ => None,
    }
}

impl EthConfig {
    /// A configuration with defaults: the chain id of a public network expected of the node,
    /// fee cap 500 gwei, priority fee cap 3 gwei, receipt timeout 10 minutes, 1 s polling, 10,000-block log ranges, mempool preimage extraction off.
    pub fn new(rpc_url: impl Into<String>, htlc: Address, params: ChainParams) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            htlc,
            params,
            max_fee_per_gas: 500_000_000_000,
            max_priority_fee_per_gas: 3_000_000_000,
            receipt_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            log_chunk: 10_000,
            mempool_preimages: false,
            expected_chain_id: known_chain_id(params.chain.network),
            status_max_age: Duration::ZERO,
            tip_max_age: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Lock,
    Claim,
    Refund,
}

/// What the chain says about one swap, with the transactions involved.
#[derive(Debug, Clone)]
struct Found {
    status: HtlcStatus,
    lock_tx: Option<B256>,
    tip: ScanTip,
}

/// The Ethereum adapter: one account, one HTLC contract, many concurrent swaps.
///
/// `Debug` shows the account and the configuration, never the key.
pub struct EthChain {
    cfg: EthConfig,
    provider: DynProvider,
    /// `None` for a watch-only adapter (see [`EthChain::watch_only`]).
    signer: Option<PrivateKeySigner>,
    /// The account: the signer's, or the one a watch-only adapter observes for.
    account: Address,
    nonces: NonceManager,
    chain_id: OnceCell<u64>,
    /// Set once [`EthChain::verify`] passed; every send waits for it.
    verified: OnceCell<()>,
    scanner: Mutex<Scanner>,
    inflight: Mutex<HashMap<(B256, Op), B256>>,
    token_flow: Mutex<()>,
    per_swap: std::sync::Mutex<HashMap<B256, Arc<Mutex<()>>>>,
    decimals: Mutex<HashMap<Address, Option<u8>>>,
    /// JSON-RPC calls sent through `provider`.
    calls: Arc<std::sync::atomic::AtomicU64>,
    /// The same, per JSON-RPC method.
    calls_by_method: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
    /// The last completed shared scan.
    refreshed: std::sync::Mutex<Option<Refreshed>>,
    /// The last tip read, and when.
    /// Held while reading, so concurrent callers wait for one read.
    tip_cache: Mutex<Option<(std::time::Instant, ChainTip)>>,
    /// Claims waiting to be sent together (see `send_claim_batched`).
    claim_queue: std::sync::Mutex<Vec<ClaimRequest>>,
    /// Held by the caller that sends the queued claims.
    claimer: Mutex<()>,
    /// The last EIP-1559 fee estimate and the block it was made on.
    fee_estimate: std::sync::Mutex<Option<(B256, alloy::eips::eip1559::Eip1559Estimation)>>,
    /// Answers that cannot change for a given block (keyed by its hash): storage slots of the
    /// HTLC contract and locks found by hashlock. Only the newest block's are kept.
    at_block: std::sync::Mutex<AtBlock>,
}

/// When a shared scan started and finished, and the block it reached.
#[derive(Debug, Clone, Copy)]
struct Refreshed {
    started: std::time::Instant,
    finished: std::time::Instant,
    tip: ScanTip,
}

/// How fresh a scan a question needs.
#[derive(Debug, Clone, Copy)]
enum Freshness {
    /// Younger than [`EthConfig::status_max_age`] (status polls).
    Recent,
    /// Started at or after this instant (actions: what the chain said when they were asked).
    Since(std::time::Instant),
}

/// See `EthChain::at_block`.
#[derive(Debug, Default)]
struct AtBlock {
    hash: B256,
    slots: HashMap<B256, U256>,
    locks: HashMap<(B256, u64), Vec<FoundLock>>,
}

impl AtBlock {
    /// The cache for block `hash` (emptied when the block changed).
    fn at(&mut self, hash: B256) -> &mut Self {
        if self.hash != hash {
            *self = AtBlock {
                hash,
                ..AtBlock::default()
            };
        }
        self
    }
}

/// Claims one transaction carries at most (~7,000 gas each: well within a block).
const MAX_CLAIM_BATCH: usize = 100;

/// Claims this close to their expiry (seconds of chain time) are never batched.
const CLAIM_ALONE_WITHIN_SECS: u64 = 600;

/// A claim waiting in [`EthChain::claim_queue`] for the next claim transaction. `Debug` leaves
/// the preimage out.
struct ClaimRequest {
    h: EthHtlc,
    preimage: B256,
    /// The transaction carrying it and how many claims that transaction has, or the error.
    reply: oneshot::Sender<Result<(B256, usize), EthError>>,
}

impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("id", &self.h.id())
            .field("preimage", &"<redacted>")
            .finish()
    }
}

/// The call data of a single claim of `h`.
fn claim_input(h: &EthHtlc, preimage: B256) -> Bytes {
    if h.is_eth() {
        HTLC::claimCall {
            preimage,
            amount: h.amount,
            sender: h.sender,
            recipient: h.recipient,
            expiry: U256::from(h.expiry),
        }
        .abi_encode()
        .into()
    } else {
        HTLC::claimTokenCall {
            preimage,
            token: h.token,
            amount: h.amount,
            sender: h.sender,
            recipient: h.recipient,
            expiry: U256::from(h.expiry),
        }
        .abi_encode()
        .into()
    }
}

/// The call data of `claimBatch` for these swaps and preimages, grouped by (token, recipient)
/// so that each pair is paid once.
fn claim_batch_input(mut claims: Vec<(EthHtlc, B256)>) -> Bytes {
    claims.sort_by_key(|(h, _)| (h.token, h.recipient));
    HTLC::claimBatchCall {
        preimages: claims.iter().map(|(_, pre)| *pre).collect(),
        swaps: claims.iter().map(|(h, _)| h.as_batch_entry()).collect(),
    }
    .abi_encode()
    .into()
}

fn txref(h: B256) -> TxRef {
    TxRef(format!("{h:#x}"))
}

fn connect_url(url: &str) -> Result<alloy::transports::http::reqwest::Url, EthError> {
    url.parse()
        .map_err(|e| EthError::InvalidParams(format!("bad rpc url {url:?}: {e}")))
}

/// Deploys the HTLC contract from `signer`'s account and returns its address (after checking
/// the receipt and the deployed code).
pub async fn deploy_htlc(rpc_url: &str, signer: PrivateKeySigner) -> Result<Address, EthError> {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(connect_url(rpc_url)?);
    let contract = HTLC::deploy(&provider).await.map_err(|e| {
        EthError::Rejected(crate::error::scrub_urls(&format!("deploy failed: {e}")))
    })?;
    let addr = *contract.address();
    let code = provider.get_code_at(addr).await.map_err(rpc_err)?;
    if code.as_ref() != HTLC::DEPLOYED_BYTECODE.as_ref() {
        return Err(EthError::Rejected(
            "deployed code differs from the artifact".into(),
        ));
    }
    Ok(addr)
}

impl std::fmt::Debug for EthChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthChain")
            .field("account", &self.account)
            .field("watch_only", &self.signer.is_none())
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl EthChain {
    /// An adapter sending from `signer`'s account, after checking that the node answers, is on
    /// the expected chain (when [`EthConfig::expected_chain_id`] is set) and that the code at
    /// [`EthConfig::htlc`] is exactly this crate's HTLC contract. Use this, not
    /// [`EthChain::new`], for real funds.
    pub async fn connect(cfg: EthConfig, signer: PrivateKeySigner) -> Result<Self, EthError> {
        let chain = Self::new(cfg, signer)?;
        chain.verify().await?;
        Ok(chain)
    }

    /// Checks the node's chain id (if configured) and the contract code at the HTLC address.
    /// Every transaction this adapter sends waits for this check to have passed once (see
    /// `send`), so an adapter made by [`EthChain::new`] never sends funds to a wrong address
    /// either; calling it early only makes the refusal come before anything is agreed.
    pub async fn verify(&self) -> Result<(), EthError> {
        self.verified
            .get_or_try_init(|| self.verify_now())
            .await
            .copied()
    }

    async fn verify_now(&self) -> Result<(), EthError> {
        let id = self.chain_id().await?;
        if let Some(want) = self.cfg.expected_chain_id {
            if id != want {
                return Err(EthError::WrongChain {
                    node: id,
                    expected: want,
                });
            }
        }
        let code = self
            .provider
            .get_code_at(self.cfg.htlc)
            .await
            .map_err(rpc_err)?;
        if code.as_ref() != HTLC::DEPLOYED_BYTECODE.as_ref() {
            return Err(EthError::NotHtlcContract {
                address: self.cfg.htlc.to_string(),
            });
        }
        Ok(())
    }

    /// An adapter sending from `signer`'s account, without checking the node or the contract
    /// yet (see [`EthChain::connect`]): the check runs before its first transaction.
    pub fn new(cfg: EthConfig, signer: PrivateKeySigner) -> Result<Self, EthError> {
        Self::build(cfg, signer.address(), Some(signer))
    }

    /// An adapter that only observes, for `account` (statuses, tips, secrets revealed by
    /// claims): it holds no key; every lock, claim or refund is refused before anything is
    /// sent. For services that watch swaps.
    pub fn watch_only(cfg: EthConfig, account: Address) -> Result<Self, EthError> {
        Self::build(cfg, account, None)
    }

    /// How many swaps the shared scan watches (finished swaps are forgotten by the engine).
    pub async fn watched_swaps(&self) -> usize {
        self.scanner.lock().await.watched_len()
    }

    /// True for an adapter made by [`EthChain::watch_only`].
    pub fn is_watch_only(&self) -> bool {
        self.signer.is_none()
    }

    fn signer(&self) -> Result<&PrivateKeySigner, EthError> {
        self.signer.as_ref().ok_or_else(|| {
            EthError::InvalidParams(
                "this adapter is watch-only: it holds no key and sends nothing".into(),
            )
        })
    }

    fn build(
        cfg: EthConfig,
        account: Address,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self, EthError> {
        let counting = crate::counting::CountingLayer::default();
        let calls = counting.calls.clone();
        let calls_by_method = counting.by_method.clone();
        let client = alloy::rpc::client::ClientBuilder::default()
            .layer(counting)
            .http(connect_url(&cfg.rpc_url)?);
        let builder = ProviderBuilder::new().disable_recommended_fillers();
        let provider = match &signer {
            Some(s) => builder
                .wallet(EthereumWallet::from(s.clone()))
                .connect_client(client)
                .erased(),
            None => builder.connect_client(client).erased(),
        };
        Ok(Self {
            calls,
            calls_by_method,
            refreshed: std::sync::Mutex::new(None),
            tip_cache: Mutex::new(None),
            at_block: std::sync::Mutex::new(AtBlock::default()),
            fee_estimate: std::sync::Mutex::new(None),
            claim_queue: std::sync::Mutex::new(Vec::new()),
            claimer: Mutex::new(()),
            nonces: NonceManager::new(account),
            account,
            cfg,
            provider,
            signer,
            chain_id: OnceCell::new(),
            verified: OnceCell::new(),
            scanner: Mutex::new(Scanner::default()),
            inflight: Mutex::new(HashMap::new()),
            token_flow: Mutex::new(()),
            per_swap: std::sync::Mutex::new(HashMap::new()),
            decimals: Mutex::new(HashMap::new()),
        })
    }

    /// Deploys the HTLC contract (see [`deploy_htlc`]).
    pub async fn deploy(rpc_url: &str, signer: PrivateKeySigner) -> Result<Address, EthError> {
        deploy_htlc(rpc_url, signer).await
    }

    /// This adapter's account (the sender of its locks, the payer of its gas).
    pub fn address(&self) -> Address {
        self.account
    }

    /// The account as the engine's [`Account`].
    pub fn account(&self) -> Account {
        Account::Evm(core_addr(self.address()))
    }

    /// How many JSON-RPC calls this adapter has sent to its node through its provider so far
    /// (every request, failed ones included; calls made by others through [`Self::provider`]
    /// count too).
    pub fn rpc_calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Self::rpc_calls`] per JSON-RPC method.
    pub fn rpc_calls_by_method(&self) -> std::collections::BTreeMap<String, u64> {
        self.calls_by_method
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The provider (with this account's wallet).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The configuration.
    pub fn config(&self) -> &EthConfig {
        &self.cfg
    }

    /// True while swap `id` is locked in the contract (its storage slot is 1).
    pub async fn is_locked(&self, id: B256) -> Result<bool, EthError> {
        let v = self
            .provider
            .get_storage_at(self.cfg.htlc, id.into())
            .await
            .map_err(rpc_err)?;
        Ok(v == U256::from(1))
    }

    async fn chain_id(&self) -> Result<u64, EthError> {
        self.chain_id
            .get_or_try_init(|| async { self.provider.get_chain_id().await.map_err(rpc_err) })
            .await
            .copied()
    }

    /// Estimates gas and fees, takes a nonce and sends. Returns the transaction hash.
    /// Nothing is sent before [`EthChain::verify`] has passed: funds sent to an address that
    /// holds no HTLC contract (a typo in a config) would be lost.
    async fn send(&self, to: Address, input: Bytes, value: U256) -> Result<B256, EthError> {
        self.signer()?;
        self.verify().await?;
        let chain_id = self.chain_id().await?;
        let base = TransactionRequest::default()
            .with_from(self.address())
            .with_to(to)
            .with_input(input)
            .with_value(value);
        // Against the latest block (by number: some nodes read an omitted tag as `pending`),
        // not the pending one: a competing transaction in the mempool (say, someone else's
        // claim that may never be mined) must not stop ours.
        let latest = scan::latest(&self.provider).await?;
        let gas = self
            .provider
            .estimate_gas(base.clone())
            .block(alloy::eips::BlockId::number(latest.number))
            .await
            .map_err(rpc_err)?;
        let base_fee = latest.base_fee.unwrap_or_default();
        let cap = self.cfg.max_fee_per_gas;
        if base_fee > cap {
            return Err(EthError::FeeCap { base_fee, cap });
        }
        // One fee estimate per block, shared by every transaction sent on top of it.
        let cached = self
            .fee_estimate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .filter(|(block, _)| *block == latest.hash)
            .map(|(_, est)| est);
        let est = match cached {
            Some(est) => est,
            None => {
                let est = self
                    .provider
                    .estimate_eip1559_fees()
                    .await
                    .map_err(rpc_err)?;
                *self
                    .fee_estimate
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((latest.hash, est));
                est
            }
        };
        let max_fee = est.max_fee_per_gas.min(cap).max(base_fee);
        let prio = est
            .max_priority_fee_per_gas
            .min(self.cfg.max_priority_fee_per_gas)
            .min(max_fee);
        let tx = base
            .with_chain_id(chain_id)
            .with_gas_limit(gas + gas / 5 + 10_000)
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(prio);
        self.nonces
            .send_with(&self.provider, |nonce| async move {
                let pending = self
                    .provider
                    .send_transaction(tx.with_nonce(nonce))
                    .await
                    .map_err(rpc_err)?;
                Ok(*pending.tx_hash())
            })
            .await
    }

    /// Waits for the receipt; a reverted transaction is an error.
    ///
    /// With a shared tip ([`EthConfig::tip_max_age`] above zero, read through [`Chain::tip`]
    /// by every waiter), the receipt is asked for again only when the chain has a new block: a
    /// thousand swaps waiting for their transactions cost a thousand receipt reads per block,
    /// not per poll interval. Without one, a tip read would cost as much as the receipt read it
    /// saves, so the receipt is read every poll.
    async fn wait(&self, tx: B256) -> Result<TransactionReceipt, EthError> {
        let deadline = tokio::time::Instant::now() + self.cfg.receipt_timeout;
        let mut checked_at: Option<Height> = None;
        loop {
            let tip = if self.cfg.tip_max_age.is_zero() {
                None
            } else {
                match Chain::tip(self).await {
                    Ok(t) => Some(t.height),
                    Err(e) if e.is_transient() => None,
                    Err(e) => return Err(EthError::Rpc(e.to_string())),
                }
            };
            let receipt = if tip.is_none() || tip != checked_at {
                checked_at = tip;
                self.provider
                    .get_transaction_receipt(tx)
                    .await
                    .map_err(rpc_err)?
            } else {
                None
            };
            if let Some(r) = receipt {
                if r.status() {
                    return Ok(r);
                }
                let reason = self.revert_reason_of(tx, r.block_number).await;
                tracing::warn!(chain = "eth", %tx, reason = ?reason, "transaction reverted");
                return Err(EthError::Reverted {
                    tx: format!("{tx:#x}"),
                    reason,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EthError::Timeout(format!("{tx:#x}")));
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
    }

    /// Why a mined transaction reverted, by replaying it as a call against the state and
    /// environment of its own block (best effort: the state is the one after the block).
    async fn revert_reason_of(&self, tx: B256, block: Option<u64>) -> Option<String> {
        use alloy::consensus::Transaction as _;
        let sent = self.provider.get_transaction_by_hash(tx).await.ok()??;
        let block = block?;
        let req = TransactionRequest::default()
            .with_from(sent.inner.signer())
            .with_to(sent.inner.to()?)
            .with_input(sent.inner.input().clone())
            .with_value(sent.inner.value());
        match self
            .provider
            .call(req)
            .block(alloy::eips::BlockId::number(block))
            .await
        {
            Ok(_) => Some("unknown (a replay succeeds)".into()),
            Err(e) => Some(match rpc_err(e) {
                EthError::WouldRevert(m) => m.to_string(),
                other => other.to_string(),
            }),
        }
    }

    /// Sends and waits for a successful receipt.
    async fn send_and_wait(
        &self,
        to: Address,
        input: Bytes,
        value: U256,
    ) -> Result<B256, EthError> {
        let tx = self.send(to, input, value).await?;
        self.wait(tx).await?;
        Ok(tx)
    }

    /// A previous transaction for (id, op) that the node still knows, waited for.
    async fn resume_inflight(&self, id: B256, op: Op) -> Result<Option<B256>, EthError> {
        let known = self.inflight.lock().await.get(&(id, op)).copied();
        let Some(tx) = known else { return Ok(None) };
        let seen = self
            .provider
            .get_transaction_by_hash(tx)
            .await
            .map_err(rpc_err)?;
        if seen.is_none() {
            // Dropped (evicted or reorged out): forget it and the nonce counter.
            self.inflight.lock().await.remove(&(id, op));
            self.nonces.reset().await;
            return Ok(None);
        }
        match self.wait(tx).await {
            Ok(_) => Ok(Some(tx)),
            Err(e @ EthError::Reverted { .. }) => {
                self.inflight.lock().await.remove(&(id, op));
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Brings the shared scan up to date (watching `h`) as `fresh` asks, and reads the swap's
    /// state from the scanned events. With `verify_slot` (actions), the contract's storage
    /// slot of the swap is read too and must agree with the events.
    async fn find(
        &self,
        h: &EthHtlc,
        p: &HtlcParams,
        mempool: bool,
        fresh: Freshness,
        verify_slot: bool,
    ) -> Result<Found, EthError> {
        let id = h.id();
        let (tip, events, pending, read_slot) = {
            let mut scanner = self.scanner.lock().await;
            scanner.watch(id, h.hashlock, p.watch_from.0);
            let last = *self
                .refreshed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let reuse = last
                .filter(|_| !scanner.has_backfill())
                .filter(|r| match fresh {
                    Freshness::Recent => {
                        !self.cfg.status_max_age.is_zero()
                            && r.finished.elapsed() < self.cfg.status_max_age
                    }
                    Freshness::Since(asked) => r.started >= asked,
                })
                .map(|r| r.tip);
            let (tip, reorged) = match reuse {
                Some(tip) => (tip, false),
                None => {
                    let started = std::time::Instant::now();
                    // A refresh that fails half way (after rolling back a reorg) leaves a scan
                    // nobody may answer from until one completes.
                    *self
                        .refreshed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    let r = scanner
                        .refresh(&self.provider, self.cfg.htlc, self.cfg.log_chunk)
                        .await?;
                    if self.cfg.mempool_preimages {
                        scanner.set_pending_claims(self.pending_claims().await);
                    }
                    *self
                        .refreshed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Refreshed {
                        started,
                        finished: std::time::Instant::now(),
                        tip: r.0,
                    });
                    r
                }
            };
            if reorged {
                self.nonces.reset().await;
            }
            let pending = if mempool {
                scanner.pending_claim(h.hashlock)
            } else {
                None
            };
            // The first look at a swap reads its slot too: that is how a lock made before
            // the watch window is found (the scan sees everything after it).
            let read_slot = verify_slot || !scanner.slot_seen(id);
            (tip, scanner.events(id), pending, read_slot)
        };
        let slot_locked = if read_slot {
            let locked = self.slot_at(id, tip.hash).await? == U256::from(1);
            self.scanner.lock().await.set_slot_seen(id);
            Some(locked)
        } else {
            None
        };
        let confs = |block: u64| (tip.number.saturating_sub(block) + 1) as u32;
        let last_lock = events
            .iter()
            .rposition(|e| matches!(e.kind, EventKind::Locked(_)));
        let lock_event = match last_lock {
            Some(i) => Some(events[i].clone()),
            None if slot_locked == Some(true) || !events.is_empty() => {
                // Locked before the watch window (watch_from was too late; the slot is set, or
                // a claim or refund was seen): search backwards
                // from watch_from, one log chunk at a time, for the newest lock.
                let chunk = self.cfg.log_chunk.max(1);
                let mut hi = p.watch_from.0.min(tip.number);
                loop {
                    let lo = hi.saturating_sub(chunk - 1);
                    let found =
                        scan::logs_for(&self.provider, self.cfg.htlc, &[id], lo, hi, chunk).await?;
                    let newest = found
                        .into_iter()
                        .filter(|e| matches!(e.kind, EventKind::Locked(_)))
                        .max_by_key(|e| (e.block, e.log_index));
                    if newest.is_some() || lo == 0 {
                        break newest;
                    }
                    hi = lo - 1;
                }
            }
            None => None,
        };
        let after: Vec<_> = match last_lock {
            Some(i) => events[i + 1..].to_vec(),
            // The lock (if found) predates every scanned event.
            None => events.clone(),
        };
        // Without the slot, the events decide: locked while nothing followed the last lock.
        let locked = slot_locked.unwrap_or(lock_event.is_some() && after.is_empty());
        let status = match (&lock_event, locked) {
            (None, false) => HtlcStatus::Absent,
            (None, true) => {
                return Err(EthError::Inconsistent(format!(
                    "swap {id:#x} is locked but no Locked event was found"
                )))
            }
            (Some(lock), true) => {
                if !after.is_empty() {
                    return Err(EthError::Inconsistent(format!(
                        "swap {id:#x} is locked but was spent after its last lock"
                    )));
                }
                let EventKind::Locked(onchain) = &lock.kind else {
                    return Err(EthError::Inconsistent("not a lock event".into()));
                };
                HtlcStatus::Funded {
                    lock: ObservedLock {
                        txref: txref(lock.tx),
                        asset: p.asset.clone(),
                        amount: onchain.core_amount(&p.asset),
                        sender: Account::Evm(core_addr(onchain.sender)),
                        recipient: Account::Evm(core_addr(onchain.recipient)),
                        hashlock: onchain.core_hashlock(),
                        expiry: Expiry::Time(Timestamp(onchain.expiry)),
                    },
                    confirmations: confs(lock.block),
                }
            }
            (Some(_), false) => match after.first() {
                Some(e) => match &e.kind {
                    EventKind::Claimed(pre) => {
                        let preimage = Preimage::from_bytes(pre.0);
                        if Sha256::digest(pre.0).as_slice() != h.hashlock.as_slice() {
                            return Err(EthError::Inconsistent(
                                "claim preimage does not match the hashlock".into(),
                            ));
                        }
                        HtlcStatus::Claimed {
                            preimage,
                            txref: txref(e.tx),
                            confirmations: confs(e.block),
                        }
                    }
                    EventKind::Refunded => HtlcStatus::Refunded {
                        txref: txref(e.tx),
                        confirmations: confs(e.block),
                    },
                    EventKind::Locked(_) => {
                        return Err(EthError::Inconsistent("lock after lock".into()))
                    }
                },
                None => {
                    return Err(EthError::Inconsistent(format!(
                        "swap {id:#x} has a lock event but its slot is empty"
                    )))
                }
            },
        };
        let status = match (status, pending) {
            (HtlcStatus::Funded { .. }, Some((pre, tx)))
                if Sha256::digest(pre.0).as_slice() == h.hashlock.as_slice() =>
            {
                HtlcStatus::Claimed {
                    preimage: Preimage::from_bytes(pre.0),
                    txref: txref(tx),
                    confirmations: 0,
                }
            }
            (other, _) => other,
        };
        Ok(Found {
            status,
            lock_tx: lock_event.map(|e| e.tx),
            tip,
        })
    }

    /// Claims waiting in the node's mempool (`txpool_content`), by hashlock: the preimage and
    /// the transaction. Read once per shared scan; nodes that do not expose the txpool simply
    /// yield nothing.
    async fn pending_claims(&self) -> HashMap<B256, (B256, B256)> {
        let mut out = HashMap::new();
        let Ok(pool) = self
            .provider
            .raw_request::<_, serde_json::Value>("txpool_content".into(), ())
            .await
        else {
            return out;
        };
        let Some(pending) = pool.get("pending").and_then(|v| v.as_object()) else {
            return out;
        };
        for tx in pending
            .values()
            .filter_map(|by_nonce| by_nonce.as_object())
            .flat_map(|m| m.values())
        {
            let to = tx.get("to").and_then(|v| v.as_str()).unwrap_or_default();
            if to.parse::<Address>().ok() != Some(self.cfg.htlc) {
                continue;
            }
            let input = tx
                .get("input")
                .or_else(|| tx.get("data"))
                .and_then(|v| v.as_str())
                .and_then(|s| hex::decode(s.trim_start_matches("0x")).ok());
            let hash = tx
                .get("hash")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<B256>().ok());
            let (Some(input), Some(hash)) = (input, hash) else {
                continue;
            };
            for pre in claim_preimages(&input) {
                let hashlock = B256::from_slice(&Sha256::digest(pre.0));
                out.insert(hashlock, (pre, hash));
            }
        }
        out
    }

    /// [`Self::find`] for actions: mined state only, from a scan that started after the call,
    /// checked against the contract's storage. A claim still in the mempool is never taken as
    /// done: it may never be mined (a counterparty could broadcast a low-fee claim precisely
    /// to stop us from claiming or refunding in time).
    async fn find_retrying(&self, h: &EthHtlc, p: &HtlcParams) -> Result<Found, EthError> {
        let asked = std::time::Instant::now();
        self.find_retrying_with(h, p, false, Freshness::Since(asked), true)
            .await
    }

    async fn find_retrying_with(
        &self,
        h: &EthHtlc,
        p: &HtlcParams,
        mempool: bool,
        fresh: Freshness,
        verify_slot: bool,
    ) -> Result<Found, EthError> {
        let mut last = None;
        for attempt in 0..3 {
            // A retry after an inconsistent answer always scans afresh.
            let fresh = if attempt == 0 {
                fresh
            } else {
                Freshness::Since(std::time::Instant::now())
            };
            match self.find(h, p, mempool, fresh, verify_slot).await {
                Err(e @ EthError::Inconsistent(_)) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| EthError::Inconsistent("no answer".into())))
    }

    /// For an ERC-20 swap: the token's `decimals()` must be the one the terms state (amounts in
    /// the terms are only meaningful with the right decimals). Tokens without `decimals()`
    /// (it is optional in ERC-20) cannot be checked and are accepted.
    async fn check_decimals(&self, p: &HtlcParams) -> Result<(), EthError> {
        let swap_core::types::Asset::Erc20 { token, decimals } = &p.asset else {
            return Ok(());
        };
        let token = Address::from(token.0);
        let cached = self.decimals.lock().await.get(&token).copied();
        let onchain = match cached {
            Some(d) => d,
            None => {
                let d = match IERC20Permit::new(token, &self.provider)
                    .decimals()
                    .call()
                    .await
                {
                    Ok(d) => Some(d),
                    Err(alloy::contract::Error::TransportError(e)) if !e.is_error_resp() => {
                        return Err(EthError::Rpc(crate::error::scrub_urls(&e.to_string())))
                    }
                    Err(_) => None,
                };
                self.decimals.lock().await.insert(token, d);
                d
            }
        };
        match onchain {
            Some(d) if d != *decimals => Err(EthError::InvalidParams(format!(
                "token {token} has {d} decimals, the terms say {decimals}"
            ))),
            _ => Ok(()),
        }
    }

    /// Serializes actions on one swap (two concurrent `lock` calls for the same swap must not
    /// both send).
    async fn swap_guard(&self, id: B256) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = match self.per_swap.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(id).or_default().clone()
        };
        m.lock_owned().await
    }

    /// The swap's state (the engine's [`Chain::htlc_status`] with this crate's error type).
    ///
    /// With [`EthConfig::mempool_preimages`], a claim still in the node's mempool is reported
    /// as `Claimed` with 0 confirmations (the preimage is public from then on). `lock`, `claim`
    /// and `refund` never rely on it: they act on mined state only.
    pub async fn status(&self, p: &HtlcParams) -> Result<HtlcStatus, EthError> {
        Ok(self.status_found(p).await?.status)
    }

    async fn status_found(&self, p: &HtlcParams) -> Result<Found, EthError> {
        let h = EthHtlc::from_params(p)?;
        self.check_decimals(p).await?;
        self.find_retrying_with(&h, p, self.cfg.mempool_preimages, Freshness::Recent, false)
            .await
    }

    /// Locks the swap (idempotent; see [`Chain::lock`]). Returns the lock transaction.
    pub async fn lock_htlc(&self, p: &HtlcParams) -> Result<B256, EthError> {
        let h = EthHtlc::from_params(p)?;
        self.check_decimals(p).await?;
        if h.sender != self.address() {
            return Err(EthError::InvalidParams(format!(
                "sender {} is not this adapter's account {}",
                h.sender,
                self.address()
            )));
        }
        let id = h.id();
        let _swap_guard = self.swap_guard(id).await;
        // Held for the whole ERC-20 flow so allowances of concurrent swaps never clash.
        let _token_guard = if h.is_eth() {
            None
        } else {
            Some(self.token_flow.lock().await)
        };
        let found = self.find_retrying(&h, p).await?;
        if let Some(tx) = found.lock_tx {
            // Funded, or already claimed or refunded: never lock the same parameters twice.
            return Ok(tx);
        }
        if found.tip.timestamp >= h.expiry {
            return Err(EthError::InvalidParams(format!(
                "expiry {} is not after the chain's time {}: refusing to lock",
                h.expiry, found.tip.timestamp
            )));
        }
        if let Some(tx) = self.resume_inflight(id, Op::Lock).await? {
            return Ok(tx);
        }
        let hashlock = h.hashlock;
        let expiry = U256::from(h.expiry);
        let (input, value) = if h.is_eth() {
            let call = HTLC::lockCall {
                hashlock,
                recipient: h.recipient,
                expiry,
            };
            (call.abi_encode(), h.amount)
        } else {
            (self.token_lock_input(&h).await?, U256::ZERO)
        };
        let tx = self.send(self.cfg.htlc, input.into(), value).await?;
        self.inflight.lock().await.insert((id, Op::Lock), tx);
        tracing::info!(chain = "eth", swap_id = %p.swap_id, tx = %tx, "htlc lock sent");
        match self.wait(tx).await {
            Ok(_) => Ok(tx),
            Err(e @ EthError::Reverted { .. }) => {
                // Reverted: if the swap is locked anyway (an earlier send of ours won the race),
                // that lock is the answer; otherwise the revert is the error.
                match self.find_retrying(&h, p).await {
                    Ok(Found {
                        lock_tx: Some(t), ..
                    }) => Ok(t),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The call data for an ERC-20 lock: with a permit when the token accepts an EIP-2612
    /// permit (checked by calling it), otherwise after an `approve` of exactly the amount (when
    /// the allowance is short).
    async fn token_lock_input(&self, h: &EthHtlc) -> Result<Vec<u8>, EthError> {
        let token = IERC20Permit::new(h.token, &self.provider);
        let me = self.address();
        let allowance = token
            .allowance(me, self.cfg.htlc)
            .call()
            .await
            .map_err(|e| {
                EthError::Rejected(crate::error::scrub_urls(&format!("allowance(): {e}")))
            })?;
        let plain = HTLC::lockTokenCall {
            hashlock: h.hashlock,
            token: h.token,
            amount: h.amount,
            recipient: h.recipient,
            expiry: U256::from(h.expiry),
        };
        if allowance >= h.amount {
            return Ok(plain.abi_encode());
        }
        let permit = match (
            token.nonces(me).call().await,
            token.DOMAIN_SEPARATOR().call().await,
        ) {
            (Ok(nonce), Ok(domain)) => Some((nonce, domain)),
            _ => None,
        };
        if let Some((nonce, domain)) = permit {
            let now = scan::latest(&self.provider).await?.timestamp;
            let deadline = U256::from(now + 3600);
            let msg = Permit {
                owner: me,
                spender: self.cfg.htlc,
                value: h.amount,
                nonce,
                deadline,
            };
            let mut buf = Vec::with_capacity(66);
            buf.extend_from_slice(b"\x19\x01");
            buf.extend_from_slice(domain.as_slice());
            buf.extend_from_slice(msg.eip712_hash_struct().as_slice());
            let digest = keccak256(&buf);
            let sig = self
                .signer()?
                .sign_hash(&digest)
                .await
                .map_err(|e| EthError::Rejected(format!("signing permit: {e}")))?;
            let (v, r, s) = (27 + u8::from(sig.v()), sig.r().into(), sig.s().into());
            // Having `nonces()` and `DOMAIN_SEPARATOR()` does not make a token EIP-2612 (DAI's
            // `permit` takes other arguments): the contract ignores a failed permit, so try this
            // one first (anyone may call `permit`; nothing is sent) and fall back to `approve`.
            let works = token
                .permit(me, self.cfg.htlc, h.amount, deadline, v, r, s)
                .call()
                .await
                .is_ok();
            if works {
                let call = HTLC::lockTokenWithPermitCall {
                    hashlock: h.hashlock,
                    token: h.token,
                    amount: h.amount,
                    recipient: h.recipient,
                    expiry: U256::from(h.expiry),
                    deadline,
                    v,
                    r,
                    s,
                };
                return Ok(call.abi_encode());
            }
            tracing::info!(chain = "eth", token = %h.token, "token has no EIP-2612 permit: using approve");
        }
        let approve = IERC20Permit::approveCall {
            spender: self.cfg.htlc,
            value: h.amount,
        };
        self.send_and_wait(h.token, approve.abi_encode().into(), U256::ZERO)
            .await?;
        Ok(plain.abi_encode())
    }

    /// Claims the swap with `preimage` (idempotent; see [`Chain::claim`]).
    pub async fn claim_htlc(&self, p: &HtlcParams, preimage: &Preimage) -> Result<B256, EthError> {
        let h = EthHtlc::from_params(p)?;
        if !p.hashlock.matches(preimage) {
            return Err(EthError::InvalidParams(
                "preimage does not match the hashlock".into(),
            ));
        }
        let id = h.id();
        let _swap_guard = self.swap_guard(id).await;
        let found = self.find_retrying(&h, p).await?;
        match &found.status {
            HtlcStatus::Claimed { txref, .. } => return parse_txref(txref),
            HtlcStatus::Refunded { .. } => {
                return Err(EthError::Impossible("swap was refunded".into()))
            }
            HtlcStatus::Absent => return Err(EthError::NotReady("swap is not locked".into())),
            HtlcStatus::Funded { .. } => {}
        }
        if found.tip.timestamp >= h.expiry {
            return Err(EthError::Impossible("swap expired: cannot claim".into()));
        }
        if let Some(tx) = self.resume_inflight(id, Op::Claim).await? {
            return Ok(tx);
        }
        let pre = B256::from(*preimage.as_bytes());
        // A batch is all or nothing: a claim close to its expiry goes alone, so that nothing
        // in someone else's batch (an entry claimed or expired meanwhile) can delay it.
        let sent = if h.expiry.saturating_sub(found.tip.timestamp) < CLAIM_ALONE_WITHIN_SECS {
            self.send(self.cfg.htlc, claim_input(&h, pre), U256::ZERO)
                .await
                .map(|tx| (tx, 1))
        } else {
            self.send_claim_batched(h, pre).await
        };
        let (tx, batched) = match sent {
            Ok(sent) => sent,
            Err(e) => return self.after_failure(&h, p, e, true).await,
        };
        self.inflight.lock().await.insert((id, Op::Claim), tx);
        tracing::info!(chain = "eth", swap_id = %p.swap_id, tx = %tx, batch = batched, "htlc claim sent");
        match self.wait(tx).await {
            Ok(_) => Ok(tx),
            Err(EthError::Reverted { .. }) if batched > 1 => {
                // A batch is all or nothing: one entry that became unclaimable after the
                // estimate reverts the others too. Claim this one on its own.
                self.inflight.lock().await.remove(&(id, Op::Claim));
                tracing::warn!(chain = "eth", swap_id = %p.swap_id, tx = %tx, "claim batch reverted; claiming alone");
                let tx = match self
                    .send(self.cfg.htlc, claim_input(&h, pre), U256::ZERO)
                    .await
                {
                    Ok(tx) => tx,
                    Err(e) => return self.after_failure(&h, p, e, true).await,
                };
                self.inflight.lock().await.insert((id, Op::Claim), tx);
                match self.wait(tx).await {
                    Ok(_) => Ok(tx),
                    Err(e) => self.after_failure(&h, p, e, true).await,
                }
            }
            Err(e) => self.after_failure(&h, p, e, true).await,
        }
    }

    /// Sends the claim of `h`, together with the other claims asked for meanwhile: concurrent
    /// claims of this adapter become one `claimBatch` transaction (~7,000 gas per extra swap
    /// instead of ~32,000 each) without waiting for anything. The caller that gets the
    /// `claimer` lock sends every queued claim (up to [`MAX_CLAIM_BATCH`] per transaction)
    /// while the others wait for its answer; claims queued while it sends go with the next.
    /// Returns the transaction and how many claims it carries.
    async fn send_claim_batched(&self, h: EthHtlc, pre: B256) -> Result<(B256, usize), EthError> {
        let (reply, mut answer) = oneshot::channel();
        self.claim_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ClaimRequest {
                h,
                preimage: pre,
                reply,
            });
        let interrupted =
            || EthError::Rpc("the claim batch carrying this claim was interrupted; retry".into());
        tokio::select! {
            a = &mut answer => return a.unwrap_or_else(|_| Err(interrupted())),
            claimer = self.claimer.lock() => {
                match answer.try_recv() {
                    Ok(a) => return a,
                    Err(oneshot::error::TryRecvError::Closed) => return Err(interrupted()),
                    // Still queued: send the queue (ours included).
                    Err(oneshot::error::TryRecvError::Empty) => self.send_claim_queue().await,
                }
                drop(claimer);
            }
        }
        answer.await.unwrap_or_else(|_| Err(interrupted()))
    }

    /// The batch leader's work (with `claimer` held): sends every queued claim.
    async fn send_claim_queue(&self) {
        loop {
            let batch: Vec<ClaimRequest> = {
                let mut q = self
                    .claim_queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                q.retain(|r| !r.reply.is_closed());
                let n = q.len().min(MAX_CLAIM_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            if batch.len() == 1 {
                let r = &batch[0];
                let sent = self
                    .send(self.cfg.htlc, claim_input(&r.h, r.preimage), U256::ZERO)
                    .await;
                for r in batch {
                    let _ = r.reply.send(sent.clone().map(|tx| (tx, 1)));
                }
                continue;
            }
            let input = claim_batch_input(batch.iter().map(|r| (r.h, r.preimage)).collect());
            let n = batch.len();
            match self.send(self.cfg.htlc, input, U256::ZERO).await {
                Ok(tx) => {
                    tracing::info!(chain = "eth", tx = %tx, claims = n, "claim batch sent");
                    for r in batch {
                        let _ = r.reply.send(Ok((tx, n)));
                    }
                }
                Err(e) => {
                    // The estimate failed for the batch (one entry would revert, say): each
                    // claim goes on its own, so the good ones are not held back.
                    tracing::warn!(chain = "eth", claims = n, error = %e, "claim batch not sent; claiming one by one");
                    for r in batch {
                        let sent = self
                            .send(self.cfg.htlc, claim_input(&r.h, r.preimage), U256::ZERO)
                            .await;
                        let _ = r.reply.send(sent.map(|tx| (tx, 1)));
                    }
                }
            }
        }
    }

    /// Refunds the swap to its sender (idempotent; see [`Chain::refund`]).
    pub async fn refund_htlc(&self, p: &HtlcParams) -> Result<B256, EthError> {
        let h = EthHtlc::from_params(p)?;
        let id = h.id();
        let _swap_guard = self.swap_guard(id).await;
        let found = self.find_retrying(&h, p).await?;
        match &found.status {
            HtlcStatus::Refunded { txref, .. } => return parse_txref(txref),
            HtlcStatus::Claimed { .. } => {
                return Err(EthError::Impossible(
                    "swap was claimed: read the preimage from htlc_status".into(),
                ))
            }
            HtlcStatus::Absent => return Err(EthError::NotReady("swap is not locked".into())),
            HtlcStatus::Funded { .. } => {}
        }
        if let Some(tx) = self.resume_inflight(id, Op::Refund).await? {
            return Ok(tx);
        }
        let input = if h.is_eth() {
            HTLC::refundCall {
                hashlock: h.hashlock,
                amount: h.amount,
                sender: h.sender,
                recipient: h.recipient,
                expiry: U256::from(h.expiry),
            }
            .abi_encode()
        } else {
            HTLC::refundTokenCall {
                hashlock: h.hashlock,
                token: h.token,
                amount: h.amount,
                sender: h.sender,
                recipient: h.recipient,
                expiry: U256::from(h.expiry),
            }
            .abi_encode()
        };
        let tx = match self.send(self.cfg.htlc, input.into(), U256::ZERO).await {
            Ok(tx) => tx,
            Err(EthError::WouldRevert(Revert::Htlc(HTLC::HTLCErrors::NotExpired(_)))) => {
                return Err(EthError::NotReady(format!(
                    "swap not refundable before {}",
                    h.expiry
                )))
            }
            Err(e) => return self.after_failure(&h, p, e, false).await,
        };
        self.inflight.lock().await.insert((id, Op::Refund), tx);
        tracing::info!(chain = "eth", swap_id = %p.swap_id, tx = %tx, "htlc refund sent");
        match self.wait(tx).await {
            Ok(_) => Ok(tx),
            Err(e) => self.after_failure(&h, p, e, false).await,
        }
    }

    /// After a failed claim or refund: if someone else did the same thing first, that is
    /// success; otherwise the original error.
    async fn after_failure(
        &self,
        h: &EthHtlc,
        p: &HtlcParams,
        err: EthError,
        claim: bool,
    ) -> Result<B256, EthError> {
        if let Ok(found) = self.find_retrying(h, p).await {
            match (&found.status, claim) {
                (HtlcStatus::Claimed { txref, .. }, true)
                | (HtlcStatus::Refunded { txref, .. }, false) => return parse_txref(txref),
                _ => {}
            }
        }
        Err(err)
    }

    /// Claims several swaps in one transaction (all or nothing on chain). Swaps already claimed
    /// (mined) are skipped; every other swap must be funded and every preimage must match, or
    /// nothing is sent. Returns `None` when every swap was already claimed.
    pub async fn claim_batch(
        &self,
        items: &[(HtlcParams, Preimage)],
    ) -> Result<Option<B256>, EthError> {
        let mut claims = Vec::with_capacity(items.len());
        for (p, pre) in items {
            let h = EthHtlc::from_params(p)?;
            if !p.hashlock.matches(pre) {
                return Err(EthError::InvalidParams(format!(
                    "swap {}: preimage does not match",
                    p.swap_id
                )));
            }
            match self.find_retrying(&h, p).await?.status {
                HtlcStatus::Funded { .. } => {}
                HtlcStatus::Claimed { .. } => continue,
                HtlcStatus::Refunded { .. } => {
                    return Err(EthError::Impossible(format!(
                        "swap {} was refunded",
                        p.swap_id
                    )))
                }
                HtlcStatus::Absent => {
                    return Err(EthError::NotReady(format!(
                        "swap {} is not locked",
                        p.swap_id
                    )))
                }
            }
            claims.push((h, B256::from(*pre.as_bytes())));
        }
        if claims.is_empty() {
            return Ok(None);
        }
        self.send_and_wait(self.cfg.htlc, claim_batch_input(claims), U256::ZERO)
            .await
            .map(Some)
    }

    /// Refunds several expired swaps in one transaction (all or nothing).
    pub async fn refund_batch(&self, items: &[HtlcParams]) -> Result<B256, EthError> {
        let mut hashlocks = Vec::with_capacity(items.len());
        let mut swaps = Vec::with_capacity(items.len());
        for p in items {
            let h = EthHtlc::from_params(p)?;
            hashlocks.push(h.hashlock);
            swaps.push(h.as_batch_entry());
        }
        let mut order: Vec<usize> = (0..swaps.len()).collect();
        order.sort_by_key(|&i| (swaps[i].token, swaps[i].sender));
        let call = HTLC::refundBatchCall {
            hashlocks: order.iter().map(|&i| hashlocks[i]).collect(),
            swaps: order.iter().map(|&i| swaps[i].clone()).collect(),
        };
        self.send_and_wait(self.cfg.htlc, call.abi_encode().into(), U256::ZERO)
            .await
    }
}

/// A lock found by hashlock: its parameters as the chain has them, whether it is still locked,
/// and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLock {
    /// The lock's parameters (compare them with the agreed terms).
    pub htlc: EthHtlc,
    /// The swap id of those parameters.
    pub id: B256,
    /// True while it is locked (neither claimed nor refunded).
    pub locked: bool,
    /// The lock transaction.
    pub tx: B256,
    /// Depth of the lock transaction.
    pub confirmations: u32,
}

impl EthChain {
    /// Every lock with this hashlock since block `from`, whatever its other parameters.
    ///
    /// [`Chain::htlc_status`] only ever reports the lock whose parameters are exactly the agreed
    /// ones (the swap id commits to all of them), so a lock with, say, the wrong amount shows up
    /// there as `Absent`. This tells the engine what is on chain instead, so it can refuse a
    /// wrong lock and say why.
    pub async fn locks_with_hashlock(
        &self,
        hashlock: B256,
        from: u64,
    ) -> Result<Vec<FoundLock>, EthError> {
        let tip = scan::latest(&self.provider).await?;
        self.locks_with_hashlock_at(hashlock, from, tip).await
    }

    /// Locks under `h`'s hashlock that the shared scan found (any parameters), as of `tip`.
    async fn scanned_locks_with_hashlock(&self, h: &EthHtlc, tip: ScanTip) -> Vec<FoundLock> {
        let scanner = self.scanner.lock().await;
        scanner
            .locks_with_hashlock(h.hashlock)
            .into_iter()
            .map(|l| FoundLock {
                htlc: l.htlc,
                id: l.id,
                locked: l.locked,
                tx: l.tx,
                confirmations: (tip.number.saturating_sub(l.block) + 1) as u32,
            })
            .collect()
    }

    /// How `htlc_status` reports a lock by the agreed sender with other parameters.
    fn foreign_lock_status(
        &self,
        htlc: &HtlcParams,
        other: FoundLock,
    ) -> Result<HtlcStatus, ChainError> {
        let asset = if other.htlc.token == Address::ZERO {
            swap_core::Asset::Eth
        } else {
            swap_core::Asset::Erc20 {
                token: core_addr(other.htlc.token),
                decimals: match &htlc.asset {
                    swap_core::Asset::Erc20 { token, decimals }
                        if *token == core_addr(other.htlc.token) =>
                    {
                        *decimals
                    }
                    _ => 0,
                },
            }
        };
        Ok(HtlcStatus::Funded {
            lock: ObservedLock {
                txref: txref(other.tx),
                amount: other.htlc.core_amount(&asset),
                asset,
                sender: Account::Evm(core_addr(other.htlc.sender)),
                recipient: Account::Evm(core_addr(other.htlc.recipient)),
                hashlock: other.htlc.core_hashlock(),
                expiry: Expiry::Time(Timestamp(other.htlc.expiry)),
            },
            confirmations: other.confirmations,
        })
    }

    /// The HTLC contract's storage slot `id` in block `hash` (each read once per block).
    async fn slot_at(&self, id: B256, hash: B256) -> Result<U256, EthError> {
        let cached = self
            .at_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at(hash)
            .slots
            .get(&id)
            .copied();
        if let Some(v) = cached {
            return Ok(v);
        }
        let v = self
            .provider
            .get_storage_at(self.cfg.htlc, id.into())
            .block_id(hash.into())
            .await
            .map_err(rpc_err)?;
        self.at_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at(hash)
            .slots
            .insert(id, v);
        Ok(v)
    }

    /// [`Self::locks_with_hashlock`] as of block `tip` (each answered once per block).
    async fn locks_with_hashlock_at(
        &self,
        hashlock: B256,
        from: u64,
        tip: ScanTip,
    ) -> Result<Vec<FoundLock>, EthError> {
        let cached = self
            .at_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at(tip.hash)
            .locks
            .get(&(hashlock, from))
            .cloned();
        if let Some(v) = cached {
            return Ok(v);
        }
        let out = self.read_locks_with_hashlock(hashlock, from, tip).await?;
        self.at_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at(tip.hash)
            .locks
            .insert((hashlock, from), out.clone());
        Ok(out)
    }

    async fn read_locks_with_hashlock(
        &self,
        hashlock: B256,
        from: u64,
        tip: ScanTip,
    ) -> Result<Vec<FoundLock>, EthError> {
        let events = scan::locks_with_hashlock(
            &self.provider,
            self.cfg.htlc,
            hashlock,
            from,
            tip.number,
            self.cfg.log_chunk,
        )
        .await?;
        let mut out = Vec::new();
        for e in events {
            let EventKind::Locked(htlc) = e.kind else {
                continue;
            };
            let slot = self.slot_at(e.id, tip.hash).await?;
            out.push(FoundLock {
                htlc,
                id: e.id,
                locked: slot == U256::from(1),
                tx: e.tx,
                confirmations: (tip.number.saturating_sub(e.block) + 1) as u32,
            });
        }
        Ok(out)
    }
}

/// The preimages a call to the HTLC reveals (claim, claimToken, claimBatch).
fn claim_preimages(input: &[u8]) -> Vec<B256> {
    if let Ok(c) = HTLC::claimCall::abi_decode(input) {
        return vec![c.preimage];
    }
    if let Ok(c) = HTLC::claimTokenCall::abi_decode(input) {
        return vec![c.preimage];
    }
    if let Ok(c) = HTLC::claimBatchCall::abi_decode(input) {
        return c.preimages;
    }
    Vec::new()
}

fn parse_txref(t: &TxRef) -> Result<B256, EthError> {
    t.0.parse()
        .map_err(|_| EthError::Inconsistent(format!("bad tx hash {}", t.0)))
}

/// Decodes the revert reason of a failed call, for messages.
pub fn revert_reason(data: &[u8]) -> String {
    decode_revert(data).to_string()
}

#[async_trait]
impl Chain for EthChain {
    fn params(&self) -> &ChainParams {
        &self.cfg.params
    }

    async fn tip(&self) -> Result<ChainTip, ChainError> {
        let max_age = self.cfg.tip_max_age;
        let read = || async {
            let t = scan::latest(&self.provider).await?;
            Ok::<_, ChainError>(ChainTip {
                height: Height(t.number),
                time: Timestamp(t.timestamp),
            })
        };
        if max_age.is_zero() {
            return read().await;
        }
        let mut cache = self.tip_cache.lock().await;
        if let Some((_, tip)) = cache.filter(|(at, _)| at.elapsed() < max_age) {
            return Ok(tip);
        }
        let tip = read().await?;
        *cache = Some((std::time::Instant::now(), tip));
        Ok(tip)
    }

    async fn watch(&self, htlc: &HtlcParams) -> Result<(), ChainError> {
        let h = EthHtlc::from_params(htlc)?;
        self.scanner
            .lock()
            .await
            .watch(h.id(), h.hashlock, htlc.watch_from.0);
        Ok(())
    }

    async fn forget(&self, htlc: &HtlcParams) {
        let Ok(h) = EthHtlc::from_params(htlc) else {
            return;
        };
        let id = h.id();
        self.scanner.lock().await.unwatch(id, h.hashlock);
        self.inflight.lock().await.retain(|(i, _), _| *i != id);
        self.per_swap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }

    async fn htlc_status(&self, htlc: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        let found = self.status_found(htlc).await?;
        if found.status != HtlcStatus::Absent {
            return Ok(found.status);
        }
        // Not the agreed lock, but perhaps a lock by the agreed sender under the same hashlock
        // with other parameters: report it as found so the engine refuses it and says why
        // (protocol rule 4). Only the agreed sender can have made it (the contract's sender is
        // msg.sender), so nobody else can make a swap look wrong.
        // The shared scan keeps every lock under a watched hashlock: no lookup per swap.
        let h = EthHtlc::from_params(htlc)?;
        let Some(other) = self
            .scanned_locks_with_hashlock(&h, found.tip)
            .await
            .into_iter()
            .find(|f| f.locked && f.htlc.sender == h.sender)
        else {
            return Ok(HtlcStatus::Absent);
        };
        self.foreign_lock_status(htlc, other)
    }

    async fn lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        self.signer()?;
        Ok(txref(self.lock_htlc(htlc).await?))
    }

    async fn claim(&self, htlc: &HtlcParams, preimage: &Preimage) -> Result<TxRef, ChainError> {
        self.signer()?;
        Ok(txref(self.claim_htlc(htlc, preimage).await?))
    }

    async fn refund(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        self.signer()?;
        Ok(txref(self.refund_htlc(htlc).await?))
    }
}
