//! Per-swap keys derived from the installation seed (BIP-32).
//!
//! Path: `m/8301'/coin'/0'/key_index'` (8301' is xswap's purpose number, `coin` from
//! [`crate::network::coin_type`]). All steps are hardened, so a leaked per-swap key reveals
//! nothing about the others.

use std::fmt;

use bitcoin::bip32::{ChildNumber, Xpriv};
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::PublicKey;
use swap_core::{ChainId, PublicKeyBytes};

use crate::network::{coin_type, NetworkError};

/// xswap's BIP-32 purpose number.
pub const PURPOSE: u32 = 8301;

/// Errors deriving keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Seed of the wrong length or a derivation failure (message never contains key material).
    #[error("key derivation failed: {0}")]
    Derivation(String),
    /// The key index does not fit a hardened BIP-32 index.
    #[error("key index {0} too large (must be < 2^31)")]
    IndexTooLarge(u32),
    /// The chain is not supported.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A public key in swap terms is not a valid compressed secp256k1 key.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
}

/// The root of this installation's Bitcoin-family keys for one chain.
pub struct KeySource {
    master: Xpriv,
    coin: u32,
    secp: Secp256k1<All>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySource(<redacted>)")
    }
}

impl KeySource {
    /// Builds the key source from a BIP-32 seed (16 to 64 bytes, e.g. a BIP-39 seed).
    pub fn from_seed(seed: &[u8], chain: ChainId) -> Result<Self, KeyError> {
        if !(16..=64).contains(&seed.len()) {
            return Err(KeyError::Derivation(format!(
                "seed must be 16..=64 bytes, got {}",
                seed.len()
            )));
        }
        let master = Xpriv::new_master(bitcoin::NetworkKind::Test, seed)
            .map_err(|e| KeyError::Derivation(e.to_string()))?;
        Ok(Self {
            master,
            coin: coin_type(chain)?,
            secp: Secp256k1::new(),
        })
    }

    /// The key pair of swap `key_index`.
    pub fn swap_key(&self, key_index: u32) -> Result<SwapKey, KeyError> {
        let hardened =
            |i: u32| ChildNumber::from_hardened_idx(i).map_err(|_| KeyError::IndexTooLarge(i));
        let path = [
            hardened(PURPOSE)?,
            hardened(self.coin)?,
            hardened(0)?,
            hardened(key_index)?,
        ];
        let xpriv = self
            .master
            .derive_priv(&self.secp, &path)
            .map_err(|e| KeyError::Derivation(e.to_string()))?;
        let secret = xpriv.private_key;
        let public = PublicKey::new(secret.public_key(&self.secp));
        Ok(SwapKey { secret, public })
    }
}

/// One swap's key pair. `Debug` shows only the public key.
#[derive(Clone)]
pub struct SwapKey {
    secret: SecretKey,
    public: PublicKey,
}

impl fmt::Debug for SwapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwapKey(public {}, secret <redacted>)", self.public)
    }
}

impl SwapKey {
    /// Wraps a secret key (tests, or keys kept elsewhere).
    pub fn from_secret(secret: SecretKey) -> Self {
        let secp = Secp256k1::signing_only();
        let public = PublicKey::new(secret.public_key(&secp));
        Self { secret, public }
    }

    /// The compressed public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The public key as swap terms carry it.
    pub fn public_key_bytes(&self) -> PublicKeyBytes {
        PublicKeyBytes(self.public.inner.serialize())
    }

    /// The secret key. Never log it.
    pub fn secret_key(&self) -> &SecretKey {
        &self.secret
    }
}

/// Parses a public key from swap terms.
pub fn parse_public_key(bytes: &PublicKeyBytes) -> Result<PublicKey, KeyError> {
    PublicKey::from_slice(&bytes.0).map_err(|e| KeyError::InvalidPublicKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swap_core::{ChainFamily, Network};

    #[test]
    fn derivation_is_deterministic_and_per_index() {
        let chain = ChainId::new(ChainFamily::Litecoin, Network::Regtest);
        let a = KeySource::from_seed(&[1; 32], chain).unwrap();
        let b = KeySource::from_seed(&[1; 32], chain).unwrap();
        let k0 = a.swap_key(0).unwrap();
        assert_eq!(k0.public_key(), b.swap_key(0).unwrap().public_key());
        assert_ne!(k0.public_key(), a.swap_key(1).unwrap().public_key());
        let other = KeySource::from_seed(&[2; 32], chain).unwrap();
        assert_ne!(k0.public_key(), other.swap_key(0).unwrap().public_key());
        assert!(a.swap_key(1 << 31).is_err());
        assert!(KeySource::from_seed(&[1; 8], chain).is_err());
        let dbg = format!("{k0:?} {a:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&k0.secret_key().display_secret().to_string()));
        assert_eq!(
            parse_public_key(&k0.public_key_bytes()).unwrap(),
            k0.public_key()
        );
    }
}
