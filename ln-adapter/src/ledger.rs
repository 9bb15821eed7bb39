//! What the node learned that a swap must never lose, written to the node's store before LDK
//! is told the event was handled: the preimage of every payment we sent (from `PaymentSent`;
//! LDK does not hand a handled event over again, and what it keeps of a finished payment has
//! no preimage) and every payment held for us (from `PaymentClaimable`, which is not handed
//! over again after a restart either). The events on [`crate::LnNode::subscribe`] are a
//! notification; these records are what a swap reads ([`crate::LnNode::preimage_for`],
//! [`crate::LnNode::held_payment`]).

use lightning::util::persist::KVStoreSync;
use swap_core::{Hashlock, Preimage};

use crate::error::LnError;
use crate::types::Store;

const NAMESPACE: &str = "xswap";
const PREIMAGES: &str = "preimages";
const HELD: &str = "held";

/// A payment held for us (a hold invoice's HTLCs, claimable until `claim_deadline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldPayment {
    /// What the HTLCs pay, in millisatoshis.
    pub amount_msat: u64,
    /// The height by which it must be claimed (LDK fails it back by itself near it).
    pub claim_deadline: Option<u32>,
}

fn key(hashlock: &Hashlock) -> String {
    hex::encode(hashlock.0)
}

fn store_err(what: &str, e: impl std::fmt::Display) -> LnError {
    LnError::Store(std::io::Error::other(format!("{what}: {e}")))
}

fn read(store: &Store, secondary: &str, k: &str) -> Result<Option<Vec<u8>>, LnError> {
    match KVStoreSync::read(store, NAMESPACE, secondary, k) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == lightning::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(store_err(secondary, e)),
    }
}

/// Records the preimage of a payment we sent (durable when this returns).
pub(crate) fn record_preimage(store: &Store, preimage: &Preimage) -> Result<(), LnError> {
    let k = key(&preimage.hashlock());
    KVStoreSync::write(
        store,
        NAMESPACE,
        PREIMAGES,
        &k,
        preimage.as_bytes().to_vec(),
    )
    .map_err(|e| store_err(PREIMAGES, e))
}

/// The preimage of `hashlock`, if a payment of ours to it succeeded.
pub(crate) fn preimage_for(
    store: &Store,
    hashlock: &Hashlock,
) -> Result<Option<Preimage>, LnError> {
    let Some(bytes) = read(store, PREIMAGES, &key(hashlock))? else {
        return Ok(None);
    };
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| LnError::Decode(format!("{PREIMAGES}: not 32 bytes")))?;
    let preimage = Preimage::from_bytes(bytes);
    if preimage.hashlock() != *hashlock {
        return Err(LnError::Decode(format!(
            "{PREIMAGES}: the record of {} holds another hash's preimage",
            key(hashlock)
        )));
    }
    Ok(Some(preimage))
}

/// Records a payment held for us (durable when this returns).
pub(crate) fn record_held(
    store: &Store,
    hashlock: &Hashlock,
    held: HeldPayment,
) -> Result<(), LnError> {
    let mut bytes = held.amount_msat.to_be_bytes().to_vec();
    if let Some(d) = held.claim_deadline {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    KVStoreSync::write(store, NAMESPACE, HELD, &key(hashlock), bytes)
        .map_err(|e| store_err(HELD, e))
}

/// The payment held for us on `hashlock`, if one was.
pub(crate) fn held(store: &Store, hashlock: &Hashlock) -> Result<Option<HeldPayment>, LnError> {
    let Some(bytes) = read(store, HELD, &key(hashlock))? else {
        return Ok(None);
    };
    let bad = || LnError::Decode(format!("{HELD}: {} bytes", bytes.len()));
    let amount: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let claim_deadline = match bytes.len() {
        8 => None,
        12 => Some(u32::from_be_bytes(
            bytes
                .get(8..12)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?,
        )),
        _ => return Err(bad()),
    };
    Ok(Some(HeldPayment {
        amount_msat: u64::from_be_bytes(amount),
        claim_deadline,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_survive_a_new_store_on_the_same_directory_and_bad_ones_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_path_buf());
        let p = Preimage::from_bytes([7; 32]);
        let h = p.hashlock();
        assert_eq!(preimage_for(&store, &h).unwrap(), None);
        record_preimage(&store, &p).unwrap();
        let held_p = HeldPayment {
            amount_msat: 40_000_000,
            claim_deadline: Some(1_500),
        };
        record_held(&store, &h, held_p).unwrap();
        let again = Store::new(dir.path().to_path_buf());
        assert_eq!(preimage_for(&again, &h).unwrap(), Some(p));
        assert_eq!(held(&again, &h).unwrap(), Some(held_p));
        // A record under the wrong hash is refused, not returned.
        let other = Hashlock([9; 32]);
        KVStoreSync::write(&again, NAMESPACE, PREIMAGES, &key(&other), vec![7; 32]).unwrap();
        assert!(matches!(
            preimage_for(&again, &other),
            Err(LnError::Decode(_))
        ));
        KVStoreSync::write(&again, NAMESPACE, HELD, &key(&other), vec![1; 5]).unwrap();
        assert!(matches!(held(&again, &other), Err(LnError::Decode(_))));
    }
}
