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

impl From<eth_adapter::EthError> for EngineError {
    fn from(e: eth_adapter::EthError) -> Self {
        EngineError::Chain(e.into())
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

mod maker;

pub use maker::{match_offer, OfferBook};
use maker::{Maker, Pending};

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
            [btc.clone() as Arc<dyn Rail>, eth.clone() as Arc<dyn Rail>],
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

    fn chain(&self, id: ChainId) -> Option<Arc<dyn Rail>> {
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
        Ok(self.eth.verify().await?)
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
        let wei = self.eth.funds(&Asset::Eth).await?.asset;
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
                let f = self.eth.funds(asset).await?;
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
                rail_data: None,
            },
            LegTerms {
                params: self.params(y)?,
                asset: offer.sell.asset.clone(),
                amount: want_amount,
                sender: maker_y,
                recipient: self.account(y, key_index)?,
                expiry: Expiry::Height(Height(0)),
                rail_data: None,
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
