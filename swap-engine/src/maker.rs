//! The maker's policy and side of a negotiation: offers, quotes (bounded per key, per address and in total), proposals
//! checked by every rule, and liquidity reserved for accepted swaps.

use super::*;

/// A quote waiting for its proposal: what was quoted, to whom, under which of our keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Our key index for the swap (our accounts in the quote are derived from it).
    pub key_index: u32,
    /// What the taker gives: rail, asset, amount.
    pub give: (RailId, Asset, Amount),
    /// What the taker wants.
    pub want: (RailId, Asset, Amount),
    /// Who asked.
    pub peer: Peer,
    /// When it was quoted (local clock, milliseconds since the Unix epoch).
    pub at_ms: u64,
}

/// How long a quote waits for its proposal (a taker proposes right after its quote).
pub const QUOTE_TTL: std::time::Duration = std::time::Duration::from_secs(120);
/// How many quotes may wait at once.
pub const MAX_PENDING_QUOTES: usize = 1_000;
/// How many quotes one peer key may hold open at once.
pub const MAX_QUOTES_PER_KEY: usize = 4;
/// How many quotes one IP address may hold open at once (keys are free to make).
pub const MAX_QUOTES_PER_IP: usize = 16;

/// Where a maker's open quotes live. [`MemoryQuotes`] keeps them in this process; an exchange
/// whose workers share one database implements it there, so a proposal may reach another
/// worker than its quote. Implementations apply the bounds of [`quote_room`].
#[async_trait::async_trait]
pub trait QuoteBook: Send + Sync {
    /// Why a quote for `id` from `peer` cannot be held now, if it cannot.
    async fn room(&self, id: &SwapId, peer: &Peer) -> Option<&'static str>;
    /// Holds `quote` for `id`, checking the bounds again (other quotes may have come in).
    async fn hold(&self, id: SwapId, quote: Quote) -> Result<(), &'static str>;
    /// Takes the quote for `id` (a proposal uses it up); `None` when there is none or it
    /// lapsed.
    async fn take(&self, id: &SwapId) -> Option<Quote>;
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn lapsed(q: &Quote, now: u64) -> bool {
    now.saturating_sub(q.at_ms) >= QUOTE_TTL.as_millis() as u64
}

/// Why a new quote for `peer` cannot be held now, if it cannot: per-key, per-address and
/// global bounds, so one stranger cannot fill the table for everyone else. Drops lapsed
/// quotes first.
pub fn quote_room(
    pending: &mut HashMap<SwapId, Quote>,
    id: &SwapId,
    peer: &Peer,
    now: u64,
) -> Option<&'static str> {
    pending.retain(|_, q| !lapsed(q, now));
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

/// A [`QuoteBook`] in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryQuotes {
    quotes: Mutex<HashMap<SwapId, Quote>>,
}

#[async_trait::async_trait]
impl QuoteBook for MemoryQuotes {
    async fn room(&self, id: &SwapId, peer: &Peer) -> Option<&'static str> {
        match self.quotes.lock() {
            Ok(mut q) => quote_room(&mut q, id, peer, now_ms()),
            Err(_) => Some("maker cannot take swaps right now"),
        }
    }

    async fn hold(&self, id: SwapId, quote: Quote) -> Result<(), &'static str> {
        let mut q = self
            .quotes
            .lock()
            .map_err(|_| "maker cannot take swaps right now")?;
        if let Some(why) = quote_room(&mut q, &id, &quote.peer, now_ms()) {
            return Err(why);
        }
        q.insert(id, quote);
        Ok(())
    }

    async fn take(&self, id: &SwapId) -> Option<Quote> {
        let q = self.quotes.lock().ok()?.remove(id)?;
        (!lapsed(&q, now_ms())).then_some(q)
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

/// Where a maker's prices come from. The default, [`OfferRates`], is the rate written in each
/// offer; a maker that follows a market implements it (and answers `None` when its feed is
/// stale, so nothing is quoted at an old price).
pub trait PriceSource: Send + Sync {
    /// The rate to quote `offer` at now: units of its `sell` asset per unit of its `buy` asset,
    /// as numerator and denominator (base units). `None`: do not quote this offer now.
    fn rate(&self, offer: &Offer) -> Option<(u128, u128)>;
}

/// The rate written in each offer.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfferRates;

impl PriceSource for OfferRates {
    fn rate(&self, offer: &Offer) -> Option<(u128, u128)> {
        Some((offer.rate_num, offer.rate_den))
    }
}

/// The offers as `prices` prices them now: each with the source's rate, those it does not
/// price left out (a zero denominator is never used).
pub fn priced(offers: Vec<Offer>, prices: &dyn PriceSource) -> Vec<Offer> {
    offers
        .into_iter()
        .filter_map(|o| match prices.rate(&o) {
            Some((num, den)) if den > 0 => Some(Offer {
                rate_num: num,
                rate_den: den,
                ..o
            }),
            _ => None,
        })
        .collect()
}

/// Why no offer fits a quote request, for the taker to read; `Ok` when one does. Of the
/// offers for the asked pair, any that is live, whose limits include `give` and whose rate
/// gives at least `want` serves: an expired offer never hides a newer one.
#[allow(clippy::too_many_arguments)]
pub fn match_offer(
    offers: &[Offer],
    now: u64,
    give_rail: RailId,
    give_asset: &Asset,
    give: &Amount,
    want_rail: RailId,
    want_asset: &Asset,
    want: &Amount,
) -> Result<(), String> {
    let (g, w) = (give.base_units(), want.base_units());
    let pair: Vec<&Offer> = offers
        .iter()
        .filter(|o| {
            (
                o.buy.rail_id(),
                &o.buy.asset,
                o.sell.rail_id(),
                &o.sell.asset,
            ) == (give_rail, give_asset, want_rail, want_asset)
        })
        .collect();
    if pair.is_empty() {
        return Err("no offer for this pair of assets and rails".into());
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
pub(super) struct Maker {
    pub(super) engine: Arc<Engine>,
    pub(super) offers: Arc<dyn OfferBook>,
    pub(super) prices: Arc<dyn PriceSource>,
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
        rail: RailId,
        asset: &Asset,
        amount: &Amount,
    ) -> Option<Envelope> {
        let chain = rail.chain;
        match self.engine.check_funds_on(rail, asset, amount).await {
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
            give_rail,
            want_rail,
            hashlock,
            taker_x,
        } = msg
        else {
            return reject(id, "expected a quote request");
        };
        let (give_chain, want_chain) = (
            RailId::new(give_chain, give_rail),
            RailId::new(want_chain, want_rail),
        );
        if !give_asset.fits(&give) || !want_asset.fits(&want) {
            return reject(id, "amounts do not fit their assets");
        }
        let now = Timestamp::now().0;
        let offers = priced(self.offers.offers(), self.prices.as_ref());
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
        if let Some(why) = engine.quotes.room(&id, &peer).await {
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
            engine.account_on(give_chain, key_index).await,
            engine.account_on(want_chain, key_index).await,
        ) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return reject(id, "maker cannot serve these chains"),
        };
        // On a channel rail we receive on, the taker needs our part first (a hold invoice for
        // the swap's hashlock). A leg never paid costs nothing.
        let x_rail_data = if give_rail.is_on_chain() {
            None
        } else {
            let (Some(hashlock), Some(payer)) = (hashlock, taker_x) else {
                return reject(
                    id,
                    "a channel leg needs the swap's hashlock and the taker's account in the \
                     quote request",
                );
            };
            let prepared = match engine.require_rail(give_chain) {
                Ok(rail) => {
                    rail.prepare_receive(&hashlock, &give_asset, &give, &payer)
                        .await
                }
                Err(_) => return reject(id, "maker cannot serve these chains"),
            };
            match prepared {
                Ok(Some(data)) => Some(data),
                Ok(None) => None,
                Err(e) => {
                    warn!(engine = %engine.name, error = %e, "cannot prepare to receive on a channel");
                    return reject(id, "maker cannot receive on this rail now");
                }
            }
        };
        let quote = Quote {
            key_index,
            give: (give_chain, give_asset, give),
            want: (want_chain, want_asset, want),
            peer,
            at_ms: now_ms(),
        };
        // Checked again: other quotes may have come in while this one was prepared.
        if let Err(why) = engine.quotes.hold(id, quote).await {
            return reject(id, why);
        }
        Some(Envelope::new(
            id,
            Message::Quote {
                maker_x,
                maker_y,
                x_rail_data,
            },
        ))
    }

    async fn proposal(&self, peer: Peer, id: SwapId, terms: SwapTerms) -> Option<Envelope> {
        let engine = &self.engine;
        let Some(p) = engine.quotes.take(&id).await else {
            return reject(id, "no quote for this swap");
        };
        if p.peer.key != peer.key {
            return reject(id, "quote was for another peer");
        }
        let (x, y) = (&terms.x, &terms.y);
        if (x.params.rail(), &x.asset, &x.amount) != (p.give.0, &p.give.1, &p.give.2)
            || (y.params.rail(), &y.asset, &y.amount) != (p.want.0, &p.want.1, &p.want.2)
        {
            return reject(id, "terms differ from the quote");
        }
        let ours = (engine.params(p.give.0), engine.params(p.want.0));
        let (Ok(px), Ok(py)) = ours else {
            return reject(id, "maker cannot serve these chains");
        };
        let accounts = (
            engine.account_on(p.give.0, p.key_index).await,
            engine.account_on(p.want.0, p.key_index).await,
        );
        let (Ok(ax), Ok(ay)) = accounts else {
            return reject(id, "maker cannot serve these chains");
        };
        // Our hold invoice on X must name us (the taker pays whatever node it names).
        if let Some(RailBody::Lightning { node_id, .. }) = x.rail_data.as_ref().map(|d| &d.body) {
            if Account::PublicKey(*node_id) != ax {
                return reject(id, "the X leg's invoice is not ours");
            }
        }
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
        // The channels the legs name are ours with the taker, and ours can lock.
        if let Err(e) = engine.check_legs(&record).await {
            warn!(engine = %engine.name, swap_id = %id, error = %e, "refused a proposal's legs");
            return reject(
                id,
                "the legs' rail data do not name a channel or invoice of ours with you, or our \
                 side cannot lock",
            );
        }
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
            Message::ContactRequest { chain, rail } => {
                let c = self.engine.contact(RailId { chain, kind: rail });
                Some(Envelope::new(
                    id,
                    Message::Contact {
                        address: c.as_ref().map(|c| c.address.clone()),
                        account: c.and_then(|c| c.account),
                    },
                ))
            }
            _ => reject(id, "unexpected message"),
        }
    }
}

#[cfg(test)]
#[path = "maker_tests.rs"]
mod tests;
