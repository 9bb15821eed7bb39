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
                rail: swap_core::RailKind::OnChain,
                chain: eth,
                asset: Asset::Eth,
                max: Amount::Wei(Wei(u128::from(max) * rate)),
                min: Amount::Wei(Wei(u128::from(min) * rate)),
            },
            buy: OfferLeg {
                rail: swap_core::RailKind::OnChain,
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
        let btc =
            ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Regtest)).rail();
        let eth =
            ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest)).rail();
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

    fn pending(peer: Peer) -> Quote {
        let btc =
            ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Regtest)).rail();
        Quote {
            key_index: 0,
            give: (btc, Asset::Btc, Amount::Sats(Sats(1))),
            want: (btc, Asset::Btc, Amount::Sats(Sats(1))),
            peer,
            at_ms: now_ms(),
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
            if quote_room(&mut table, &id, &evil, now_ms()).is_none() {
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
            if quote_room(&mut table, &id, &p, now_ms()).is_none() {
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
        assert_eq!(quote_room(&mut table, &id, &honest, now_ms()), None);
        table.insert(id, pending(honest));
        assert_eq!(
            quote_room(&mut table, &id, &honest, now_ms()),
            Some("swap id already quoted")
        );
    }

    /// A quote is used up by its proposal (once, whichever handle takes it), lapses after its
    /// TTL, and the book holds the bounds at insertion too. `a` and `b` are two handles on one
    /// book (two workers on one database).
    async fn a_book_serves_each_quote_once(a: &dyn QuoteBook, b: &dyn QuoteBook) {
        let peer = Peer {
            key: Identity::generate().unwrap().public(),
            ip: std::net::IpAddr::from([127, 0, 0, 1]),
        };
        let id = SwapId::random().unwrap();
        assert_eq!(a.room(&id, &peer).await, None);
        a.hold(id, pending(peer)).await.unwrap();
        assert_eq!(b.room(&id, &peer).await, Some("swap id already quoted"));
        assert_eq!(
            b.hold(id, pending(peer)).await,
            Err("swap id already quoted")
        );
        let taken = b.take(&id).await.unwrap();
        assert_eq!(taken, pending(peer).clone_at(taken.at_ms));
        assert_eq!(a.take(&id).await, None, "a quote serves one proposal");
        let old = SwapId::random().unwrap();
        let lapsed_quote = Quote {
            at_ms: now_ms() - QUOTE_TTL.as_millis() as u64 - 1,
            ..pending(peer)
        };
        a.hold(old, lapsed_quote).await.unwrap();
        assert_eq!(b.take(&old).await, None, "a lapsed quote is refused");
        for i in 0..MAX_QUOTES_PER_KEY {
            let book = if i % 2 == 0 { a } else { b };
            book.hold(SwapId::random().unwrap(), pending(peer))
                .await
                .unwrap();
        }
        for book in [a, b] {
            assert!(book
                .hold(SwapId::random().unwrap(), pending(peer))
                .await
                .is_err());
        }
    }

    impl Quote {
        fn clone_at(&self, at_ms: u64) -> Quote {
            Quote {
                at_ms,
                ..self.clone()
            }
        }
    }

    /// A taker asks a maker (over TCP) where its node on a rail takes channels: the address
    /// the maker set for that rail, nothing for another rail; text that is no address is
    /// never set.
    #[tokio::test]
    async fn a_maker_tells_a_taker_where_its_node_takes_channels() {
        let store = || Arc::new(swap_core::store::memory::MemoryStore::default());
        let maker_id = Identity::generate().unwrap();
        let maker = Engine::new(
            "maker",
            store(),
            Vec::new(),
            maker_id.clone(),
            DriverConfig::default(),
        );
        let btc = ChainId::new(ChainFamily::Bitcoin, Network::Regtest);
        let ln = RailId::new(btc, swap_core::RailKind::Lightning);
        let node = format!("02{}@127.0.0.1:9735", "ab".repeat(32));
        let node = Contact {
            address: node,
            account: None,
        };
        maker.set_contact(ln, node.clone());
        let eth = ChainId::new(ChainFamily::Ethereum, Network::Regtest);
        let chan = RailId::new(eth, swap_core::RailKind::EvmChannel);
        let peer = Contact {
            address: format!("{}@127.0.0.1:7701", "cd".repeat(32)),
            account: Some(format!("0x{}", "12".repeat(20))),
        };
        maker.set_contact(chan, peer.clone());
        maker.set_contact(
            RailId::new(btc, swap_core::RailKind::EvmChannel),
            Contact {
                address: "two words".into(),
                account: None,
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let serving = tokio::spawn(maker.clone().serve(listener, Vec::new()));
        let taker = Engine::new(
            "taker",
            store(),
            Vec::new(),
            Identity::generate().unwrap(),
            DriverConfig::default(),
        );
        let mut o = offer(u64::MAX, 1, 10, 1);
        o.addr = addr;
        o.maker = maker_id.public();
        let wait = Duration::from_secs(10);
        assert_eq!(taker.contact_of(&o, ln, wait).await.unwrap(), Some(node));
        assert_eq!(taker.contact_of(&o, chan, wait).await.unwrap(), Some(peer));
        let other = RailId::new(btc, swap_core::RailKind::EvmChannel);
        assert_eq!(taker.contact_of(&o, other, wait).await.unwrap(), None);
        assert_eq!(maker.contact(other), None);
        serving.abort();

        // A hostile maker's answer that is no address (control characters, spaces, too
        // long) is not shown.
        struct Liar(String);
        #[async_trait::async_trait]
        impl swap_net::Handler for Liar {
            async fn handle(&self, _peer: Peer, msg: Envelope) -> Option<Envelope> {
                Some(Envelope::new(
                    msg.swap_id,
                    Message::Contact {
                        address: Some(self.0.clone()),
                        account: None,
                    },
                ))
            }
        }
        for lie in [
            "node\u{1b}[31m@host:1".to_string(),
            "two words".into(),
            "x".repeat(201),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            o.addr = listener.local_addr().unwrap().to_string();
            let liar = tokio::spawn(swap_net::serve(
                listener,
                maker_id.clone(),
                Arc::new(Liar(lie.clone())),
            ));
            assert_eq!(
                taker.contact_of(&o, ln, wait).await.unwrap(),
                None,
                "{lie:?}"
            );
            liar.abort();
        }
    }

    #[tokio::test]
    async fn a_quote_is_taken_once_and_lapses_in_memory() {
        let book = MemoryQuotes::default();
        a_book_serves_each_quote_once(&book, &book).await;
    }

    /// Rails issue, item 4: the quote book is not a process-local map. Two handles on one
    /// SQLite file (two workers), and a handle opened again (a restart), see the same quotes.
    #[tokio::test]
    async fn a_quote_is_taken_once_and_lapses_in_sqlite_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swaps.sqlite");
        let (a, b) = (
            crate::SqliteQuotes::open(&path).unwrap(),
            crate::SqliteQuotes::open(&path).unwrap(),
        );
        a_book_serves_each_quote_once(&a, &b).await;
        let peer = Peer {
            key: Identity::generate().unwrap().public(),
            ip: std::net::IpAddr::from([10, 0, 0, 1]),
        };
        let id = SwapId::random().unwrap();
        a.hold(id, pending(peer)).await.unwrap();
        drop(a);
        let reopened = crate::SqliteQuotes::open(&path).unwrap();
        assert_eq!(reopened.take(&id).await.map(|q| q.peer), Some(peer));
    }

    /// A price source sets the rate quotes are checked against; an offer it does not price
    /// (a stale feed) serves no quote.
    #[test]
    fn quotes_follow_the_price_source() {
        struct Feed(Option<(u128, u128)>);
        impl PriceSource for Feed {
            fn rate(&self, _: &Offer) -> Option<(u128, u128)> {
                self.0
            }
        }
        let offers = vec![offer(1_000, 1_000, 10_000, 10)];
        // At the offer's own rate, 2,000 sat buy at most 20,000 wei.
        let same = priced(offers.clone(), &OfferRates);
        assert_eq!(ask(&same, 0, 2_000, 20_000), Ok(()));
        assert!(ask(&same, 0, 2_000, 30_000).is_err());
        // The market moved to 15 wei per sat.
        let up = priced(offers.clone(), &Feed(Some((15, 1))));
        assert_eq!(ask(&up, 0, 2_000, 30_000), Ok(()));
        assert!(ask(&up, 0, 2_000, 30_001).is_err());
        // No price (or a broken one): nothing is quoted.
        assert!(priced(offers.clone(), &Feed(None)).is_empty());
        assert!(priced(offers, &Feed(Some((1, 0)))).is_empty());
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
            Err("no offer for this pair of assets and rails".into())
        );
    }
}
