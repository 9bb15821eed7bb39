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
use swap_core::params::{ChainParams, ChainTip};
use swap_core::rail::{
    ChainError, HtlcParams, HtlcStatus, Observation, ObservedLock, Rail, RailOp,
};
use swap_core::store::SharedOutbox;
use swap_core::types::{Account, Expiry, Height, Preimage, Timestamp, TxRef};
use tokio::sync::{Mutex, OnceCell};

use crate::bindings::{IERC20Permit, Permit, HTLC};
use crate::error::{rpc_err, EthError};
use crate::htlc::{core_addr, decode_revert, EthHtlc, Revert};
use crate::nonce::NonceManager;
use crate::scan::{self, EventKind, ScanTip, Scanner};

mod actions;
mod cancel;
mod config;
mod derive;
mod foreign;
mod receipts;
mod recorded;
mod send;
mod status;
mod wait;

pub use config::{known_chain_id, EthConfig};
pub use foreign::FoundLock;

/// A spend of a lock still in flight in this process (locks are in the outbox instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
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
    /// Where locks are recorded, signed, before their broadcast (see `lock_htlc`).
    outbox: SharedOutbox,
    token_flow: Mutex<()>,
    per_swap: std::sync::Mutex<HashMap<B256, Arc<Mutex<()>>>>,
    decimals: Mutex<HashMap<Address, Option<u8>>>,
    /// JSON-RPC calls sent through `provider`.
    calls: Arc<std::sync::atomic::AtomicU64>,
    /// The same, per JSON-RPC method.
    calls_by_method: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
    /// The last completed shared scan.
    refreshed: std::sync::Mutex<Option<Refreshed>>,
    /// Reads of the chain's head (block number) shared by concurrent waiters (see
    /// `head_since`).
    head: swap_core::shared_read::SharedReads<(), u64>,
    /// The origin of the receipt pollers' common clock (see `wait`).
    epoch: tokio::time::Instant,
    /// New blocks' receipts, read once for every waiter (see `wait`).
    receipts: receipts::ReceiptBook,
    /// The last EIP-1559 fee estimate and the block it was made on.
    fee_estimate: std::sync::Mutex<Option<(B256, alloy::eips::eip1559::Eip1559Estimation)>>,
    /// Answers that cannot change for a given block (keyed by its hash): storage slots of the
    /// HTLC contract and locks found by hashlock. Only the newest block's are kept.
    at_block: std::sync::Mutex<AtBlock>,
}

/// When a shared scan started, and the block it reached.
#[derive(Debug, Clone, Copy)]
struct Refreshed {
    started: std::time::Instant,
    tip: ScanTip,
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
            head: swap_core::shared_read::SharedReads::new(),
            epoch: tokio::time::Instant::now(),
            receipts: receipts::ReceiptBook::default(),
            at_block: std::sync::Mutex::new(AtBlock::default()),
            fee_estimate: std::sync::Mutex::new(None),
            nonces: NonceManager::new(account),
            account,
            cfg,
            provider,
            signer,
            chain_id: OnceCell::new(),
            verified: OnceCell::new(),
            scanner: Mutex::new(Scanner::default()),
            inflight: Mutex::new(HashMap::new()),
            outbox: SharedOutbox::default(),
            token_flow: Mutex::new(()),
            per_swap: std::sync::Mutex::new(HashMap::new()),
            decimals: Mutex::new(HashMap::new()),
        })
    }

    /// Records locks in `outbox` (the swap store, so that every process on it shares it) before
    /// broadcasting them; without it, in this process's memory only.
    pub fn with_outbox(mut self, outbox: Arc<dyn swap_core::store::Outbox>) -> Self {
        self.outbox = SharedOutbox(outbox);
        self
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
impl Rail for EthChain {
    fn params(&self) -> &ChainParams {
        &self.cfg.params
    }

    /// One account for every swap: the adapter's (or the watched) address.
    async fn account(&self, _key_index: u32) -> Result<Account, ChainError> {
        Ok(EthChain::account(self))
    }

    /// The account's balance of `asset` and of ETH for gas (see [`EthChain::funds`]).
    async fn funds(&self, asset: &swap_core::Asset) -> Result<swap_core::Funds, ChainError> {
        Ok(EthChain::funds(self, asset).await?)
    }

    /// The node's chain id and the contract's code (see [`EthChain::verify`]).
    async fn verify(&self) -> Result<(), ChainError> {
        Ok(EthChain::verify(self).await?)
    }

    async fn tip(&self) -> Result<ChainTip, ChainError> {
        let t = scan::latest(&self.provider).await?;
        Ok(ChainTip {
            height: Height(t.number),
            time: Timestamp(t.timestamp),
        })
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
        self.status_since(htlc, std::time::Instant::now()).await
    }

    /// All legs at once, from one log scan that started after this call (the statuses are
    /// read concurrently; the first to need a scan makes it, the others answer from it).
    async fn observe(&self, htlcs: &[HtlcParams]) -> Result<Observation, ChainError> {
        let asked = std::time::Instant::now();
        let tip = Rail::tip(self).await?;
        let statuses = futures::future::join_all(htlcs.iter().map(|htlc| async move {
            Rail::watch(self, htlc).await?;
            self.status_since(htlc, asked).await
        }))
        .await;
        Ok(Observation { tip, statuses })
    }

    /// A round at once: its claims go out as `claimBatch` transactions (see
    /// [`EthChain::claim_htlcs`]), its locks and refunds concurrently (one nonce after the
    /// other).
    async fn execute(&self, ops: &[RailOp]) -> Vec<Result<TxRef, ChainError>> {
        if let Err(e) = self.signer() {
            let e = ChainError::from(e);
            return ops.iter().map(|_| Err(e.clone())).collect();
        }
        let claims: Vec<(&HtlcParams, &Preimage)> = ops
            .iter()
            .filter_map(|op| match op {
                RailOp::Claim(h, p) => Some((h, p)),
                _ => None,
            })
            .collect();
        let locks: Vec<&HtlcParams> = ops.iter().filter_map(RailOp::as_lock).collect();
        let others = futures::future::join_all(ops.iter().map(|op| async move {
            let sent = match op {
                RailOp::Claim(..) | RailOp::Lock(_) => return None,
                RailOp::Refund(h) => self.refund_htlc(h).await,
                RailOp::CancelLock(h) => return Some(self.cancel_lock_htlc(h).await),
            };
            Some(sent.map(txref).map_err(ChainError::from))
        }));
        let (claimed, locked, others) =
            futures::join!(self.claim_htlcs(&claims), self.lock_htlcs(&locks), others);
        let (mut claimed, mut locked) = (claimed.into_iter(), locked.into_iter());
        ops.iter()
            .zip(others)
            .map(|(op, r)| {
                r.unwrap_or_else(|| {
                    let batched = match op {
                        RailOp::Lock(_) => &mut locked,
                        _ => &mut claimed,
                    };
                    batched
                        .next()
                        .unwrap_or_else(|| Err(EthError::Rpc("action not handled".into())))
                        .map(txref)
                        .map_err(ChainError::from)
                })
            })
            .collect()
    }

    /// Takes the place of a recorded lock that is not mined with a transfer to self of the same
    /// nonce (see `cancel.rs`).
    async fn cancel_lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        self.cancel_lock_htlc(htlc).await
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
