//! The channel watcher: what a party does on chain for its channels without the peer.
//!
//! Per [`Watcher::tick`], for every watched channel, read the chain, decide, act:
//! 1. a closing with a version below our latest co-signed state is answered with `update`
//!    (the state and its locks come from the store; events do not carry the locks);
//! 2. a lock we receive and hold the preimage of (a [`Secrets`] source), still pending in our
//!    latest co-signed state when its claim cutoff (`expiry - claim_window`) comes, is enforced
//!    on chain: `reveal`, then `close` if the channel is open (then the challenge period, then
//!    `settle`); once the channel is closing, such a lock is revealed at once. A lock whose
//!    expiry has passed (no block before it can still be mined) is never revealed: it is
//!    reported as [`Skip::Expired`];
//! 3. a closing is settled: `settleFinal` at once when our latest state is final, `settle`
//!    from the deadline on, once every lock of the closing record is decided;
//! 4. a credited payout (`credit[us][token]`) is taken with `withdrawCredit`.
//!
//! Every transaction is signed and recorded in the channel store before its broadcast
//! ([`outbox`]); each tick first brings the recorded ones to an end (receipt, rebroadcast,
//! obsolete when their nonce went elsewhere, or a replacement with higher fees when one stays
//! pending for [`WatchConfig::bump_after_blocks`]), and an action is taken only when the chain still
//! needs it and no transaction of its intent is pending or mined. So two watchers on one store
//! file, or one restarted after a crash, never send one action twice.
//!
//! Errors are typed ([`WatchError`]); a node that is down is [`WatchError::is_transient`] and
//! loses nothing (the next tick reads everything again). Keys and preimages are never printed.

pub mod outbox;
mod plan;
mod send;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;

use eth_adapter::bindings::Channel::ChannelErrors;
use eth_adapter::{EthError, Revert};

use crate::sqlite::SqliteChannelStore;
use crate::store::{ChannelStore, StoreError};

pub use outbox::{TxRecord, TxStatus};

/// Where the watcher finds the preimages of the locks it receives.
pub trait Secrets: Send + Sync {
    /// The preimage of `hashlock` (`sha256(preimage) == hashlock`), if known.
    fn preimage(&self, hashlock: &B256) -> Option<B256>;
}

/// A [`Secrets`] in memory. `Debug` shows the hashlocks only.
#[derive(Default, Clone)]
pub struct SecretMap(Arc<Mutex<HashMap<B256, B256>>>);

impl SecretMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a preimage (under its sha256).
    pub fn insert(&self, preimage: B256) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(crate::hashlock_of(&preimage), preimage);
    }
}

impl Secrets for SecretMap {
    fn preimage(&self, hashlock: &B256) -> Option<B256> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(hashlock)
            .copied()
    }
}

impl std::fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_set().entries(m.keys()).finish()
    }
}

/// How the watcher acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// Seconds before a lock's expiry from which a lock we can claim and the peer has not
    /// countersigned the claim of is enforced on chain (the reveal must be mined strictly
    /// before the expiry: budget the blocks that takes, fee spikes included).
    pub claim_window: u64,
    /// Where credited payouts go (`withdrawCredit(token, to)`); our own address when `None`.
    pub credit_to: Option<Address>,
    /// Largest fee per gas paid (a base fee above it: nothing is sent, transient error).
    pub max_fee_per_gas: u128,
    /// Largest priority fee per gas paid.
    pub max_priority_fee_per_gas: u128,
    /// Blocks per `eth_getLogs` request.
    pub log_chunk: u64,
    /// An intent whose transactions reverted this often is not tried again (reported as
    /// [`Skip::GaveUp`]).
    pub max_reverts: u64,
    /// A transaction still pending this many blocks after it was recorded is replaced by the
    /// same call at the same nonce with fees raised by a quarter at least (within the caps);
    /// 0: never.
    pub bump_after_blocks: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            claim_window: 900,
            credit_to: None,
            max_fee_per_gas: 500_000_000_000,
            max_priority_fee_per_gas: 3_000_000_000,
            log_chunk: 10_000,
            max_reverts: 2,
            bump_after_blocks: 3,
        }
    }
}

/// A transaction the watcher may send. Its [`Action::intent`] names it in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `update` with our latest co-signed state (version `version`).
    Update {
        /// The channel.
        channel: B256,
        /// Our state's version.
        version: u64,
    },
    /// `reveal` the preimage of `hashlock` (taken from [`Secrets`] when signing).
    Reveal {
        /// The channel whose lock needs it.
        channel: B256,
        /// The lock's hashlock.
        hashlock: B256,
    },
    /// `close` with our latest co-signed state.
    Close {
        /// The channel.
        channel: B256,
        /// Our state's version.
        version: u64,
    },
    /// `settle` the closing with this deadline.
    Settle {
        /// The channel.
        channel: B256,
        /// The closing's deadline.
        deadline: u64,
        /// The closing record's version.
        version: u64,
    },
    /// `settleFinal` with our latest (final) co-signed state.
    SettleFinal {
        /// The channel.
        channel: B256,
        /// Its version.
        version: u64,
    },
    /// `withdrawCredit(token, to)`.
    WithdrawCredit {
        /// The token (zero: ETH).
        token: Address,
        /// The credit read on chain.
        amount: U256,
        /// How many credit withdrawals of this token were mined before (keeps intents apart).
        seq: u64,
    },
}

impl Action {
    /// The name of this action in the store: one pending or mined transaction per intent and
    /// sender.
    pub fn intent(&self) -> String {
        match self {
            Action::Update { channel, version } => format!("update:{channel}:{version}"),
            Action::Reveal { hashlock, .. } => format!("reveal:{hashlock}"),
            Action::Close { channel, version } => format!("close:{channel}:{version}"),
            Action::Settle {
                channel, deadline, ..
            } => format!("settle:{channel}:{deadline}"),
            Action::SettleFinal { channel, .. } => format!("settlefinal:{channel}"),
            Action::WithdrawCredit { token, seq, .. } => format!("credit:{token}:{seq}"),
        }
    }

    /// The channel it concerns, if one.
    pub fn channel(&self) -> Option<B256> {
        match self {
            Action::Update { channel, .. }
            | Action::Reveal { channel, .. }
            | Action::Close { channel, .. }
            | Action::Settle { channel, .. }
            | Action::SettleFinal { channel, .. } => Some(*channel),
            Action::WithdrawCredit { .. } => None,
        }
    }
}

/// An action with its call: the contract and the calldata. `Debug` leaves the calldata out (a
/// reveal's holds its preimage).
#[derive(Clone, PartialEq, Eq)]
pub struct Planned {
    /// What it does.
    pub action: Action,
    /// The contract called.
    pub to: Address,
    /// The calldata.
    pub input: Bytes,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("action", &self.action)
            .field("to", &self.to)
            .field("input", &format_args!("<{} bytes>", self.input.len()))
            .finish()
    }
}

/// Something the watcher deliberately did not do, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A lock we could claim expired (no block before its expiry can still be mined): its
    /// preimage is not revealed; the lock returns to its sender at settlement.
    Expired {
        /// The channel.
        channel: B256,
        /// The lock's hashlock.
        hashlock: B256,
        /// Its expiry.
        expiry: u64,
        /// The chain's time.
        now: u64,
    },
    /// The closing's version is above our latest co-signed state (the peer countersigned our
    /// pending proposal and closed with it): nothing to answer.
    PeerAhead {
        /// The channel.
        channel: B256,
        /// The closing's version.
        closing: u64,
        /// Ours.
        ours: u64,
    },
    /// The challenge period ended with a closing older than our latest state (the watcher ran
    /// too late): nothing can replace it any more.
    MissedChallenge {
        /// The channel.
        channel: B256,
        /// The closing's version.
        closing: u64,
        /// Ours.
        ours: u64,
    },
    /// The locks of the closing's state are not in the store: we cannot settle (anyone who
    /// has them can).
    LocksUnknown {
        /// The channel.
        channel: B256,
        /// The closing's version.
        version: u64,
    },
    /// The channel is closing but no `Closing` event was found from the watch's first block
    /// on (watched from too late a block?): nothing can be answered or settled.
    NoClosingRecord {
        /// The channel.
        channel: B256,
    },
    /// The transactions of this intent reverted `reverts` times: not tried again.
    GaveUp {
        /// The intent.
        intent: String,
        /// How many reverted.
        reverts: u64,
    },
}

/// What a recorded transaction came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its intent.
    pub intent: String,
    /// Its hash.
    pub tx: B256,
    /// How it ended.
    pub status: TxStatus,
    /// Why (a revert reason, the nonce taken), if known.
    pub detail: Option<String>,
}

/// What one [`Watcher::tick`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// Recorded transactions that ended (mined, reverted, obsolete).
    pub finished: Vec<Finished>,
    /// Transactions broadcast this tick (new ones, and recorded ones broadcast again).
    pub sent: Vec<(Action, B256)>,
    /// Actions waiting for a transaction recorded earlier (by this process or another).
    pub waiting: Vec<(Action, B256)>,
    /// What was deliberately not done.
    pub skipped: Vec<Skip>,
    /// Per-channel failures (the other channels were still handled).
    pub errors: Vec<(B256, WatchError)>,
}

/// Why the watcher could not act.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The node failed or refused a request ([`EthError::is_transient`] tells whether a retry
    /// may help).
    #[error("node: {0}")]
    Node(#[from] EthError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The channel is not in the store.
    #[error("unknown channel {0}")]
    UnknownChannel(B256),
    /// We are not a party of the channel's parameters under this key.
    #[error("channel {0}: the watcher's account is not our side of this channel")]
    NotOurChannel(B256),
    /// The contract refuses the action (found by the gas estimate: nothing was sent).
    #[error("{intent}: the contract refuses it: {error:?}")]
    Refused {
        /// The intent.
        intent: String,
        /// The contract's typed error.
        error: ChannelErrors,
    },
    /// The action would revert with something else than a channel error.
    #[error("{intent}: would revert: {revert}")]
    WouldRevert {
        /// The intent.
        intent: String,
        /// The revert.
        revert: Revert,
    },
    /// The preimage a reveal needs is no longer in the secrets source.
    #[error("no preimage for hashlock {0}")]
    NoPreimage(B256),
    /// Signing a transaction failed.
    #[error("signing: {0}")]
    Signing(String),
    /// The chain answered something that does not fit (e.g. an amount too large).
    #[error("inconsistent chain data: {0}")]
    Inconsistent(String),
}

impl WatchError {
    /// True when trying again later may help (the node or the database was unavailable).
    pub fn is_transient(&self) -> bool {
        match self {
            WatchError::Node(e) => e.is_transient(),
            WatchError::Store(StoreError::Backend(_)) => true,
            _ => false,
        }
    }
}

/// What the watcher remembers of a channel between ticks.
#[derive(Debug, Clone, Copy)]
struct Watched {
    /// Where to look for its events (the block it was opened in, or earlier).
    from_block: u64,
    /// The block of the closing's first `Closing` event, once found.
    closing_from: Option<u64>,
}

/// The watcher of one account's channels (see the module doc). `Debug` shows the account,
/// never the key.
pub struct Watcher {
    provider: DynProvider,
    signer: PrivateKeySigner,
    wallet: EthereumWallet,
    store: SqliteChannelStore,
    secrets: Arc<dyn Secrets>,
    cfg: WatchConfig,
    chain_id: Option<u64>,
    channels: BTreeMap<B256, Watched>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("account", &self.signer.address())
            .field("cfg", &self.cfg)
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher sending from `signer`'s account (a party of the channels it watches: only
    /// a party may `close` or take its credit) through `provider` (a plain one: the watcher
    /// signs itself), with the channels' states in `store`.
    pub fn new(
        provider: DynProvider,
        signer: PrivateKeySigner,
        store: SqliteChannelStore,
        secrets: Arc<dyn Secrets>,
        cfg: WatchConfig,
    ) -> Self {
        Self {
            provider,
            wallet: EthereumWallet::from(signer.clone()),
            signer,
            store,
            secrets,
            cfg,
            chain_id: None,
            channels: BTreeMap::new(),
        }
    }

    /// The sending account.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Watches `channel` (in the store), whose events start at or after `from_block`.
    pub fn watch(&mut self, channel: B256, from_block: u64) {
        self.channels.entry(channel).or_insert(Watched {
            from_block,
            closing_from: None,
        });
    }

    /// Stops watching `channel`.
    pub fn unwatch(&mut self, channel: B256) {
        self.channels.remove(&channel);
    }

    /// One round: ends recorded transactions, then for every watched channel reads the chain
    /// and sends what it needs (see the module doc). Fails only when the recorded
    /// transactions or the chain's head cannot be read; a channel's own failure is in
    /// [`Report::errors`].
    pub async fn tick(&mut self) -> Result<Report, WatchError> {
        let mut report = Report {
            finished: self.resume().await?,
            ..Report::default()
        };
        let tip = eth_adapter::tx::latest(&self.provider).await?;
        let ids: Vec<B256> = self.channels.keys().copied().collect();
        let mut credit_tokens = Vec::new();
        for id in ids {
            match self.plan(id, tip.timestamp, tip.number).await {
                Ok((planned, skipped)) => {
                    report.skipped.extend(skipped);
                    for p in planned {
                        if let Err(e) = self.act(&p, &mut report).await {
                            report.errors.push((id, e));
                        }
                    }
                }
                Err(e) => report.errors.push((id, e)),
            }
            if let Ok(Some(saved)) = self.store.load(id) {
                let key = (saved.chan.contract, saved.chan.params.token);
                if !credit_tokens.contains(&key) {
                    credit_tokens.push(key);
                    match self
                        .plan_credit(saved.chan.contract, saved.chan.params.token)
                        .await
                    {
                        Ok(Some(p)) => {
                            if let Err(e) = self.act(&p, &mut report).await {
                                report.errors.push((id, e));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => report.errors.push((id, e)),
                    }
                }
            }
        }
        for s in &report.skipped {
            tracing::warn!(target: "eth_channel::watcher", skip = ?s, "watcher skipped an action");
        }
        Ok(report)
    }

    /// Sends `p` unless a transaction of its intent is pending or mined (then waits for it),
    /// or its intent gave up.
    async fn act(&mut self, p: &Planned, report: &mut Report) -> Result<(), WatchError> {
        match self.send(p).await? {
            send::Outcome::Sent(tx) => report.sent.push((p.action.clone(), tx)),
            send::Outcome::Waiting(tx) => report.waiting.push((p.action.clone(), tx)),
            send::Outcome::Done => {}
            send::Outcome::GaveUp(reverts) => report.skipped.push(Skip::GaveUp {
                intent: p.action.intent(),
                reverts,
            }),
        }
        Ok(())
    }

    /// Ticks every `every` until `stop` resolves; each report goes to `on_report`.
    pub async fn run(
        &mut self,
        every: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
        mut on_report: impl FnMut(Result<Report, WatchError>),
    ) {
        tokio::pin!(stop);
        loop {
            on_report(self.tick().await);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
