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
//! only when none of them can hurt (see [`Channels`] and [`Ticker::ticked`]):
//! - every channel funded and not closing (a closing negotiation still running after two
//!   ticks becomes a force close; an unfunded channel is dropped after 60);
//! - no inbound channel request seen within [`OPEN_REQUEST_QUIET`] (LDK drops one not
//!   accepted within two ticks);
//! - no fee update the last tick sent still uncommitted (waited for [`FEE_WAIT_GAPS`] gaps
//!   at most: LDK silently drops an update its funder cannot afford);
//! - no peer disconnected much sooner than LDK's own minute tick would. A tick marks each
//!   channel whose connected peer owes it a message, and the next tick disconnects the peer
//!   of a channel still marked; a revocation from the peer (or a reestablishment) clears the
//!   mark. The node's message handler ([`Answers`](super::answers::Answers)) notes when each
//!   channel's peer last sent anything about it, and counts its answers as LDK handles them. The ticker looks at
//!   LDK's channel list just before and just after each tick. A channel quiet on both looks
//!   (every HTLC committed, usable), whose peer sent nothing about it from [`SILENT_FOR`]
//!   before the first look to the second, was not marked: every wait the list does not show
//!   begins with a message from the peer (its update before its commitment, its revocation
//!   before its commitment, its fee update, its quiescence request), so such a wait is the
//!   peer's own delay of over [`SILENT_FOR`]. Any other channel may have been marked, and
//!   the next quick tick waits until LDK handled an answer its peer began after the look
//!   that followed the tick (or, for a channel seen without its peer since, until it is
//!   reestablished). A busy channel answers within milliseconds, so quick ticks come at the
//!   gap under load too; an idle one is seen clean. A peer connecting counts as heard (LDK
//!   waits for its reestablishment, which the list does not tell from a channel not yet
//!   ready). One gap is left: our answer to a peer's message goes out only once the monitor
//!   write it needs is committed (`gate.rs`), so if that commit were held over
//!   [`SILENT_FOR`] (a store failing to commit), the peer's answer to it would have one gap.
//!
//! What stays shortened while quick ticks run, on a node that busy: an inbound channel
//! request whose event is not handled within 1-2 gaps of its arrival is refused (nothing is
//! funded before acceptance; the opener may retry); the parts of a multi-part payment to
//! this node must arrive within 2-3 gaps (the swap rail pays in one part); a channel's
//! previous forwarding fees are honoured for ~5 gaps after a change; a peer that leaves a
//! message it began unanswered for over [`SILENT_FOR`] and then a gap is disconnected and
//! reconnected (LDK's minute tick gives it one to two minutes).
//!
//! The node's background loop (`tasks.rs`, in place of LDK's background processor, which
//! ticks every minute) has no tick of its own beside these; it ticks once as it starts, when
//! no peer is connected yet.

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

use super::answers::Heard;
use crate::config::{MIN_FORGET_TICK_GAP, MIN_TIMER_TICK};

/// The regular tick's default period: LDK's background processor's
/// (`FRESHNESS_TIMER` in lightning-background-processor 0.2), which LDK's timeouts are
/// counted in.
pub(crate) const BP_TIMER_TICK: Duration = Duration::from_secs(60);

/// How long after an inbound channel request no quick tick is taken (LDK drops a request
/// not accepted within two ticks; ours is answered when its event is handled).
pub(crate) const OPEN_REQUEST_QUIET: Duration = Duration::from_secs(120);

/// What the channels look like on one look, around a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Channels {
    /// Every channel funded and not closing, and no inbound channel request lately.
    pub(crate) settled: bool,
    /// The channels whose peer is connected.
    pub(crate) connected: Vec<Connected>,
    /// The channels we funded whose feerate a tick now would update (that tick sends it at
    /// its end; until the peer commits it, the channel waits on the peer).
    pub(crate) fee_due: Vec<ChannelId>,
}

/// A channel whose peer is connected, on one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connected {
    pub(crate) id: ChannelId,
    /// It waits on nothing LDK's list shows: every HTLC committed on both sides, no fee
    /// update that an earlier tick sent still uncommitted, and usable (or not yet ready:
    /// waiting for its funding, it waits on no message).
    pub(crate) quiet: bool,
    /// Reestablished with its peer and ready.
    pub(crate) usable: bool,
    /// What was heard from its peer ([`super::answers::Answers`]).
    pub(crate) heard: Heard,
}

impl Channels {
    /// What LDK's list says: `is_connected` whether a peer is connected now; `commit_fee`
    /// the feerate LDK's tick would set on a channel of a type we funded (sat per 1,000
    /// weight); `fee_sent` the channels whose fee update the last tick sent (`None`: not
    /// known, any); `heard` what was heard from the channel's peer
    /// ([`super::answers::Answers`]); and whether an inbound channel request came lately.
    pub(crate) fn of(
        channels: &[ChannelDetails],
        is_connected: impl Fn(&PublicKey) -> bool,
        commit_fee: impl Fn(&ChannelTypeFeatures) -> u32,
        fee_sent: Option<&[ChannelId]>,
        heard: impl Fn(&ChannelDetails) -> Heard,
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
        let connected = channels
            .iter()
            .filter(|c| is_connected(&c.counterparty.node_id))
            .map(|c| {
                let fee_waits = fee_due.contains(&c.channel_id)
                    && fee_sent.is_none_or(|sent| sent.contains(&c.channel_id));
                let quiet = (c.is_usable || !c.is_channel_ready)
                    && !fee_waits
                    && c.pending_inbound_htlcs
                        .iter()
                        .all(|h| h.state == Some(InboundHTLCStateDetails::Committed))
                    && c.pending_outbound_htlcs
                        .iter()
                        .all(|h| h.state == Some(OutboundHTLCStateDetails::Committed));
                Connected {
                    id: c.channel_id,
                    quiet,
                    usable: c.is_usable,
                    heard: heard(c),
                }
            })
            .collect();
        Self {
            settled,
            connected,
            fee_due,
        }
    }

    fn get(&self, id: &ChannelId) -> Option<&Connected> {
        self.connected.iter().find(|c| c.id == *id)
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

/// How soon the ticker looks again when a quick tick waits for a peer's answer.
pub(crate) const LOOK_AGAIN_EVERY: Duration = Duration::from_millis(25);

/// What the last tick may have done to a channel whose peer was connected around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Quiet on both looks, its peer silent from [`SILENT_FOR`] before the first to the
    /// second: not marked.
    Clean,
    /// Maybe marked: cleared once LDK handled an answer from the peer begun after the look
    /// that followed the tick (more than this many done).
    Answer(u64),
    /// Maybe marked, then seen without its peer: cleared once seen usable (reestablished
    /// since).
    Away,
}

/// How long a channel's peer must have sent nothing about it before a tick for the channel
/// to count as unmarked by it, besides looking quiet. Every wait LDK's list does not show
/// starts with a message from the peer (an update before its commitment, a revocation before
/// its commitment, a fee update, a quiescence request): one begun this long before and still
/// unanswered is the peer's delay, and LDK may disconnect such a peer at the next tick
/// (its own minute tick gives it one to two minutes).
pub(crate) const SILENT_FOR: Duration = Duration::from_secs(5);

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
    /// LDK remembers too many payments: a quick tick waits for settled channels whose
    /// peers answered.
    wanted: bool,
    /// The last look found the channels settled but a peer yet to answer.
    busy: bool,
    /// The channels whose fee update the last tick sent (`None`: not known), and when. LDK's
    /// own tick at the start sends none: no peer is connected yet, and LDK updates the fee
    /// of a live channel only. Taken as sent for [`FEE_WAIT_GAPS`] gaps at most: a funder
    /// that cannot afford the new feerate has it dropped silently by LDK, and stays due.
    fee_sent: Option<(Vec<ChannelId>, Instant)>,
    /// The look just before the tick being taken, and when, until [`Ticker::ticked`].
    before: Option<(Channels, Instant)>,
    /// What the last tick may have done to each channel connected around it (none before
    /// the first: LDK's tick at the start finds no peer connected).
    marks: Vec<(ChannelId, Mark)>,
}

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
            before: None,
            marks: Vec::new(),
        }
    }

    /// Whether to tick at `now`. LDK's lists (which take its locks) are read only when a
    /// quick tick could be due: the payments (`remembered`) once per look, the channels
    /// until their peers answered. A tick returned counts as taken; with a cap on remembered
    /// payments, [`Ticker::ticked`] must be told of a look right after it.
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
            if self.forget_above.is_some() {
                // What this tick sends, and the look before it, for the quick ticks after.
                let seen = channels(None);
                self.fee_sent = Some((seen.fee_due.clone(), now));
                self.before = Some((seen, now));
            }
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
        // A marked channel seen without its peer is cleared by its reestablishment too.
        for (id, mark) in &mut self.marks {
            if let (Mark::Answer(_), None) = (*mark, seen.get(id)) {
                *mark = Mark::Away;
            }
        }
        let fee_waits = seen.connected.iter().any(|c| {
            seen.fee_due.contains(&c.id) && fee_sent.is_none_or(|sent| sent.contains(&c.id))
        });
        let answered = !fee_waits && seen.connected.iter().all(|c| self.answered(c));
        self.busy = seen.settled && !answered;
        if !seen.settled || !answered {
            return None;
        }
        self.last = now;
        self.wanted = false;
        self.fee_sent = Some((seen.fee_due.clone(), now));
        self.before = Some((seen, now));
        Some(Tick::Forget)
    }

    /// Whether the last tick's mark on `c`, if any, is cleared.
    fn answered(&self, c: &Connected) -> bool {
        match self.marks.iter().find(|(id, _)| *id == c.id) {
            None | Some((_, Mark::Clean)) => true,
            Some((_, Mark::Answer(n))) => c.heard.done > *n,
            Some((_, Mark::Away)) => c.usable,
        }
    }

    /// The tick [`Ticker::due`] returned was taken; `after` is a look right after it. A
    /// channel quiet on the look before and this one, whose peer sent nothing about it from
    /// [`SILENT_FOR`] before the first look to the second, and whose fee the tick did not
    /// update, was waiting on nothing when the tick ran: not marked. Any other channel
    /// connected on either look may have been marked, and the next quick tick waits for its
    /// peer's answer.
    pub(crate) fn ticked(&mut self, after: impl FnOnce(Option<&[ChannelId]>) -> Channels) {
        // The channels whose fee update this tick sent wait on their peers now.
        let after = after(self.fee_sent.as_ref().map(|(sent, _)| sent.as_slice()));
        let before = self.before.take();
        let mut marks: Vec<(ChannelId, Mark)> = after
            .connected
            .iter()
            .map(|c| {
                let clean = before.as_ref().is_some_and(|(b, at)| {
                    b.get(&c.id).is_some_and(|w| w.quiet)
                        && !b.fee_due.contains(&c.id)
                        && c.quiet
                        && c.heard.last + SILENT_FOR <= *at
                });
                let mark = if clean {
                    Mark::Clean
                } else {
                    Mark::Answer(c.heard.begun)
                };
                (c.id, mark)
            })
            .collect();
        // Channels without their peer now that an earlier tick or this one may have marked.
        let earlier = self
            .marks
            .iter()
            .filter(|(_, mark)| *mark != Mark::Clean)
            .map(|(id, _)| *id);
        let around = before
            .iter()
            .flat_map(|(b, _)| b.connected.iter().map(|c| c.id));
        let away: Vec<ChannelId> = earlier.chain(around).collect();
        for id in away {
            if after.get(&id).is_none() && !marks.iter().any(|(m, _)| *m == id) {
                marks.push((id, Mark::Away));
            }
        }
        self.marks = marks;
    }

    /// When to look again: soon when a quick tick waits for a peer's answer, else a quarter
    /// of the gap (a quick tick is then never much later than due; the regular one at most
    /// that late).
    pub(crate) fn next_look(&self, now: Instant) -> Duration {
        let look = if self.busy {
            LOOK_AGAIN_EVERY
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

    fn id(n: u8) -> ChannelId {
        ChannelId::from_bytes([n; 32])
    }

    /// The tests' timeline starts an hour from now, so that "long ago" is now.
    fn start() -> Instant {
        Instant::now() + 3_600 * SEC
    }

    fn long_ago() -> Instant {
        Instant::now()
    }

    /// What was heard from a peer: `done` answers handled (none in progress), last long ago.
    fn silent(done: u64) -> Heard {
        Heard {
            begun: done,
            done,
            last: long_ago(),
        }
    }

    /// A usable channel with its peer connected, `n` naming it.
    fn conn(n: u8, quiet: bool, heard: Heard) -> Connected {
        Connected {
            id: id(n),
            quiet,
            usable: true,
            heard,
        }
    }

    fn look(settled: bool, connected: Vec<Connected>) -> Channels {
        Channels {
            settled,
            connected,
            fee_due: Vec::new(),
        }
    }

    /// Settled, no peer connected.
    fn calm(_: Option<&[ChannelId]>) -> Channels {
        look(true, Vec::new())
    }

    /// Looks at `now` as the node does: when a tick is due, takes it and tells the ticker
    /// of the look `after` it.
    fn at(
        t: &mut Ticker,
        now: Instant,
        remembered: usize,
        before: Channels,
        after: Channels,
    ) -> Option<Tick> {
        let tick = t.due(now, || remembered, |_| before);
        if tick.is_some() {
            t.ticked(|_| after);
        }
        tick
    }

    /// A ticker whose last tick was at `t0` (started a gap before).
    fn ticker(every: Duration, above: Option<usize>, gap: Duration, t0: Instant) -> Ticker {
        Ticker::new(every, above, gap, t0 - gap.max(MIN_FORGET_TICK_GAP))
    }

    #[test]
    fn no_quick_tick_within_two_gaps_of_the_start_when_ldk_ticked_too() {
        let start = start();
        let mut t = Ticker::new(60 * SEC, Some(0), SEC, start);
        assert_eq!(t.due(start + SEC, || 1, calm), None);
        assert_eq!(t.due(start + 2 * SEC - SEC / 10, || 1, calm), None);
        assert_eq!(t.due(start + 2 * SEC, || 1, calm), Some(Tick::Forget));
    }

    #[test]
    fn the_next_look_is_never_after_the_regular_tick_is_due() {
        let t0 = start();
        let mut t = ticker(2 * SEC, Some(10), 4 * SEC, t0);
        assert_eq!(t.next_look(t0), SEC);
        assert_eq!(t.next_look(t0 + SEC + SEC / 2), SEC / 2);
        let busy = |_: Option<&[ChannelId]>| look(true, vec![conn(1, false, silent(9))]);
        assert_eq!(
            t.due(t0 + 2 * SEC, || unreachable!(), busy),
            Some(Tick::Regular)
        );
    }

    #[test]
    fn the_regular_tick_comes_each_period_whatever_ldk_remembers() {
        let t0 = start();
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
        let t0 = start();
        let mut t = ticker(60 * SEC, Some(1_000), SEC, t0);
        // At the cap: nothing, and the channels are not even read.
        assert_eq!(
            t.due(t0 + 2 * SEC, || 1_000, |_| panic!("channels read")),
            None
        );
        let idle = || look(true, vec![conn(1, true, silent(9))]);
        assert_eq!(
            at(&mut t, t0 + 3 * SEC, 1_001, idle(), idle()),
            Some(Tick::Forget)
        );
        // Within the gap LDK's lists are not read.
        let gap = t0 + 3 * SEC + SEC / 2;
        assert_eq!(
            t.due(gap, || panic!("payments read"), |_| panic!("channels read")),
            None
        );
        assert_eq!(
            at(&mut t, t0 + 4 * SEC, 5_000, idle(), idle()),
            Some(Tick::Forget)
        );
        // The regular period counts from the last tick of either kind.
        assert_eq!(t.due(t0 + 63 * SEC, || 0, calm), None);
        assert_eq!(
            at(&mut t, t0 + 65 * SEC, 0, idle(), idle()),
            Some(Tick::Regular)
        );
    }

    #[test]
    fn after_a_tick_that_may_have_marked_a_channel_the_next_waits_for_its_peers_answer() {
        let t0 = start();
        let mut t = ticker(60 * SEC, Some(10), SEC, t0);
        // A busy channel: waiting on its peer around the tick.
        let busy = |done| look(true, vec![conn(1, false, silent(done))]);
        let quiet = |done| look(true, vec![conn(1, true, silent(done))]);
        assert_eq!(
            at(&mut t, t0 + SEC, 11, busy(100), busy(100)),
            Some(Tick::Forget)
        );
        // A gap later, quiet now, but no answer since the look after the tick: the mark
        // may still be on it, and a tick would disconnect the peer.
        assert_eq!(t.due(t0 + 2 * SEC, || 11, |_| quiet(100)), None);
        // Looked at again soon, the payments not read again.
        assert_eq!(t.next_look(t0), LOOK_AGAIN_EVERY);
        let soon = t0 + 2 * SEC + LOOK_AGAIN_EVERY;
        assert_eq!(t.due(soon, || panic!("payments read"), |_| busy(100)), None);
        // Its peer answered: a tick. An answer begun before the look after it and handled
        // after that look does not count: it may have been handled before the tick marked
        // the channel.
        let handled_late = look(
            true,
            vec![conn(
                1,
                false,
                Heard {
                    begun: 101,
                    done: 100,
                    last: long_ago(),
                },
            )],
        );
        let later = soon + LOOK_AGAIN_EVERY;
        assert_eq!(
            at(&mut t, later, 11, busy(101), handled_late),
            Some(Tick::Forget)
        );
        assert_eq!(t.due(later + SEC, || 11, |_| busy(101)), None);
        // One begun after it, handled: cleared, busy or not.
        let answered = later + SEC + LOOK_AGAIN_EVERY;
        assert_eq!(
            at(&mut t, answered, 11, busy(102), busy(102)),
            Some(Tick::Forget)
        );
        assert_eq!(t.next_look(t0), SEC / 4);
        // Under load, a tick at each gap.
        assert_eq!(
            at(&mut t, answered + SEC, 11, busy(130), busy(130)),
            Some(Tick::Forget)
        );
        assert_eq!(t.due(answered + 2 * SEC, || 11, |_| busy(130)), None);
        assert_eq!(
            at(
                &mut t,
                answered + 2 * SEC + LOOK_AGAIN_EVERY,
                11,
                busy(131),
                quiet(131)
            ),
            Some(Tick::Forget)
        );
    }

    #[test]
    fn a_channel_counts_as_unmarked_only_quiet_on_both_looks_and_its_peer_silent_a_while() {
        let t0 = start();
        let mut t = ticker(60 * SEC, Some(10), SEC, t0);
        let quiet = |heard| look(true, vec![conn(1, true, heard), conn(2, true, silent(5))]);
        assert_eq!(
            at(&mut t, t0 + SEC, 11, quiet(silent(50)), quiet(silent(50))),
            Some(Tick::Forget)
        );
        // Idle since: the next tick needs no answer.
        assert_eq!(
            at(
                &mut t,
                t0 + 2 * SEC,
                11,
                quiet(silent(50)),
                quiet(silent(50))
            ),
            Some(Tick::Forget)
        );
        // Its peer sent something lately (an update whose commitment is still to come is
        // a wait the list does not show): maybe marked, though quiet on both looks.
        let lately = |at, n| Heard {
            begun: n,
            done: n,
            last: at,
        };
        let tick = t0 + 3 * SEC;
        assert_eq!(
            at(
                &mut t,
                tick,
                11,
                quiet(lately(tick - SILENT_FOR / 2, 50)),
                quiet(lately(tick - SILENT_FOR / 2, 50))
            ),
            Some(Tick::Forget)
        );
        assert_eq!(t.due(t0 + 4 * SEC, || 11, |_| quiet(silent(50))), None);
        assert_eq!(
            at(
                &mut t,
                t0 + 4 * SEC + LOOK_AGAIN_EVERY,
                11,
                quiet(silent(51)),
                quiet(silent(51))
            ),
            Some(Tick::Forget)
        );
        // Heard between the two looks: maybe marked too.
        let tick = t0 + 6 * SEC;
        assert_eq!(
            at(&mut t, tick, 11, quiet(silent(51)), quiet(lately(tick, 51))),
            Some(Tick::Forget)
        );
        assert_eq!(t.due(t0 + 7 * SEC, || 11, |_| quiet(silent(51))), None);
        // Silent long enough before the look: unmarked.
        let tick = t0 + 8 * SEC;
        let enough = lately(tick - SILENT_FOR, 52);
        assert_eq!(
            at(
                &mut t,
                tick,
                11,
                quiet(silent(52)),
                quiet(Heard {
                    begun: 52,
                    done: 52,
                    ..enough
                })
            ),
            Some(Tick::Forget)
        );
        assert_eq!(
            at(
                &mut t,
                t0 + 9 * SEC,
                11,
                quiet(silent(52)),
                quiet(silent(52))
            ),
            Some(Tick::Forget)
        );
        // A channel first seen after the tick (its peer connected meanwhile) may have been
        // marked.
        let both = look(
            true,
            vec![conn(1, true, silent(52)), conn(3, true, silent(7))],
        );
        let one = look(true, vec![conn(1, true, silent(52))]);
        assert_eq!(
            at(&mut t, t0 + 10 * SEC, 11, one.clone(), both.clone()),
            Some(Tick::Forget)
        );
        assert_eq!(t.due(t0 + 11 * SEC, || 11, |_| both.clone()), None);
        let answered = look(
            true,
            vec![conn(1, true, silent(52)), conn(3, true, silent(8))],
        );
        assert_eq!(
            at(
                &mut t,
                t0 + 11 * SEC + LOOK_AGAIN_EVERY,
                11,
                answered.clone(),
                answered
            ),
            Some(Tick::Forget)
        );
    }

    #[test]
    fn a_marked_channel_seen_without_its_peer_is_cleared_by_its_reestablishment() {
        let t0 = start();
        let mut t = ticker(60 * SEC, Some(10), SEC, t0);
        let busy = |done| look(true, vec![conn(1, false, silent(done))]);
        let back = |done| {
            let mut c = conn(1, false, silent(done));
            c.usable = false;
            look(true, vec![c])
        };
        let away = || look(true, vec![]);
        assert_eq!(
            at(&mut t, t0 + SEC, 11, busy(170), busy(170)),
            Some(Tick::Forget)
        );
        // The peer left: LDK's tick does not look at the channel, but its mark stays.
        assert_eq!(
            at(&mut t, t0 + 2 * SEC, 11, away(), away()),
            Some(Tick::Forget)
        );
        // Back, not yet reestablished (not usable): a tick would disconnect it again.
        assert_eq!(t.due(t0 + 3 * SEC, || 11, |_| back(170)), None);
        // Reestablished (usable), busy, with no answer counted: cleared.
        let later = t0 + 3 * SEC + LOOK_AGAIN_EVERY;
        assert_eq!(
            at(&mut t, later, 11, busy(170), busy(170)),
            Some(Tick::Forget)
        );
        // A channel whose peer left between the look before a tick and the one after it
        // is taken as away too.
        assert_eq!(
            at(&mut t, t0 + 5 * SEC, 11, busy(171), away()),
            Some(Tick::Forget)
        );
        assert_eq!(t.due(t0 + 6 * SEC, || 11, |_| back(171)), None);
        // A look that finds it away does not clear it either.
        let later = t0 + 6 * SEC + LOOK_AGAIN_EVERY;
        assert_eq!(t.due(later, || 11, |_| away()), Some(Tick::Forget));
        // Back as that tick ran, not yet reestablished: maybe marked, and usable now is
        // not enough (it may have been marked after its reestablishment)...
        t.ticked(|_| back(171));
        assert_eq!(t.due(later + SEC, || 11, |_| back(171)), None);
        let again = later + SEC + LOOK_AGAIN_EVERY;
        assert_eq!(at(&mut t, again, 11, busy(171), busy(171)), None);
        // ...its reestablishment (an answer) is.
        let answered = again + LOOK_AGAIN_EVERY;
        assert_eq!(
            at(&mut t, answered, 11, busy(172), busy(172)),
            Some(Tick::Forget)
        );
    }

    #[test]
    fn no_quick_tick_while_a_channel_opens_or_closes() {
        let t0 = start();
        let mut t = ticker(60 * SEC, Some(10), SEC, t0);
        assert_eq!(
            t.due(t0 + 5 * SEC, || 50_000, |_| look(false, vec![])),
            None
        );
        // Not looked at in haste: nothing to wait for but the channel's open or close.
        assert_eq!(t.next_look(t0), SEC / 4);
        assert_eq!(t.due(t0 + 6 * SEC, || 50_000, calm), Some(Tick::Forget));
        // Unsettled again: the next tick is the regular one, a period after the last.
        for s in 7..66 {
            assert_eq!(
                t.due(t0 + s * SEC, || 50_000, |_| look(false, vec![])),
                None,
                "at {s} s"
            );
        }
        assert_eq!(
            t.due(t0 + 67 * SEC, || unreachable!(), |_| look(false, vec![])),
            Some(Tick::Regular)
        );
    }

    #[test]
    fn without_a_cap_only_the_regular_tick_is_taken() {
        let t0 = start();
        let mut t = ticker(5 * SEC, None, SEC, t0);
        assert_eq!(
            t.due(t0 + 4 * SEC, || unreachable!(), |_| unreachable!()),
            None
        );
        assert_eq!(
            t.due(t0 + 5 * SEC, || unreachable!(), |_| unreachable!()),
            Some(Tick::Regular)
        );
        // A gap shorter than its floor is raised to it.
        let mut quick = ticker(60 * SEC, Some(0), Duration::from_millis(1), t0);
        let at = t0 + MIN_FORGET_TICK_GAP - Duration::from_millis(1);
        assert_eq!(quick.due(at, || 1, calm), None);
        let at = t0 + MIN_FORGET_TICK_GAP;
        assert_eq!(quick.due(at, || 1, calm), Some(Tick::Forget));
        // A period shorter than its floor (1 s) is raised to it.
        let mut fast = ticker(SEC / 10, None, SEC, t0);
        assert_eq!(
            fast.due(t0 + SEC / 2, || unreachable!(), |_| unreachable!()),
            None
        );
        assert_eq!(
            fast.due(t0 + SEC, || unreachable!(), |_| unreachable!()),
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
        let of = |lately| Channels::of(&[], |_| true, |_| 253, None, |_| silent(0), lately);
        assert!(!of(o.lately()).settled);
        assert_eq!(of(false), look(true, vec![]));
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
        let t0 = start();
        let due = |quiet, done| Channels {
            settled: true,
            connected: vec![conn(7, quiet, silent(done))],
            fee_due: vec![id(7)],
        };
        let mut t = ticker(60 * SEC, Some(0), SEC, t0);
        let tick = t.due(
            t0 + SEC,
            || 1,
            |sent| {
                assert_eq!(sent, Some(&[][..]), "LDK's tick at the start sends none");
                due(true, 40)
            },
        );
        assert_eq!(tick, Some(Tick::Forget));
        // Quiet on both looks, but the tick may have sent a fee update: maybe marked.
        t.ticked(|sent| {
            assert_eq!(
                sent,
                Some(&[id(7)][..]),
                "the update this tick sent is told"
            );
            due(true, 40)
        });
        let tick = t.due(
            t0 + 2 * SEC,
            || 1,
            |sent| {
                assert_eq!(sent, Some(&[id(7)][..]));
                due(true, 40)
            },
        );
        assert_eq!(tick, None);
        // A regular tick records what it sends too.
        let tick = t.due(
            t0 + 62 * SEC,
            || unreachable!(),
            |sent| {
                assert_eq!(sent, None);
                look(true, vec![conn(7, true, silent(41))])
            },
        );
        assert_eq!(tick, Some(Tick::Regular));
        t.ticked(|_| look(true, vec![conn(7, true, silent(41))]));
        let tick = t.due(
            t0 + 63 * SEC,
            || 1,
            |sent| {
                assert_eq!(sent, Some(&[][..]));
                due(true, 41)
            },
        );
        assert_eq!(tick, Some(Tick::Forget));
        t.ticked(|_| due(false, 41));
        // An update LDK never sent (a funder that cannot afford it) is waited for a while
        // only: then the quick ticks go on (its peer answered meanwhile for other updates).
        let sent_at = t0 + 63 * SEC;
        let waited = sent_at + SEC * FEE_WAIT_GAPS - LOOK_AGAIN_EVERY;
        let tick = t.due(
            waited,
            || 1,
            |sent| {
                assert_eq!(sent, Some(&[id(7)][..]));
                due(false, 50)
            },
        );
        assert_eq!(tick, None);
        let tick = t.due(
            sent_at + SEC * FEE_WAIT_GAPS,
            || 1,
            |sent| {
                assert_eq!(sent, Some(&[][..]), "no longer waited for");
                due(true, 50)
            },
        );
        assert_eq!(tick, Some(Tick::Forget));
    }
}
