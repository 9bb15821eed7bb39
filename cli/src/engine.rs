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
use swap_net::{Connection, Identity, NetError, Offer, OfferLeg, PeerKey};
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Why a negotiation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The transport failed.
    #[error(transparent)]
    Net(#[from] NetError),
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
}

#[derive(Debug, Clone)]
struct Pending {
    key_index: u32,
    give: (ChainId, Asset, Amount),
    want: (ChainId, Asset, Amount),
    peer: PeerKey,
    at: std::time::Instant,
}

/// How long a quote waits for its proposal.
const QUOTE_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// How many quotes may wait at once.
const MAX_PENDING_QUOTES: usize = 1_000;

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
        let handler = Arc::new(Maker {
            engine: self.clone(),
            offers,
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
        let id = SwapId::random().map_err(|e| EngineError::Offer(e.to_string()))?;
        let mut conn =
            Connection::connect(offer.addr.as_str(), &self.identity, Some(offer.maker)).await?;
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

fn units(a: &Amount) -> u128 {
    match a {
        Amount::Sats(s) => s.0 as u128,
        Amount::Wei(w) => w.0,
        Amount::Token(t) => t.units,
    }
}

/// The maker's side of a negotiation.
struct Maker {
    engine: Arc<Engine>,
    offers: Vec<Offer>,
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
    fn matching_offer(&self, x: ChainId, xa: &Asset, y: ChainId, ya: &Asset) -> Option<&Offer> {
        self.offers.iter().find(|o| {
            o.buy.chain == x && o.buy.asset == *xa && o.sell.chain == y && o.sell.asset == *ya
        })
    }

    async fn quote(&self, peer: PeerKey, id: SwapId, msg: Message) -> Option<Envelope> {
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
        let Some(offer) = self.matching_offer(give_chain, &give_asset, want_chain, &want_asset)
        else {
            return reject(id, "no such offer");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now > offer.expires.0 {
            return reject(id, "offer expired");
        }
        if !give_asset.fits(&give) || !want_asset.fits(&want) {
            return reject(id, "amounts do not fit their assets");
        }
        let (g, w) = (units(&give), units(&want));
        if g < units(&offer.buy.min) || g > units(&offer.buy.max) {
            return reject(id, "amount outside the offer's limits");
        }
        match offer.quote(g) {
            Some(q) if w <= q && w > 0 => {}
            _ => return reject(id, "asks for more than the offer's rate gives"),
        }
        let engine = &self.engine;
        // Quotes are cheap to ask for: bound how many wait for a proposal, and for how long.
        if let Ok(mut p) = engine.pending.lock() {
            p.retain(|_, q| q.at.elapsed() < QUOTE_TTL);
            if p.len() >= MAX_PENDING_QUOTES {
                return reject(id, "too many open quotes, try again later");
            }
            if p.contains_key(&id) {
                return reject(id, "swap id already quoted");
            }
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

    async fn proposal(&self, peer: PeerKey, id: SwapId, terms: SwapTerms) -> Option<Envelope> {
        let engine = &self.engine;
        let pending = engine.pending.lock().ok().and_then(|mut p| p.remove(&id));
        let Some(p) = pending else {
            return reject(id, "no quote for this swap");
        };
        if p.peer != peer {
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
    async fn handle(&self, peer: PeerKey, msg: Envelope) -> Option<Envelope> {
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
