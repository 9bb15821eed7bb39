//! The channel rail's errors: session failures and reject codes as [`ChainError`]s.

use eth_adapter::EthError;
use swap_core::rail::{Cause, ChainError};
use swap_core::types::{Expiry, Timestamp};

use crate::msg::RejectCode;
use crate::session::SessionError;
use crate::PartyError;

/// A stable number for each reject code, reported as [`Cause::Rejected`]'s `code`.
pub fn reject_number(code: RejectCode) -> i64 {
    match code {
        RejectCode::WrongChannel => 1,
        RejectCode::BadSignature => 2,
        RejectCode::WrongVersion => 3,
        RejectCode::Capacity => 4,
        RejectCode::InsufficientBalance => 5,
        RejectCode::TooManyLocks => 6,
        RejectCode::BadExpiry => 7,
        RejectCode::BadPreimage => 8,
        RejectCode::LockExpired => 9,
        RejectCode::LockNotExpired => 10,
        RejectCode::DuplicateHashlock => 11,
        RejectCode::StateMismatch => 12,
        RejectCode::AfterFinal => 13,
        RejectCode::Rules => 14,
        RejectCode::Busy => 15,
        RejectCode::Crossed => 16,
        RejectCode::Malformed => 17,
        RejectCode::Other => 18,
        RejectCode::SecretRevealed => 19,
        RejectCode::SecretKnown => 27,
        // Refusals of a channel announcement (never of a rail update).
        RejectCode::WrongChain => 20,
        RejectCode::WrongContract => 21,
        RejectCode::NotParty => 22,
        RejectCode::NotOpen => 23,
        RejectCode::Unavailable => 24,
        RejectCode::Exists => 25,
        RejectCode::NotAccepting => 26,
    }
}

pub(super) fn invalid(msg: impl std::fmt::Display) -> ChainError {
    ChainError::new(Cause::Invalid, msg)
}

pub(super) fn eth_err(e: EthError) -> ChainError {
    ChainError::from(e)
}

/// A session error as a chain error (never with the peer's text: it is the peer's).
pub(super) fn session_err(e: SessionError, expiry: u64) -> ChainError {
    match e {
        SessionError::NotConnected { version, .. } => ChainError::new(
            Cause::Unavailable,
            format!("peer not connected; version {version} stays pending"),
        ),
        SessionError::Timeout { version } => ChainError::new(
            Cause::Unavailable,
            format!("no answer from the peer; version {version} stays pending"),
        ),
        SessionError::Net(e) => ChainError::new(Cause::Unavailable, e),
        SessionError::Chain(e) => ChainError::new(Cause::Unavailable, e),
        SessionError::Stopped => {
            ChainError::new(Cause::Unavailable, "the channel node was shut down")
        }
        SessionError::Busy { version, .. } | SessionError::Party(PartyError::Busy(version)) => {
            ChainError::transient(format!("channel busy with version {version}"))
        }
        SessionError::Refused { code, .. } => refused(code, expiry, "the peer refused"),
        SessionError::Party(PartyError::Invalid(r)) | SessionError::Dropped(r) => {
            refused(r.code, expiry, "our channel party refused")
        }
        SessionError::UnknownChannel(id) => invalid(format!("not one of our channels: {id}")),
        SessionError::Store(e) | SessionError::Party(PartyError::Store(e)) => {
            ChainError::transient(format!("channel store: {e}"))
        }
        // Our change was in a batch that failed without being refused: try again.
        SessionError::Batch(e) => ChainError::transient(e),
        other => ChainError::permanent(format!("channel session: {other}")),
    }
}

fn refused(code: RejectCode, expiry: u64, who: &str) -> ChainError {
    match code {
        RejectCode::LockNotExpired => ChainError::new(
            Cause::NotReady {
                until: Some(Expiry::Time(Timestamp(expiry))),
            },
            format!("{who}: the lock has not expired"),
        ),
        // Versions out of step (a crossing, abandoned proposals): the same change goes through
        // at the next version.
        RejectCode::Busy | RejectCode::Crossed | RejectCode::WrongVersion => {
            ChainError::transient(format!("{who}: {code:?}, try again"))
        }
        code => ChainError::new(
            Cause::Rejected {
                code: Some(reject_number(code)),
            },
            format!("{who}: {code:?}"),
        ),
    }
}
