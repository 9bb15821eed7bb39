//! The node's store with every value sealed at rest: the node's database ([`SqliteKv`]) wrapped so that what
//! LDK writes (the channel manager and monitors, which hold payment preimages; the sweeper;
//! the peers) and what our ledger writes (preimages of payments sent and claimed) is sealed
//! with the installation's [`StoreKey`] (XChaCha20-Poly1305 through
//! `swap_core::store::StoreKey`, a fresh nonce per write), bound to its namespaces and key so
//! that a value moved under another key does not open.
//!
//! A sealed value is [`MAGIC`] then the sealed bytes; any other value is a clear one, as
//! written without a key or by an older build, and still reads. A directory knows it is sealed
//! by its key check (`xswap_seal/key_check`, a fixed text sealed with the key): opened without
//! a key it is refused ([`LnError::KeyRequired`]), with another key too
//! ([`LnError::WrongKey`]), before anything is written. Opened with a key for the first time,
//! every clear value is sealed in place (each row replaced, the database's log emptied), then
//! the key check is written: the preimages of an older directory do not stay in clear until
//! LDK happens to write them again.
//!
//! Without a key (library users who choose so, tests), values are read and written in clear.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lightning::io;
use lightning::util::async_poll::AsyncResult;
use lightning::util::persist::{KVStore, KVStoreSync, MigratableKVStore};
use swap_core::store::seal::{open_store, KeyState};
use swap_core::store::StoreKey;
use zeroize::Zeroizing;

use crate::error::LnError;
use crate::kv::SqliteKv;

/// What starts a sealed value (then `[format 1][nonce][ciphertext and tag]`).
pub(crate) const MAGIC: &[u8; 12] = b"\x00xswap-seal1";
/// Where the key check is kept.
const CHECK_NAMESPACE: &str = "xswap_seal";
const CHECK_KEY: &str = "key_check";

/// One value of [`SealedStore::read_each`]: opened, absent, or an error of its own.
pub(crate) type OneRead = Result<Option<Vec<u8>>, io::Error>;

/// The node's database in its data directory, its values sealed with the installation's key
/// when it has one.
pub(crate) struct SealedStore {
    inner: SqliteKv,
    key: Option<Arc<StoreKey>>,
    /// Monitor writes ordered behind the channel manager's (see `gate.rs`).
    gate: crate::gate::Gate,
    /// What [`SealedStore::read_each`] read, opened (absent values too).
    read_cache: Mutex<ReadCache>,
    /// Held while a swap leg's payment records are read and then written on what was read
    /// (`LnRail::pay` before a hand-over, `events::record_failed`), never across an await.
    pub(crate) legs: Mutex<()>,
}

/// The namespace whose values [`SealedStore::read_each`] keeps: the node's own records (the
/// swap rail reads a leg's payment records at each observation). Everything written to it
/// goes through this store (LDK writes its own namespaces).
const CACHED_NAMESPACE: &str = "xswap";

/// The most values kept: past it the cache starts over (a swap's records are read while it
/// runs, and a few thousand swaps run at once at most).
const READ_CACHE_MOST: usize = 32_768;

/// How many of the latest writes [`ReadCache`] remembers by key.
const RECENT_WRITES: usize = 1_024;

/// Values read under [`CACHED_NAMESPACE`], by secondary namespace and key: `None` absent.
/// `written` counts the writes to that namespace and `recent` holds the keys of the latest
/// of them: a read whose database read may have come before a write to one of its keys keeps
/// nothing (the write replaced or dropped the value after it), nor does one that began
/// before more writes than `recent` holds; a write to other keys meanwhile does not matter.
#[derive(Default)]
struct ReadCache {
    written: u64,
    recent: std::collections::VecDeque<(String, String)>,
    values: Kept,
}

/// A kept value: `None` when absent.
type KeptValue = Option<Zeroizing<Vec<u8>>>;

/// The kept values by key, then secondary namespace: a read looks them up by `&str`, with no
/// allocation (keyed by a pair of strings, each status of a Lightning leg built 16 strings
/// to look up its 8 records: ~1 % of a channel swap's CPU).
#[derive(Default)]
struct Kept {
    by_key: HashMap<String, HashMap<String, KeptValue>>,
    len: usize,
}

impl Kept {
    fn get(&self, secondary: &str, key: &str) -> Option<&KeptValue> {
        self.by_key.get(key)?.get(secondary)
    }

    fn get_mut(&mut self, secondary: &str, key: &str) -> Option<&mut KeptValue> {
        self.by_key.get_mut(key)?.get_mut(secondary)
    }

    fn insert(&mut self, secondary: &str, key: &str, value: KeptValue) {
        let inner = match self.by_key.get_mut(key) {
            Some(inner) => inner,
            None => self.by_key.entry(key.to_string()).or_default(),
        };
        if inner.insert(secondary.to_string(), value).is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, secondary: &str, key: &str) {
        let Some(inner) = self.by_key.get_mut(key) else {
            return;
        };
        if inner.remove(secondary).is_some() {
            self.len -= 1;
        }
        if inner.is_empty() {
            self.by_key.remove(key);
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.by_key.clear();
        self.len = 0;
    }

    /// Every kept (secondary namespace, key).
    #[cfg(test)]
    fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_key
            .iter()
            .flat_map(|(k, inner)| inner.keys().map(move |s| (s.as_str(), k.as_str())))
    }
}

impl ReadCache {
    /// Counts a write to `key`.
    fn wrote(&mut self, key: (String, String)) {
        self.written += 1;
        self.recent.push_back(key);
        if self.recent.len() > RECENT_WRITES {
            self.recent.pop_front();
        }
    }

    /// Whether no write since the count was `began` was to `key` under one of
    /// `secondaries`, as far as the writes remembered tell (else `false`).
    fn untouched_since(&self, began: u64, secondaries: &[&str], key: &str) -> bool {
        let Ok(since) = usize::try_from(self.written - began) else {
            return false;
        };
        since <= self.recent.len()
            && self
                .recent
                .iter()
                .rev()
                .take(since)
                .all(|(s, k)| k != key || !secondaries.contains(&s.as_str()))
    }
}

impl std::fmt::Debug for SealedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedStore")
            .field("sealed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// What a value is bound to: its namespaces and key.
fn binding(primary: &str, secondary: &str, key: &str) -> Vec<u8> {
    let mut ad = b"ln-kv:".to_vec();
    for part in [primary, secondary, key] {
        ad.extend_from_slice(part.as_bytes());
        // Namespaces and keys never hold a NUL (LDK's alphabet), so the parts cannot shift.
        ad.push(0);
    }
    ad
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// A value read back: clear, or sealed and opened.
fn unseal(key: Option<&StoreKey>, ad: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, io::Error> {
    let Some(sealed) = stored.strip_prefix(MAGIC.as_slice()) else {
        return Ok(stored);
    };
    let key = key.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a sealed value and no key: the node must be started with the installation's key",
        )
    })?;
    key.open_bytes(ad, sealed)
        .map(|plain| plain.to_vec())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a sealed value does not open here (another key, moved from another key, or \
                 modified)",
            )
        })
}

impl SealedStore {
    /// The database under the seal (tests that write stored bytes as they are).
    #[cfg(test)]
    pub(crate) fn raw(&self) -> &SqliteKv {
        &self.inner
    }

    /// The store in `dir` without a key: values read and written in clear. A directory whose
    /// values are sealed is refused ([`LnError::KeyRequired`]).
    #[cfg(test)]
    pub(crate) fn clear(dir: PathBuf) -> Result<Self, LnError> {
        Self::open(dir, None)
    }

    /// The store in `dir`, sealed with `key` when given (see the module's documentation):
    /// refuses a sealed directory without a key or with another key, writing nothing; with a
    /// key, seals in place every clear value the directory holds.
    pub(crate) fn open(dir: PathBuf, key: Option<StoreKey>) -> Result<Self, LnError> {
        // A directory of an earlier build (LDK's files) keeps its check in a file until it is
        // moved into the database: refused there, before the move writes anything.
        let legacy_check = dir.join(CHECK_NAMESPACE).join(CHECK_KEY);
        match std::fs::read(&legacy_check) {
            Ok(check) => {
                open_store(key.as_ref(), Some(&check)).map_err(key_err)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("key check", e.into())),
        }
        let inner = SqliteKv::open(&dir).map_err(|e| io_err("open", e))?;
        let check = match KVStoreSync::read(&inner, CHECK_NAMESPACE, "", CHECK_KEY) {
            Ok(c) => Some(c),
            Err(e) if not_found(&e) => None,
            Err(e) => return Err(LnError::Store(std::io::Error::other(e.to_string()))),
        };
        let state = open_store(key.as_ref(), check.as_deref()).map_err(key_err)?;
        let store = Self {
            inner,
            key: key.map(Arc::new),
            gate: crate::gate::Gate::default(),
            read_cache: Mutex::default(),
            legs: Mutex::default(),
        };
        if let (KeyState::ToSeal, Some(key)) = (state, store.key.as_deref()) {
            // Every clear value sealed first, then the check: a start interrupted meanwhile
            // finds no check and seals what is left at the next start with the key.
            store.seal_clear_values()?;
            store
                .inner
                .checkpoint()
                .map_err(|e| io_err("checkpoint", e))?;
            let check = key
                .key_check()
                .map_err(|e| LnError::Store(std::io::Error::other(e.to_string())))?;
            KVStoreSync::write(&store.inner, CHECK_NAMESPACE, "", CHECK_KEY, check)
                .map_err(|e| io_err("key check", e))?;
        }
        if store.key.is_some() {
            store
                .inner
                .all_sealed()
                .map_err(|e| io_err("secure_delete", e))?;
        }
        Ok(store)
    }

    /// Seals every clear value in place (each row replaced).
    fn seal_clear_values(&self) -> Result<(), LnError> {
        let all = MigratableKVStore::list_all_keys(&self.inner).map_err(|e| io_err("list", e))?;
        for (p, s, k) in all {
            if p == CHECK_NAMESPACE {
                continue;
            }
            let value = KVStoreSync::read(&self.inner, &p, &s, &k)
                .map_err(|e| io_err(&format!("{p}/{s}/{k}"), e))?;
            if value.starts_with(MAGIC) {
                continue;
            }
            let value = zeroize::Zeroizing::new(value);
            let sealed = self
                .seal(&p, &s, &k, &value)
                .map_err(|e| io_err(&format!("{p}/{s}/{k}"), e))?;
            KVStoreSync::write(&self.inner, &p, &s, &k, sealed)
                .map_err(|e| io_err(&format!("{p}/{s}/{k}"), e))?;
        }
        Ok(())
    }

    /// [`SqliteKv::read_each`], each value opened: one that does not open is an error in its
    /// own place only (the others still read).
    pub(crate) fn read_each(
        &self,
        primary: &str,
        secondaries: &[&str],
        key: &str,
    ) -> Result<Vec<OneRead>, io::Error> {
        let cached = primary == CACHED_NAMESPACE;
        let written = if cached {
            let cache = self.cache();
            let kept: Option<Vec<OneRead>> = secondaries
                .iter()
                .map(|s| {
                    cache
                        .values
                        .get(s, key)
                        .map(|v| Ok(v.as_ref().map(|v| v.to_vec())))
                })
                .collect();
            if let Some(kept) = kept {
                return Ok(kept);
            }
            cache.written
        } else {
            0
        };
        let stored = self.inner.read_each(primary, secondaries, key)?;
        let opened: Vec<OneRead> = stored
            .into_iter()
            .zip(secondaries)
            .map(|(value, secondary)| {
                value
                    .map(|v| unseal(self.key.as_deref(), &binding(primary, secondary, key), v))
                    .transpose()
            })
            .collect();
        if cached {
            let mut cache = self.cache();
            if cache.untouched_since(written, secondaries, key) {
                if cache.values.len() + secondaries.len() > READ_CACHE_MOST {
                    cache.values.clear();
                }
                for (secondary, value) in secondaries.iter().zip(&opened) {
                    // An error is not kept: read again, it says so again.
                    if let Ok(value) = value {
                        cache
                            .values
                            .insert(secondary, key, value.clone().map(Zeroizing::new));
                    }
                }
            }
        }
        Ok(opened)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ReadCache> {
        self.read_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `op`, a write (`now`: `Some` of the value) or removal (`None`) of `secondary`/`key`
    /// under `primary`. For the namespace kept in memory it runs with the kept values held,
    /// so that writes to one key change them in the order they reach the database; then a
    /// value kept for that key is replaced (dropped if `op` failed: read again next time), a
    /// value never read is not added, and reads of that key that may have begun before it
    /// keep nothing.
    fn writing(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        now: Option<&[u8]>,
        op: impl FnOnce() -> Result<(), io::Error>,
    ) -> Result<(), io::Error> {
        if primary != CACHED_NAMESPACE {
            return op();
        }
        let mut cache = self.cache();
        let done = op();
        cache.wrote((secondary.to_string(), key.to_string()));
        if done.is_err() {
            cache.values.remove(secondary, key);
        } else if let Some(kept) = cache.values.get_mut(secondary, key) {
            *kept = now.map(|v| Zeroizing::new(v.to_vec()));
        }
        done
    }

    /// The order of monitor and manager writes (see `gate.rs`).
    pub(crate) fn gate(&self) -> &crate::gate::Gate {
        &self.gate
    }

    /// See [`SqliteKv::hold`].
    pub(crate) fn hold(&self, primaries: &'static [&'static str]) {
        self.inner.hold(primaries);
    }

    /// See [`SqliteKv::held_mark`].
    pub(crate) fn held_mark(&self) -> u64 {
        self.inner.held_mark()
    }

    /// See [`SqliteKv::holds_before`].
    pub(crate) fn holds_before(&self, mark: u64) -> bool {
        self.inner.holds_before(mark)
    }

    /// `value` sealed and written under `names` with the writes held before `mark`, in one
    /// transaction (see [`SqliteKv::commit_held_through`]).
    pub(crate) fn commit_sealed_through(
        &self,
        mark: u64,
        names: (&str, &str, &str),
        value: &[u8],
    ) -> Result<usize, io::Error> {
        let sealed = self.seal(names.0, names.1, names.2, value)?;
        self.inner.commit_held_through(mark, names, &sealed)
    }

    /// `value` as written: sealed for its place when there is a key.
    fn seal(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, io::Error> {
        let Some(k) = self.key.as_deref() else {
            return Ok(value.to_vec());
        };
        let sealed = k
            .seal_bytes(&binding(primary, secondary, key), value)
            .map_err(|e| io::Error::new(io::ErrorKind::Other, e.to_string()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

/// A key check's answer as the node's error.
fn key_err(e: swap_core::store::StoreError) -> LnError {
    match e {
        swap_core::store::StoreError::KeyRequired => LnError::KeyRequired,
        swap_core::store::StoreError::WrongKey => LnError::WrongKey,
        other => LnError::Store(std::io::Error::other(other.to_string())),
    }
}

fn io_err(what: &str, e: io::Error) -> LnError {
    LnError::Store(std::io::Error::other(format!("{what}: {e}")))
}

impl KVStoreSync for SealedStore {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> Result<Vec<u8>, io::Error> {
        let stored = KVStoreSync::read(&self.inner, primary, secondary, key)?;
        unseal(
            self.key.as_deref(),
            &binding(primary, secondary, key),
            stored,
        )
    }

    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> Result<(), io::Error> {
        let buf = zeroize::Zeroizing::new(buf);
        if (primary, secondary, key) == crate::gate::MANAGER && self.gate.is_on() {
            return self.gate.write_manager(self, Some(buf));
        }
        let sealed = self.seal(primary, secondary, key, &buf)?;
        self.writing(primary, secondary, key, Some(&buf[..]), || {
            KVStoreSync::write(&self.inner, primary, secondary, key, sealed)
        })
    }

    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        lazy: bool,
    ) -> Result<(), io::Error> {
        self.writing(primary, secondary, key, None, || {
            KVStoreSync::remove(&self.inner, primary, secondary, key, lazy)
        })
    }

    fn list(&self, primary: &str, secondary: &str) -> Result<Vec<String>, io::Error> {
        KVStoreSync::list(&self.inner, primary, secondary)
    }
}

/// Done at call (as LDK's `KVStoreSyncWrapper` does): a write is committed before the call
/// returns, so writes to a key land in call order.
impl KVStore for SealedStore {
    fn read(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
    ) -> AsyncResult<'static, Vec<u8>, io::Error> {
        let r = KVStoreSync::read(self, primary, secondary, key);
        Box::pin(async move { r })
    }

    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> AsyncResult<'static, (), io::Error> {
        let r = KVStoreSync::write(self, primary, secondary, key, buf);
        Box::pin(async move { r })
    }

    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        lazy: bool,
    ) -> AsyncResult<'static, (), io::Error> {
        let r = KVStoreSync::remove(self, primary, secondary, key, lazy);
        Box::pin(async move { r })
    }

    fn list(&self, primary: &str, secondary: &str) -> AsyncResult<'static, Vec<String>, io::Error> {
        let r = KVStoreSync::list(self, primary, secondary);
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(n: u8) -> StoreKey {
        StoreKey::from_bytes(&[n; 32])
    }

    fn files(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = vec![];
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    let bytes = std::fs::read(&p).unwrap();
                    out.push((p, bytes));
                }
            }
        }
        out.sort();
        out
    }

    const SECRET: [u8; 32] = [0xa7; 32];

    fn holds(dir: &std::path::Path, what: &[u8]) -> bool {
        files(dir)
            .iter()
            .any(|(_, b)| b.windows(what.len()).any(|w| w == what))
    }

    #[test]
    fn values_are_sealed_bound_to_their_key_and_clear_ones_sealed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        // A clear directory, as before.
        let clear = SealedStore::clear(path.clone()).unwrap();
        KVStoreSync::write(&clear, "xswap", "preimages", "aa", SECRET.to_vec()).unwrap();
        KVStoreSync::write(
            &clear,
            "monitors",
            "",
            "m1",
            [&b"mon"[..], &SECRET].concat(),
        )
        .unwrap();
        drop(clear);
        assert!(holds(&path, &SECRET));

        // First keyed open: sealed in place, still read.
        let s = SealedStore::open(path.clone(), Some(key(1))).unwrap();
        assert!(!holds(&path, &SECRET));
        assert_eq!(
            KVStoreSync::read(&s, "xswap", "preimages", "aa").unwrap(),
            SECRET
        );
        KVStoreSync::write(&s, "xswap", "preimages", "bb", SECRET.to_vec()).unwrap();
        assert!(!holds(&path, &SECRET));
        assert_eq!(
            KVStoreSync::list(&s, "xswap", "preimages").unwrap().len(),
            2
        );

        // A value moved under another key does not open there.
        let a = KVStoreSync::read(&s.inner, "xswap", "preimages", "aa").unwrap();
        KVStoreSync::write(&s.inner, "xswap", "preimages", "cc", a).unwrap();
        let e = KVStoreSync::read(&s, "xswap", "preimages", "cc").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(!e.to_string().contains("a7a7"));
        KVStoreSync::remove(&s.inner, "xswap", "preimages", "cc", false).unwrap();
        drop(s);

        // Without the key, or with another: refused, nothing written.
        let before = files(&path);
        assert!(matches!(
            SealedStore::clear(path.clone()),
            Err(LnError::KeyRequired)
        ));
        assert!(matches!(
            SealedStore::open(path.clone(), Some(key(2))),
            Err(LnError::WrongKey)
        ));
        assert_eq!(files(&path), before);
        assert!(!format!(
            "{:?}",
            SealedStore::open(path.clone(), Some(key(1))).unwrap()
        )
        .contains("1, 1"));
    }

    #[test]
    fn an_earlier_builds_sealed_files_are_refused_with_another_key_before_the_move() {
        use lightning_persister::fs_store::FilesystemStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let fs = FilesystemStore::new(path.clone());
            let check = key(1).key_check().unwrap();
            KVStoreSync::write(&fs, CHECK_NAMESPACE, "", CHECK_KEY, check).unwrap();
            KVStoreSync::write(&fs, "monitors", "", "m1", vec![1, 2, 3]).unwrap();
        }
        let before = files(&path);
        assert!(matches!(
            SealedStore::open(path.clone(), Some(key(2))),
            Err(LnError::WrongKey)
        ));
        assert!(matches!(
            SealedStore::clear(path.clone()),
            Err(LnError::KeyRequired)
        ));
        assert_eq!(files(&path), before, "nothing moved or written");
        // With its key: moved in, and read.
        let s = SealedStore::open(path.clone(), Some(key(1))).unwrap();
        assert_eq!(
            KVStoreSync::read(&s.inner, "monitors", "", "m1").unwrap(),
            vec![1, 2, 3]
        );
        assert!(!path.join("monitors").exists());
    }

    #[tokio::test]
    async fn the_async_store_seals_and_opens_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let s = SealedStore::open(dir.path().to_path_buf(), Some(key(3))).unwrap();
        KVStore::write(&s, "ns", "", "k", SECRET.to_vec())
            .await
            .unwrap();
        assert!(!holds(dir.path(), &SECRET));
        assert_eq!(KVStoreSync::read(&s, "ns", "", "k").unwrap(), SECRET);
        assert_eq!(KVStore::read(&s, "ns", "", "k").await.unwrap(), SECRET);
    }

    #[test]
    fn a_read_keeps_its_values_unless_a_write_to_its_keys_may_have_come_after_it() {
        let mut c = ReadCache::default();
        let k = |s: &str, key: &str| (s.to_string(), key.to_string());
        c.wrote(k("held", "aa"));
        let began = c.written;
        assert!(c.untouched_since(began, &["preimages", "held"], "aa"));
        // Other keys written meanwhile: kept.
        c.wrote(k("held", "bb"));
        c.wrote(k("sent", "aa"));
        assert!(c.untouched_since(began, &["preimages", "held"], "aa"));
        // One of its keys written meanwhile: not kept, however many writes follow.
        c.wrote(k("preimages", "aa"));
        c.wrote(k("held", "cc"));
        assert!(!c.untouched_since(began, &["preimages", "held"], "aa"));
        assert!(c.untouched_since(c.written, &["preimages", "held"], "aa"));
        // More writes meanwhile than are remembered: not kept.
        let began = c.written;
        for i in 0..=RECENT_WRITES {
            c.wrote(k("held", &format!("x{i}")));
        }
        assert_eq!(c.recent.len(), RECENT_WRITES);
        assert!(!c.untouched_since(began, &["preimages", "held"], "aa"));
        assert!(c.untouched_since(c.written - 3, &["preimages", "held"], "aa"));
    }

    #[test]
    fn records_read_together_are_kept_and_follow_every_write_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let s = SealedStore::open(dir.path().to_path_buf(), Some(key(4))).unwrap();
        let names = ["preimages", "held"];
        let read = |s: &SealedStore| -> Vec<Option<Vec<u8>>> {
            s.read_each(CACHED_NAMESPACE, &names, "aa")
                .unwrap()
                .into_iter()
                .map(|v| v.unwrap())
                .collect()
        };
        // A value written and never read is not kept.
        KVStoreSync::write(&s, CACHED_NAMESPACE, "preimages", "zz", SECRET.to_vec()).unwrap();
        assert!(s.cache().values.is_empty());
        assert_eq!(read(&s), vec![None, None]);
        KVStoreSync::write(&s, CACHED_NAMESPACE, "held", "aa", vec![5; 9]).unwrap();
        assert_eq!(read(&s), vec![None, Some(vec![5; 9])]);
        KVStoreSync::write(&s, CACHED_NAMESPACE, "preimages", "aa", SECRET.to_vec()).unwrap();
        KVStoreSync::remove(&s, CACHED_NAMESPACE, "held", "aa", false).unwrap();
        assert_eq!(read(&s), vec![Some(SECRET.to_vec()), None]);
        // Kept: a second read does not go to the database (a value written underneath,
        // which nothing but a test does, is not seen).
        KVStoreSync::write(&s.inner, CACHED_NAMESPACE, "held", "aa", vec![1]).unwrap();
        assert_eq!(read(&s), vec![Some(SECRET.to_vec()), None]);
        assert_eq!(s.cache().values.len(), 2);
        // What a fresh store reads from the database is what was kept.
        KVStoreSync::remove(&s.inner, CACHED_NAMESPACE, "held", "aa", false).unwrap();
        drop(s);
        let again = SealedStore::open(dir.path().to_path_buf(), Some(key(4))).unwrap();
        assert_eq!(read(&again), vec![Some(SECRET.to_vec()), None]);
        // A value that does not open is an error each time, never kept.
        let mut bad = MAGIC.to_vec();
        bad.extend([1; 40]);
        KVStoreSync::write(&again.inner, CACHED_NAMESPACE, "held", "bb", bad).unwrap();
        for _ in 0..2 {
            let got = again.read_each(CACHED_NAMESPACE, &names, "bb").unwrap();
            assert!(got[0].as_ref().unwrap().is_none());
            assert!(got[1].is_err());
        }
        // Other namespaces (LDK's) are not kept.
        KVStoreSync::write(&again, "monitors", "", "m", vec![3; 4]).unwrap();
        let got = again.read_each("monitors", &[""], "m").unwrap();
        assert_eq!(got[0].as_ref().unwrap().as_deref(), Some(&[3u8; 4][..]));
        assert!(again.cache().values.keys().all(|(s, _)| !s.is_empty()));
        let kept = again.cache();
        assert_eq!(kept.values.keys().count(), kept.values.len());
    }
}
