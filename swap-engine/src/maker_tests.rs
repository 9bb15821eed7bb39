//! The maker's quote books, offer matching and answers.

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
    let btc = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Regtest)).rail();
    let eth = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Regtest)).rail();
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
    let btc = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Regtest)).rail();
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
