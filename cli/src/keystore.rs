//! One seed per installation: 24 BIP-39 words shown once, kept in a file encrypted with a
//! password (scrypt + ChaCha20-Poly1305), created with mode 0600 and never overwritten.
//! Per-swap keys derive from the seed, so a lost database can be rebuilt from the seed and the
//! chains.

use std::fmt;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swap_core::store::StoreKey;
use zeroize::Zeroizing;

/// Keystore errors. None of them carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// A keystore exists already at that path (never overwritten).
    #[error("a keystore already exists at {0}")]
    Exists(String),
    /// No keystore at that path.
    #[error("no keystore at {0}: run `xswap init` first")]
    Missing(String),
    /// The password does not open the keystore (or the file was tampered with).
    #[error("wrong password (or the keystore file was modified)")]
    WrongPassword,
    /// The file is not a keystore of a version we read.
    #[error("keystore file is damaged: {0}")]
    Corrupt(String),
    /// Others can read the file.
    #[error("keystore {0} is readable by other users: run `chmod 600` on it")]
    InsecurePermissions(String),
    /// The words are not a valid BIP-39 mnemonic.
    #[error("invalid recovery words: {0}")]
    BadMnemonic(String),
    /// File system error.
    #[error("keystore i/o: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u8,
    kdf: String,
    log_n: u8,
    r: u32,
    p: u32,
    #[serde(with = "hex::serde")]
    salt: Vec<u8>,
    #[serde(with = "hex::serde")]
    nonce: Vec<u8>,
    #[serde(with = "hex::serde")]
    ciphertext: Vec<u8>,
}

/// An opened keystore: the installation's seed.
pub struct Keystore {
    entropy: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keystore(<redacted>)")
    }
}

/// scrypt cost: 2^15 * 8 * 128 B = 32 MiB and about 0.1 s per unlock.
const LOG_N: u8 = 15;

fn derive_key(
    password: &str,
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|e| KeystoreError::Corrupt(format!("kdf parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password.as_bytes(), salt, &params, key.as_mut())
        .map_err(|e| KeystoreError::Corrupt(format!("kdf: {e}")))?;
    Ok(key)
}

fn random<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| KeystoreError::Io(std::io::Error::other(e.to_string())))?;
    Ok(b)
}

impl Keystore {
    /// Makes a new seed, writes it encrypted to `path` (mode 0600, refusing to overwrite), and
    /// returns the keystore with the 24 words to show the user once.
    pub fn create(path: &Path, password: &str) -> Result<(Self, Zeroizing<String>), KeystoreError> {
        let entropy = Zeroizing::new(random::<32>()?.to_vec());
        let ks = Self { entropy };
        ks.write(path, password)?;
        let words = ks.words()?;
        Ok((ks, words))
    }

    /// Restores a keystore from recovery words and writes it to `path`.
    pub fn restore(path: &Path, words: &str, password: &str) -> Result<Self, KeystoreError> {
        let m = bip39::Mnemonic::parse(words.trim())
            .map_err(|e| KeystoreError::BadMnemonic(e.to_string()))?;
        let ks = Self {
            entropy: Zeroizing::new(m.to_entropy()),
        };
        ks.write(path, password)?;
        Ok(ks)
    }

    fn write(&self, path: &Path, password: &str) -> Result<(), KeystoreError> {
        let salt = random::<16>()?;
        let nonce = random::<12>()?;
        let key = derive_key(password, &salt, LOG_N, 8, 1)?;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), self.entropy.as_slice())
            .map_err(|_| KeystoreError::Corrupt("encryption failed".into()))?;
        let file = File {
            version: 1,
            kdf: "scrypt".into(),
            log_n: LOG_N,
            r: 8,
            p: 1,
            salt: salt.to_vec(),
            nonce: nonce.to_vec(),
            ciphertext,
        };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| KeystoreError::Corrupt(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeystoreError::Exists(path.display().to_string()),
            _ => KeystoreError::Io(e),
        })?;
        f.write_all(&json)?;
        f.sync_all()?;
        Ok(())
    }

    /// Opens and decrypts the keystore at `path`.
    pub fn open(path: &Path, password: &str) -> Result<Self, KeystoreError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeystoreError::Missing(shown.clone()),
            _ => KeystoreError::Io(e),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(KeystoreError::InsecurePermissions(shown));
            }
        }
        let file: File =
            serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Corrupt(e.to_string()))?;
        if file.version != 1 || file.kdf != "scrypt" || file.nonce.len() != 12 || file.log_n > 22 {
            return Err(KeystoreError::Corrupt(
                "unknown version or parameters".into(),
            ));
        }
        let key = derive_key(password, &file.salt, file.log_n, file.r, file.p)?;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
        let entropy = cipher
            .decrypt(Nonce::from_slice(&file.nonce), file.ciphertext.as_slice())
            .map_err(|_| KeystoreError::WrongPassword)?;
        if entropy.len() != 32 {
            return Err(KeystoreError::Corrupt("seed has the wrong length".into()));
        }
        Ok(Self {
            entropy: Zeroizing::new(entropy),
        })
    }

    /// The 24 recovery words. Show them to the user once; never log them.
    pub fn words(&self) -> Result<Zeroizing<String>, KeystoreError> {
        let m = bip39::Mnemonic::from_entropy(&self.entropy)
            .map_err(|e| KeystoreError::BadMnemonic(e.to_string()))?;
        Ok(Zeroizing::new(m.to_string()))
    }

    /// The BIP-39 seed (empty passphrase), from which BIP-32 keys derive.
    pub fn seed(&self) -> Result<Zeroizing<[u8; 64]>, KeystoreError> {
        let m = bip39::Mnemonic::from_entropy(&self.entropy)
            .map_err(|e| KeystoreError::BadMnemonic(e.to_string()))?;
        Ok(Zeroizing::new(m.to_seed("")))
    }

    /// The key that seals the swap store's secrets at rest
    /// ([`swap_core::store::seal`]): the purpose key [`StoreKey::PURPOSE`].
    pub fn store_key(&self) -> Result<StoreKey, KeystoreError> {
        let key = self.purpose_key(StoreKey::PURPOSE)?;
        Ok(StoreKey::from_bytes(&key))
    }

    /// A 32-byte key for one purpose, derived from the seed (e.g. the transport identity).
    pub fn purpose_key(&self, purpose: &str) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        let seed = self.seed()?;
        let mut h = Sha256::new();
        h.update(b"xswap/purpose/");
        h.update(purpose.as_bytes());
        h.update(&seed[..]);
        Ok(Zeroizing::new(h.finalize().into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn create_open_restore() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let (ks, words) = Keystore::create(&path, "hunter2").unwrap();
        assert_eq!(words.split_whitespace().count(), 24);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The file holds no word and no seed in clear: no value is a word or the phrase (its
        // field names `salt` and `version` are BIP-39 words too, and hex values may hold
        // `face` or `add`: only whole values are compared).
        let raw = std::fs::read_to_string(&path).unwrap();
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&raw).unwrap();
        assert!(!raw.contains(words.as_str()));
        for w in words.split_whitespace() {
            assert!(
                fields.values().all(|v| v.as_str() != Some(w)),
                "a word in the file"
            );
        }
        assert!(!raw.contains(&hex::encode(&ks.seed().unwrap()[..])));

        let opened = Keystore::open(&path, "hunter2").unwrap();
        assert_eq!(opened.seed().unwrap()[..], ks.seed().unwrap()[..]);
        assert!(matches!(
            Keystore::open(&path, "wrong"),
            Err(KeystoreError::WrongPassword)
        ));
        assert!(matches!(
            Keystore::create(&path, "x"),
            Err(KeystoreError::Exists(_))
        ));
        assert!(format!("{opened:?}").contains("redacted"));

        let path2 = dir.path().join("restored.json");
        let restored = Keystore::restore(&path2, &words, "other").unwrap();
        assert_eq!(restored.seed().unwrap()[..], ks.seed().unwrap()[..]);
        assert_ne!(
            ks.purpose_key("noise").unwrap()[..],
            ks.purpose_key("other").unwrap()[..]
        );
        assert!(matches!(
            Keystore::restore(&dir.path().join("bad.json"), "not twenty four words", "x"),
            Err(KeystoreError::BadMnemonic(_))
        ));
    }

    #[test]
    fn the_store_key_comes_from_the_seed() {
        use swap_core::store::SqliteStore;
        use swap_core::StoreError;
        let dir = tempfile::tempdir().unwrap();
        let (ks, words) = Keystore::create(&dir.path().join("a.json"), "pw").unwrap();
        let db = dir.path().join("swaps.sqlite");
        drop(SqliteStore::open_with_key(&db, ks.store_key().unwrap()).unwrap());
        // The same seed restored opens the store; another seed, or none, does not.
        let restored = Keystore::restore(&dir.path().join("b.json"), &words, "other").unwrap();
        SqliteStore::open_with_key(&db, restored.store_key().unwrap()).unwrap();
        let (other, _) = Keystore::create(&dir.path().join("c.json"), "pw").unwrap();
        assert!(matches!(
            SqliteStore::open_with_key(&db, other.store_key().unwrap()),
            Err(StoreError::WrongKey)
        ));
        assert!(matches!(
            SqliteStore::open(&db),
            Err(StoreError::KeyRequired)
        ));
        assert!(format!("{:?}", ks.store_key().unwrap()).contains("redacted"));
    }

    #[test]
    fn damaged_or_exposed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        Keystore::create(&path, "pw").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                Keystore::open(&path, "pw"),
                Err(KeystoreError::InsecurePermissions(_))
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let ct = file["ciphertext"].as_str().unwrap().to_string();
        let flipped = format!("{}{}", if &ct[..1] == "0" { "1" } else { "0" }, &ct[1..]);
        file["ciphertext"] = serde_json::Value::String(flipped);
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        assert!(matches!(
            Keystore::open(&path, "pw"),
            Err(KeystoreError::WrongPassword)
        ));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            Keystore::open(&path, "pw"),
            Err(KeystoreError::Corrupt(_))
        ));
        assert!(matches!(
            Keystore::open(&dir.path().join("none.json"), "pw"),
            Err(KeystoreError::Missing(_))
        ));
    }
}
