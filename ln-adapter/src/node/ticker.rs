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
mod tests;
