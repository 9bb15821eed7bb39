//! The maker's side: offers, quotes (bounded per key, per address and in total), proposals
//! checked by every rule, and liquidity reserved for accepted swaps.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Pending {
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
pub(super) struct Maker {
    pub(super) engine: Arc<Engine>,
    pub(super) offers: Arc<dyn OfferBook>,
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
        let now = Timestamp::now().0;
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
