//! Property tests of the expiry rules (`docs/protocol.md` rules 1 and 2) over random chain
//! parameters, clocks and block paces: whenever terms are accepted,
//! - the responder can always claim after the initiator's claim, however late that claim lands;
//! - an initiator claim sent before the deadline is mined before the responder can refund.
//!
//! Each leg may be on chain or on a channel rail (Lightning on a height chain, an EVM channel
//! on a time chain) with a random enforcement delay: a claim on a channel rail whose peer does
//! not answer lands only after the enforcement delay plus the claim budget.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use swap_core::*;

/// Cases in which terms were accepted (the property was really exercised).
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static TRIED: AtomicU64 = AtomicU64::new(0);

fn chain_params(time_based: bool) -> impl Strategy<Value = ChainParams> {
    (
        1u64..=900,
        10u32..=100,
        100u32..=400,
        1u32..=12,
        1u32..=30,
        0u64..=60,
        0u64..=30,
    )
        .prop_map(move |(interval, fast, slow, confs, claim, poll, drift)| {
            let family = if time_based {
                ChainFamily::Ethereum
            } else {
                ChainFamily::Bitcoin
            };
            let mut p = ChainParams::for_chain(ChainId::new(family, Network::Mainnet));
            p.block_interval = interval;
            p.fast_factor_pct = fast;
            p.slow_factor_pct = slow;
            p.lock_confirmations = confs;
            p.claim_blocks = claim;
            p.clock_drift = if time_based { drift } else { 0 };
            p.observe_lag = p.blocks_secs(1, Pace::Slow) as u64 + poll;
            p
        })
}

/// `p` on its chain's channel rail (when `channel`), with `extra` more blocks of enforcement
/// delay than the rail's minimum.
fn on_rail(mut p: ChainParams, channel: bool, extra: u32) -> ChainParams {
    if channel {
        let kind = match p.expiry_kind() {
            ExpiryKind::Height => RailKind::Lightning,
            ExpiryKind::Time => RailKind::EvmChannel,
        };
        let base = ChainParams::for_rail(RailId::new(p.chain, kind)).enforcement_blocks;
        p.kind = kind;
        p.enforcement_blocks = base + extra;
    } else {
        p.kind = RailKind::OnChain;
        p.enforcement_blocks = 0;
    }
    p
}

fn leg(p: ChainParams, sender: u8, recipient: u8) -> LegTerms {
    let (asset, amount, s, r) = match p.expiry_kind() {
        ExpiryKind::Height => (
            Asset::Btc,
            Amount::Sats(Sats(10_000)),
            Account::PublicKey(PublicKeyBytes([sender; 33])),
            Account::PublicKey(PublicKeyBytes([recipient; 33])),
        ),
        ExpiryKind::Time => (
            Asset::Eth,
            Amount::Wei(Wei(10_000)),
            Account::Evm(EvmAddress([sender; 20])),
            Account::Evm(EvmAddress([recipient; 20])),
        ),
    };
    LegTerms {
        params: p,
        asset,
        amount,
        sender: s,
        recipient: r,
        expiry: Expiry::Height(Height(0)),
        rail_data: match p.kind {
            RailKind::OnChain => None,
            RailKind::Lightning => Some(RailData::new(RailBody::Lightning {
                node_id: PublicKeyBytes([recipient; 33]),
                payment_secret: [sender; 32],
                min_final_cltv_delta: 42,
                route_hints: Vec::new(),
            })),
            RailKind::EvmChannel => Some(RailData::new(RailBody::EvmChannel {
                channel_id: [sender; 32],
            })),
        },
    }
}

/// Block gaps within the chain's pace bounds, drawn from `seeds`.
fn gap(p: &ChainParams, seed: u64) -> u64 {
    let lo = (p.block_interval * p.fast_factor_pct as u64)
        .div_ceil(100)
        .max(1);
    let hi = (p.block_interval * p.slow_factor_pct as u64 / 100).max(lo);
    lo + seed % (hi - lo + 1)
}

/// Real time (seconds after the tip block) at which block `tip + n` is found.
fn block_time(p: &ChainParams, n: u64, seeds: &[u64]) -> u64 {
    (0..n)
        .map(|i| gap(p, seeds[(i as usize) % seeds.len()].wrapping_mul(i + 1)))
        .sum()
}

/// The height reached by real time `t` (blocks found at or before `t`).
fn height_at(p: &ChainParams, t: u64, seeds: &[u64]) -> u64 {
    let mut n = 0u64;
    let mut at = 0u64;
    loop {
        at += gap(p, seeds[(n as usize) % seeds.len()].wrapping_mul(n + 1));
        if at > t {
            return n;
        }
        n += 1;
    }
}

fn tip(h: u64, t: u64) -> ChainTip {
    ChainTip {
        height: Height(h),
        time: Timestamp(t),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Rule 2: accepted terms leave the responder time to claim X after the latest claim on Y.
    #[test]
    fn responder_can_always_claim_after_the_initiator(
        x_time in any::<bool>(),
        y_time in any::<bool>(),
        px in any::<bool>().prop_flat_map(chain_params),
        py in any::<bool>().prop_flat_map(chain_params),
        ex_secs in 0u64..=200_000,
        ey_secs in 0u64..=100_000,
        hx in 0u64..=1_000_000,
        hy in 0u64..=1_000_000,
        now in 1_600_000_000u64..=1_800_000_000,
        seeds_x in prop::collection::vec(any::<u64>(), 1..16),
        seeds_y in prop::collection::vec(any::<u64>(), 1..16),
        (x_channel, y_channel) in (any::<bool>(), any::<bool>()),
        (x_extra, y_extra) in (0u32..=60, 0u32..=60),
    ) {
        // Re-make the params with the drawn kinds.
        let mut px = px;
        let mut py = py;
        px.chain = ChainId::new(if x_time { ChainFamily::Ethereum } else { ChainFamily::Bitcoin }, Network::Mainnet);
        py.chain = ChainId::new(if y_time { ChainFamily::Ethereum } else { ChainFamily::Litecoin }, Network::Mainnet);
        if !x_time { px.clock_drift = 0; }
        if !y_time { py.clock_drift = 0; }
        let px = on_rail(px, x_channel, x_extra);
        let py = on_rail(py, y_channel, y_extra);
        let tips = Tips { x: tip(hx, now), y: tip(hy, now) };
        let mut x = leg(px, 1, 2);
        let mut y = leg(py, 3, 4);
        x.expiry = px.expiry_after(tips.x, ex_secs);
        y.expiry = py.expiry_after(tips.y, ey_secs);
        TRIED.fetch_add(1, Ordering::Relaxed);
        let Ok(terms) = SwapTerms::new(SwapId([1; 16]), Hashlock([0; 32]), x, y, SafetyPolicy { min_claim_window: 60, margin: 0 }, tips) else {
            return Ok(()); // refused terms promise nothing
        };
        ACCEPTED.fetch_add(1, Ordering::Relaxed);

        responder_claim_lands(&terms, hx, hy, now, &seeds_x, &seeds_y)?;
    }

    /// Rule 1: a claim the initiator sends while `initiator_may_claim` holds is mined before
    /// the responder's refund becomes valid.
    #[test]
    fn initiator_claim_before_deadline_lands_in_time(
        y_time in any::<bool>(),
        py in any::<bool>().prop_flat_map(chain_params),
        ey_secs in 0u64..=100_000,
        hy in 0u64..=1_000_000,
        now in 1_600_000_000u64..=1_800_000_000,
        later in 0u64..=100_000,
        seeds_y in prop::collection::vec(any::<u64>(), 1..16),
        y_channel in any::<bool>(),
        y_extra in 0u32..=60,
    ) {
        let mut py = py;
        py.chain = ChainId::new(if y_time { ChainFamily::Ethereum } else { ChainFamily::Bitcoin }, Network::Mainnet);
        if !y_time { py.clock_drift = 0; }
        let py = on_rail(py, y_channel, y_extra);
        let expiry = py.expiry_after(tip(hy, now), ey_secs);
        // The chain some time later: its tip block and that block's real time.
        let n = height_at(&py, later, &seeds_y);
        let tip_real = now + block_time(&py, n, &seeds_y);
        let tip_now = tip(hy + n, tip_real);
        let deadline = py.claim_deadline(expiry);
        if py.reached(deadline, tip_now) {
            return Ok(()); // the initiator does not claim
        }
        // Mined within claim_blocks blocks after the tip block (after the enforcement delay on
        // a channel rail whose peer does not answer).
        let landing_height = hy + n + py.cutoff_blocks() as u64;
        let landing_real = now + block_time(&py, n + py.cutoff_blocks() as u64, &seeds_y);
        match expiry {
            Expiry::Height(e) => prop_assert!(landing_height <= e.0),
            Expiry::Time(e) => prop_assert!(landing_real + py.clock_drift < e.0),
        }
    }

    /// Default expiries are never refused for rule 2 (E_X is computed from it), and whatever
    /// is accepted passes every check again at the same tips.
    #[test]
    fn default_expiries_respect_rule_2(
        px in any::<bool>().prop_flat_map(chain_params),
        py in any::<bool>().prop_flat_map(chain_params),
        hx in 0u64..=1_000_000,
        hy in 0u64..=1_000_000,
        now in 1_600_000_000u64..=1_800_000_000,
    ) {
        let tips = Tips { x: tip(hx, now), y: tip(hy, now) };
        match SwapTerms::with_default_expiries(SwapId([1; 16]), Hashlock([0; 32]), leg(px, 1, 2), leg(py, 3, 4), SafetyPolicy::default(), tips) {
            Ok(t) => {
                prop_assert!(t.check_rule2(tips).is_ok());
                prop_assert!(t.check_schedule(tips).is_ok());
                prop_assert!(t.check_responder_may_lock(tips).is_ok());
            }
            Err(TermsError::Rule1ClaimWindow { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected {}", e),
        }
    }
}

/// Runs after the property above (same binary, separate test): the generator must produce
/// enough accepted terms for the property to mean something.
#[test]
fn rule2_property_exercises_accepted_terms() {
    // Run the property here too so the counters are filled whatever the test order.
    responder_can_always_claim_after_the_initiator();
    let (a, t) = (
        ACCEPTED.load(Ordering::Relaxed),
        TRIED.load(Ordering::Relaxed),
    );
    println!("rule 2 property: {a} of {t} random term sets accepted and checked");
    assert!(a * 20 >= t, "only {a} of {t} cases accepted");
}

fn agreed(terms: &SwapTerms, leg: Leg) -> ObservedLock {
    let l = terms.leg(leg);
    ObservedLock {
        txref: TxRef("f0".into()),
        asset: l.asset.clone(),
        amount: l.amount,
        sender: l.sender,
        recipient: l.recipient,
        hashlock: terms.hashlock,
        expiry: l.expiry,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The initiator never reveals the secret once its deadline has passed, from any state
    /// before claiming, even facing a perfect, deeply confirmed counter-lock.
    #[test]
    fn initiator_never_claims_after_its_deadline(
        px in any::<bool>().prop_flat_map(chain_params),
        py in any::<bool>().prop_flat_map(chain_params),
        hx in 0u64..=1_000_000,
        hy in 0u64..=1_000_000,
        now in 1_600_000_000u64..=1_800_000_000,
        past in 0u64..=10_000,
        state_pick in 0usize..6,
    ) {
        let secret = Preimage::from_bytes([0x3c; 32]);
        let tips = Tips { x: tip(hx, now), y: tip(hy, now) };
        let Ok(terms) = SwapTerms::with_default_expiries(SwapId([1; 16]), secret.hashlock(), leg(px, 1, 2), leg(py, 3, 4), SafetyPolicy::default(), tips) else {
            return Ok(());
        };
        let tip_y = match py.claim_deadline(terms.y.expiry) {
            Expiry::Height(h) => tip(h.0 + past, now),
            Expiry::Time(t) => tip(hy + 1, t.0 + past),
        };
        prop_assert!(!terms.initiator_may_claim(tip_y));
        let snap = Snapshot {
            x: LegView { tip: tips.x, htlc: HtlcStatus::Funded { lock: agreed(&terms, Leg::X), finality: Finality::confirmations(1000) } },
            y: LegView { tip: tip_y, htlc: HtlcStatus::Funded { lock: agreed(&terms, Leg::Y), finality: Finality::confirmations(1000) } },
        };
        let state = [
            initiator::State::Locked { txref: TxRef("a".into()) },
            initiator::State::LockConfirmed,
            initiator::State::CounterLockSeen { txref: TxRef("b".into()) },
            initiator::State::CounterLockValid,
            initiator::State::AwaitRefund { reason: GiveUpReason::CounterLockMissing },
            initiator::State::Claiming,
        ][state_pick].clone();
        let step = initiator::next(&terms, &secret, &state, &snap);
        prop_assert!(!step.actions.iter().any(|a| matches!(a, Action::Claim { .. })), "claimed from {:?}", state);
    }
}

/// Rule 2 for accepted `terms`: the latest claim on Y (at Y's drawn pace), noticed, leaves
/// the responder time to get its claim on X mined (at X's drawn pace) before the initiator
/// can refund. `hx`, `hy`: the tips' heights at `now`.
#[allow(clippy::too_many_arguments)]
fn responder_claim_lands(
    terms: &SwapTerms,
    hx: u64,
    hy: u64,
    now: u64,
    seeds_x: &[u64],
    seeds_y: &[u64],
) -> Result<(), TestCaseError> {
    let (px, py) = (terms.x.params, terms.y.params);
    let last_y = match py.claims_final_after(terms.y.expiry) {
        Expiry::Height(h) => block_time(&py, h.0 - hy, seeds_y),
        // Block timestamps run up to `drift` behind real time.
        Expiry::Time(t) => t.0 - now + py.clock_drift,
    };
    // The responder notices it, then starts its claim on X (on a channel rail whose peer does
    // not answer: the enforcement delay, then the claim budget).
    let broadcast = last_y + py.observe_lag;
    match terms.x.expiry {
        Expiry::Height(e) => {
            let lands_at = hx + height_at(&px, broadcast, seeds_x) + px.cutoff_blocks() as u64;
            // The initiator's refund is valid from height E+1 on.
            prop_assert!(
                lands_at <= e.0,
                "claim lands at {} > expiry {}",
                lands_at,
                e.0
            );
        }
        Expiry::Time(e) => {
            // Mined within the budget after the broadcast (the first block comes at most one
            // slow gap later), its timestamp up to `drift` ahead of real time.
            let n = height_at(&px, broadcast, seeds_x);
            let lands = now + block_time(&px, n + px.cutoff_blocks() as u64, seeds_x);
            prop_assert!(
                lands + px.clock_drift < e.0,
                "claim lands at {} >= expiry {}",
                lands + px.clock_drift,
                e.0
            );
        }
    }
    Ok(())
}

/// LDK fails a held HTLC back this many blocks before its CLTV (`HTLC_FAIL_BACK_BUFFER`,
/// lightning 0.2 `chain/channelmonitor.rs`): a payee must have claimed by then.
const LDK_FAIL_BACK_BUFFER: u64 = 39;
/// LDK's `MIN_FINAL_CLTV_EXPIRY_DELTA`: a payee refuses a final CLTV closer than this.
const LDK_MIN_FINAL_CLTV_DELTA: u64 = 42;

/// The rails xswap runs on `network`, each with the parameters its adapter uses.
fn real_rails(network: Network) -> (Vec<ChainParams>, Vec<ChainParams>) {
    let rail =
        |family, kind| ChainParams::for_rail(RailId::new(ChainId::new(family, network), kind));
    let coin = vec![
        rail(ChainFamily::Bitcoin, RailKind::OnChain),
        rail(ChainFamily::Bitcoin, RailKind::Lightning),
        rail(ChainFamily::Litecoin, RailKind::OnChain),
        rail(ChainFamily::Litecoin, RailKind::Lightning),
    ];
    let eth = vec![
        rail(ChainFamily::Ethereum, RailKind::OnChain),
        rail(ChainFamily::Ethereum, RailKind::EvmChannel),
    ];
    (coin, eth)
}

fn rail_name(p: &ChainParams) -> String {
    format!("{} {:?}", p.chain, p.kind)
}

/// What a Lightning leg needs of its expiry at agreement (tip height `h`): the payer's
/// final CLTV delta is at least LDK's minimum, the payee's claim cutoff comes before LDK
/// fails the held HTLC back, and the first hop's HTLC (up to `route_blocks` later) is within
/// what forwarding nodes accept.
fn lightning_leg_fits(l: &LegTerms, h: u64) -> Result<(), TestCaseError> {
    let p = l.params;
    if p.kind != RailKind::Lightning {
        return Ok(());
    }
    let Expiry::Height(e) = l.expiry else {
        return Err(TestCaseError::fail("a Lightning leg with a time expiry"));
    };
    let Expiry::Height(cutoff) = p.claim_cutoff(l.expiry) else {
        unreachable!()
    };
    prop_assert!(
        e.0 > h + LDK_MIN_FINAL_CLTV_DELTA,
        "final delta {} too small",
        e.0 - h
    );
    prop_assert!(
        cutoff.0 + LDK_FAIL_BACK_BUFFER < e.0,
        "claim cutoff after LDK fails back"
    );
    prop_assert!(
        e.0 + u64::from(p.route_blocks)
            <= h + u64::from(swap_core::params::LIGHTNING_MAX_CLTV_BLOCKS),
        "first hop CLTV {} blocks out, forwarders refuse more than {}",
        e.0 + u64::from(p.route_blocks) - h,
        swap_core::params::LIGHTNING_MAX_CLTV_BLOCKS
    );
    Ok(())
}

/// Every pair of real rails (coin on chain or over Lightning, Bitcoin or Litecoin; Ethereum on
/// chain or in a channel), each asset on either side, on mainnet, testnet and regtest, with the
/// adapters' parameters and the engine's default expiries, at random tips and block paces
/// within the chains' bounds: terms are agreed, rules 1 and 2 hold, the responder may lock
/// at agreement, and Lightning legs fit LDK's and forwarders' CLTV limits.
#[test]
fn every_real_pair_agrees_terms_that_keep_the_rules() {
    use proptest::test_runner::{Config, TestRunner};
    let mut pairs = 0;
    for network in [Network::Mainnet, Network::Testnet, Network::Regtest] {
        let (coin, eth) = real_rails(network);
        for c in &coin {
            for e in &eth {
                for coin_is_x in [true, false] {
                    let (px, py) = if coin_is_x { (*c, *e) } else { (*e, *c) };
                    let pair = format!("{} x {}", rail_name(&px), rail_name(&py));
                    let mut runner = TestRunner::new(Config::with_cases(120));
                    let cases = (
                        (0u64..=800_000, 0u64..=800_000),
                        1_600_000_000u64..=1_800_000_000,
                        // Lightning legs: direct only, or routed with a budget of 1-3 hops.
                        (
                            prop_oneof![Just(0u32), 40u32..=216],
                            prop_oneof![Just(0u32), 40u32..=216],
                        ),
                        prop::collection::vec(any::<u64>(), 1..16),
                        prop::collection::vec(any::<u64>(), 1..16),
                        0u64..=200_000,
                    );
                    runner
                        .run(
                            &cases,
                            |((hx, hy), now, (rx, ry), seeds_x, seeds_y, later)| {
                                let mut px = px;
                                let mut py = py;
                                if px.kind == RailKind::Lightning {
                                    px.route_blocks = rx;
                                }
                                if py.kind == RailKind::Lightning {
                                    py.route_blocks = ry;
                                }
                                let tips = Tips {
                                    x: tip(hx, now),
                                    y: tip(hy, now),
                                };
                                let terms = SwapTerms::with_default_expiries(
                                    SwapId([1; 16]),
                                    Hashlock([0; 32]),
                                    leg(px, 1, 2),
                                    leg(py, 3, 4),
                                    SafetyPolicy::default(),
                                    tips,
                                )
                                .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
                                prop_assert!(terms.check_responder_may_lock(tips).is_ok());
                                responder_claim_lands(&terms, hx, hy, now, &seeds_x, &seeds_y)?;
                                lightning_leg_fits(&terms.x, hx)?;
                                lightning_leg_fits(&terms.y, hy)?;
                                // Rule 1: a claim on Y the initiator may still start, at a random
                                // later moment of Y, is mined before the responder may refund.
                                let n = height_at(&py, later, &seeds_y);
                                let tip_y = tip(hy + n, now + block_time(&py, n, &seeds_y));
                                if terms.initiator_may_claim(tip_y) {
                                    let landing = n + py.cutoff_blocks() as u64;
                                    match terms.y.expiry {
                                        Expiry::Height(e) => prop_assert!(hy + landing <= e.0),
                                        Expiry::Time(e) => prop_assert!(
                                            now + block_time(&py, landing, &seeds_y)
                                                + py.clock_drift
                                                < e.0
                                        ),
                                    }
                                }
                                Ok(())
                            },
                        )
                        .unwrap_or_else(|e| panic!("{pair} on {network:?}: {e}"));
                    pairs += 1;
                }
            }
        }
    }
    println!("real pairs: {pairs} (rails x assets' sides x networks), 120 random cases each");
    assert_eq!(pairs, 3 * 4 * 2 * 2);
}

/// A Lightning leg expiring further out than nodes accept an HTLC is refused when agreed,
/// with its route budget counted; just inside the limit it is agreed.
#[test]
fn a_lightning_leg_beyond_what_nodes_accept_is_refused() {
    let now = 1_700_000_000;
    let tips = Tips {
        x: tip(5_000, now),
        y: tip(7_000, now),
    };
    let px = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Mainnet));
    let mut py = ChainParams::for_rail(RailId::new(
        ChainId::new(ChainFamily::Litecoin, Network::Mainnet),
        RailKind::Lightning,
    ));
    py.route_blocks = 100;
    let terms = |y_blocks: u64| {
        let mut x = leg(px, 1, 2);
        let mut y = leg(py, 3, 4);
        x.expiry = Expiry::Time(Timestamp(now + 60 * 24 * 3600));
        y.expiry = Expiry::Height(Height(7_000 + y_blocks));
        SwapTerms::new(
            SwapId([1; 16]),
            Hashlock([0; 32]),
            x,
            y,
            SafetyPolicy::default(),
            tips,
        )
    };
    assert!(
        terms(1_916).is_ok(),
        "1,916 + 100 route blocks are within 2,016"
    );
    match terms(1_917) {
        Err(TermsError::LightningExpiryTooFar { leg, blocks, max }) => {
            assert_eq!((leg, blocks, max), (Leg::Y, 2_017, 2_016));
        }
        other => panic!("expected LightningExpiryTooFar, got {other:?}"),
    }
}
