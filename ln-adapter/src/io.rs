//! LDK's narrow I/O traits, implemented on the Bitcoin-family node: logging, broadcasting,
//! fee estimates, and the wallet scripts closes and sweeps pay to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bitcoin::{ScriptBuf, Transaction};
use btc_adapter::rpc::RpcClient;
use btc_adapter::FeeConfig;
use lightning::chain::chaininterface::{BroadcasterInterface, ConfirmationTarget, FeeEstimator};
use lightning::ln::script::ShutdownScript;
use lightning::sign::{ChangeDestinationSource, InMemorySigner, KeysManager, SignerProvider};
use lightning::util::async_poll::AsyncResult;
use lightning::util::logger::{Level, Logger, Record};
use lightning::util::persist::KVStoreSync;

use crate::error::LnError;

/// LDK's log lines, as `tracing` events (target `ldk`). No secret goes to a log: LDK's trace
/// and gossip levels are dropped, and in the lines kept a secret LDK prints (a payment
/// preimage when it claims an HTLC, a per-commitment secret) is replaced ([`redact`]).
#[derive(Debug, Default)]
pub(crate) struct TracingLogger;

impl Logger for TracingLogger {
    fn log(&self, record: Record) {
        let module = record.module_path;
        let line = record.line;
        match record.level {
            Level::Trace | Level::Gossip => {}
            Level::Debug => {
                if tracing::enabled!(target: "ldk", tracing::Level::DEBUG) {
                    let text = record.args.to_string();
                    tracing::debug!(target: "ldk", module, line, "{}", redact(&text));
                }
            }
            Level::Info => {
                if tracing::enabled!(target: "ldk", tracing::Level::INFO) {
                    let text = record.args.to_string();
                    tracing::info!(target: "ldk", module, line, "{}", redact(&text));
                }
            }
            Level::Warn => {
                let text = record.args.to_string();
                tracing::warn!(target: "ldk", module, line, "{}", redact(&text));
            }
            Level::Error => {
                let text = record.args.to_string();
                // LDK reports a cooperative close through its error path ("Closing channel:
                // Coop Closed"): an expected end, not an error for whoever reads our logs.
                if text.ends_with("Coop Closed") {
                    tracing::info!(target: "ldk", module, line, "{}", redact(&text));
                } else {
                    tracing::error!(target: "ldk", module, line, "{}", redact(&text));
                }
            }
        }
    }
}

/// The words after which LDK prints a secret in a log line: "Claiming inbound HTLC id 3 with
/// payment hash .. with preimage <hex>", "Claiming HTLC with preimage <hex> from our monitor",
/// "(preimage <hex>)", "mismatching preimage <hex>", "per_commitment_secret <hex>" (LDK 0.2).
const SECRET_WORDS: &[&str] = &["preimage", "secret"];

/// The shortest hex run taken for a secret (a 32-byte secret prints as 64 digits; a payment
/// hash or channel id never follows these words).
const SECRET_HEX_MIN: usize = 32;

/// `text` with every run of at least [`SECRET_HEX_MIN`] hex digits that follows one of
/// [`SECRET_WORDS`] (after spaces, `:`, `=` or `(`) replaced by `<redacted>`.
pub(crate) fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for word in SECRET_WORDS {
        for (at, _) in lower.match_indices(word) {
            let after = &text[at + word.len()..];
            let skipped = after.len()
                - after
                    .trim_start_matches([' ', ':', '=', '(', '\'', '"'])
                    .len();
            let start = at + word.len() + skipped;
            let run = text[start..]
                .bytes()
                .take_while(u8::is_ascii_hexdigit)
                .count();
            if run >= SECRET_HEX_MIN {
                cuts.push((start, start + run));
            }
        }
    }
    if cuts.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (start, end) in cuts {
        if start < from {
            continue;
        }
        out.push_str(&text[from..start]);
        out.push_str("<redacted>");
        from = end;
    }
    out.push_str(&text[from..]);
    std::borrow::Cow::Owned(out)
}

/// Sends LDK's transactions through the node (`sendrawtransaction`, "already known" counts as
/// sent). LDK calls this synchronously; its calls are sent by one task, in the order LDK made
/// them (a package's parent before its child, a commitment before the HTLC claim spending it,
/// which LDK hands over in a later call: a child sent first is refused and dropped). A send
/// that fails because the node could not be reached is queued and sent again at every poll ([`Broadcaster::retry`]) until the
/// node takes or refuses it: LDK broadcasts a channel's funding transaction only once. A
/// transaction the node refuses is logged and dropped (LDK rebroadcasts what still matters,
/// commitment and claim transactions, on its own schedule). The queue is kept in the node's
/// store too (one record per transaction, removed once the node took or refused it), so a
/// funding transaction queued while the node was down is still sent after a restart.
pub(crate) struct Broadcaster {
    rpc: Arc<RpcClient>,
    retry: Arc<std::sync::Mutex<Vec<Transaction>>>,
    /// LDK's calls, in order, to the sending task.
    outbox: tokio::sync::mpsc::UnboundedSender<Vec<Transaction>>,
    store: Arc<crate::types::Store>,
}

impl std::fmt::Debug for Broadcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broadcaster({} queued)", self.queued())
    }
}

/// Where the queued transactions are kept (`xswap/rebroadcast/<txid>`, consensus-encoded).
const QUEUE_NAMESPACE: &str = "xswap";
const QUEUE_SECONDARY: &str = "rebroadcast";

/// Records a queued transaction; a store that cannot take it keeps it in memory only (said).
fn keep(store: &crate::types::Store, tx: &Transaction) {
    let key = tx.compute_txid().to_string();
    let bytes = bitcoin::consensus::encode::serialize(tx);
    if let Err(e) = KVStoreSync::write(store, QUEUE_NAMESPACE, QUEUE_SECONDARY, &key, bytes) {
        tracing::warn!(txid = %key, error = %e, "queued broadcast not stored: kept in memory only");
    }
}

/// Forgets a queued transaction (sent, refused, or dropped from a full queue).
fn unkeep(store: &crate::types::Store, tx: &Transaction) {
    let key = tx.compute_txid().to_string();
    if let Err(e) = KVStoreSync::remove(store, QUEUE_NAMESPACE, QUEUE_SECONDARY, &key, false) {
        tracing::warn!(txid = %key, error = %e, "queued broadcast not removed from the store");
    }
}

/// At most this many transactions wait for the node (the oldest are dropped beyond it).
const RETRY_QUEUE: usize = 1_000;

impl Broadcaster {
    /// A broadcaster whose retry queue starts with what `store` kept of an earlier run's
    /// (an unreadable record is said and skipped: LDK rebroadcasts what matters to a channel
    /// after blocks anyway, only a funding transaction would wait for its channel's timeout).
    pub(crate) fn new(
        rpc: Arc<RpcClient>,
        runtime: tokio::runtime::Handle,
        store: Arc<crate::types::Store>,
    ) -> Result<Self, LnError> {
        let keys = KVStoreSync::list(&*store, QUEUE_NAMESPACE, QUEUE_SECONDARY).map_err(|e| {
            LnError::Store(std::io::Error::other(format!("rebroadcast queue: {e}")))
        })?;
        let mut queued = Vec::with_capacity(keys.len());
        for key in keys {
            let tx = KVStoreSync::read(&*store, QUEUE_NAMESPACE, QUEUE_SECONDARY, &key)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    bitcoin::consensus::encode::deserialize::<Transaction>(&bytes)
                        .map_err(|e| e.to_string())
                });
            match tx {
                Ok(tx) => queued.push(tx),
                Err(e) => tracing::warn!(txid = %key, error = %e, "queued broadcast unreadable"),
            }
        }
        if !queued.is_empty() {
            tracing::info!(
                count = queued.len(),
                "broadcasts queued before the restart: sent again at the first poll"
            );
        }
        let retry = Arc::new(std::sync::Mutex::new(queued));
        let (outbox, mut calls) = tokio::sync::mpsc::unbounded_channel::<Vec<Transaction>>();
        {
            let (rpc, retry, store) = (Arc::clone(&rpc), Arc::clone(&retry), Arc::clone(&store));
            // Ends when the broadcaster is dropped (its sender with it).
            runtime.spawn(async move {
                while let Some(txs) = calls.recv().await {
                    Self::send(&rpc, &retry, &store, txs, true).await;
                }
            });
        }
        Ok(Self {
            rpc,
            retry,
            outbox,
            store,
        })
    }

    /// Sends `txs` in order, after a commit of the channel manager when `commit_first`;
    /// those the node could not be reached for go to the retry queue.
    async fn send(
        rpc: &RpcClient,
        retry: &std::sync::Mutex<Vec<Transaction>>,
        store: &Arc<crate::types::Store>,
        txs: Vec<Transaction>,
        commit_first: bool,
    ) {
        // Nothing goes out that state only held in memory produced: what is held is
        // committed first, with a manager encoded now (`gate.rs`). A commitment from a
        // monitor update not committed yet; a channel's funding, which LDK hands over once
        // the channel's first monitor completed, a change its manager may keep in memory for
        // a while: started again from a manager that still waits for that monitor, LDK
        // panics when it sees the funding confirmed. (Encoding the manager waits for LDK's
        // lock: on the blocking pool.)
        // A failed commit still broadcasts: a commitment or claim that does not go out can
        // cost the channel's funds for sure, a crash right after it only maybe.
        let flushed = if commit_first && store.gate().is_on() {
            let store = Arc::clone(store);
            tokio::task::spawn_blocking(move || store.gate().write_manager(&store, None))
                .await
                .unwrap_or_else(|e| {
                    Err(lightning::io::Error::new(
                        lightning::io::ErrorKind::Other,
                        e.to_string(),
                    ))
                })
        } else {
            Ok(())
        };
        if let Err(e) = flushed {
            tracing::warn!(error = %e, "held channel monitor writes not committed before a broadcast");
        }
        // A parent with its child (an anchor channel's commitment and the child paying its
        // fee) goes first as a package where the node takes packages (`submitpackage`,
        // Bitcoin Core 28 on): a commitment below the mempool's minimum feerate is taken with
        // its child that way, and refused alone. The singles below then find both known. A
        // node without packages (litecoind) or a package refused: the singles decide.
        for pair in txs.windows(2) {
            if let [parent, child] = pair {
                let parent_txid = parent.compute_txid();
                if child
                    .input
                    .iter()
                    .any(|i| i.previous_output.txid == parent_txid)
                {
                    submit_package(rpc, parent, child).await;
                }
            }
        }
        let mut unsent = Vec::new();
        for tx in txs {
            let txid = tx.compute_txid();
            match rpc.send_raw_transaction(&tx).await {
                Ok(_) => {
                    tracing::info!(%txid, "lightning transaction broadcast");
                    unkeep(store, &tx);
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(%txid, error = %e, "lightning broadcast failed: queued to retry");
                    keep(store, &tx);
                    unsent.push(tx);
                }
                Err(e) => {
                    tracing::warn!(%txid, error = %e, "lightning broadcast refused");
                    unkeep(store, &tx);
                }
            }
        }
        if !unsent.is_empty() {
            let mut queue = retry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.extend(unsent);
            let excess = queue.len().saturating_sub(RETRY_QUEUE);
            for dropped in queue.drain(..excess) {
                unkeep(store, &dropped);
            }
        }
    }

    /// Sends the queued transactions again (called at every poll).
    pub(crate) async fn retry(&self) {
        let queued: Vec<Transaction> = std::mem::take(
            &mut *self
                .retry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !queued.is_empty() {
            // Each was sent once after a commit (or by an earlier run, from what it committed).
            Self::send(&self.rpc, &self.retry, &self.store, queued, false).await;
        }
    }

    /// How many transactions wait for the node.
    pub(crate) fn queued(&self) -> usize {
        self.retry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// Offers `parent` and `child` to the node as one package (`submitpackage`); what it answers
/// is only logged (the single broadcasts after it decide).
async fn submit_package(rpc: &RpcClient, parent: &Transaction, child: &Transaction) {
    let hexes = serde_json::json!([
        bitcoin::consensus::encode::serialize_hex(parent),
        bitcoin::consensus::encode::serialize_hex(child)
    ]);
    let answer: Result<serde_json::Value, _> = rpc.call("submitpackage", vec![hexes]).await;
    match answer {
        Ok(v) => tracing::info!(
            parent = %parent.compute_txid(),
            child = %child.compute_txid(),
            outcome = %v.get("package_msg").and_then(serde_json::Value::as_str).unwrap_or("?"),
            "lightning package submitted"
        ),
        Err(e) => tracing::debug!(error = %e, "package not taken (sent one by one)"),
    }
}

impl BroadcasterInterface for Broadcaster {
    fn broadcast_transactions(&self, txs: &[&Transaction]) {
        let txs: Vec<Transaction> = txs.iter().map(|tx| (*tx).clone()).collect();
        if let Err(e) = self.outbox.send(txs) {
            // Only when the runtime that sends them is gone: LDK rebroadcasts what matters.
            for tx in &e.0 {
                tracing::warn!(txid = %tx.compute_txid(), "lightning broadcast after the node's runtime ended: not sent");
            }
        }
    }
}

/// LDK's smallest feerate (sat per 1000 weight units).
const MIN_SAT_PER_KW: u32 = 253;

fn sat_vb_to_kw(sat_vb: u64) -> u32 {
    u32::try_from(sat_vb.saturating_mul(250))
        .unwrap_or(u32::MAX)
        .max(MIN_SAT_PER_KW)
}

/// Fee estimates from the node, cached: LDK asks synchronously, the follower refreshes them
/// (`estimatesmartfee`, else the configured fallback, never below the node's relay feerate).
#[derive(Debug)]
pub(crate) struct FeeCache {
    config: FeeConfig,
    /// Normal: commitment transactions, closes, sweeps.
    normal: AtomicU32,
    /// Next block: urgent claims.
    urgent: AtomicU32,
    /// The node's minimum relay feerate.
    floor: AtomicU32,
}

impl FeeCache {
    pub(crate) fn new(config: FeeConfig) -> Self {
        let fallback = sat_vb_to_kw(config.fallback_sat_vb.max(config.min_sat_vb));
        Self {
            config,
            normal: AtomicU32::new(fallback),
            urgent: AtomicU32::new(fallback),
            floor: AtomicU32::new(sat_vb_to_kw(config.min_sat_vb)),
        }
    }

    /// Asks the node again.
    pub(crate) async fn refresh(&self, rpc: &RpcClient) -> Result<(), LnError> {
        let (_, relay) = rpc.relay_feerates().await?;
        let floor = relay.max(self.config.min_sat_vb);
        let rate = |estimate: Option<u64>| {
            sat_vb_to_kw(
                estimate
                    .unwrap_or(self.config.fallback_sat_vb)
                    .clamp(floor, self.config.max_sat_vb.max(floor)),
            )
        };
        let normal = rate(rpc.estimate_smart_fee(self.config.conf_target).await?);
        let urgent = rate(rpc.estimate_smart_fee(1).await?).max(normal);
        self.floor.store(sat_vb_to_kw(floor), Ordering::Relaxed);
        self.normal.store(normal, Ordering::Relaxed);
        self.urgent.store(urgent, Ordering::Relaxed);
        Ok(())
    }

    /// The normal feerate in sat/vB (for funding transactions).
    pub(crate) fn normal_sat_vb(&self) -> u64 {
        u64::from(self.normal.load(Ordering::Relaxed)).div_ceil(250)
    }
}

impl FeeEstimator for FeeCache {
    fn get_est_sat_per_1000_weight(&self, target: ConfirmationTarget) -> u32 {
        let normal = self.normal.load(Ordering::Relaxed);
        let urgent = self.urgent.load(Ordering::Relaxed);
        let floor = self.floor.load(Ordering::Relaxed);
        match target {
            // The most a peer may ask for before we refuse its feerate.
            ConfirmationTarget::MaximumFeeEstimate => urgent.saturating_mul(4),
            ConfirmationTarget::UrgentOnChainSweep => urgent,
            ConfirmationTarget::MinAllowedAnchorChannelRemoteFee
            | ConfirmationTarget::MinAllowedNonAnchorChannelRemoteFee => floor,
            ConfirmationTarget::AnchorChannelFee | ConfirmationTarget::ChannelCloseMinimum => {
                floor.max(normal / 2).max(MIN_SAT_PER_KW)
            }
            ConfirmationTarget::NonAnchorChannelFee | ConfirmationTarget::OutputSpendingFee => {
                normal
            }
        }
    }
}

/// How many wallet scripts [`WalletKeys`] keeps ready.
pub(crate) const SCRIPT_POOL: usize = 4;

/// LDK's `KeysManager` for channel keys, with the scripts that cooperative closes and on-chain
/// claims pay to taken from the node's wallet (fresh `bech32` addresses), so that closing
/// needs no sweep. LDK asks synchronously; the follower keeps a few scripts ready.
pub(crate) struct WalletKeys {
    keys: Arc<KeysManager>,
    scripts: Mutex<VecDeque<ScriptBuf>>,
}

impl std::fmt::Debug for WalletKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletKeys").finish_non_exhaustive()
    }
}

impl WalletKeys {
    pub(crate) fn new(keys: Arc<KeysManager>) -> Self {
        Self {
            keys,
            scripts: Mutex::new(VecDeque::new()),
        }
    }

    /// Tops the pool of wallet scripts up to [`SCRIPT_POOL`].
    pub(crate) async fn refill(&self, rpc: &RpcClient) -> Result<(), LnError> {
        let missing = SCRIPT_POOL.saturating_sub(self.pool().len());
        for _ in 0..missing {
            let script = wallet_script(rpc).await?;
            self.pool().push_back(script);
        }
        Ok(())
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, VecDeque<ScriptBuf>> {
        self.scripts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_script(&self) -> Result<ScriptBuf, ()> {
        let script = self.pool().pop_front();
        if script.is_none() {
            tracing::warn!("no wallet script ready for a lightning close or claim");
        }
        script.ok_or(())
    }
}

/// A fresh `bech32` (P2WPKH) script of the node's wallet.
pub(crate) async fn wallet_script(rpc: &RpcClient) -> Result<ScriptBuf, LnError> {
    let address = rpc.get_new_address("bech32").await?;
    Ok(rpc.address_script_pubkey(&address).await?)
}

impl SignerProvider for WalletKeys {
    type EcdsaSigner = InMemorySigner;

    fn generate_channel_keys_id(&self, inbound: bool, user_channel_id: u128) -> [u8; 32] {
        self.keys.generate_channel_keys_id(inbound, user_channel_id)
    }

    fn derive_channel_signer(&self, channel_keys_id: [u8; 32]) -> InMemorySigner {
        self.keys.derive_channel_signer(channel_keys_id)
    }

    fn get_destination_script(&self, _channel_keys_id: [u8; 32]) -> Result<ScriptBuf, ()> {
        self.take_script()
    }

    fn get_shutdown_scriptpubkey(&self) -> Result<ShutdownScript, ()> {
        let script = self.take_script()?;
        ShutdownScript::try_from(script).map_err(|_| ())
    }
}

/// Where LDK's output sweeper sends what it sweeps: a fresh wallet address.
#[derive(Debug)]
pub(crate) struct WalletChange {
    rpc: Arc<RpcClient>,
}

impl WalletChange {
    pub(crate) fn new(rpc: Arc<RpcClient>) -> Self {
        Self { rpc }
    }
}

impl ChangeDestinationSource for WalletChange {
    fn get_change_destination_script<'a>(&'a self) -> AsyncResult<'a, ScriptBuf, ()> {
        Box::pin(async move {
            wallet_script(&self.rpc).await.map_err(|e| {
                tracing::warn!(error = %e, "no wallet address for a sweep");
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LDK's lines that carry a secret (LDK 0.2's formats) come out without it; the payment
    /// hash and channel id beside it stay, and a line without a secret is untouched.
    #[test]
    fn secrets_in_ldks_log_lines_are_redacted() {
        let preimage = "69ef468b6f9e82bfcd858b72b60aa3a1a80dad123b962b49f2fc7836c2fe0e4e";
        let hash = "5b304b32d5a78d08c2a1a6559800bb5b6c3f3d85935cc0b9a41981535cbb813e";
        let lines = [
            format!("Claiming inbound HTLC id 44 with payment hash {hash} with preimage {preimage}"),
            format!("Claiming HTLC with preimage {preimage} from our monitor"),
            format!("We need to replay the HTLC claim for payment_hash {hash} (preimage {preimage}) but"),
            format!("Failing HTLC with payment_hash {hash} due to mismatching preimage {preimage}"),
            format!("Received duplicative fulfill for HTLC with payment_preimage {preimage}"),
            format!("Enough info to generate a Data Loss Protect with per_commitment_secret {preimage} for channel {hash}"),
            format!("Preimage: {}", preimage.to_uppercase()),
        ];
        for line in &lines {
            let out = redact(line);
            assert!(
                !out.to_ascii_lowercase().contains(preimage),
                "a secret left in {out}"
            );
            assert!(out.contains("<redacted>"), "{out}");
            if line.contains(hash) {
                assert!(out.contains(hash), "the hash was taken out of {out}");
            }
        }
        let plain = format!("Have preimage and want to fulfill HTLC with payment hash {hash}");
        assert_eq!(redact(&plain), plain);
    }

    /// What the logger hands to `tracing` is redacted: a subscriber that records every event
    /// sees the line without the preimage.
    #[test]
    fn the_logger_hands_tracing_no_preimage() {
        use std::io::Write;
        #[derive(Clone, Default)]
        struct Seen(Arc<Mutex<Vec<u8>>>);
        impl Write for Seen {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let seen = Seen::default();
        let writer = seen.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let preimage = "c83278641066346d677682cb5cb28f03d239c7014b7702a62f257d7d2f185727";
        tracing::subscriber::with_default(subscriber, || {
            let logger = TracingLogger;
            for level in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
                logger.log(Record::new(
                    level,
                    None,
                    None,
                    format_args!("Claiming HTLC with preimage {preimage} from our monitor"),
                    "lightning::ln::channelmanager",
                    "",
                    1,
                    None,
                ));
            }
        });
        let text = String::from_utf8(seen.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.matches("Claiming HTLC with preimage <redacted>")
                .count(),
            4,
            "{text}"
        );
        assert!(!text.contains(preimage), "{text}");
    }

    /// A transaction the node could not take (it is down: nothing listens on its port) is
    /// kept in the store and read back by the next broadcaster on that store (a restart).
    #[tokio::test]
    async fn a_queued_broadcast_is_read_back_after_a_restart() {
        use bitcoin::{absolute::LockTime, transaction::Version, Amount, TxIn, TxOut};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::sealed::SealedStore::clear(dir.path().into()).unwrap());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rpc = Arc::new(
            RpcClient::new(btc_adapter::rpc::RpcConfig {
                url: format!("http://127.0.0.1:{port}"),
                auth: btc_adapter::rpc::Auth::UserPass("u".into(), "p".into()),
                wallet: None,
                timeout: std::time::Duration::from_secs(2),
            })
            .unwrap(),
        );
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn::default()],
            output: vec![TxOut {
                value: Amount::from_sat(1_000),
                script_pubkey: ScriptBuf::new(),
            }],
        };
        let runtime = tokio::runtime::Handle::current();
        let first =
            Broadcaster::new(Arc::clone(&rpc), runtime.clone(), Arc::clone(&store)).unwrap();
        assert_eq!(first.queued(), 0);
        first.broadcast_transactions(&[&tx]);
        for _ in 0..200 {
            if first.queued() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(first.queued(), 1, "queued while the node is down");
        drop(first);
        let second = Broadcaster::new(rpc, runtime, store).unwrap();
        assert_eq!(second.queued(), 1, "read back from the store");
        let kept = second.retry.lock().unwrap()[0].compute_txid();
        assert_eq!(kept, tx.compute_txid());
    }

    #[test]
    fn feerates_convert_and_floor() {
        assert_eq!(sat_vb_to_kw(0), MIN_SAT_PER_KW);
        assert_eq!(sat_vb_to_kw(1), MIN_SAT_PER_KW);
        assert_eq!(sat_vb_to_kw(10), 2_500);
        let cache = FeeCache::new(FeeConfig::default());
        assert_eq!(
            cache.get_est_sat_per_1000_weight(ConfirmationTarget::NonAnchorChannelFee),
            2_500
        );
        assert_eq!(cache.normal_sat_vb(), 10);
        assert!(
            cache.get_est_sat_per_1000_weight(ConfirmationTarget::MaximumFeeEstimate)
                >= cache.get_est_sat_per_1000_weight(ConfirmationTarget::UrgentOnChainSweep)
        );
    }
}
