//! LDK's timer tick (`ChannelManager::timer_tick_occurred`), ticked by the node itself rather
//! than by LDK's background processor, so that it can also tick sooner when LDK remembers
//! too many completed payments.
//!
//! Why: LDK keeps every payment this node sent for 7 ticks after it completed (its
//! idempotency), in the channel manager that it encodes and writes whole at every persist
//! (~1.5 times per swap on a payer). With LDK's one-minute tick, a node paying 100 swaps a
//! second carries ~42,000 of them (~3.8 MB) in every write: the cost of a payment grows with
//! the rate of the last 7-8 minutes. The node's swap rail needs none of that memory (its
//! ledger keeps a swap's payment from being sent twice), so while LDK remembers more than
//! [`crate::LnConfig::forget_payments_above`] completed payments, the ticker ticks as often
//! as every [`crate::LnConfig::forget_tick_gap`] (1 s by default) instead of once a minute.
//!
//! Every other count LDK keeps in ticks shortens alike meanwhile, so a quick tick is taken
//! only when none of them can hurt (see [`Channels`]):
//! - every channel funded and not closing (a closing negotiation still running after two
//!   ticks becomes a force close; an unfunded channel is dropped after 60);
//! - no inbound channel request seen within [`OPEN_REQUEST_QUIET`] (LDK drops one not
//!   accepted within two ticks);
//! - no channel with a connected peer waiting on it, as far as LDK's channel list shows: each
//!   reestablished and usable, every HTLC committed on both sides, no fee update the last
//!   tick sent still uncommitted (waited for [`FEE_WAIT_GAPS`] gaps at most: LDK silently
//!   drops an update its funder cannot afford), on two looks in a row 2 ms apart. A tick
//!   finding a channel waiting marks it, and the next disconnects the peer unless a
//!   revocation (or reestablishment) came meanwhile. The list does not show one wait: after
//!   the peer's revocation, for its commitment, usually sent with it; two quiet looks in a
//!   row rarely both fall there (LDK's own minute tick has the same blind spot). A channel
//!   whose peer is away may be marked, but its reestablishment clears that, and it is not
//!   usable before.
//!
//! What stays shortened while quick ticks run, on a node that busy: a peer that leaves one
//! of the few waits the list does not show (a fee update the peer started; its commitment
//! right after our revocation) unanswered for 1-2 gaps is disconnected and reconnected; an
//! inbound channel request whose event is not handled within 1-2 gaps of its arrival is
//! refused (nothing is funded before acceptance; the opener may retry); the parts of a
//! multi-part payment to this node must arrive within 2-3 gaps (the swap rail pays in one
//! part); a channel's previous forwarding fees are honoured for ~5 gaps after a change.
//!
//! Ticks are never closer than that gap: two ticks in a row would disconnect every peer with
//! an update in flight. That is also why the node's background loop (`tasks.rs`, in place of
//! LDK's background processor, which ticks every minute) has no tick of its own beside these;
//! it ticks once as it starts, when no peer is connected yet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bitcoin::secp256k1::PublicKey;
use lightning::chain::chaininterface::{ConfirmationTarget, FeeEstimator};
use lightning::ln::channel_state::{
    ChannelDetails, ChannelShutdownState, InboundHTLCStateDetails, OutboundHTLCStateDetails,
};
use lightning::ln::channelmanager::RecentPaymentDetails;
use lightning::ln::types::ChannelId;
use lightning::types::features::ChannelTypeFeatures;

use crate::config::{MIN_FORGET_TICK_GAP, MIN_TIMER_TICK};

/// The regular tick's default period: LDK's background processor's
/// (`FRESHNESS_TIMER` in lightning-background-processor 0.2), which LDK's timeouts are
/// counted in.
pub(crate) const BP_TIMER_TICK: Duration = Duration::from_secs(60);

/// How long after an inbound channel request no quick tick is taken (LDK drops a request
/// not accepted within two ticks; ours is answered when its event is handled).
pub(crate) const OPEN_REQUEST_QUIET: Duration = Duration::from_secs(120);

/// What the channels look like before a quick tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Channels {
    /// Every channel funded and not closing, and no inbound channel request lately.
    pub(crate) settled: bool,
    /// No channel with its peer connected waits on it, as far as LDK's list tells: each is
    /// reestablished and usable, every HTLC committed on both sides, and no fee update that
    /// an earlier tick sent still uncommitted. (A channel whose peer is away may be marked
    /// by the tick, but its reestablishment clears the mark, and until then it is not
    /// usable, so no quick tick follows.)
    pub(crate) quiet: bool,
    /// The channels we funded whose feerate a tick now would update (that tick sends it at
    /// its end, so it waits on nothing then; until the peer commits it, the channel waits).
    pub(crate) fee_due: Vec<ChannelId>,
}

impl Channels {
    /// What LDK's list says: `is_connected` whether a peer is connected now; `commit_fee`
    /// the feerate LDK's tick would set on a channel of a type we funded (sat per 1,000
    /// weight); `fee_sent` the channels whose fee update the last tick sent (`None`: not
    /// known, any); and whether an inbound channel request came lately.
    pub(crate) fn of(
        channels: &[ChannelDetails],
        is_connected: impl Fn(&PublicKey) -> bool,
        commit_fee: impl Fn(&ChannelTypeFeatures) -> u32,
        fee_sent: Option<&[ChannelId]>,
        open_request_lately: bool,
    ) -> Self {
        let settled = !open_request_lately
            && channels.iter().all(|c| {
                c.channel_shutdown_state == Some(ChannelShutdownState::NotShuttingDown)
                    && (c.is_channel_ready || c.funding_txo.is_some())
            });
        let fee_due: Vec<ChannelId> = channels
            .iter()
            .filter(|c| {
                // LDK's tick updates the fee of a live channel only.
                c.is_outbound
                    && c.is_usable
                    && match (&c.channel_type, c.feerate_sat_per_1000_weight) {
                        (Some(kind), Some(now)) => fee_update_due(commit_fee(kind), now),
                        _ => true,
                    }
            })
            .map(|c| c.channel_id)
            .collect();
        let quiet = channels.iter().all(|c| {
            if !is_connected(&c.counterparty.node_id) {
                return true;
            }
            let fee_waits = fee_due.contains(&c.channel_id)
                && fee_sent.is_none_or(|sent| sent.contains(&c.channel_id));
            c.is_usable
                && !fee_waits
                && c.pending_inbound_htlcs
                    .iter()
                    .all(|h| h.state == Some(InboundHTLCStateDetails::Committed))
                && c.pending_outbound_htlcs
                    .iter()
                    .all(|h| h.state == Some(OutboundHTLCStateDetails::Committed))
        });
        Self {
            settled,
            quiet,
            fee_due,
        }
    }
}

/// Whether LDK's tick sends a funder's fee update, from the feerate it would set and the
/// channel's (`ChannelManager::update_channel_fee` in LDK 0.2: up at once, down only by
/// half).
pub(crate) fn fee_update_due(target: u32, now: u32) -> bool {
    target > now || (target < now && target.saturating_mul(2) <= now)
}

/// The feerate LDK's tick sets on a channel we funded, of type `kind`, from `fees` (LDK 0.2's
/// `selected_commitment_sat_per_1000_weight`, with its floor).
pub(crate) fn commit_fee(fees: &impl FeeEstimator, kind: &ChannelTypeFeatures) -> u32 {
    const FLOOR: u32 = 253;
    if kind.supports_anchor_zero_fee_commitments() {
        0
    } else if kind.supports_anchors_zero_fee_htlc_tx() {
        fees.get_est_sat_per_1000_weight(ConfirmationTarget::AnchorChannelFee)
            .max(FLOOR)
    } else {
        fees.get_est_sat_per_1000_weight(ConfirmationTarget::NonAnchorChannelFee)
            .max(FLOOR)
    }
}

/// Completed payments LDK still remembers, in its list of recent payments.
pub(crate) fn remembered(payments: &[RecentPaymentDetails]) -> usize {
    payments
        .iter()
        .filter(|p| matches!(p, RecentPaymentDetails::Fulfilled { .. }))
        .count()
}

/// Why a tick is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// The regular period elapsed.
    Regular,
    /// LDK remembers more completed payments than wanted.
    Forget,
}

/// How soon the ticker looks again for a quiet moment when a quick tick waits for one.
pub(crate) const LOOK_QUIET_EVERY: Duration = Duration::from_millis(25);

/// When to tick.
#[derive(Debug)]
pub(crate) struct Ticker {
    /// The regular period ([`crate::LnConfig::timer_tick_interval`], LDK's minute by default).
    every: Duration,
    /// [`crate::LnConfig::forget_payments_above`].
    forget_above: Option<usize>,
    /// The shortest time between a tick and a quick one
    /// ([`crate::LnConfig::forget_tick_gap`]).
    gap: Duration,
    last: Instant,
    /// LDK remembers too many payments: a quick tick waits for settled, quiet channels.
    wanted: bool,
    /// The last look found the channels settled but busy.
    busy: bool,
    /// The channels whose fee update the last tick sent (`None`: not known), and when. LDK's
    /// own tick at the start sends none: no peer is connected yet, and LDK updates the fee
    /// of a live channel only. Taken as sent for [`FEE_WAIT_GAPS`] gaps at most: a funder
    /// that cannot afford the new feerate has it dropped silently by LDK, and stays due.
    fee_sent: Option<(Vec<ChannelId>, Instant)>,
    /// When the last look found the channels quiet, if it did: a quick tick takes two quiet
    /// looks in a row, [`QUIET_CONFIRM`] apart (the moment after the peer's revocation, when
    /// LDK waits for its commitment and the channel list does not show it, rarely spans
    /// both).
    quiet_at: Option<Instant>,
}

/// How soon a quiet look is looked at again before a quick tick, and how old the first may
/// be.
pub(crate) const QUIET_CONFIRM: Duration = Duration::from_millis(2);
const QUIET_CONFIRM_WITHIN: Duration = Duration::from_millis(20);

/// How many gaps a fee update sent by a tick is waited for before the quick ticks go on.
pub(crate) const FEE_WAIT_GAPS: u32 = 10;

impl Ticker {
    /// A ticker whose first regular tick is due a period after `start` plus a gap. The
    /// period is taken as at least [`MIN_TIMER_TICK`], the gap as at least
    /// [`MIN_FORGET_TICK_GAP`].
    pub(crate) fn new(
        every: Duration,
        forget_above: Option<usize>,
        gap: Duration,
        start: Instant,
    ) -> Self {
        let gap = gap.max(MIN_FORGET_TICK_GAP);
        Self {
            every: every.max(MIN_TIMER_TICK),
            forget_above,
            gap,
            // The background loop ticks once as it starts, about now: no quick tick
            // within two gaps of that.
            last: start + gap,
            wanted: false,
            busy: false,
            fee_sent: Some((Vec::new(), start)),
            quiet_at: None,
        }
    }

    /// Whether to tick at `now`. LDK's lists (which take its locks) are read only when a
    /// quick tick could be due: the payments (`remembered`) once per look, the channels
    /// until a quiet moment comes. A tick returned counts as taken.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        remembered: impl FnOnce() -> usize,
        channels: impl FnOnce(Option<&[ChannelId]>) -> Channels,
    ) -> Option<Tick> {
        let since = now.saturating_duration_since(self.last);
        self.busy = false;
        if since >= self.every {
            self.last = now;
            self.wanted = false;
            self.quiet_at = None;
            // What this tick sends, for the quick ticks after it.
            self.fee_sent = self.forget_above.map(|_| (channels(None).fee_due, now));
            return Some(Tick::Regular);
        }
        if since < self.gap {
            return None;
        }
        let above = self.forget_above?;
        if !self.wanted {
            self.wanted = remembered() > above;
        }
        if !self.wanted {
            return None;
        }
        let fee_sent = match &self.fee_sent {
            Some((sent, at)) if now.saturating_duration_since(*at) < self.gap * FEE_WAIT_GAPS => {
                Some(sent.as_slice())
            }
            Some(_) => Some(&[][..]),
            None => None,
        };
        let seen = channels(fee_sent);
        let quiet = seen.settled && seen.quiet;
        let quiet_twice = quiet
            && self
                .quiet_at
                .is_some_and(|at| now.saturating_duration_since(at) <= QUIET_CONFIRM_WITHIN);
        self.busy = seen.settled && !quiet_twice;
        if !quiet_twice {
            self.quiet_at = quiet.then_some(now);
            return None;
        }
        self.last = now;
        self.wanted = false;
        self.quiet_at = None;
        self.fee_sent = Some((seen.fee_due, now));
        Some(Tick::Forget)
    }

    /// When to look again: soon when a quick tick waits for a quiet moment, else a quarter
    /// of the gap (a quick tick is then never much later than due; the regular one at most
    /// that late).
    pub(crate) fn next_look(&self, now: Instant) -> Duration {
        let look = if self.quiet_at.is_some() {
            QUIET_CONFIRM
        } else if self.busy {
            LOOK_QUIET_EVERY
        } else {
            self.gap / 4
        };
        let regular = (self.last + self.every).saturating_duration_since(now);
        look.min(regular)
    }
}

/// LDK timer ticks the node took since it started, by kind (benches and tests read them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerTicks {
    /// Ticks taken at the regular period ([`crate::LnConfig::timer_tick_interval`]).
    pub regular: u64,
    /// Quick ticks taken to forget completed payments
    /// ([`crate::LnConfig::forget_payments_above`]).
    pub forget: u64,
}

/// [`TimerTicks`], counted as ticks are taken.
#[derive(Debug, Default)]
pub(crate) struct TickCounts {
    regular: AtomicU64,
    forget: AtomicU64,
}

impl TickCounts {
    pub(crate) fn taken(&self, tick: Tick) {
        match tick {
            Tick::Regular => &self.regular,
            Tick::Forget => &self.forget,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> TimerTicks {
        TimerTicks {
            regular: self.regular.load(Ordering::Relaxed),
            forget: self.forget.load(Ordering::Relaxed),
        }
    }
}

/// When the event handler last saw an inbound channel request.
#[derive(Debug, Default)]
pub(crate) struct OpenRequests(Mutex<Option<Instant>>);

impl OpenRequests {
    pub(crate) fn seen(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether one came within [`OPEN_REQUEST_QUIET`].
    pub(crate) fn lately(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < OPEN_REQUEST_QUIET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn ch(settled: bool, quiet: bool) -> Channels {
        Channels {
            settled,
            quiet,
            fee_due: Vec::new(),
        }
    }

    /// Looks at `at` and up to three times more soon after, as the node does: a quick tick
    /// takes two quiet looks in a row.
    fn twice(
        t: &mut Ticker,
        at: Instant,
        remembered: usize,
        seen: impl Fn(Option<&[ChannelId]>) -> Channels,
    ) -> Option<Tick> {
        let mut now = at;
        for _ in 0..4 {
            if let Some(tick) = t.due(now, || remembered, &seen) {
                return Some(tick);
            }
            now += t.next_look(now);
        }
        None
    }

    /// A ticker whose last tick was at `t0` (started a gap before).
    fn ticker(every: Duration, above: Option<usize>, gap: Duration, t0: Instant) -> Ticker {
        Ticker::new(every, above, gap, t0 - gap.max(MIN_FORGET_TICK_GAP))
    }

    #[test]
    fn no_quick_tick_within_two_gaps_of_the_start_when_ldk_ticked_too() {
        let start = Instant::now();
        let mut t = Ticker::new(60 * SEC, Some(0), SEC, start);
        let calm = |_: Option<&[ChannelId]>| ch(true, true);
        assert_eq!(t.due(start + SEC, || 1, calm), None);
        assert_eq!(t.due(start + 2 * SEC - SEC / 10, || 1, calm), None);
        assert_eq!(twice(&mut t, start + 2 * SEC, 1, calm), Some(Tick::Forget));
    }

    #[test]
    fn the_next_look_is_never_after_the_regular_tick_is_due() {
        let t0 = Instant::now();
        let mut t = ticker(2 * SEC, Some(10), 4 * SEC, t0);
        assert_eq!(t.next_look(t0), SEC);
        assert_eq!(t.next_look(t0 + SEC + SEC / 2), SEC / 2);
        assert_eq!(
            t.due(t0 + 2 * SEC, || unreachable!(), |_| ch(true, false)),
            Some(Tick::Regular)
        );
    }

    #[test]
    fn the_regular_tick_comes_each_period_whatever_ldk_remembers() {
        let t0 = Instant::now();
        let mut t = ticker(60 * SEC, None, SEC, t0);
        let none = || -> usize { panic!("payments read without a cap") };
        let no_ch = |_: Option<&[ChannelId]>| -> Channels { panic!("channels read without a cap") };
        assert_eq!(t.due(t0 + 59 * SEC, none, no_ch), None);
        assert_eq!(t.due(t0 + 60 * SEC, none, no_ch), Some(Tick::Regular));
        // Counted from the tick taken.
        assert_eq!(t.due(t0 + 119 * SEC, none, no_ch), None);
        assert_eq!(t.due(t0 + 121 * SEC, none, no_ch), Some(Tick::Regular));
        assert_eq!(t.next_look(t0), SEC / 4);
    }

    #[test]
    fn many_remembered_payments_tick_quickly_but_never_two_within_the_gap() {
        let t0 = Instant::now();
        let mut t = ticker(60 * SEC, Some(1_000), SEC, t0);
        let calm = |_: Option<&[ChannelId]>| ch(true, true);
        // At the cap: nothing, and the channels are not even read.
        assert_eq!(
            t.due(t0 + 2 * SEC, || 1_000, |_| panic!("channels read")),
            None
        );
        assert_eq!(twice(&mut t, t0 + 3 * SEC, 1_001, calm), Some(Tick::Forget));
        // Within the gap LDK's lists are not read.
        let gap = t0 + 3 * SEC + SEC / 2;
        assert_eq!(
            t.due(gap, || panic!("payments read"), |_| panic!("channels read")),
            None
        );
        assert_eq!(twice(&mut t, t0 + 4 * SEC, 5_000, calm), Some(Tick::Forget));
        // The regular period counts from the last tick of either kind.
        assert_eq!(t.due(t0 + 63 * SEC, || 0, calm), None);
        assert_eq!(
            t.due(t0 + 65 * SEC, || unreachable!(), |_| ch(true, false)),
            Some(Tick::Regular)
        );
    }

    #[test]
    fn a_quick_tick_waits_for_a_moment_when_no_channel_waits_on_its_peer() {
        let t0 = Instant::now();
        let mut t = ticker(60 * SEC, Some(10), SEC, t0);
        assert_eq!(t.due(t0 + 2 * SEC, || 11, |_| ch(true, false)), None);
        // Looked at again soon, the payments not read again.
        assert_eq!(t.next_look(t0), LOOK_QUIET_EVERY);
        let soon = t0 + 2 * SEC + LOOK_QUIET_EVERY;
        assert_eq!(
            t.due(soon, || panic!("payments read"), |_| ch(true, false)),
            None
        );
        // One quiet look is not enough: the channel list does not show every wait. The
        // second comes soon after, and must be quiet too.
        let later = soon + LOOK_QUIET_EVERY;
        assert_eq!(
            t.due(later, || panic!("payments read"), |_| ch(true, true)),
            None
        );
        assert_eq!(t.next_look(t0), QUIET_CONFIRM);
        let later = later + QUIET_CONFIRM;
        assert_eq!(
            t.due(later, || panic!("payments read"), |_| ch(true, false)),
            None
        );
        assert_eq!(t.next_look(t0), LOOK_QUIET_EVERY);
        let later = later + LOOK_QUIET_EVERY;
        assert_eq!(
            t.due(later, || panic!("payments read"), |_| ch(true, true)),
            None
        );
        // A first quiet look too old does not count.
        let late = later + QUIET_CONFIRM_WITHIN + QUIET_CONFIRM;
        assert_eq!(
            t.due(late, || panic!("payments read"), |_| ch(true, true)),
            None
        );
        let later = late + QUIET_CONFIRM;
        assert_eq!(
            t.due(later, || panic!("payments read"), |_| ch(true, true)),
            Some(Tick::Forget)
        );
        assert_eq!(t.next_look(t0), SEC / 4);
    }

    #[test]
    fn no_quick_tick_while_a_channel_opens_or_closes() {
        let t0 = Instant::now();
        let mut t = ticker(60 * SEC, Some(10), SEC, t0);
        assert_eq!(t.due(t0 + 5 * SEC, || 50_000, |_| ch(false, true)), None);
        // Not looked at in haste: nothing to wait for but the channel's open or close.
        assert_eq!(t.next_look(t0), SEC / 4);
        assert_eq!(
            twice(&mut t, t0 + 6 * SEC, 50_000, |_| ch(true, true)),
            Some(Tick::Forget)
        );
        // Unsettled again: the next tick is the regular one, a period after the last.
        for s in 7..66 {
            assert_eq!(
                t.due(t0 + s * SEC, || 50_000, |_| ch(false, true)),
                None,
                "at {s} s"
            );
        }
        assert_eq!(
            t.due(t0 + 67 * SEC, || unreachable!(), |_| ch(true, false)),
            Some(Tick::Regular)
        );
    }

    #[test]
    fn without_a_cap_only_the_regular_tick_is_taken() {
        let t0 = Instant::now();
        let mut t = ticker(5 * SEC, None, SEC, t0);
        assert_eq!(
            t.due(t0 + 4 * SEC, || unreachable!(), |_| ch(true, false)),
            None
        );
        assert_eq!(
            t.due(t0 + 5 * SEC, || unreachable!(), |_| ch(true, false)),
            Some(Tick::Regular)
        );
        // A gap shorter than its floor is raised to it.
        let mut quick = ticker(60 * SEC, Some(0), Duration::from_millis(1), t0);
        let at = t0 + MIN_FORGET_TICK_GAP - Duration::from_millis(1);
        assert_eq!(quick.due(at, || 1, |_| ch(true, true)), None);
        let at = t0 + MIN_FORGET_TICK_GAP;
        assert_eq!(
            twice(&mut quick, at, 1, |_| ch(true, true)),
            Some(Tick::Forget)
        );
        // A period shorter than its floor (1 s) is raised to it.
        let mut fast = ticker(SEC / 10, None, SEC, t0);
        assert_eq!(
            fast.due(t0 + SEC / 2, || unreachable!(), |_| ch(true, false)),
            None
        );
        assert_eq!(
            fast.due(t0 + SEC, || unreachable!(), |_| ch(true, false)),
            Some(Tick::Regular)
        );
    }

    #[test]
    fn an_open_request_is_remembered_for_a_while() {
        let o = OpenRequests::default();
        assert!(!o.lately());
        o.seen();
        assert!(o.lately());
        // And it unsettles the channels, even with none.
        assert!(!Channels::of(&[], |_| true, |_| 253, None, o.lately()).settled);
        assert_eq!(
            Channels::of(&[], |_| true, |_| 253, None, false),
            ch(true, true)
        );
    }

    #[test]
    fn a_tick_updates_a_funders_fee_when_it_rose_or_halved() {
        assert!(!fee_update_due(1_000, 1_000));
        assert!(fee_update_due(1_001, 1_000));
        assert!(!fee_update_due(501, 1_000));
        assert!(fee_update_due(500, 1_000));
        assert!(!fee_update_due(0, 0));
    }

    #[test]
    fn a_fee_update_sent_by_a_tick_holds_the_next_quick_one_until_committed() {
        let t0 = Instant::now();
        let id = ChannelId::from_bytes([7; 32]);
        let due = |quiet| Channels {
            settled: true,
            quiet,
            fee_due: vec![id],
        };
        let mut t = ticker(60 * SEC, Some(0), SEC, t0);
        let tick = twice(&mut t, t0 + SEC, 1, |sent| {
            assert_eq!(sent, Some(&[][..]), "LDK's tick at the start sends none");
            due(true)
        });
        assert_eq!(tick, Some(Tick::Forget));
        let tick = t.due(
            t0 + 2 * SEC,
            || 1,
            |sent| {
                assert_eq!(sent, Some(&[id][..]), "the update that tick sent is told");
                due(false)
            },
        );
        assert_eq!(tick, None);
        // A regular tick records what it sends too.
        let tick = t.due(
            t0 + 62 * SEC,
            || unreachable!(),
            |sent| {
                assert_eq!(sent, None);
                Channels {
                    settled: true,
                    quiet: false,
                    fee_due: Vec::new(),
                }
            },
        );
        assert_eq!(tick, Some(Tick::Regular));
        let tick = twice(&mut t, t0 + 63 * SEC, 1, |sent| {
            assert_eq!(sent, Some(&[][..]));
            due(true)
        });
        assert_eq!(tick, Some(Tick::Forget));
        // An update LDK never sent (a funder that cannot afford it) is waited for a while
        // only: then the quick ticks go on.
        let sent_at = t0 + 63 * SEC + LOOK_QUIET_EVERY;
        let waited = sent_at + SEC * FEE_WAIT_GAPS - LOOK_QUIET_EVERY;
        let tick = t.due(
            waited,
            || 1,
            |sent| {
                assert_eq!(sent, Some(&[id][..]));
                due(false)
            },
        );
        assert_eq!(tick, None);
        let tick = twice(&mut t, sent_at + SEC * FEE_WAIT_GAPS, 1, |sent| {
            assert_eq!(sent, Some(&[][..]), "no longer waited for");
            due(true)
        });
        assert_eq!(tick, Some(Tick::Forget));
    }
}
