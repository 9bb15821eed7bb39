//! The xswap engine as a library: one installation's store and driver over any set of rails
//! (the rail registry: Bitcoin, Litecoin, Ethereum on chain, channels), plus the maker and
//! taker sides of negotiating a swap. What an exchange integrates; the `xswap` CLI only parses
//! arguments and wires adapters into it.
//!
//! The taker is always the initiator (it makes the secret and locks first): a maker never
//! locks for a stranger who has locked nothing. The maker's policy (which offer serves a quote,
//! quote bounds and lifetime, liquidity reserved for unfinished swaps, hashlock reuse) is in
//! [`maker`]; negotiation runs over the authenticated transport of `swap-net`, whose messages
//! are plain [`Envelope`]s, so another transport can carry them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Carries a taker's requests to a maker and brings back its answers: the transport. The
/// authenticated `swap-net` [`Connection`] is one; [`Direct`] asks a maker in this process (an
/// exchange whose customers' messages reach it through its own API).
#[async_trait::async_trait]
pub trait Requester: Send {
    /// Sends `msg` and waits for the answer.
    async fn request(&mut self, msg: &Envelope) -> Result<Envelope, EngineError>;
}

#[async_trait::async_trait]
impl Requester for Connection {
    async fn request(&mut self, msg: &Envelope) -> Result<Envelope, EngineError> {
        Ok(Connection::request(self, msg).await?)
    }
}

/// A maker asked directly, with no network: each request is handed to its handler as coming
/// from `peer`.
pub struct Direct {
    maker: Arc<dyn swap_net::Handler>,
    peer: Peer,
}

impl Direct {
    /// Requests to `maker` (from [`Engine::maker`]) as coming from `peer`.
    pub fn new(maker: Arc<dyn swap_net::Handler>, peer: Peer) -> Self {
        Self { maker, peer }
    }
}

#[async_trait::async_trait]
impl Requester for Direct {
    async fn request(&mut self, msg: &Envelope) -> Result<Envelope, EngineError> {
        self.maker
            .handle(self.peer, msg.clone())
            .await
            .ok_or_else(|| EngineError::Protocol("the maker did not answer".into()))
    }
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

/// One installation: its store, its driver over its rails, and its identity.
pub struct Engine {
    /// A name for logs.
    pub name: String,
    /// The driver (and through it, the store and the rails).
    pub driver: Arc<Driver>,
    /// The transport identity.
    pub identity: Identity,
    tasks: Mutex<SwapTasks>,
    /// Open quotes (see [`maker::QuoteBook`]).
    quotes: Arc<dyn QuoteBook>,
    /// Held from a proposal's funds check until its swap is stored, so two proposals cannot
    /// both count the same liquidity.
    accepting: tokio::sync::Mutex<()>,
    /// Wallet balances read for liquidity checks, shared by the checks that ask together.
    funds: swap_core::shared_read::SharedReads<(RailId, Asset), swap_core::Funds>,
    /// Where stored swaps go to run instead of this engine's driver (see [`Engine::run_with`]).
    runner: std::sync::OnceLock<Runner>,
    /// Where our nodes take channels, per rail, told to takers that ask (see
    /// [`Engine::set_contact`]).
    contacts: Mutex<HashMap<RailId, Contact>>,
}

/// Where a maker's node on a rail takes channels (see [`Engine::set_contact`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// `NODEID@HOST:PORT` (Lightning), `KEY@HOST:PORT` (Ethereum channel).
    pub address: String,
    /// The account a channel names (the maker's Ethereum address), when it names one.
    pub account: Option<String>,
}

impl Contact {
    /// Whether it reads as an address to show people: printable ASCII, no spaces, not empty,
    /// at most [`swap_core::messages::MAX_CONTACT_CHARS`] (the account too).
    pub fn is_valid(&self) -> bool {
        let ok = |a: &str| {
            !a.is_empty()
                && a.len() <= swap_core::messages::MAX_CONTACT_CHARS
                && a.bytes().all(|b| b.is_ascii_graphic())
        };
        ok(&self.address) && self.account.as_deref().is_none_or(ok)
    }
}

/// Takes a stored swap to run it (see [`Engine::run_with`]).
pub type Runner = Arc<dyn Fn(SwapId) + Send + Sync>;

/// How old a balance a taker's advisory funds check may use (see
/// `Engine::check_funds_read_since`): a wallet with thousands of coins costs the node a
/// second or more per balance read, and takes in quick succession would otherwise queue
/// behind one another's reads.
pub const TAKER_FUNDS_STALE: Duration = Duration::from_secs(3);

pub mod maker;
mod quotes;

use maker::Maker;
pub use maker::{
    match_offer, priced, MemoryQuotes, OfferBook, OfferRates, PriceSource, Quote, QuoteBook,
};
pub use quotes::{QuotesError, SqliteQuotes};

impl Engine {
    /// An engine over this store and these rails (one adapter per rail).
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn SwapStore>,
        rails: impl IntoIterator<Item = Arc<dyn Rail>>,
        identity: Identity,
        config: DriverConfig,
    ) -> Arc<Self> {
        Self::with_quotes(
            name,
            store,
            rails,
            identity,
            config,
            Arc::new(MemoryQuotes::default()),
        )
    }

    /// An engine keeping its open quotes in `quotes` (for instance a database shared by several
    /// workers, so that a proposal may reach another worker than its quote).
    pub fn with_quotes(
        name: impl Into<String>,
        store: Arc<dyn SwapStore>,
        rails: impl IntoIterator<Item = Arc<dyn Rail>>,
        identity: Identity,
        config: DriverConfig,
        quotes: Arc<dyn QuoteBook>,
    ) -> Arc<Self> {
        let driver = Arc::new(Driver::new(store, rails, config));
        Arc::new(Self {
            name: name.into(),
            driver,
            identity,
            tasks: Mutex::new(SwapTasks::new()),
            quotes,
            accepting: tokio::sync::Mutex::new(()),
            funds: swap_core::shared_read::SharedReads::new(),
            runner: std::sync::OnceLock::new(),
            contacts: Mutex::new(HashMap::new()),
        })
    }

    /// Says where our node on `rail` takes channels (`NODEID@HOST:PORT` for Lightning,
    /// `KEY@HOST:PORT` and our Ethereum address for an Ethereum channel): the maker answers
    /// takers that ask before a swap ([`Engine::contact_of`]), so that one without a channel
    /// to carry its leg is told exactly what to open. A contact that is not plain printable
    /// text of at most [`swap_core::messages::MAX_CONTACT_CHARS`] is not told.
    pub fn set_contact(&self, rail: RailId, contact: Contact) {
        if contact.is_valid() {
            if let Ok(mut c) = self.contacts.lock() {
                c.insert(rail, contact);
            }
        }
    }

    /// Where `rail`'s node takes channels, as set with [`Engine::set_contact`].
    pub fn contact(&self, rail: RailId) -> Option<Contact> {
        self.contacts.lock().ok()?.get(&rail).cloned()
    }

    /// Asks the maker of `offer` where its node on `rail` takes channels (within `within`):
    /// its answer when it gives one that reads as an address (printable, no spaces, at most
    /// [`swap_core::messages::MAX_CONTACT_CHARS`], the account too); `None` when it has none
    /// to give. A maker of an earlier build does not know the question: an error.
    pub async fn contact_of(
        &self,
        offer: &Offer,
        rail: RailId,
        within: Duration,
    ) -> Result<Option<Contact>, EngineError> {
        let ask = async {
            let mut conn =
                Connection::connect(offer.addr.as_str(), &self.identity, Some(offer.maker))
                    .await
                    .map_err(|e| EngineError::Unreachable {
                        addr: offer.addr.clone(),
                        cause: e,
                    })?;
            let id = SwapId::random().map_err(|e| EngineError::Offer(e.to_string()))?;
            let answer = conn
                .request(&Envelope::new(
                    id,
                    Message::ContactRequest {
                        chain: rail.chain,
                        rail: rail.kind,
                    },
                ))
                .await?;
            match answer.body {
                Message::Contact { address, account } if answer.swap_id == id => Ok(address
                    .map(|address| Contact { address, account })
                    .filter(Contact::is_valid)),
                Message::Reject { reason } => Err(EngineError::Rejected(reason)),
                other => Err(EngineError::Protocol(format!("{other:?}"))),
            }
        };
        tokio::time::timeout(within, ask)
            .await
            .map_err(|_| EngineError::Protocol("no contact answer in time".into()))?
    }

    /// The rail `id`, or a typed error when this engine has no adapter for it.
    fn require_rail(&self, id: RailId) -> Result<Arc<dyn Rail>, EngineError> {
        self.driver
            .rail(id)
            .cloned()
            .ok_or_else(|| EngineError::Offer(format!("this engine has no adapter for {id}")))
    }

    /// The on-chain rail of `chain`.
    fn require(&self, id: ChainId) -> Result<Arc<dyn Rail>, EngineError> {
        self.require_rail(ChainParams::for_chain(id).rail())
    }

    /// Our account on `chain` (on chain) for the swap keys at `key_index`.
    pub async fn account(&self, chain: ChainId, key_index: u32) -> Result<Account, EngineError> {
        Ok(self.require(chain)?.account(key_index).await?)
    }

    /// Our account on `rail` for the swap keys at `key_index` (a Lightning rail's is the
    /// node id).
    pub async fn account_on(&self, rail: RailId, key_index: u32) -> Result<Account, EngineError> {
        Ok(self.require_rail(rail)?.account(key_index).await?)
    }

    fn params(&self, rail: RailId) -> Result<ChainParams, EngineError> {
        Ok(*self.require_rail(rail)?.params())
    }

    async fn tips(&self, x: RailId, y: RailId) -> Result<Tips, EngineError> {
        Ok(Tips {
            x: self.require_rail(x)?.tip().await?,
            y: self.require_rail(y)?.tip().await?,
        })
    }

    /// Checks that we can take our part in both legs of `record` (its rails answer
    /// [`Rail::check_leg`]: a channel leg's channel is ours with the other party, our side can
    /// lock). Called by both parties before a swap is agreed.
    pub async fn check_legs(&self, record: &SwapRecord) -> Result<(), EngineError> {
        for leg in [Leg::X, Leg::Y] {
            let htlc = Driver::htlc(record, leg);
            let rail = self.require_rail(record.terms.leg(leg).params.rail())?;
            rail.check_leg(&htlc).await?;
        }
        Ok(())
    }

    /// Checks that every rail can move funds safely (for example: the Ethereum node is on the
    /// expected chain and the configured HTLC address holds the xswap contract; funds sent
    /// anywhere else are lost). Adapters check this before their first transaction anyway;
    /// asking here makes a wrong configuration fail before a swap is agreed.
    pub async fn verify_rails(&self) -> Result<(), EngineError> {
        for rail in self.driver.rails() {
            rail.verify().await?;
        }
        Ok(())
    }

    /// What unfinished swaps will still lock of `asset` on `chain`: our leg of every swap that
    /// has not locked yet. A maker reserves its liquidity this way, so two takers whose total
    /// exceeds its balance are not both accepted.
    async fn reserved(&self, chain: ChainId, asset: &Asset) -> Result<u128, EngineError> {
        Ok(self.driver.store().to_lock(chain, asset).await?)
    }

    /// What our wallets hold of each rail's native asset, and what unfinished swaps will
    /// still lock of it (rails without a wallet are left out).
    pub async fn balances(&self) -> Result<Vec<Balance>, EngineError> {
        let mut out = Vec::new();
        for rail in self.driver.rails() {
            let chain = rail.params().chain;
            let asset = chain.family.native_asset();
            let funds = match rail.funds(&asset).await {
                Ok(f) => f,
                Err(e) if e.cause == Cause::Invalid => continue,
                Err(e) => return Err(e.into()),
            };
            out.push(Balance {
                chain,
                reserved: self.reserved(chain, &asset).await?,
                asset,
                balance: funds.balance,
            });
        }
        // Bitcoin-family chains first, as `xswap balance` prints them.
        out.sort_by_key(|b| (b.chain.family == ChainFamily::Ethereum, b.chain.to_string()));
        Ok(out)
    }

    /// Checks that our wallet on `chain` can lock `amount` of `asset` (plus fees) beyond what
    /// unfinished swaps will still lock.
    pub async fn check_funds(
        &self,
        chain: ChainId,
        asset: &Asset,
        amount: &Amount,
    ) -> Result<(), EngineError> {
        let rail = ChainParams::for_chain(chain).rail();
        self.check_funds_read_since(rail, asset, amount, Duration::ZERO)
            .await
    }

    /// [`Engine::check_funds`] for a lock on `rail` (a Lightning rail: what one channel can
    /// send now). What unfinished swaps will still lock is counted per chain, over all its
    /// rails: conservative.
    pub async fn check_funds_on(
        &self,
        rail: RailId,
        asset: &Asset,
        amount: &Amount,
    ) -> Result<(), EngineError> {
        self.check_funds_read_since(rail, asset, amount, Duration::ZERO)
            .await
    }

    /// [`Engine::check_funds`] with a balance read up to `stale` before the reservation was
    /// read. Only where the check is advisory: a taker's before it asks for a quote. A taker
    /// locks first, so when a balance a moment old let it take one swap too many, that swap's
    /// lock fails with a typed error and it ends before the maker locks anything (nothing is
    /// lost); the maker's check, which guards liquidity it promises, reads after its reservation.
    async fn check_funds_read_since(
        &self,
        rail_id: RailId,
        asset: &Asset,
        amount: &Amount,
        stale: Duration,
    ) -> Result<(), EngineError> {
        let chain = rail_id.chain;
        let need = amount.base_units();
        let reserved = self.reserved(chain, asset).await?;
        // Read after the reservation (a read that started later serves: see `swap_core::shared_read`).
        let now = std::time::Instant::now();
        let asked = now.checked_sub(stale).unwrap_or(now);
        let rail = self.require_rail(rail_id)?;
        let funds = self
            .funds
            .since(&(rail_id, asset.clone()), asked, || rail.funds(asset))
            .await?;
        if funds.covers(need, reserved) {
            Ok(())
        } else {
            Err(EngineError::InsufficientFunds {
                chain,
                have: funds.balance,
                need,
                reserved,
            })
        }
    }

    /// Hands every swap this engine stores from now on (a take, a maker's accepted proposal)
    /// to `runner` instead of running it on this engine's driver: for example a worker that
    /// leases swaps on a database several processes share and runs them under the lease. Set
    /// once; answers false (and changes nothing) when a runner was set already.
    pub fn run_with(&self, runner: Runner) -> bool {
        self.runner.set(runner).is_ok()
    }

    /// Runs a stored swap in the background until it ends (or hands it to the runner of
    /// [`Engine::run_with`]).
    pub fn start(self: &Arc<Self>, id: SwapId) {
        if let Some(run) = self.runner.get() {
            run(id);
            return;
        }
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

    /// Waits until a swap has finished and returns how. The store is read again when this
    /// engine tells of the swap's end ([`Driver::finished`]), and every 250 ms for a swap
    /// finished elsewhere (another worker on a shared store).
    pub async fn wait(&self, id: &SwapId) -> Result<Outcome, EngineError> {
        // Listening before the read: an end between the read and the wait is still heard.
        let mut ended = self.driver.finished();
        loop {
            let (_, state) = self.driver.store().load(id).await?;
            if let Some(o) = swap_core::driver::final_outcome(&state) {
                return Ok(o);
            }
            let poll = tokio::time::sleep(std::time::Duration::from_millis(250));
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    told = ended.recv() => match told {
                        Ok(done) if done == *id => break,
                        Ok(_) => {}
                        // Ours may be among those missed.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        // The driver is gone (it is not while we hold it): the poll alone.
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            (&mut poll).await;
                            break;
                        }
                    },
                    () = &mut poll => break,
                }
            }
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
    /// is dropped, at the rates written in the offers.
    pub async fn serve_book(self: Arc<Self>, listener: TcpListener, book: Arc<dyn OfferBook>) {
        self.serve_priced(listener, book, Arc::new(OfferRates))
            .await
    }

    /// Serves the offers of `book` at the rates `prices` gives when each quote is asked.
    pub async fn serve_priced(
        self: Arc<Self>,
        listener: TcpListener,
        book: Arc<dyn OfferBook>,
        prices: Arc<dyn PriceSource>,
    ) {
        let handler = self.maker(book, prices);
        swap_net::serve(listener, self.identity.clone(), handler).await;
    }

    /// The maker side of this engine for `book` at `prices`, as a message handler: what
    /// [`Engine::serve_priced`] serves on the network, and what [`Direct`] asks in-process.
    pub fn maker(
        self: &Arc<Self>,
        book: Arc<dyn OfferBook>,
        prices: Arc<dyn PriceSource>,
    ) -> Arc<dyn swap_net::Handler> {
        Arc::new(Maker {
            engine: self.clone(),
            offers: book,
            prices,
        })
    }

    /// Takes an offer: gives `give` base units of the offer's `buy` asset for the quoted
    /// amount of its `sell` asset. Returns the swap's id once both sides stored it and it runs.
    pub async fn take(self: &Arc<Self>, offer: &Offer, give: u128) -> Result<SwapId, EngineError> {
        let amounts = self.ready_to_take(offer, give).await?;
        let mut conn = Connection::connect(offer.addr.as_str(), &self.identity, Some(offer.maker))
            .await
            .map_err(|e| EngineError::Unreachable {
                addr: offer.addr.clone(),
                cause: e,
            })?;
        self.negotiate(&mut conn, offer, amounts).await
    }

    /// Takes an offer over `conn` (any transport, e.g. [`Direct`]): as [`Engine::take`].
    pub async fn take_via(
        self: &Arc<Self>,
        conn: &mut dyn Requester,
        offer: &Offer,
        give: u128,
    ) -> Result<SwapId, EngineError> {
        let amounts = self.ready_to_take(offer, give).await?;
        self.negotiate(conn, offer, amounts).await
    }

    /// What taking `give` of `offer` gives and gets, once our rails and funds are checked
    /// (before the maker is contacted).
    async fn ready_to_take(
        &self,
        offer: &Offer,
        give: u128,
    ) -> Result<(Amount, Amount), EngineError> {
        let give_amount = with_units(&offer.buy.asset, give)?;
        let want = offer
            .quote(give)
            .ok_or_else(|| EngineError::Offer("amount too large".into()))?;
        let want_amount = with_units(&offer.sell.asset, want)?;
        self.verify_rails().await?;
        self.check_funds_read_since(
            offer.buy.rail_id(),
            &offer.buy.asset,
            &give_amount,
            TAKER_FUNDS_STALE,
        )
        .await?;
        Ok((give_amount, want_amount))
    }

    /// Quote, proposal, then the swap is stored with its secret and runs.
    async fn negotiate(
        self: &Arc<Self>,
        conn: &mut dyn Requester,
        offer: &Offer,
        (give_amount, want_amount): (Amount, Amount),
    ) -> Result<SwapId, EngineError> {
        let (rx, ry) = (offer.buy.rail_id(), offer.sell.rail_id());
        let (x, y) = (rx.chain, ry.chain);
        let id = SwapId::random().map_err(|e| EngineError::Offer(e.to_string()))?;
        let secret = Preimage::random().map_err(|e| EngineError::Offer(e.to_string()))?;
        let hashlock = secret.hashlock();
        let key_index = self.driver.store().allocate_key_index().await?;
        // On a channel rail the maker prepares to receive from us before the terms (a hold
        // invoice for the hashlock, the channel with our account); on chain it needs nothing.
        let taker_x = if rx.kind.is_on_chain() {
            None
        } else {
            Some(self.account_on(rx, key_index).await?)
        };
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
                    give_rail: rx.kind,
                    want_rail: ry.kind,
                    hashlock: taker_x.is_some().then_some(hashlock),
                    taker_x,
                },
            ))
            .await?;
        let (maker_x, maker_y, x_rail_data) = match quote.body {
            Message::Quote {
                maker_x,
                maker_y,
                x_rail_data,
            } if quote.swap_id == id => (maker_x, maker_y, x_rail_data),
            Message::Reject { reason } => return Err(EngineError::Rejected(reason)),
            other => return Err(EngineError::Protocol(format!("{other:?}"))),
        };
        // What the maker must be told to lock on Y when Y is a channel rail (our hold
        // invoice for the hashlock, our channel with it).
        let y_rail_data = self
            .require_rail(ry)?
            .prepare_receive(&hashlock, &offer.sell.asset, &want_amount, &maker_y)
            .await?;
        let tips = self.tips(rx, ry).await?;
        let terms = SwapTerms::with_default_expiries(
            id,
            hashlock,
            LegTerms {
                params: self.params(rx)?,
                asset: offer.buy.asset.clone(),
                amount: give_amount,
                sender: self.account_on(rx, key_index).await?,
                recipient: maker_x,
                expiry: Expiry::Height(Height(0)),
                rail_data: x_rail_data,
            },
            LegTerms {
                params: self.params(ry)?,
                asset: offer.sell.asset.clone(),
                amount: want_amount,
                sender: maker_y,
                recipient: self.account_on(ry, key_index).await?,
                expiry: Expiry::Height(Height(0)),
                rail_data: y_rail_data,
            },
            SafetyPolicy::default(),
            tips,
        )?;
        let record = SwapRecord {
            terms,
            role: Role::Initiator,
            secret: Some(secret),
            key_index,
            watch_from: tips,
        };
        // Both legs are ones we can take our part in (the channels the rail data names are
        // ours, our side can lock), before the maker commits to anything.
        self.check_legs(&record).await?;
        let answer = conn
            .request(&Envelope::new(
                id,
                Message::Proposal {
                    terms: Box::new(record.terms.clone()),
                },
            ))
            .await?;
        match answer.body {
            Message::Accept if answer.swap_id == id => {}
            Message::Reject { reason } => return Err(EngineError::Rejected(reason)),
            other => return Err(EngineError::Protocol(format!("{other:?}"))),
        }
        // Stored with its secret before anything is locked; then it runs.
        self.driver.create(&record).await?;
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
