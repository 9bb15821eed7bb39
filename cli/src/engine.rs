//! An xswap engine: one installation's store, driver and chain adapters, plus the maker and
//! taker sides of negotiating a swap over the authenticated transport.
//!
//! The taker is always the initiator (it makes the secret and locks first): a maker never
//! locks for a stranger who has locked nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use btc_adapter::BtcChain;
use eth_adapter::EthChain;
use swap_core::*;
use swap_net::{Connection, Identity, NetError, Offer, OfferLeg, Peer};
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Why a negotiation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The transport failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The maker could not be reached at the offer's address.
    #[error(
        "cannot reach the maker at {addr}: {cause} (is its `xswap maker` running and reachable?)"
    )]
    Unreachable {
        /// The offer's address.
        addr: String,
        /// Why.
        cause: NetError,
    },
    /// The peer refused.
    #[error("the maker refused: {0}")]
    Rejected(String),
    /// The peer answered something unexpected.
    #[error("unexpected answer from the peer: {0}")]
    Protocol(String),
    /// The offer cannot be taken as asked.
    #[error("offer: {0}")]
    Offer(String),
    /// The terms break a rule.
    #[error(transparent)]
    Terms(#[from] TermsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// A chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Our wallet cannot fund this lock (with what unfinished swaps already promised).
    #[error(
        "not enough funds on {chain}: this swap needs {need} base units plus fees, {reserved} are \
         promised to unfinished swaps, the wallet has {have}; fund the wallet first"
    )]
    InsufficientFunds {
        /// The chain.
        chain: ChainId,
        /// What the wallet holds of the asset.
        have: u128,
        /// What this swap locks.
        need: u128,
        /// What unfinished swaps that have not locked yet will still lock.
        reserved: u128,
    },
}

/// What a wallet holds of one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// The chain.
    pub chain: ChainId,
    /// The asset.
    pub asset: Asset,
    /// Base units held.
    pub balance: u128,
    /// Base units unfinished swaps will still lock.
    pub reserved: u128,
}

/// One installation: its adapters, store, driver and identity.
pub struct Engine {
    /// A name for logs.
    pub name: String,
    /// The driver (and through it, the store).
    pub driver: Arc<Driver>,
    /// The Bitcoin-family adapter.
    pub btc: Arc<BtcChain>,
    /// The Ethereum adapter.
    pub eth: Arc<EthChain>,
    /// The transport identity.
    pub identity: Identity,
    tasks: Mutex<SwapTasks>,
    pending: Mutex<HashMap<SwapId, Pending>>,
    /// Held from a proposal's funds check until its swap is stored, so two proposals cannot
    /// both count the same liquidity.
    accepting: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Pending {
    key_index: u32,
    give: (ChainId, Asset, Amount),
    want: (ChainId, Asset, Amount),
    peer: Peer,
    at: std::time::Instant,
}

/// How long a quote waits for its proposal (a taker proposes right after its quote).
const QUOTE_TTL: std::time::Duration = std::time::Duration::from_secs(120);
/// How many quotes may wait at once.
const MAX_PENDING_QUOTES: usize = 1_000;
/// How many quotes one peer key may hold open at once.
const MAX_QUOTES_PER_KEY: usize = 4;
/// How many quotes one IP address may hold open at once (keys are free to make).
const MAX_QUOTES_PER_IP: usize = 16;

/// Why a new quote for `peer` cannot be held now, if it cannot: per-key, per-address and
/// global bounds, so one stranger cannot fill the table for everyone else.
fn quote_room(
    pending: &mut HashMap<SwapId, Pending>,
    id: &SwapId,
    peer: &Peer,
) -> Option<&'static str> {
    pending.retain(|_, q| q.at.elapsed() < QUOTE_TTL);
    if pending.contains_key(id) {
        return Some("swap id already quoted");
    }
    let by_key = pending.values().filter(|q| q.peer.key == peer.key).count();
    let by_ip = pending.values().filter(|q| q.peer.ip == peer.ip).count();
    if by_key >= MAX_QUOTES_PER_KEY || by_ip >= MAX_QUOTES_PER_IP {
        return Some("too many open quotes from you: propose or wait for them to lapse");
    }
    if pending.len() >= MAX_PENDING_QUOTES {
        return Some("too many open quotes, try again later");
    }
    None
}

impl Engine {
    /// An engine over these adapters and store.
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn SwapStore>,
        btc: Arc<BtcChain>,
        eth: Arc<EthChain>,
        identity: Identity,
        config: DriverConfig,
    ) -> Arc<Self> {
        let driver = Arc::new(Driver::new(
            store,
            [btc.clone() as Arc<dyn Chain>, eth.clone() as Arc<dyn Chain>],
            config,
        ));
        Arc::new(Self {
            name: name.into(),
            driver,
            btc,
            eth,
            identity,
            tasks: Mutex::new(SwapTasks::new()),
            pending: Mutex::new(HashMap::new()),
            accepting: tokio::sync::Mutex::new(()),
        })
    }

    fn chain(&self, id: ChainId) -> Option<Arc<dyn Chain>> {
        if self.btc.params().chain == id {
            Some(self.btc.clone())
        } else if self.eth.params().chain == id {
            Some(self.eth.clone())
        } else {
            None
        }
    }

    /// Our account on `chain` for the swap keys at `key_index`.
    pub fn account(&self, chain: ChainId, key_index: u32) -> Result<Account, EngineError> {
        match chain.family {
            ChainFamily::Ethereum => Ok(self.eth.account()),
            _ => Ok(Account::PublicKey(self.btc.swap_public_key(key_index)?)),
        }
    }

    fn params(&self, chain: ChainId) -> Result<ChainParams, EngineError> {
        self.chain(chain)
            .map(|c| *c.params())
            .ok_or_else(|| EngineError::Offer(format!("this engine has no adapter for {chain}")))
    }

    async fn tips(&self, x: ChainId, y: ChainId) -> Result<Tips, EngineError> {
        let cx = self
            .chain(x)
            .ok_or_else(|| EngineError::Offer(format!("no adapter for {x}")))?;
        let cy = self
            .chain(y)
            .ok_or_else(|| EngineError::Offer(format!("no adapter for {y}")))?;
        Ok(Tips {
            x: cx.tip().await?,
            y: cy.tip().await?,
        })
    }

    /// Checks that every rail can move funds safely: the Ethereum node is on the expected chain
    /// and the configured HTLC address holds the xswap contract (funds sent anywhere else are
    /// lost). The adapter checks this before its first transaction anyway; asking here makes a
    /// wrong configuration fail before a swap is agreed.
    pub async fn verify_rails(&self) -> Result<(), EngineError> {
        self.eth
            .verify()
            .await
            .map_err(|e| EngineError::Chain(e.into()))
    }

    /// What unfinished swaps will still lock of `asset` on `chain`: our leg of every swap that
    /// has not locked yet. A maker reserves its liquidity this way, so two takers whose total
    /// exceeds its balance are not both accepted.
    async fn reserved(&self, chain: ChainId, asset: &Asset) -> Result<u128, EngineError> {
        use swap_core::initiator::State as I;
        use swap_core::responder::State as R;
        let mut sum = 0u128;
        for (record, state) in self
            .driver
            .store()
            .unfinished()
            .await?
            .into_iter()
            .flatten()
        {
            let leg = match (&state, record.role) {
                (SwapState::Initiator(I::Negotiated | I::Locking), Role::Initiator) => {
                    &record.terms.x
                }
                (
                    SwapState::Responder(
                        R::Negotiated | R::AwaitCounterLock | R::CounterLockValid | R::Locking,
                    ),
                    Role::Responder,
                ) => &record.terms.y,
                _ => continue,
            };
            if leg.params.chain == chain && leg.asset == *asset {
                sum = sum.saturating_add(leg.amount.base_units());
            }
        }
        Ok(sum)
    }

    /// What our wallets hold of each chain's native asset, and what unfinished swaps will
    /// still lock of it.
    pub async fn balances(&self) -> Result<Vec<Balance>, EngineError> {
        let btc_chain = self.btc.params().chain;
        let btc_asset = self.btc.asset();
        let (sats, _) = self.btc.funds().await?;
        let eth_chain = self.eth.params().chain;
        let wei = self
            .eth
            .funds(&Asset::Eth)
            .await
            .map_err(|e| EngineError::Chain(e.into()))?
            .asset;
        Ok(vec![
            Balance {
                chain: btc_chain,
                reserved: self.reserved(btc_chain, &btc_asset).await?,
                asset: btc_asset,
                balance: u128::from(sats),
            },
            Balance {
                chain: eth_chain,
                asset: Asset::Eth,
                balance: wei,
                reserved: self.reserved(eth_chain, &Asset::Eth).await?,
            },
        ])
    }

    /// Checks that our wallet on `chain` can lock `amount` of `asset` (plus fees) beyond what
    /// unfinished swaps will still lock.
    pub async fn check_funds(
        &self,
        chain: ChainId,
        asset: &Asset,
        amount: &Amount,
    ) -> Result<(), EngineError> {
        let need = amount.base_units();
        let reserved = self.reserved(chain, asset).await?;
        let (have, covered) = match chain.family {
            ChainFamily::Ethereum => {
                let f = self
                    .eth
                    .funds(asset)
                    .await
                    .map_err(|e| EngineError::Chain(e.into()))?;
                (f.asset, f.covers(*asset == Asset::Eth, need, reserved))
            }
            _ => {
                let (balance, fee) = self.btc.funds().await?;
                let have = u128::from(balance);
                let want = need
                    .saturating_add(reserved)
                    .saturating_add(u128::from(fee));
                (have, have >= want)
            }
        };
        if covered {
            Ok(())
        } else {
            Err(EngineError::InsufficientFunds {
                chain,
                have,
                need,
                reserved,
            })
        }
    }

    /// Runs a stored swap in the background until it ends.
    pub fn start(self: &Arc<Self>, id: SwapId) {
        if let Ok(mut tasks) = self.tasks.lock() {
            self.driver.spawn(&mut tasks, id);
        }
    }

    /// Resumes every unfinished swap in the store; returns how many run.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, EngineError> {
        let (set, bad) = self.driver.resume_all().await?;
        for e in &bad {
            warn!(engine = %self.name, error = %e, "a stored swap cannot be resumed");
        }
        let n = set.len();
        if let Ok(mut tasks) = self.tasks.lock() {
            *tasks = set;
        }
        Ok(n)
    }

    /// Waits until a swap has finished and returns how.
    pub async fn wait(&self, id: &SwapId) -> Result<Outcome, EngineError> {
        loop {
            let (_, state) = self.driver.store().load(id).await?;
            if let Some(o) = swap_core::driver::final_outcome(&state) {
                return Ok(o);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// An offer from this engine: sell `sell`, buy `buy`, reachable at `addr`.
    pub fn offer(
        &self,
        addr: String,
        sell: OfferLeg,
        buy: OfferLeg,
        rate: (u128, u128),
        expires: Timestamp,
    ) -> Offer {
        Offer {
            v: 1,
            addr,
            maker: self.identity.public(),
            sell,
            buy,
            rate_num: rate.0,
            rate_den: rate.1,
            expires,
        }
    }

    /// Serves `offers` on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, offers: Vec<Offer>) {
        self.serve_book(listener, Arc::new(offers)).await
    }

    /// Serves the offers of `book` (read again for every quote) on `listener` until the task
    /// is dropped.
    pub async fn serve_book(self: Arc<Self>, listener: TcpListener, book: Arc<dyn OfferBook>) {
        let handler = Arc::new(Maker {
            engine: self.clone(),
            offers: book,
        });
        swap_net::serve(listener, self.identity.clone(), handler).await;
    }

    /// Takes an offer: gives `give` base units of the offer's `buy` asset for the quoted
    /// amount of its `sell` asset. Returns the swap's id once both sides stored it and it runs.
    pub async fn take(self: &Arc<Self>, offer: &Offer, give: u128) -> Result<SwapId, EngineError> {
        let give_amount = with_units(&offer.buy.asset, give)?;
        let want = offer
            .quote(give)
            .ok_or_else(|| EngineError::Offer("amount too large".into()))?;
        let want_amount = with_units(&offer.sell.asset, want)?;
        let (x, y) = (offer.buy.chain, offer.sell.chain);
        self.verify_rails().await?;
        self.check_funds(x, &offer.buy.asset, &give_amount).await?;
        let id = SwapId::random().map_err(|e| EngineError::Offer(e.to_string()))?;
        let mut conn = Connection::connect(offer.addr.as_str(), &self.identity, Some(offer.maker))
            .await
            .map_err(|e| EngineError::Unreachable {
                addr: offer.addr.clone(),
                cause: e,
            })?;
        let quote = conn
            .request(&Envelope::new(
                id,
                Message::QuoteRequest {
                    give_chain: x,
                    give_asset: offer.buy.asset.clone(),
                    give: give_amount,
                    want_chain: y,
                    want_asset: offer.sell.asset.clone(),
                    want: want_amount,
                },
            ))
            .await?;
        let (maker_x, maker_y) = match quote.body {
            Message::Quote { maker_x, maker_y } if quote.swap_id == id => (maker_x, maker_y),
            Message::Reject { reason } => return Err(EngineError::Rejected(reason)),
            other => return Err(EngineError::Protocol(format!("{other:?}"))),
        };
        let key_index = self.driver.store().allocate_key_index().await?;
        let secret = Preimage::random().map_err(|e| EngineError::Offer(e.to_string()))?;
        let tips = self.tips(x, y).await?;
        let terms = SwapTerms::with_default_expiries(
            id,
            secret.hashlock(),
            LegTerms {
                params: self.params(x)?,
                asset: offer.buy.asset.clone(),
                amount: give_amount,
                sender: self.account(x, key_index)?,
                recipient: maker_x,
                expiry: Expiry::Height(Height(0)),
            },
            LegTerms {
                params: self.params(y)?,
                asset: offer.sell.asset.clone(),
                amount: want_amount,
                sender: maker_y,
                recipient: self.account(y, key_index)?,
                expiry: Expiry::Height(Height(0)),
            },
            SafetyPolicy::default(),
            tips,
        )?;
        let answer = conn
            .request(&Envelope::new(
                id,
                Message::Proposal {
                    terms: Box::new(terms.clone()),
                },
            ))
            .await?;
        match answer.body {
            Message::Accept if answer.swap_id == id => {}
            Message::Reject { reason } => return Err(EngineError::Rejected(reason)),
            other => return Err(EngineError::Protocol(format!("{other:?}"))),
        }
        // Stored with its secret before anything is locked; then it runs.
        self.driver
            .create(&SwapRecord {
                terms,
                role: Role::Initiator,
                secret: Some(secret),
                key_index,
                watch_from: tips,
            })
            .await?;
        info!(engine = %self.name, swap_id = %id, "offer taken: swap agreed, we lock first");
        self.start(id);
        Ok(id)
    }
}

/// `units` base units of `asset` as the engine's amount type.
pub fn with_units(asset: &Asset, units: u128) -> Result<Amount, EngineError> {
    match asset {
        Asset::Btc | Asset::Ltc => u64::try_from(units)
            .map(|s| Amount::Sats(Sats(s)))
            .map_err(|_| EngineError::Offer("amount too large".into())),
        Asset::Eth => Ok(Amount::Wei(Wei(units))),
        Asset::Erc20 { decimals, .. } => Ok(Amount::Token(TokenUnits {
            units,
            decimals: *decimals,
        })),
    }
}

/// Where a maker's offers come from: read again for every quote, so offers published or
/// removed while the maker runs take effect without a restart.
pub trait OfferBook: Send + Sync {
    /// The offers now (expired ones included: matching skips them).
    fn offers(&self) -> Vec<Offer>;
}

impl OfferBook for Vec<Offer> {
    fn offers(&self) -> Vec<Offer> {
        self.clone()
    }
}

/// Why no offer fits a quote request, for the taker to read; `Ok` when one does. Of the
/// offers for the asked pair, any that is live, whose limits include `give` and whose rate
/// gives at least `want` serves: an expired offer never hides a newer one.
#[allow(clippy::too_many_arguments)]
pub fn match_offer(
    offers: &[Offer],
    now: u64,
    give_chain: ChainId,
    give_asset: &Asset,
    give: &Amount,
    want_chain: ChainId,
    want_asset: &Asset,
    want: &Amount,
) -> Result<(), String> {
    let (g, w) = (give.base_units(), want.base_units());
    let pair: Vec<&Offer> = offers
        .iter()
        .filter(|o| {
            (o.buy.chain, &o.buy.asset, o.sell.chain, &o.sell.asset)
                == (give_chain, give_asset, want_chain, want_asset)
        })
        .collect();
    if pair.is_empty() {
        return Err("no offer for this pair of assets".into());
    }
    let live: Vec<&Offer> = pair.into_iter().filter(|o| o.expires.0 >= now).collect();
    if live.is_empty() {
        return Err("offer expired: ask the maker for a new one".into());
    }
    let in_limits: Vec<&Offer> = live
        .iter()
        .copied()
        .filter(|o| (o.buy.min.base_units()..=o.buy.max.base_units()).contains(&g))
        .collect();
    if in_limits.is_empty() {
        let limits: Vec<String> = live
            .iter()
            .map(|o| format!("{} to {}", o.buy.min, o.buy.max))
            .collect();
        return Err(format!(
            "amount {give} outside the offer's limits ({})",
            limits.join("; ")
        ));
    }
    if w == 0 || !in_limits.iter().any(|o| o.quote(g).is_some_and(|q| w <= q)) {
        return Err("asks for more than the offer's rate gives".into());
    }
    Ok(())
}

/// The maker's side of a negotiation.
struct Maker {
    engine: Arc<Engine>,
    offers: Arc<dyn OfferBook>,
}

fn reject(id: SwapId, reason: impl std::fmt::Display) -> Option<Envelope> {
    Some(Envelope::new(
        id,
        Message::Reject {
            reason: reason.to_string(),
        },
    ))
}

impl Maker {
    /// A rejection when our wallet cannot lock `amount` beyond what our unfinished swaps will
    /// still lock (the taker learns why, and has locked nothing yet).
    async fn refuse_unfundable(
        &self,
        id: SwapId,
        chain: ChainId,
        asset: &Asset,
        amount: &Amount,
    ) -> Option<Envelope> {
        match self.engine.check_funds(chain, asset, amount).await {
            Ok(()) => None,
            Err(EngineError::InsufficientFunds { .. }) => {
                warn!(engine = %self.engine.name, swap_id = %id, %chain, "refused: not enough liquidity for this amount");
                reject(id, "the maker has not enough liquidity for this amount now")
            }
            Err(e) => {
                warn!(engine = %self.engine.name, error = %e, "cannot read our funds");
                reject(id, "maker cannot take swaps right now")
            }
        }
    }

    async fn quote(&self, peer: Peer, id: SwapId, msg: Message) -> Option<Envelope> {
        let Message::QuoteRequest {
            give_chain,
            give_asset,
            give,
            want_chain,
            want_asset,
            want,
        } = msg
        else {
            return reject(id, "expected a quote request");
        };
        if !give_asset.fits(&give) || !want_asset.fits(&want) {
            return reject(id, "amounts do not fit their assets");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let offers = self.offers.offers();
        if let Err(why) = match_offer(
            &offers,
            now,
            give_chain,
            &give_asset,
            &give,
            want_chain,
            &want_asset,
            &want,
        ) {
            return reject(id, why);
        }
        let engine = &self.engine;
        if let Err(e) = engine.verify_rails().await {
            warn!(engine = %engine.name, error = %e, "cannot trade: a rail failed its check");
            return reject(id, "maker cannot take swaps right now");
        }
        if let Some(r) = self
            .refuse_unfundable(id, want_chain, &want_asset, &want)
            .await
        {
            return Some(r);
        }
        // Quotes are cheap to ask for: bound how many wait for a proposal, and for how long.
        if let Some(why) = engine
            .pending
            .lock()
            .ok()
            .and_then(|mut p| quote_room(&mut p, &id, &peer))
        {
            return reject(id, why);
        }
        let key_index = match engine.driver.store().allocate_key_index().await {
            Ok(k) => k,
            Err(e) => {
                warn!(engine = %engine.name, error = %e, "store error while quoting");
                return reject(id, "maker cannot take swaps right now");
            }
        };
        let (maker_x, maker_y) = match (
            engine.account(give_chain, key_index),
            engine.account(want_chain, key_index),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return reject(id, "maker cannot serve these chains"),
        };
        if let Ok(mut p) = engine.pending.lock() {
            // Checked again: other quotes may have come in while this one was prepared.
            if let Some(why) = quote_room(&mut p, &id, &peer) {
                return reject(id, why);
            }
            p.insert(
                id,
                Pending {
                    key_index,
                    give: (give_chain, give_asset, give),
                    want: (want_chain, want_asset, want),
                    peer,
                    at: std::time::Instant::now(),
                },
            );
        }
        Some(Envelope::new(id, Message::Quote { maker_x, maker_y }))
    }

    async fn proposal(&self, peer: Peer, id: SwapId, terms: SwapTerms) -> Option<Envelope> {
        let engine = &self.engine;
        let pending = engine.pending.lock().ok().and_then(|mut p| p.remove(&id));
        let Some(p) = pending else {
            return reject(id, "no quote for this swap");
        };
        if p.peer.key != peer.key {
            return reject(id, "quote was for another peer");
        }
        let (x, y) = (&terms.x, &terms.y);
        if (x.params.chain, &x.asset, &x.amount) != (p.give.0, &p.give.1, &p.give.2)
            || (y.params.chain, &y.asset, &y.amount) != (p.want.0, &p.want.1, &p.want.2)
        {
            return reject(id, "terms differ from the quote");
        }
        let ours = (engine.params(p.give.0), engine.params(p.want.0));
        let (Ok(px), Ok(py)) = ours else {
            return reject(id, "maker cannot serve these chains");
        };
        let accounts = (
            engine.account(p.give.0, p.key_index),
            engine.account(p.want.0, p.key_index),
        );
        let (Ok(ax), Ok(ay)) = accounts else {
            return reject(id, "maker cannot serve these chains");
        };
        let tips = match engine.tips(p.give.0, p.want.0).await {
            Ok(t) => t,
            Err(e) => {
                warn!(engine = %engine.name, error = %e, "cannot read the chains for a proposal");
                return reject(id, "maker cannot read the chains now, try again later");
            }
        };
        let terms = match check_proposal(&terms, &px, &py, &ax, &ay, tips, &AcceptPolicy::default())
        {
            Ok(t) => t,
            Err(e) => return reject(id, e),
        };
        // A hashlock we already have would let one counter-lock serve two of our swaps.
        match engine.driver.store().hashlock_in_use(&terms.hashlock).await {
            Ok(false) => {}
            Ok(true) => return reject(id, "hashlock already used"),
            Err(e) => {
                warn!(engine = %engine.name, error = %e, "store error while checking a proposal");
                return reject(id, "maker cannot take swaps right now");
            }
        }
        let record = SwapRecord {
            terms,
            role: Role::Responder,
            secret: None,
            key_index: p.key_index,
            watch_from: tips,
        };
        let _gate = engine.accepting.lock().await;
        if let Some(r) = self
            .refuse_unfundable(id, p.want.0, &p.want.1, &p.want.2)
            .await
        {
            return Some(r);
        }
        if let Err(e) = engine.driver.create(&record).await {
            warn!(engine = %engine.name, error = %e, "store error while accepting");
            return reject(id, "maker cannot take swaps right now");
        }
        info!(engine = %engine.name, swap_id = %id, "proposal accepted: waiting for the taker's lock");
        engine.start(id);
        Some(Envelope::new(id, Message::Accept))
    }
}

#[async_trait::async_trait]
impl swap_net::Handler for Maker {
    async fn handle(&self, peer: Peer, msg: Envelope) -> Option<Envelope> {
        let id = msg.swap_id;
        match msg.body {
            m @ Message::QuoteRequest { .. } => self.quote(peer, id, m).await,
            Message::Proposal { terms } => self.proposal(peer, id, *terms).await,
            // Hints only: the driver watches the chains.
            Message::LockNotice { .. } | Message::Abort { .. } => None,
            _ => reject(id, "unexpected message"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn offer(expires: u64, min: u64, max: u64, rate: u128) -> Offer {
        let btc = ChainId::new(ChainFamily::Bitcoin, Network::Regtest);
        let eth = ChainId::new(ChainFamily::Ethereum, Network::Regtest);
        Offer {
            v: 1,
            addr: "127.0.0.1:7700".into(),
            maker: Identity::generate().unwrap().public(),
            sell: OfferLeg {
                chain: eth,
                asset: Asset::Eth,
                max: Amount::Wei(Wei(u128::from(max) * rate)),
                min: Amount::Wei(Wei(u128::from(min) * rate)),
            },
            buy: OfferLeg {
                chain: btc,
                asset: Asset::Btc,
                max: Amount::Sats(Sats(max)),
                min: Amount::Sats(Sats(min)),
            },
            rate_num: rate,
            rate_den: 1,
            expires: Timestamp(expires),
        }
    }

    fn ask(offers: &[Offer], now: u64, sats: u64, wei: u128) -> Result<(), String> {
        let btc = ChainId::new(ChainFamily::Bitcoin, Network::Regtest);
        let eth = ChainId::new(ChainFamily::Ethereum, Network::Regtest);
        match_offer(
            offers,
            now,
            btc,
            &Asset::Btc,
            &Amount::Sats(Sats(sats)),
            eth,
            &Asset::Eth,
            &Amount::Wei(Wei(wei)),
        )
    }

    fn pending(peer: Peer) -> Pending {
        let btc = ChainId::new(ChainFamily::Bitcoin, Network::Regtest);
        Pending {
            key_index: 0,
            give: (btc, Asset::Btc, Amount::Sats(Sats(1))),
            want: (btc, Asset::Btc, Amount::Sats(Sats(1))),
            peer,
            at: std::time::Instant::now(),
        }
    }

    /// Issue 9, item 3a: one key, or many keys from one address, cannot fill the quote table.
    #[test]
    fn quotes_are_bounded_per_key_per_address_and_in_total() {
        let mut table = HashMap::new();
        let ip = |n: u8| std::net::IpAddr::from([127, 0, 0, n]);
        let key = || Identity::generate().unwrap().public();
        let evil = Peer {
            key: key(),
            ip: ip(2),
        };
        let mut held = 0;
        for _ in 0..10 {
            let id = SwapId::random().unwrap();
            if quote_room(&mut table, &id, &evil).is_none() {
                table.insert(id, pending(evil));
                held += 1;
            }
        }
        assert_eq!(held, MAX_QUOTES_PER_KEY);
        // Fresh keys from the same address.
        for _ in 0..100 {
            let id = SwapId::random().unwrap();
            let p = Peer {
                key: key(),
                ip: ip(2),
            };
            if quote_room(&mut table, &id, &p).is_none() {
                table.insert(id, pending(p));
            }
        }
        assert_eq!(table.len(), MAX_QUOTES_PER_IP);
        // Someone else is served.
        let honest = Peer {
            key: key(),
            ip: ip(1),
        };
        let id = SwapId::random().unwrap();
        assert_eq!(quote_room(&mut table, &id, &honest), None);
        table.insert(id, pending(honest));
        assert_eq!(
            quote_room(&mut table, &id, &honest),
            Some("swap id already quoted")
        );
    }

    #[test]
    fn an_expired_offer_never_hides_a_newer_one() {
        let old = offer(100, 1_000, 10_000, 10);
        let new = offer(1_000, 1_000, 10_000, 10);
        assert_eq!(
            ask(std::slice::from_ref(&old), 500, 2_000, 20_000),
            Err("offer expired: ask the maker for a new one".into())
        );
        assert_eq!(ask(&[old, new], 500, 2_000, 20_000), Ok(()));
    }

    #[test]
    fn every_live_offer_of_the_pair_is_tried_and_refusals_state_the_limits() {
        let small = offer(1_000, 1_000, 10_000, 10);
        let large = offer(1_000, 50_000, 90_000, 9);
        let both = [small, large];
        assert_eq!(ask(&both, 0, 60_000, 540_000), Ok(()));
        assert_eq!(ask(&both, 0, 5_000, 50_000), Ok(()));
        // The large offer's rate gives 9 per sat, not 10.
        assert_eq!(
            ask(&both, 0, 60_000, 600_000),
            Err("asks for more than the offer's rate gives".into())
        );
        let err = ask(&both, 0, 20_000, 1).unwrap_err();
        assert!(err.contains("1000 sat to 10000 sat"), "{err}");
        assert!(err.contains("50000 sat to 90000 sat"), "{err}");
        assert_eq!(
            ask(&both, 0, 5_000, 0),
            Err("asks for more than the offer's rate gives".into())
        );
        assert_eq!(
            ask(&[], 0, 5_000, 1),
            Err("no offer for this pair of assets".into())
        );
    }
}
