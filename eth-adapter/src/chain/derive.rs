//! Pure status derivation: a swap's [`HtlcStatus`] from what the scan, the storage slot and the
//! mempool showed. No I/O here, so every case has a unit test.

use alloy::primitives::B256;
use sha2::{Digest, Sha256};
use swap_core::rail::{HtlcStatus, ObservedLock};
use swap_core::types::{Account, Asset, Expiry, Preimage, Timestamp};
use swap_core::Finality;

use crate::error::EthError;
use crate::htlc::core_addr;
use crate::scan::{Event, EventKind};

use super::txref;

/// What was seen of one swap.
pub(super) struct Seen<'a> {
    /// The swap id.
    pub(super) id: B256,
    /// Its hashlock.
    pub(super) hashlock: B256,
    /// The block the scan reached.
    pub(super) tip: u64,
    /// The newest lock event, if any.
    pub(super) lock: Option<&'a Event>,
    /// The events after it (a claim or a refund).
    pub(super) after: &'a [Event],
    /// Whether the contract holds the swap locked (its slot, or the events when unread).
    pub(super) locked: bool,
    /// A claim of this hashlock waiting in the mempool: preimage and transaction.
    pub(super) pending: Option<(B256, B256)>,
}

fn finality(tip: u64, block: u64) -> Finality {
    Finality::confirmations((tip.saturating_sub(block) + 1).min(u32::MAX as u64) as u32)
}

fn matches(preimage: &B256, hashlock: &B256) -> bool {
    Sha256::digest(preimage.0).as_slice() == hashlock.as_slice()
}

/// The status the events, the slot and the mempool imply, or an error when they disagree.
pub(super) fn derive_status(seen: &Seen<'_>, asset: &Asset) -> Result<HtlcStatus, EthError> {
    let id = seen.id;
    let status = match (seen.lock, seen.locked) {
        (None, false) => HtlcStatus::Absent,
        (None, true) => {
            return Err(EthError::Inconsistent(format!(
                "swap {id:#x} is locked but no Locked event was found"
            )))
        }
        (Some(lock), true) => {
            if !seen.after.is_empty() {
                return Err(EthError::Inconsistent(format!(
                    "swap {id:#x} is locked but was spent after its last lock"
                )));
            }
            let EventKind::Locked(onchain) = &lock.kind else {
                return Err(EthError::Inconsistent("not a lock event".into()));
            };
            HtlcStatus::Funded {
                lock: ObservedLock {
                    txref: txref(lock.tx),
                    asset: asset.clone(),
                    amount: onchain.core_amount(asset),
                    sender: Account::Evm(core_addr(onchain.sender)),
                    recipient: Account::Evm(core_addr(onchain.recipient)),
                    hashlock: onchain.core_hashlock(),
                    expiry: Expiry::Time(Timestamp(onchain.expiry)),
                },
                finality: finality(seen.tip, lock.block),
            }
        }
        (Some(_), false) => match seen.after.first() {
            Some(e) => match &e.kind {
                EventKind::Claimed(pre) => {
                    if !matches(pre, &seen.hashlock) {
                        return Err(EthError::Inconsistent(
                            "claim preimage does not match the hashlock".into(),
                        ));
                    }
                    HtlcStatus::Claimed {
                        preimage: Preimage::from_bytes(pre.0),
                        txref: txref(e.tx),
                        finality: finality(seen.tip, e.block),
                    }
                }
                EventKind::Refunded => HtlcStatus::Refunded {
                    txref: txref(e.tx),
                    finality: finality(seen.tip, e.block),
                },
                EventKind::Locked(_) => {
                    return Err(EthError::Inconsistent("lock after lock".into()))
                }
            },
            None => {
                return Err(EthError::Inconsistent(format!(
                    "swap {id:#x} has a lock event but its slot is empty"
                )))
            }
        },
    };
    // A claim waiting in the mempool reveals the secret before it is mined.
    Ok(match (status, seen.pending) {
        (HtlcStatus::Funded { .. }, Some((pre, tx))) if matches(&pre, &seen.hashlock) => {
            HtlcStatus::Claimed {
                preimage: Preimage::from_bytes(pre.0),
                txref: txref(tx),
                finality: Finality::Mempool,
            }
        }
        (other, _) => other,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use alloy::primitives::{Address, U256};

    use super::*;
    use crate::htlc::EthHtlc;

    const TIP: u64 = 100;

    fn secret() -> B256 {
        B256::repeat_byte(7)
    }

    fn hashlock() -> B256 {
        B256::from_slice(&Sha256::digest(secret().0))
    }

    fn event(kind: EventKind, block: u64, tx: u8) -> Event {
        Event {
            id: B256::repeat_byte(1),
            kind,
            block,
            log_index: 0,
            tx: B256::repeat_byte(tx),
        }
    }

    fn lock_event(block: u64) -> Event {
        let htlc = EthHtlc {
            sender: Address::repeat_byte(2),
            recipient: Address::repeat_byte(3),
            token: Address::ZERO,
            amount: U256::from(1_000u64),
            hashlock: hashlock(),
            expiry: 5_000,
        };
        event(EventKind::Locked(htlc), block, 0xa0)
    }

    fn derive(
        lock: Option<&Event>,
        after: &[Event],
        locked: bool,
        pending: Option<(B256, B256)>,
    ) -> Result<HtlcStatus, EthError> {
        let seen = Seen {
            id: B256::repeat_byte(1),
            hashlock: hashlock(),
            tip: TIP,
            lock,
            after,
            locked,
            pending,
        };
        derive_status(&seen, &Asset::Eth)
    }

    #[test]
    fn nothing_seen_is_absent_and_a_slot_without_events_is_inconsistent() {
        assert_eq!(derive(None, &[], false, None).unwrap(), HtlcStatus::Absent);
        assert!(matches!(
            derive(None, &[], true, None),
            Err(EthError::Inconsistent(_))
        ));
    }

    #[test]
    fn a_lock_is_funded_with_its_depth() {
        let lock = lock_event(98);
        match derive(Some(&lock), &[], true, None).unwrap() {
            HtlcStatus::Funded { lock, finality } => {
                assert_eq!(finality, Finality::Depth(3));
                assert_eq!(lock.expiry, Expiry::Time(Timestamp(5_000)));
                assert_eq!(lock.hashlock.0, hashlock().0);
            }
            other => panic!("{other:?}"),
        }
        // The slot says locked but a spend follows: the reads disagree.
        let refund = event(EventKind::Refunded, 99, 0xb0);
        assert!(derive(Some(&lock), &[refund], true, None).is_err());
    }

    #[test]
    fn claims_and_refunds_after_the_lock() {
        let lock = lock_event(90);
        let claim = event(EventKind::Claimed(secret()), 100, 0xc0);
        match derive(Some(&lock), std::slice::from_ref(&claim), false, None).unwrap() {
            HtlcStatus::Claimed {
                preimage, finality, ..
            } => {
                assert_eq!(preimage, Preimage::from_bytes(secret().0));
                assert_eq!(finality, Finality::Depth(1));
            }
            other => panic!("{other:?}"),
        }
        let refund = event(EventKind::Refunded, 95, 0xd0);
        assert!(matches!(
            derive(Some(&lock), &[refund], false, None).unwrap(),
            HtlcStatus::Refunded {
                finality: Finality::Depth(6),
                ..
            }
        ));
        // A claim whose preimage does not hash to the lock's hashlock cannot be from our
        // contract: refused, never reported as a secret.
        let bogus = event(EventKind::Claimed(B256::repeat_byte(9)), 100, 0xe0);
        assert!(derive(Some(&lock), &[bogus], false, None).is_err());
        // Spent (slot empty) without any spend event: inconsistent.
        assert!(derive(Some(&lock), &[], false, None).is_err());
    }

    #[test]
    fn a_mempool_claim_reveals_the_secret_only_if_it_matches() {
        let lock = lock_event(90);
        let tx = B256::repeat_byte(0xf0);
        assert!(matches!(
            derive(Some(&lock), &[], true, Some((secret(), tx))).unwrap(),
            HtlcStatus::Claimed {
                finality: Finality::Mempool,
                ..
            }
        ));
        assert!(matches!(
            derive(Some(&lock), &[], true, Some((B256::repeat_byte(9), tx))).unwrap(),
            HtlcStatus::Funded { .. }
        ));
    }
}
