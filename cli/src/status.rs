//! What `xswap list` and `xswap show` print: a swap's summary and what happens next.

use serde_json::{json, Value};
use swap_core::driver::state_name;
use swap_core::*;

fn leg_text(l: &LegTerms) -> String {
    format!(
        "{} {} on {}",
        l.amount,
        asset_text(&l.asset),
        l.params.chain
    )
}

/// An asset as people name it.
pub fn asset_text(a: &Asset) -> String {
    match a {
        Asset::Btc => "BTC".into(),
        Asset::Ltc => "LTC".into(),
        Asset::Eth => "ETH".into(),
        Asset::Erc20 { token, .. } => format!("token {token}"),
    }
}

/// One swap as JSON (never includes the secret).
pub fn summary(record: &SwapRecord, state: &SwapState) -> Value {
    let t = &record.terms;
    let (ours, theirs) = match record.role {
        Role::Initiator => (&t.x, &t.y),
        Role::Responder => (&t.y, &t.x),
    };
    let (our_leg, their_leg) = match record.role {
        Role::Initiator => (Leg::X, Leg::Y),
        Role::Responder => (Leg::Y, Leg::X),
    };
    json!({
        "id": record.id().to_string(),
        "role": match record.role { Role::Initiator => "initiator", Role::Responder => "responder" },
        "state": state_name(state),
        "outcome": swap_core::driver::final_outcome(state).map(|o| o.name()),
        "outcome_text": swap_core::driver::final_outcome(state).map(|o| o.to_string()),
        "gives": leg_text(ours),
        "gets": leg_text(theirs),
        "gives_rail": crate::hosted::leg_rail(record, our_leg),
        "gets_rail": crate::hosted::leg_rail(record, their_leg),
        "hashlock": t.hashlock.to_string(),
        "our_expiry": ours.expiry.to_string(),
        "their_expiry": theirs.expiry.to_string(),
        "our_expiry_text": expiry_text(ours),
        "their_expiry_text": expiry_text(theirs),
    })
}

/// A leg's rail as `list` and `show` print it: `lightning (peer 02ab...)`,
/// `eth-channel 0x12... (peer 0xab...)`, `onchain`.
pub fn rail_text(v: &Value) -> String {
    let rail = v["rail"].as_str().unwrap_or("onchain");
    match (v["channel"].as_str(), v["peer"].as_str()) {
        (Some(c), Some(p)) => format!("{rail} {c} (peer {p})"),
        (None, Some(p)) => format!("{rail} (peer {p})"),
        _ => rail.to_owned(),
    }
}

/// An expiry as people read it: a block height with its rough time, or a UTC date.
pub fn expiry_text(leg: &LegTerms) -> String {
    match leg.expiry {
        Expiry::Height(h) => format!(
            "block {} on {} (~{} min per block)",
            h.0,
            leg.params.chain,
            leg.params.block_interval / 60
        ),
        Expiry::Time(t) => format!("{} on {}", utc_text(t.0), leg.params.chain),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_text(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("unix time {unix}"))
}

/// The transaction or reason a state carries.
pub fn detail(state: &SwapState) -> String {
    use initiator::State as I;
    use responder::State as R;
    match state {
        SwapState::Initiator(I::Locked { txref } | I::CounterLockSeen { txref })
        | SwapState::Responder(R::Locked { txref }) => format!("tx {txref}"),
        SwapState::Initiator(I::AwaitRefund { reason } | I::Refunding { reason }) => {
            reason.to_string()
        }
        SwapState::Initiator(I::Done { outcome }) | SwapState::Responder(R::Done { outcome }) => {
            outcome.to_string()
        }
        _ => String::new(),
    }
}

/// What the engine does next in this state, and until when.
pub fn next_step(record: &SwapRecord, state: &SwapState) -> String {
    use initiator::State as I;
    use responder::State as R;
    let t = &record.terms;
    let deadline = t.y.params.claim_deadline(t.y.expiry);
    match state {
        SwapState::Initiator(s) => match s {
            I::Negotiated | I::Locking => format!(
                "locking {} (needs {} confirmations)",
                leg_text(&t.x),
                t.x.params.lock_confirmations
            ),
            I::Locked { .. } => format!(
                "waiting for our lock to reach {} confirmations",
                t.x.params.lock_confirmations
            ),
            I::LockConfirmed | I::CounterLockSeen { .. } | I::CounterLockValid => format!(
                "waiting for their lock of {} ({} confirmations); we claim only before {deadline}, \
                 else we refund at {}",
                leg_text(&t.y),
                t.y.params.lock_confirmations,
                t.x.expiry
            ),
            I::Claiming | I::ClaimSent | I::Claimed => {
                "claiming their lock (this reveals the secret)".into()
            }
            I::AwaitRefund { .. } => format!("refunding our lock once {} passes", t.x.expiry),
            I::Refunding { .. } => "refund sent, waiting for confirmations".into(),
            I::Cancelling { .. } => {
                "our lock never got on chain: making sure it never can, then done".into()
            }
            I::Done { .. } => "finished".into(),
        },
        SwapState::Responder(s) => match s {
            R::Negotiated | R::AwaitCounterLock | R::CounterLockValid => format!(
                "waiting for their lock of {} ({} confirmations), then we lock {}",
                leg_text(&t.x),
                t.x.params.lock_confirmations,
                leg_text(&t.y)
            ),
            R::Locking | R::Locked { .. } => format!(
                "waiting for them to claim (reveals the secret); else we refund at {}",
                t.y.expiry
            ),
            R::SecretLearned { .. } | R::Claiming { .. } => {
                format!("claiming {} with the secret", leg_text(&t.x))
            }
            R::Refunding => "refund sent, waiting for confirmations".into(),
            R::Cancelling => {
                "our lock never got on chain: making sure it never can, then done".into()
            }
            R::Done { .. } => "finished".into(),
        },
    }
}

fn htlc_text(h: &HtlcStatus) -> String {
    match h {
        HtlcStatus::Absent => "not locked".into(),
        HtlcStatus::Funded { finality, .. } => format!("locked, {finality}"),
        HtlcStatus::Claimed { finality, .. } => format!("claimed, {finality}"),
        HtlcStatus::Refunded { finality, .. } => format!("refunded, {finality}"),
    }
}

/// A progress line: both locks with their confirmations and the time left until our own lock
/// can be refunded.
pub fn progress(record: &SwapRecord, snap: &Snapshot) -> String {
    let (ours, theirs, our_leg, our_tip) = match record.role {
        Role::Initiator => (&snap.x.htlc, &snap.y.htlc, &record.terms.x, snap.x.tip),
        Role::Responder => (&snap.y.htlc, &snap.x.htlc, &record.terms.y, snap.y.tip),
    };
    let secs = match our_leg.expiry {
        Expiry::Height(h) => {
            (h.0 as i128 - our_tip.height.0 as i128) * our_leg.params.block_interval as i128
        }
        Expiry::Time(t) => t.0 as i128 - our_tip.time.0 as i128,
    };
    let left = if secs > 0 {
        format!("our refund possible in ~{} min", secs / 60)
    } else {
        "our refund possible now".into()
    };
    format!(
        "ours: {}; theirs: {}; {left}",
        htlc_text(ours),
        htlc_text(theirs)
    )
}

#[cfg(test)]
mod tests {
    use super::utc_text;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_798_761_599), "2026-12-31 23:59:59 UTC");
        assert_eq!(utc_text(4_107_542_400), "2100-03-01 00:00:00 UTC");
    }
}
