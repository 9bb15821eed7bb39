//! Secrets at rest: every preimage a store writes (the initiator's secret in its own column, a
//! responder's learned preimage inside its state) is sealed with the installation's
//! [`StoreKey`]: XChaCha20-Poly1305 (RustCrypto), a random 24-byte nonce per write, and the
//! swap id as associated data, so that a sealed secret copied to another swap's row does not
//! open there.
//!
//! A sealed secret is `[format 1][nonce: 24 bytes][ciphertext and tag: 48 bytes]` (73 bytes;
//! hex in a state's JSON); a clear one, as written before, is its 32 bytes (64 hex digits in
//! JSON) and still reads. A store knows whether it is sealed by a key check kept beside its
//! tables (a fixed text sealed with the key): opened without a key it answers
//! [`StoreError::KeyRequired`], with another key [`StoreError::WrongKey`], before reading or
//! writing anything. Opened with a key for the first time, it seals the clear secrets it holds
//! (see [`open_store`]).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::Value;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::rows::{backend, corrupt};
use super::{StoreError, SwapState};
use crate::types::{Preimage, SwapId};

/// The format byte of a sealed secret.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The length of a sealed preimage.
const SEALED_LEN: usize = 1 + NONCE_LEN + 32 + TAG_LEN;
/// What the key check seals.
const CHECK_TEXT: &[u8] = b"xswap store key check v1";

/// The key that seals a swap store's secrets: 32 bytes derived from the installation's seed
/// (the CLI and the API server use the keystore's purpose key [`StoreKey::PURPOSE`]).
/// Zeroized on drop; `Debug` never shows it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StoreKey([u8; 32]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

impl StoreKey {
    /// The purpose under which an installation derives its store key from its seed.
    pub const PURPOSE: &'static str = "xswap/store-secrets/v1";

    /// A key from 32 bytes of key material (derived from a seed, never a password as is).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(*bytes)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.0))
    }

    /// Seals `plain` with a fresh random nonce, bound to `ad`.
    fn seal(&self, ad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| backend(format!("random nonce: {e}")))?;
        let aad = aad(ad);
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| backend("sealing a secret failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`StoreKey::seal`] made for `ad`; `None` when it does not open (another key,
    /// another `ad`, modified, or not a format this build reads).
    fn open(&self, ad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
            return None;
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let aad = aad(ad);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }

    /// A fresh key check: what a sealed store keeps to recognise its key.
    pub fn key_check(&self) -> Result<Vec<u8>, StoreError> {
        self.seal(b"key-check", CHECK_TEXT)
    }

    /// Whether `check` (from [`StoreKey::key_check`]) was made with this key.
    pub fn verify(&self, check: &[u8]) -> bool {
        self.open(b"key-check", check)
            .is_some_and(|text| text.as_slice() == CHECK_TEXT)
    }

    /// Any secret `plain` sealed for what it is bound to (`ad`: the record's identity, so
    /// that a sealed value moved to another record does not open there), for stores other
    /// than the swap store (the Ethereum channel store, the Lightning node's files): `[format
    /// 1][nonce: 24 bytes][ciphertext and tag]`, a fresh random nonce each time. Callers give
    /// each kind of record its own `ad` prefix.
    pub fn seal_bytes(&self, ad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.seal(ad, plain)
    }

    /// Opens what [`StoreKey::seal_bytes`] sealed for `ad`; `None` when it does not open
    /// (another key, another `ad`, modified, or not a format this build reads).
    pub fn open_bytes(&self, ad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.open(ad, sealed)
    }

    /// The length of `plain` sealed by [`StoreKey::seal_bytes`].
    pub const fn sealed_len(plain: usize) -> usize {
        1 + NONCE_LEN + plain + TAG_LEN
    }

    /// A swap's preimage sealed for its row.
    pub fn seal_preimage(&self, swap: &SwapId, preimage: &Preimage) -> Result<Vec<u8>, StoreError> {
        self.seal(&secret_ad(&swap.0), preimage.as_bytes())
    }
}

/// The associated data: the format byte, then what the secret is bound to.
fn aad(ad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 14 + ad.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(b"xswap/store/v1");
    out.extend_from_slice(ad);
    out
}

fn secret_ad(id_bytes: &[u8]) -> Vec<u8> {
    let mut out = b"secret:".to_vec();
    out.extend_from_slice(id_bytes);
    out
}

/// What opening a store finds out about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Secrets are kept in clear (no key given, none ever used).
    Clear,
    /// Secrets are sealed with the given key, which the store's key check confirmed.
    Sealed,
    /// A key was given to a store that has none yet: its clear secrets are to be sealed and the
    /// key check written, in one transaction (see [`reseal_secret`], [`reseal_state`]).
    ToSeal,
}

/// Compares the `key` a store is opened with to the key check it holds (`found`).
pub fn open_store(key: Option<&StoreKey>, found: Option<&[u8]>) -> Result<KeyState, StoreError> {
    match (key, found) {
        (None, None) => Ok(KeyState::Clear),
        (None, Some(_)) => Err(StoreError::KeyRequired),
        (Some(k), Some(check)) if k.verify(check) => Ok(KeyState::Sealed),
        (Some(_), Some(_)) => Err(StoreError::WrongKey),
        (Some(_), None) => Ok(KeyState::ToSeal),
    }
}

/// A secret column's value to write.
pub fn secret_column(
    key: Option<&StoreKey>,
    swap: &SwapId,
    secret: Option<&Preimage>,
) -> Result<Option<Vec<u8>>, StoreError> {
    match (key, secret) {
        (_, None) => Ok(None),
        (None, Some(s)) => Ok(Some(s.as_bytes().to_vec())),
        (Some(k), Some(s)) => k.seal_preimage(swap, s).map(Some),
    }
}

/// A secret column's value read back: 32 clear bytes (as written without a key) or sealed.
pub fn read_secret(
    key: Option<&StoreKey>,
    id_bytes: &[u8],
    stored: &[u8],
) -> Result<Preimage, StoreError> {
    let shown = hex::encode(id_bytes);
    if stored.len() == 32 {
        return Preimage::from_slice(stored).map_err(|_| corrupt(&shown, "secret"));
    }
    if stored.len() != SEALED_LEN || stored[0] != FORMAT_V1 {
        return Err(corrupt(&shown, "secret is neither 32 bytes nor sealed"));
    }
    let key = key.ok_or(StoreError::KeyRequired)?;
    let plain = key
        .open(&secret_ad(id_bytes), stored)
        .ok_or_else(|| corrupt(&shown, NOT_OURS))?;
    Preimage::from_slice(&plain).map_err(|_| corrupt(&shown, "sealed secret is not 32 bytes"))
}

const NOT_OURS: &str =
    "a sealed secret does not open for this swap (copied from another swap's row, or modified)";

/// Applies `f` to every string named `preimage` in a state's JSON.
fn each_preimage(
    v: &mut Value,
    f: &mut impl FnMut(&mut String) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    match v {
        Value::Object(map) => {
            for (name, field) in map.iter_mut() {
                match field {
                    Value::String(s) if name == "preimage" => f(s)?,
                    other => each_preimage(other, f)?,
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                each_preimage(item, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Seals every clear preimage (64 hex digits) in a state's JSON value.
fn seal_value(key: &StoreKey, id_bytes: &[u8], v: &mut Value) -> Result<bool, StoreError> {
    let mut changed = false;
    each_preimage(v, &mut |s| {
        if s.len() != 64 {
            return Ok(());
        }
        let plain = Zeroizing::new(
            hex::decode(s.as_str()).map_err(|_| corrupt(hex::encode(id_bytes), "preimage"))?,
        );
        s.zeroize();
        *s = hex::encode(key.seal(&secret_ad(id_bytes), &plain)?);
        changed = true;
        Ok(())
    })?;
    Ok(changed)
}

/// A state as stored (`state_json`): its preimages sealed when there is a key.
pub fn state_json(
    key: Option<&StoreKey>,
    swap: &SwapId,
    state: &SwapState,
) -> Result<String, StoreError> {
    let Some(key) = key else {
        return serde_json::to_string(state).map_err(backend);
    };
    let mut v = serde_json::to_value(state).map_err(backend)?;
    seal_value(key, &swap.0, &mut v)?;
    serde_json::to_string(&v).map_err(backend)
}

/// A stored state read back, its sealed preimages opened.
pub fn read_state(
    key: Option<&StoreKey>,
    id_bytes: &[u8],
    json: &str,
) -> Result<SwapState, StoreError> {
    let shown = hex::encode(id_bytes);
    // serde_json's message names the field, never echoes values of other rows.
    let bad = |e: serde_json::Error| corrupt(&shown, format!("state: {e}"));
    if !json.contains("\"preimage\"") {
        return serde_json::from_str(json).map_err(bad);
    }
    let mut v: Value = serde_json::from_str(json).map_err(bad)?;
    each_preimage(&mut v, &mut |s| {
        if s.len() == 64 {
            return Ok(());
        }
        let sealed = hex::decode(s.as_str()).map_err(|_| corrupt(&shown, "sealed preimage"))?;
        let key = key.ok_or(StoreError::KeyRequired)?;
        let plain = key
            .open(&secret_ad(id_bytes), &sealed)
            .ok_or_else(|| corrupt(&shown, NOT_OURS))?;
        *s = hex::encode(plain.as_slice());
        Ok(())
    })?;
    serde_json::from_value(v).map_err(bad)
}

/// For sealing a store in place: a secret column's new value when it holds a clear secret
/// (`None`: nothing to change, or not a secret this build reads, left for the swap's load to
/// report).
pub fn reseal_secret(
    key: &StoreKey,
    id_bytes: &[u8],
    stored: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    if stored.len() != 32 {
        return Ok(None);
    }
    key.seal(&secret_ad(id_bytes), stored).map(Some)
}

/// For sealing a store in place: a state's new JSON when it holds a clear preimage (`None`:
/// nothing to change, or JSON that does not parse, left for the swap's load to report).
pub fn reseal_state(
    key: &StoreKey,
    id_bytes: &[u8],
    json: &str,
) -> Result<Option<String>, StoreError> {
    if !json.contains("\"preimage\"") {
        return Ok(None);
    }
    let Ok(mut v) = serde_json::from_str::<Value>(json) else {
        return Ok(None);
    };
    if !seal_value(key, id_bytes, &mut v)? {
        return Ok(None);
    }
    serde_json::to_string(&v).map(Some).map_err(backend)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::machine::responder;

    fn key(n: u8) -> StoreKey {
        StoreKey::from_bytes(&[n; 32])
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_swap() {
        let (a, b) = (SwapId([1; 16]), SwapId([2; 16]));
        let p = Preimage::from_bytes([7; 32]);
        let sealed = key(1).seal_preimage(&a, &p).unwrap();
        assert_eq!(sealed.len(), SEALED_LEN);
        assert_eq!(sealed[0], FORMAT_V1);
        assert!(!sealed.windows(32).any(|w| w == p.as_bytes()));
        // A fresh nonce each time.
        assert_ne!(sealed, key(1).seal_preimage(&a, &p).unwrap());
        assert_eq!(read_secret(Some(&key(1)), &a.0, &sealed).unwrap(), p);
        assert!(matches!(
            read_secret(Some(&key(1)), &b.0, &sealed),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            read_secret(Some(&key(2)), &a.0, &sealed),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            read_secret(None, &a.0, &sealed),
            Err(StoreError::KeyRequired)
        ));
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert!(read_secret(Some(&key(1)), &a.0, &flipped).is_err());
        // A clear secret (an older store's) still reads, with a key or without.
        assert_eq!(read_secret(Some(&key(1)), &a.0, p.as_bytes()).unwrap(), p);
        assert_eq!(read_secret(None, &a.0, p.as_bytes()).unwrap(), p);
    }

    #[test]
    fn preimages_in_states_are_sealed() {
        let id = SwapId([3; 16]);
        let p = Preimage::from_bytes([9; 32]);
        let state = SwapState::Responder(responder::State::Claiming {
            preimage: p.clone(),
        });
        let clear = state_json(None, &id, &state).unwrap();
        assert!(clear.contains(&p.expose_hex()));
        let json = state_json(Some(&key(1)), &id, &state).unwrap();
        assert!(!json.contains(&p.expose_hex()));
        assert!(json.contains("\"state\":\"claiming\""), "{json}");
        assert_eq!(read_state(Some(&key(1)), &id.0, &json).unwrap(), state);
        assert!(matches!(
            read_state(None, &id.0, &json),
            Err(StoreError::KeyRequired)
        ));
        assert!(matches!(
            read_state(Some(&key(1)), &[4; 16], &json),
            Err(StoreError::Corrupt { .. })
        ));
        // Resealing a clear state gives one that reads back the same; a sealed one is left.
        let resealed = reseal_state(&key(1), &id.0, &clear).unwrap().unwrap();
        assert!(!resealed.contains(&p.expose_hex()));
        assert_eq!(read_state(Some(&key(1)), &id.0, &resealed).unwrap(), state);
        assert_eq!(reseal_state(&key(1), &id.0, &resealed).unwrap(), None);
    }

    #[test]
    fn sealed_bytes_open_only_with_their_key_and_binding() {
        let plain = b"a channel secret of any length".to_vec();
        let sealed = key(1).seal_bytes(b"rec:1", &plain).unwrap();
        assert_eq!(sealed.len(), StoreKey::sealed_len(plain.len()));
        assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_slice()));
        assert_ne!(sealed, key(1).seal_bytes(b"rec:1", &plain).unwrap());
        assert_eq!(
            key(1).open_bytes(b"rec:1", &sealed).unwrap().as_slice(),
            plain.as_slice()
        );
        assert!(key(1).open_bytes(b"rec:2", &sealed).is_none());
        assert!(key(2).open_bytes(b"rec:1", &sealed).is_none());
        // Not mistaken for a swap's sealed secret or a key check.
        assert!(!key(1).verify(&sealed));
    }

    #[test]
    fn the_key_check_tells_keys_apart_and_debug_shows_no_key() {
        let check = key(1).key_check().unwrap();
        assert_eq!(
            open_store(Some(&key(1)), Some(&check)).unwrap(),
            KeyState::Sealed
        );
        assert!(matches!(
            open_store(Some(&key(2)), Some(&check)),
            Err(StoreError::WrongKey)
        ));
        assert!(matches!(
            open_store(None, Some(&check)),
            Err(StoreError::KeyRequired)
        ));
        assert_eq!(open_store(Some(&key(1)), None).unwrap(), KeyState::ToSeal);
        assert_eq!(open_store(None, None).unwrap(), KeyState::Clear);
        let shown = format!("{:?}", key(0xab));
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }
}
