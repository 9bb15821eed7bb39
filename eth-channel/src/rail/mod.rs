//! The channel rail: a [`swap_core::Rail`] whose HTLCs are locks in our Ethereum payment
//! channels with the swap's counterparty (issue 10).
//!
//! A leg names its channel in its rail data ([`RailBody::EvmChannel`]). Each operation is one
//! channel update proposed to the peer through the [`Node`]: `lock` a `Lock`, `claim` a
//! `Claim` with the preimage, `refund` a `CancelExpired` of the expired lock. An operation
//! answers `Ok` only once the update is co-signed; until then (peer offline, no answer yet)
//! a transient error, and the signed proposal stays pending in the store: calling again
//! resends that same proposal, never a second one. So every operation is idempotent.
//!
//! Status comes from the co-signed states ([`ChannelStore::updates`]), plus the chain's
//! secret registry while a lock is pending:
//! - the lock in the latest co-signed state: `Funded`, irrevocable (every co-signed state
//!   counts only deposits final on chain: both parties checked it before signing, see
//!   `ChannelRef::check_next`); our own lock proposal not yet countersigned: `Funded` in the
//!   "mempool" (an update in flight);
//! - the lock's hashlock revealed on chain before its expiry (the watcher enforcing a claim
//!   the peer would not countersign): `Claimed`, with the preimage from the `Revealed` event,
//!   as deep as that block; the lock pays its receiver at settlement;
//! - the lock removed by a co-signed claim: `Claimed` with the claim's preimage (kept in the
//!   store with the state, so a crash after countersigning the peer's claim loses nothing);
//!   by a co-signed cancel: `Refunded`;
//! - never co-signed: `Absent`.
//!
//! Enforcement: a claim registers its preimage with [`ChannelRail::secrets`] before anything
//! is proposed. Hand that source to the channel's [`crate::Watcher`] (with a `claim_window`
//! of at least [`ChannelRail::min_claim_window`]): if the peer has not countersigned the
//! claim by the claim cutoff, the watcher reveals the secret on chain (mined before the
//! expiry), closes and settles. Since a lock pays its receiver iff its secret was revealed
//! before its expiry, whenever the channel settles, the rail's enforcement delay is the
//! reveal's: `enforcement_blocks` 0, claim cutoff `expiry - claim budget` (docs/protocol.md,
//! "Rails").
//!
//! Errors never carry a preimage: messages are built from codes and versions only.

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use async_trait::async_trait;
use eth_adapter::bindings::Channel;
use eth_adapter::channel::{Lock, Side};
use swap_core::params::{
    ChainFamily, ChainId, ChainParams, ChainTip, Finality, Network, RailId, RailKind,
};
use swap_core::rail::{
    Cause, ChainError, Funds, HtlcParams, HtlcStatus, Observation, ObservedLock, Rail, RailBody,
    RailData, RailOp, RAIL_DATA_VERSION,
};
use swap_core::types::{
    Account, Amount, Asset, EvmAddress, Expiry, Height, Preimage, Timestamp, TokenUnits, TxRef, Wei,
};

use crate::msg::{RejectCode, UpdateKind, WireLock};
use crate::session::{ChainView, Node, RpcChain};
use crate::store::ChannelStore;
use crate::{hashlock_of, SecretMap, Secrets};

mod errors;
mod reveals;
mod status;
mod trace;

pub use errors::reject_number;
use errors::{eth_err, invalid, session_err};
use trace::{End, Leg};

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Blocks per `eth_getLogs` request when looking up a revealed preimage.
const LOG_CHUNK: u64 = 10_000;

/// The channel rail (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct ChannelRail {
    node: Node,
    store: Arc<dyn ChannelStore>,
    chain: RpcChain,
    me: Address,
    secrets: SecretMap,
    params: ChainParams,
    /// The channels [`Rail::funds`] and [`Rail::verify`] consider.
    channels: Arc<Mutex<BTreeSet<B256>>>,
    /// Hashlocks of locks seen not revealed on chain in time (before the lock's expiry),
    /// with the block they were read at.
    unrevealed: Arc<Mutex<HashMap<B256, B256>>>,
    /// Hashlocks seen not revealed on chain at all when a lock on them was about to be
    /// sent, with the block they were read at ([`ChannelRail::lock`]'s guard: a reveal
    /// after some lock's expiry still forbids a new lock on its hashlock).
    never_revealed: Arc<Mutex<HashMap<B256, B256>>>,
    /// Each channel's co-signed history as far as read (see [`trace::History`]).
    history: Arc<Mutex<HashMap<B256, trace::History>>>,
    /// The last tip read, with its hash and when it was asked for ([`TIP_FRESH`]).
    last_tip: Arc<Mutex<Option<(ChainTip, B256, std::time::Instant)>>>,
    /// The node's chain id, read once ([`Rail::verify`]).
    chain_id: Arc<tokio::sync::OnceCell<u64>>,
    /// The registry's `Revealed` events as far as read ([`reveals`]).
    reveals: Arc<reveals::Reveals>,
    /// Lookups of single hashlocks in the registry (`revealedAt`) made.
    lookups: Arc<std::sync::atomic::AtomicU64>,
}

/// How long a tip read answers again without asking the node: a channel swap steps on every
/// channel message, and one block read per step per engine cost more than the swap's own
/// work. A read is as old as its answer's trip anyway; the expiry rules' margins are blocks
/// and minutes.
const TIP_FRESH: std::time::Duration = std::time::Duration::from_millis(250);

impl std::fmt::Debug for ChannelRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelRail({}, {})", self.params.rail(), self.me)
    }
}

/// The preimages of the locks a [`ChannelRail`] claims ([`ChannelRail::secrets`]), for the
/// watcher. `Debug` shows nothing secret.
#[derive(Clone)]
pub struct RailSecrets {
    map: SecretMap,
    node: Node,
    channels: Arc<Mutex<BTreeSet<B256>>>,
}

impl std::fmt::Debug for RailSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailSecrets")
            .field("map", &self.map)
            .finish()
    }
}

impl Secrets for RailSecrets {
    fn preimage(&self, hashlock: &B256) -> Option<B256> {
        if let Some(p) = self.map.preimage(hashlock) {
            return Some(p);
        }
        let ids: Vec<B256> = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        ids.into_iter().find_map(|id| {
            self.node
                .with_party(id, |p| {
                    // A claim of ours in flight, alone or in a batch.
                    p.pending()?.kind.parts().iter().find_map(|k| match k {
                        UpdateKind::Claim {
                            hashlock: h,
                            preimage,
                        } if h == hashlock && hashlock_of(preimage) == *hashlock => Some(*preimage),
                        _ => None,
                    })
                })
                .ok()
                .flatten()
        })
    }
}

/// What each side of one channel can still lock ([`ChannelRail::free`]).
struct Free {
    ours: u128,
    theirs: u128,
    peer: Address,
}

/// The channel token of an Ethereum asset (zero for ETH).
fn token_of(asset: &Asset) -> Result<Address, ChainError> {
    match asset {
        Asset::Eth => Ok(Address::ZERO),
        Asset::Erc20 { token, .. } => Ok(Address::from(token.0)),
        _ => Err(invalid("not an Ethereum asset")),
    }
}

fn txref(id: B256, version: u64) -> TxRef {
    TxRef(format!("channel:{id:#x}:{version}"))
}

impl ChannelRail {
    /// The rail of `node`'s channels on Ethereum `network`, signing as `me` (the node's key),
    /// reading the channels' states from `store` (the node's) and the chain through `chain`
    /// (whose clock is the node's too).
    pub fn new(
        node: Node,
        store: Arc<dyn ChannelStore>,
        chain: RpcChain,
        me: Address,
        network: Network,
    ) -> Self {
        let params = ChainParams::for_rail(RailId::new(
            ChainId::new(ChainFamily::Ethereum, network),
            RailKind::EvmChannel,
        ));
        let secrets = SecretMap::new();
        // The node never countersigns the cancel of a lock we claim (its secret is ours).
        let _ = node.add_secrets(Arc::new(secrets.clone()));
        Self {
            node,
            store,
            chain,
            me,
            secrets,
            params,
            channels: Arc::default(),
            unrevealed: Arc::default(),
            never_revealed: Arc::default(),
            history: Arc::default(),
            last_tip: Arc::default(),
            chain_id: Arc::default(),
            reveals: Arc::default(),
            lookups: Arc::default(),
        }
    }

    /// Reads of the chain's secret registry made so far, for figures and tests: hashlocks
    /// looked up one by one (`revealedAt`), and blocks whose `Revealed` events were read
    /// ([`reveals`]).
    pub fn registry_reads(&self) -> (u64, u64) {
        (
            self.lookups.load(std::sync::atomic::Ordering::Relaxed),
            self.reveals.reads(),
        )
    }

    fn count_lookup(&self) {
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts channel `id` (one the node serves) in [`Rail::funds`] and [`Rail::verify`]. A
    /// leg may name any channel the node serves; this only says where funds may come from.
    pub fn add_channel(&self, id: B256) {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id);
    }

    fn channel_ids(&self) -> Vec<B256> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    /// With other parameters (a devnet's, say); they must be an EVM channel rail's.
    pub fn with_params(mut self, params: ChainParams) -> Result<Self, ChainError> {
        params.validate().map_err(invalid)?;
        if params.kind != RailKind::EvmChannel {
            return Err(invalid("not an EVM channel rail"));
        }
        self.params = params;
        Ok(self)
    }

    /// The preimages of the locks we claim: give it to the channels' [`crate::Watcher`], which
    /// enforces a claim on chain when the peer does not countersign it in time.
    ///
    /// Besides the preimages claimed since this process started, it answers from our pending
    /// claim proposals (persisted before they were sent), so a restart between proposing a
    /// claim and its countersignature does not leave the watcher without the secret.
    pub fn secrets(&self) -> RailSecrets {
        RailSecrets {
            map: self.secrets.clone(),
            node: self.node.clone(),
            channels: self.channels.clone(),
        }
    }

    /// The least `WatchConfig::claim_window` (seconds) the watcher must use: the claim
    /// budget between this rail's claim cutoff and a lock's expiry, so that a claim started
    /// before the cutoff is revealed on chain in time when the peer is silent.
    pub fn min_claim_window(&self) -> u64 {
        let e = Expiry::Time(Timestamp(u64::MAX / 2));
        match self.params.claim_cutoff(e) {
            Expiry::Time(t) => u64::MAX / 2 - t.0,
            Expiry::Height(_) => 0,
        }
    }

    fn leg(&self, htlc: &HtlcParams) -> Result<Leg, ChainError> {
        let data = htlc
            .rail_data
            .as_ref()
            .ok_or_else(|| invalid("a channel leg without rail data"))?;
        if data.version != RAIL_DATA_VERSION {
            return Err(invalid(format!("rail data version {}", data.version)));
        }
        let RailBody::EvmChannel { channel_id } = &data.body else {
            return Err(invalid("rail data of another rail"));
        };
        let id = B256::from(*channel_id);
        let chan = self
            .node
            .with_party(id, |p| p.channel().clone())
            .map_err(|e| session_err(e, 0))?;
        let addr = |a: &Account| match a {
            Account::Evm(a) => Ok(Address::from(a.0)),
            Account::PublicKey(_) => Err(invalid("not an Ethereum account")),
        };
        let (sender, recipient) = (addr(&htlc.sender)?, addr(&htlc.recipient)?);
        let parties = [chan.party(Side::A), chan.party(Side::B)];
        if sender == recipient || !parties.contains(&sender) || !parties.contains(&recipient) {
            return Err(invalid(
                "sender and recipient are not the channel's two parties",
            ));
        }
        let token_ok = match &htlc.asset {
            Asset::Eth => chan.params.token == Address::ZERO,
            Asset::Erc20 { token, .. } => chan.params.token == Address::from(token.0),
            _ => false,
        };
        if !token_ok || !htlc.asset.fits(&htlc.amount) {
            return Err(invalid("the asset is not the channel's"));
        }
        let Expiry::Time(expiry) = htlc.expiry else {
            return Err(invalid("a channel lock expires at a time"));
        };
        Ok(Leg {
            id,
            chan,
            sender,
            recipient,
            hashlock: B256::from(htlc.hashlock.0),
            amount: htlc.amount.base_units(),
            expiry: expiry.0,
        })
    }

    fn observed(&self, htlc: &HtlcParams, leg: &Leg, id: B256, v: u64, l: &Lock) -> ObservedLock {
        let amount = match htlc.amount {
            Amount::Token(t) => Amount::Token(TokenUnits {
                units: l.amount,
                decimals: t.decimals,
            }),
            _ => Amount::Wei(Wei(l.amount)),
        };
        let other = if l.from == leg.chan.party(Side::A) {
            leg.chan.party(Side::B)
        } else {
            leg.chan.party(Side::A)
        };
        ObservedLock {
            txref: txref(id, v),
            asset: htlc.asset.clone(),
            amount,
            sender: Account::Evm(EvmAddress(l.from.0 .0)),
            recipient: Account::Evm(EvmAddress(other.0 .0)),
            hashlock: swap_core::types::Hashlock(l.hashlock.0),
            expiry: Expiry::Time(Timestamp(l.expiry)),
        }
    }

    /// The preimage revealed on chain for `leg` before its expiry, with its transaction and
    /// depth, if any.
    async fn revealed(
        &self,
        leg: &Leg,
        from: Height,
    ) -> Result<Option<(B256, TxRef, Finality)>, ChainError> {
        let p = &self.chain.provider;
        self.count_lookup();
        let Some(at) = leg
            .chan
            .revealed_at(p, leg.hashlock)
            .await
            .map_err(eth_err)?
        else {
            return Ok(None);
        };
        if at >= leg.expiry {
            // Too late: the lock returns to its sender at settlement.
            return Ok(None);
        }
        let tip = p
            .get_block_number()
            .await
            .map_err(|e| eth_err(eth_adapter::tx::rpc_err(e)))?;
        let filter = Filter::new()
            .address(leg.chan.contract)
            .event_signature(Channel::Revealed::SIGNATURE_HASH)
            .topic1(leg.hashlock);
        let mut start = from.0;
        while start <= tip {
            let end = tip.min(start.saturating_add(LOG_CHUNK - 1));
            let logs = p
                .get_logs(&filter.clone().from_block(start).to_block(end))
                .await
                .map_err(|e| eth_err(eth_adapter::tx::rpc_err(e)))?;
            for log in logs.iter().filter(|l| !l.removed) {
                let Ok(e) = log.log_decode::<Channel::Revealed>() else {
                    continue;
                };
                let pre = e.inner.data.preimage;
                if hashlock_of(&pre) != leg.hashlock {
                    continue;
                }
                let block = log.block_number.unwrap_or(tip);
                let depth = u32::try_from(tip.saturating_sub(block) + 1).unwrap_or(u32::MAX);
                let tx = log
                    .transaction_hash
                    .map(|h| TxRef(format!("{h:#x}")))
                    .unwrap_or_else(|| TxRef(String::new()));
                return Ok(Some((pre, tx, Finality::Depth(depth))));
            }
            start = end + 1;
        }
        // Revealed, but its event not found from `from` on (a reorg between the reads, or
        // revealed before the swap began: the next observation decides).
        Err(ChainError::new(
            Cause::Inconsistent,
            "hashlock revealed but its event not found",
        ))
    }

    /// What each side of channel `id` can still lock, when it is open in `token`: ours less
    /// what our changes not yet co-signed will take (locks and withdrawals queued, waiting
    /// for their turn or pending: [`Node::with_party_outgoing`]).
    fn free(&self, id: B256, token: Address) -> Result<Option<Free>, ChainError> {
        self.node
            .with_party_outgoing(id, |p, outgoing| {
                if p.channel().params.token != token || p.latest().state.isFinal {
                    return None;
                }
                let s = &p.latest().state;
                let (mine, theirs, peer) = match p.side() {
                    Side::A => (s.balanceA, s.balanceB, p.channel().party(Side::B)),
                    Side::B => (s.balanceB, s.balanceA, p.channel().party(Side::A)),
                };
                Some(Free {
                    ours: mine.saturating_sub(outgoing),
                    theirs,
                    peer,
                })
            })
            .map_err(|e| session_err(e, 0))
    }

    /// Sends our pending proposal again; the error to answer while it is not countersigned.
    fn in_flight(&self, leg: &Leg, version: u64, what: &str) -> ChainError {
        match self.node.resend_pending(leg.id) {
            Ok(true) => ChainError::transient(format!(
                "{what} (version {version}) resent, not countersigned yet"
            )),
            Ok(false) => ChainError::new(
                Cause::Unavailable,
                format!("{what} (version {version}) pending; peer not connected"),
            ),
            Err(e) => session_err(e, leg.expiry),
        }
    }

    fn busy(version: u64) -> ChainError {
        ChainError::transient(format!(
            "another update (version {version}) is pending on the channel"
        ))
    }

    async fn propose(&self, leg: &Leg, kind: UpdateKind) -> Result<u64, ChainError> {
        self.node
            .propose(leg.id, kind)
            .await
            .map_err(|e| session_err(e, leg.expiry))
    }
}

#[async_trait]
impl Rail for ChannelRail {
    fn params(&self) -> &ChainParams {
        &self.params
    }

    /// Every peer message applied to a channel (a lock offered, a claim, our update
    /// countersigned): the engine steps the legs at once.
    fn changes(&self) -> Option<swap_core::ChangeSubscription> {
        Some(self.node.changes())
    }

    async fn account(&self, _key_index: u32) -> Result<Account, ChainError> {
        Ok(Account::Evm(EvmAddress(self.me.0 .0)))
    }

    /// What one lock can take: our largest balance in a channel of that token (a lock lives
    /// in one channel), less a lock of ours still pending there. Locks pay no fee.
    async fn funds(&self, asset: &Asset) -> Result<Funds, ChainError> {
        let token = token_of(asset)?;
        let mut best = None;
        for id in self.channel_ids() {
            best = best.max(self.free(id, token)?.map(|f| f.ours));
        }
        let balance = best.ok_or_else(|| invalid("no open channel in this asset"))?;
        Ok(Funds {
            balance,
            fee_balance: 0,
            fee_allowance: 0,
            fees_from_asset: false,
        })
    }

    /// The channel with `payer` (of this asset, open) whose payer side holds the most, when
    /// it holds `amount`: the lock goes into it.
    async fn prepare_receive(
        &self,
        _hashlock: &swap_core::types::Hashlock,
        asset: &Asset,
        amount: &Amount,
        payer: &Account,
    ) -> Result<Option<RailData>, ChainError> {
        let token = token_of(asset)?;
        if !asset.fits(amount) {
            return Err(invalid("the amount does not fit the asset"));
        }
        let Account::Evm(payer) = payer else {
            return Err(invalid("the payer has no Ethereum account"));
        };
        let payer = Address::from(payer.0);
        let mut best: Option<(u128, B256)> = None;
        for id in self.channel_ids() {
            if let Some(f) = self.free(id, token)? {
                if f.peer == payer && best.is_none_or(|(b, _)| f.theirs > b) {
                    best = Some((f.theirs, id));
                }
            }
        }
        match best {
            Some((theirs, id)) if theirs >= amount.base_units() => {
                Ok(Some(RailData::new(RailBody::EvmChannel {
                    channel_id: id.0,
                })))
            }
            Some((theirs, _)) => Err(invalid(format!(
                "the payer's side of our channel holds {theirs}, the leg needs {}",
                amount.base_units()
            ))),
            None => Err(invalid(format!(
                "no open channel with {payer} in this asset: open one first"
            ))),
        }
    }

    /// The leg's channel is one we serve, between its sender and recipient; when we send,
    /// our side holds the amount (less a lock of ours still pending there).
    async fn check_leg(&self, htlc: &HtlcParams) -> Result<(), ChainError> {
        let leg = self.leg(htlc)?;
        if leg.sender != self.me {
            return if leg.recipient == self.me {
                Ok(())
            } else {
                Err(invalid(
                    "we are neither this lock's sender nor its recipient",
                ))
            };
        }
        match self.free(leg.id, token_of(&htlc.asset)?)? {
            Some(f) if f.ours >= leg.amount => Ok(()),
            Some(f) => Err(invalid(format!(
                "our side of the channel holds {}, the lock needs {}",
                f.ours, leg.amount
            ))),
            None => Err(invalid("the channel is closed or of another asset")),
        }
    }

    /// Every counted channel is on the node's chain.
    async fn verify(&self) -> Result<(), ChainError> {
        let chain_id = *self
            .chain_id
            .get_or_try_init(|| async {
                self.chain
                    .provider
                    .get_chain_id()
                    .await
                    .map_err(|e| eth_err(eth_adapter::tx::rpc_err(e)))
            })
            .await?;
        for id in self.channel_ids() {
            let ok = self
                .node
                .with_party(id, |p| p.channel().chain_id == chain_id)
                .map_err(|e| session_err(e, 0))?;
            if !ok {
                return Err(invalid(format!("channel {id} is not on chain {chain_id}")));
            }
        }
        Ok(())
    }

    async fn tip(&self) -> Result<ChainTip, ChainError> {
        Ok(self.tip_block().await?.0)
    }

    async fn htlc_status(&self, htlc: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        self.status(htlc, None).await
    }

    /// One tip read for all legs; a lock's "not revealed on chain" answer is reused until
    /// the chain moves (a channel swap moves no block: no chain read per leg per tick).
    async fn observe(&self, htlcs: &[HtlcParams]) -> Result<Observation, ChainError> {
        let (tip, hash) = self.tip_block().await?;
        let mut statuses = Vec::with_capacity(htlcs.len());
        for htlc in htlcs {
            statuses.push(self.status(htlc, Some((tip.height, hash))).await);
        }
        Ok(Observation { tip, statuses })
    }

    /// All at once: the node's proposals on one channel take turns (each waits for the one
    /// before it to be countersigned, with no retry delay between them), proposals on
    /// different channels go out together.
    async fn execute(&self, ops: &[RailOp]) -> Vec<Result<TxRef, ChainError>> {
        swap_core::rail::execute_concurrently(self, ops).await
    }

    async fn forget(&self, htlc: &HtlcParams) {
        self.evict(htlc);
        let h = B256::from(htlc.hashlock.0);
        for kept in [&self.unrevealed, &self.never_revealed] {
            kept.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&h);
        }
    }

    async fn lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        let leg = self.leg(htlc)?;
        if leg.sender != self.me {
            return Err(invalid("we are not this lock's sender"));
        }
        let t = self.trace(&leg)?;
        if let Some((v, _)) = t.added {
            return Ok(txref(leg.id, v));
        }
        // Our lock in flight, alone or in a batch (another change in flight: the node's
        // proposal waits its turn).
        if let Some((v, kind)) = &t.pending {
            if kind
                .parts()
                .iter()
                .any(|k| matches!(k, UpdateKind::Lock { lock } if leg.is(&Lock::from(lock))))
            {
                return Err(self.in_flight(&leg, *v, "the lock"));
            }
        }
        // Never lock on a hashlock already revealed: it would be a payment, not a lock.
        self.not_revealed(&leg).await?;
        let lock = WireLock {
            from: self.me,
            amount: leg.amount,
            hashlock: leg.hashlock,
            expiry: leg.expiry,
        };
        self.propose(&leg, UpdateKind::Lock { lock }).await?;
        // The change may have landed at a later version (crossing proposals): read it back.
        match self.trace(&leg)?.added {
            Some((v, _)) => Ok(txref(leg.id, v)),
            None => Err(ChainError::new(
                Cause::Inconsistent,
                "co-signed lock not found in the state",
            )),
        }
    }

    async fn claim(&self, htlc: &HtlcParams, preimage: &Preimage) -> Result<TxRef, ChainError> {
        let leg = self.leg(htlc)?;
        if leg.recipient != self.me {
            return Err(invalid("we are not this lock's recipient"));
        }
        if !htlc.hashlock.matches(preimage) {
            return Err(invalid("the preimage does not match the hashlock"));
        }
        let pre = B256::from(*preimage.as_bytes());
        let t = self.trace(&leg)?;
        match (&t.added, &t.ended) {
            (_, Some((v, End::Claimed(_)))) => return Ok(txref(leg.id, *v)),
            (_, Some((_, End::Cancelled))) => {
                return Err(ChainError::new(
                    Cause::AlreadySpent,
                    "the lock was cancelled",
                ))
            }
            _ => {}
        }
        // Our claim in flight (its secret is ours already): resent, whatever the time.
        if let Some((v, kind)) = &t.pending {
            if kind.parts().iter().any(
                |k| matches!(k, UpdateKind::Claim { hashlock, .. } if *hashlock == leg.hashlock),
            ) {
                self.secrets.insert(pre);
                return Err(self.in_flight(&leg, *v, "the claim"));
            }
        }
        // An expired lock can neither be claimed nor enforced: its secret is not registered
        // (a registered secret makes the node refuse the sender's cancel, see `guard`).
        if self.chain.now() >= leg.expiry {
            return Err(ChainError::new(
                Cause::Rejected {
                    code: Some(reject_number(RejectCode::LockExpired)),
                },
                "the lock has expired: it can no longer be claimed",
            ));
        }
        // Then, first of all: the watcher enforces the claim on chain if the peer stays
        // silent, and the node never countersigns its cancel.
        self.secrets.insert(pre);
        if t.added.is_none() {
            return Err(ChainError::not_ready("the lock is not co-signed yet"));
        }
        // Another change in flight: the node's proposal waits its turn.
        let v = self
            .propose(
                &leg,
                UpdateKind::Claim {
                    hashlock: leg.hashlock,
                    preimage: pre,
                },
            )
            .await?;
        Ok(txref(leg.id, v))
    }

    async fn refund(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        let leg = self.leg(htlc)?;
        if leg.sender != self.me {
            return Err(invalid("we are not this lock's sender"));
        }
        let t = self.trace(&leg)?;
        match (&t.added, &t.ended) {
            (_, Some((v, End::Cancelled))) => return Ok(txref(leg.id, *v)),
            (_, Some((_, End::Claimed(_)))) => {
                return Err(ChainError::new(Cause::AlreadySpent, "the lock was claimed"))
            }
            (None, _) => return Err(invalid("no co-signed lock to refund")),
            (Some(_), None) => {}
        }
        if self.revealed(&leg, htlc.watch_from).await?.is_some() {
            return Err(ChainError::new(
                Cause::AlreadySpent,
                "the hashlock was revealed on chain before the expiry: the lock pays its receiver",
            ));
        }
        // By the chain's time, as the contract and the peer judge it.
        let now = self
            .node
            .chain_now()
            .await
            .map_err(|e| session_err(e, leg.expiry))?;
        if now < leg.expiry {
            return Err(ChainError::new(
                Cause::NotReady {
                    until: Some(htlc.expiry),
                },
                "the lock has not expired",
            ));
        }
        match &t.pending {
            Some((v, UpdateKind::CancelExpired { hashlock })) if *hashlock == leg.hashlock => {
                return Err(self.in_flight(&leg, *v, "the cancel"));
            }
            Some((v, _)) => return Err(Self::busy(*v)),
            None => {}
        }
        let v = self
            .propose(
                &leg,
                UpdateKind::CancelExpired {
                    hashlock: leg.hashlock,
                },
            )
            .await?;
        Ok(txref(leg.id, v))
    }

    async fn cancel_lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        let leg = self.leg(htlc)?;
        let t = self.trace(&leg)?;
        if t.added.is_some() {
            return Err(ChainError::new(
                Cause::AlreadySpent,
                "the lock is co-signed: refund it instead",
            ));
        }
        // Signed by us (pending, or abandoned above the latest co-signed state): the peer may
        // still countersign it, until a state of a higher version is co-signed.
        match t.proposed_lock(&leg) {
            Some((v, _)) => Err(ChainError::not_ready(format!(
                "our lock proposal (version {v}) may still be countersigned"
            ))),
            None => Ok(TxRef(String::new())),
        }
    }
}
