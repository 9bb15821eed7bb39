//! A small JSON-RPC client for the subset of Bitcoin Core's API that both 0.21 (litecoind) and
//! 28+ answer. Wallet calls go to `/wallet/<name>`.
//!
//! Error classes: connection failures, timeouts, HTTP 503 (work queue full), a missing cookie
//! file (node starting) and `-28` (warming up) are transient; everything else is permanent.
//! [`RpcClient::send_raw_transaction`] treats "already in the chain / mempool" as success.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{BlockHash, ScriptBuf, Transaction, Txid};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use swap_core::{Cause, ChainError};

mod error;

use error::rpc_error;
pub use error::RpcError;

/// `RPC_IN_WARMUP`: the node is starting.
pub const RPC_IN_WARMUP: i64 = -28;
/// `RPC_VERIFY_ERROR`: general error during transaction or block submission.
pub const RPC_VERIFY_ERROR: i64 = -25;
/// `RPC_VERIFY_REJECTED`: transaction or block rejected by network rules.
pub const RPC_VERIFY_REJECTED: i64 = -26;
/// `RPC_VERIFY_ALREADY_IN_CHAIN`: transaction already in the chain (or its outputs in the UTXO set).
pub const RPC_VERIFY_ALREADY_IN_CHAIN: i64 = -27;
/// `RPC_WALLET_ALREADY_LOADED` (wallet already loaded, Core 0.21+).
pub const RPC_WALLET_ALREADY_LOADED: i64 = -35;
/// `RPC_WALLET_NOT_FOUND`.
pub const RPC_WALLET_NOT_FOUND: i64 = -18;
/// `RPC_WALLET_ERROR` (also used for "Database already exists").
pub const RPC_WALLET_ERROR: i64 = -4;

/// How to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Read `user:password` from the node's `.cookie` file on every request (it changes on restart).
    Cookie(PathBuf),
    /// `-rpcuser`/`-rpcpassword`.
    UserPass(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Cookie(p) => write!(f, "Cookie({})", p.display()),
            Auth::UserPass(u, _) => write!(f, "UserPass({u}, <redacted>)"),
        }
    }
}

/// Where the node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// `http://127.0.0.1:18443`.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// Wallet name for wallet calls (`None`: the node's default wallet).
    pub wallet: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// A transaction as `getblock <hash> 2` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct VerboseTx {
    /// Its txid.
    pub txid: String,
    /// The serialized transaction.
    pub hex: String,
}

/// A block as `getblock <hash> 2` returns it (the fields this adapter reads).
#[derive(Debug, Clone, Deserialize)]
pub struct VerboseBlock {
    /// Block hash.
    pub hash: BlockHash,
    /// Height.
    pub height: u64,
    /// Block timestamp.
    pub time: u64,
    /// The parent (absent for genesis).
    pub previousblockhash: Option<BlockHash>,
    /// Transactions, in block order.
    pub tx: Vec<VerboseTx>,
}

/// One entry of `testmempoolaccept`.
#[derive(Debug, Clone, Deserialize)]
pub struct MempoolAccept {
    /// The txid.
    pub txid: String,
    /// Whether the mempool would take it.
    pub allowed: bool,
    /// Why not.
    #[serde(rename = "reject-reason")]
    pub reject_reason: Option<String>,
}

/// A JSON-RPC client for one node (and optionally one of its wallets).
#[derive(Debug)]
pub struct RpcClient {
    http: reqwest::Client,
    config: RpcConfig,
    next_id: AtomicU64,
    /// JSON-RPC calls made by this client (a batch counts each call in it).
    calls: std::sync::Arc<AtomicU64>,
    /// HTTP requests made (a batch is one).
    requests: std::sync::Arc<AtomicU64>,
    /// Calls per method.
    by_method: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
    /// Bounds the requests in flight, so that many concurrent swaps queue here rather than
    /// overflow the node's RPC work queue (`-rpcworkqueue`, 16 by default).
    in_flight: tokio::sync::Semaphore,
}

/// Requests one [`RpcClient`] has in flight at most.
pub const MAX_IN_FLIGHT: usize = 4;

/// Counts of what a [`RpcClient`] sent to its node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RpcCounts {
    /// JSON-RPC calls (each call of a batch counts).
    pub calls: u64,
    /// HTTP requests (a batch is one).
    pub requests: u64,
}

/// Formats satoshis as a decimal coin amount string (`"0.00100000"`), which Core accepts
/// wherever it takes an amount, without any floating point.
pub fn sats_to_coin_string(sats: u64) -> String {
    format!("{}.{:08}", sats / 100_000_000, sats % 100_000_000)
}

/// Converts a coin amount as a JSON number into satoshis (exact for all real amounts).
pub fn coin_value_to_sats(v: &Value) -> Option<u64> {
    let f = v.as_f64()?;
    if !(0.0..=21e8).contains(&f) {
        return None;
    }
    Some((f * 1e8).round() as u64)
}

impl RpcClient {
    /// A client for `config`. Does not contact the node.
    pub fn new(config: RpcConfig) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            // No idle keep-alive connections: Bitcoin Core's shutdown waits for open HTTP
            // connections, so a pooled one would delay a node restart by ~30 s.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| RpcError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            config,
            next_id: AtomicU64::new(1),
            calls: Default::default(),
            requests: Default::default(),
            by_method: Default::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    /// [`RpcCounts::calls`] per JSON-RPC method.
    pub fn counts_by_method(&self) -> std::collections::BTreeMap<String, u64> {
        self.by_method
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn count(&self, method: &str, n: u64) {
        self.calls.fetch_add(n, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        *self
            .by_method
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(method.to_owned())
            .or_default() += n;
    }

    /// How many JSON-RPC calls and HTTP requests this client has sent so far (attempts,
    /// failed ones included).
    pub fn counts(&self) -> RpcCounts {
        RpcCounts {
            calls: self.calls.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// The same node, talking to another wallet.
    pub fn with_wallet(&self, wallet: &str) -> Result<Self, RpcError> {
        let mut config = self.config.clone();
        config.wallet = Some(wallet.to_owned());
        Self::new(config)
    }

    /// The configuration.
    pub fn config(&self) -> &RpcConfig {
        &self.config
    }

    fn credentials(&self) -> Result<(String, String), RpcError> {
        match &self.config.auth {
            Auth::UserPass(u, p) => Ok((u.clone(), p.clone())),
            Auth::Cookie(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| RpcError::Cookie(format!("{}: {e}", path.display())))?;
                let (u, p) = text
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| RpcError::Cookie("malformed cookie file".into()))?;
                Ok((u.to_owned(), p.to_owned()))
            }
        }
    }

    /// Posts one JSON-RPC body (a call or a batch) to the node, or to the configured wallet's
    /// endpoint when `wallet`, within the in-flight limit. Returns the HTTP status and the
    /// body; `what` names the request in transport errors.
    async fn post(
        &self,
        wallet: bool,
        what: &str,
        body: &Value,
    ) -> Result<(u16, String), RpcError> {
        let url = match (&self.config.wallet, wallet) {
            (Some(w), true) => format!("{}/wallet/{w}", self.config.url.trim_end_matches('/')),
            _ => self.config.url.clone(),
        };
        let (user, pass) = self.credentials()?;
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| RpcError::Transport(e.to_string()))?;
        let resp = self
            .http
            .post(url)
            .basic_auth(user, Some(pass))
            .json(body)
            .send()
            .await
            .map_err(|e| RpcError::Transport(format!("{what}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| RpcError::Transport(format!("{what}: {e}")))?;
        Ok((status, text))
    }

    async fn call_at<T: DeserializeOwned>(
        &self,
        wallet: bool,
        method: &str,
        params: Vec<Value>,
    ) -> Result<T, RpcError> {
        tracing::trace!(method, wallet, "rpc call");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.count(method, 1);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let (status, text) = self.post(wallet, method, &body).await?;
        let parsed: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                return Err(RpcError::Http {
                    status,
                    body: text.chars().take(200).collect(),
                })
            }
        };
        if let Some(err) = parsed.get("error").filter(|e| !e.is_null()) {
            return Err(rpc_error(err));
        }
        if status != 200 {
            return Err(RpcError::Http {
                status,
                body: text.chars().take(200).collect(),
            });
        }
        let result = parsed.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| RpcError::Decode {
            method: method.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Calls one node-level method many times in one JSON-RPC batch request. The outer error is
    /// the request's; each inner result is one call's answer, in the order of `params`.
    pub async fn batch(
        &self,
        method: &str,
        params: Vec<Vec<Value>>,
    ) -> Result<Vec<Result<Value, RpcError>>, RpcError> {
        self.batch_at(false, method, params).await
    }

    /// [`Self::batch`] for a wallet method (on `/wallet/<name>` when a wallet is configured).
    pub async fn wallet_batch(
        &self,
        method: &str,
        params: Vec<Vec<Value>>,
    ) -> Result<Vec<Result<Value, RpcError>>, RpcError> {
        self.batch_at(true, method, params).await
    }

    async fn batch_at(
        &self,
        wallet: bool,
        method: &str,
        params: Vec<Vec<Value>>,
    ) -> Result<Vec<Result<Value, RpcError>>, RpcError> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let n = params.len();
        self.count(method, n as u64);
        let body: Vec<Value> = params
            .into_iter()
            .enumerate()
            .map(|(i, p)| json!({"jsonrpc": "1.0", "id": i, "method": method, "params": p}))
            .collect();
        let (status, text) = self
            .post(wallet, &format!("{method} batch"), &Value::Array(body))
            .await?;
        let answers: Vec<Value> = match serde_json::from_str(&text) {
            Ok(Value::Array(a)) => a,
            Ok(v) => {
                // A whole-request error (e.g. warming up) comes as one object.
                if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                    return Err(rpc_error(err));
                }
                return Err(RpcError::Http {
                    status,
                    body: text.chars().take(200).collect(),
                });
            }
            Err(_) => {
                return Err(RpcError::Http {
                    status,
                    body: text.chars().take(200).collect(),
                })
            }
        };
        let mut out: Vec<Option<Result<Value, RpcError>>> = (0..n).map(|_| None).collect();
        for a in answers {
            let Some(i) = a.get("id").and_then(Value::as_u64).map(|i| i as usize) else {
                continue;
            };
            let r = match a.get("error").filter(|e| !e.is_null()) {
                Some(err) => Err(rpc_error(err)),
                None => Ok(a.get("result").cloned().unwrap_or(Value::Null)),
            };
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(r);
            }
        }
        out.into_iter()
            .map(|r| {
                r.ok_or_else(|| RpcError::Decode {
                    method: method.to_owned(),
                    detail: "batch answer missing an id".into(),
                })
            })
            .collect()
    }

    /// `getrawtransaction <txid> false` for many mempool transactions in one batch: the hex of
    /// each, or the node's error for it (e.g. `-5` when it left the mempool).
    pub async fn get_raw_transactions_hex(
        &self,
        txids: &[Txid],
    ) -> Result<Vec<Result<String, RpcError>>, RpcError> {
        let params = txids.iter().map(|t| vec![json!(t), json!(false)]).collect();
        Ok(self
            .batch("getrawtransaction", params)
            .await?
            .into_iter()
            .map(|r| r.and_then(|v| as_string("getrawtransaction", v)))
            .collect())
    }

    /// Calls a node-level method.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<T, RpcError> {
        self.call_at(false, method, params).await
    }

    /// Calls a wallet method (on `/wallet/<name>` when a wallet is configured).
    pub async fn wallet_call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<T, RpcError> {
        self.call_at(true, method, params).await
    }

    /// `getblockchaininfo`.
    pub async fn get_blockchain_info(&self) -> Result<Value, RpcError> {
        self.call("getblockchaininfo", vec![]).await
    }

    /// `getblockcount`.
    pub async fn get_block_count(&self) -> Result<u64, RpcError> {
        self.call("getblockcount", vec![]).await
    }

    /// `getblockhash <height>`.
    pub async fn get_block_hash(&self, height: u64) -> Result<BlockHash, RpcError> {
        self.call("getblockhash", vec![json!(height)]).await
    }

    /// `getbestblockhash`.
    pub async fn get_best_block_hash(&self) -> Result<BlockHash, RpcError> {
        self.call("getbestblockhash", vec![]).await
    }

    /// `getblockheader <hash>` (verbose).
    pub async fn get_block_header(&self, hash: &BlockHash) -> Result<Value, RpcError> {
        self.call("getblockheader", vec![json!(hash)]).await
    }

    /// `getblock <hash> 2`: every transaction with its hex.
    pub async fn get_block_verbose(&self, hash: &BlockHash) -> Result<VerboseBlock, RpcError> {
        self.call("getblock", vec![json!(hash), json!(2)]).await
    }

    /// `getrawtransaction <txid> false [blockhash]`: works without `-txindex` for mempool
    /// transactions and, with the block hash, for confirmed ones.
    pub async fn get_raw_transaction(
        &self,
        txid: &Txid,
        block: Option<&BlockHash>,
    ) -> Result<Transaction, RpcError> {
        let mut params = vec![json!(txid), json!(false)];
        if let Some(b) = block {
            params.push(json!(b));
        }
        let hex: String = self.call("getrawtransaction", params).await?;
        deserialize_hex(&hex).map_err(|e| RpcError::Decode {
            method: "getrawtransaction".into(),
            detail: e.to_string(),
        })
    }

    /// `getrawtransaction <txid> false` for a mempool transaction: its hex, unparsed.
    pub async fn get_raw_transaction_hex(&self, txid: &Txid) -> Result<String, RpcError> {
        self.call("getrawtransaction", vec![json!(txid), json!(false)])
            .await
    }

    /// The node's incremental relay feerate (the minimum feerate step of a BIP-125
    /// replacement) and its minimum relay feerate, in sat/vB, rounded up.
    pub async fn relay_feerates(&self) -> Result<(u64, u64), RpcError> {
        let v: Value = self.call("getnetworkinfo", vec![]).await?;
        let rate = |field: &str| {
            v.get(field)
                .and_then(coin_value_to_sats)
                .map(|per_kvb| per_kvb.div_ceil(1000).max(1))
                .unwrap_or(1)
        };
        Ok((rate("incrementalfee"), rate("relayfee")))
    }

    /// `sendrawtransaction`, strictly: "already known" is an error here.
    pub async fn send_raw_transaction_strict(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        self.call("sendrawtransaction", vec![json!(serialize_hex(tx))])
            .await
    }

    /// `sendrawtransaction`, idempotent: a transaction already in the mempool or the chain counts
    /// as sent.
    pub async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        match self.send_raw_transaction_strict(tx).await {
            Err(e) if e.is_already_known() => Ok(tx.compute_txid()),
            other => other,
        }
    }

    /// `testmempoolaccept [tx]`.
    pub async fn test_mempool_accept(&self, tx: &Transaction) -> Result<MempoolAccept, RpcError> {
        let mut v: Vec<MempoolAccept> = self
            .call("testmempoolaccept", vec![json!([serialize_hex(tx)])])
            .await?;
        v.pop().ok_or_else(|| RpcError::Decode {
            method: "testmempoolaccept".into(),
            detail: "empty answer".into(),
        })
    }

    /// `getrawmempool`.
    pub async fn get_raw_mempool(&self) -> Result<Vec<Txid>, RpcError> {
        self.call("getrawmempool", vec![]).await
    }

    /// `estimatesmartfee <target>` in sat/vB, rounded up; `None` when the node has no estimate.
    pub async fn estimate_smart_fee(&self, target: u32) -> Result<Option<u64>, RpcError> {
        let v: Value = self.call("estimatesmartfee", vec![json!(target)]).await?;
        Ok(v.get("feerate")
            .and_then(coin_value_to_sats)
            .map(|per_kvb| per_kvb.div_ceil(1000)))
    }

    /// `walletcreatefundedpsbt [] [{address: amount}, ...] 0 {fee_rate, replaceable}`: one
    /// transaction paying every `(address, sats)` of `outputs` (in that order, plus the
    /// wallet's change), funded from the wallet; returns the PSBT. Addresses must be distinct
    /// (the node refuses a duplicate) and `outputs` not empty.
    pub async fn wallet_create_funded_psbt(
        &self,
        outputs: &[(&str, u64)],
        feerate_sat_vb: u64,
    ) -> Result<String, RpcError> {
        if outputs.is_empty() {
            return Err(RpcError::Decode {
                method: "walletcreatefundedpsbt".into(),
                detail: "no outputs to pay".into(),
            });
        }
        let outputs: Vec<Value> = outputs
            .iter()
            .map(|(address, sats)| json!({ *address: sats_to_coin_string(*sats) }))
            .collect();
        let v: Value = self
            .wallet_call(
                "walletcreatefundedpsbt",
                vec![
                    json!([]),
                    Value::Array(outputs),
                    json!(0),
                    json!({"fee_rate": feerate_sat_vb, "replaceable": true}),
                ],
            )
            .await?;
        str_field(&v, "psbt", "walletcreatefundedpsbt")
    }

    /// `walletprocesspsbt <psbt>` (signs); returns the PSBT.
    pub async fn wallet_process_psbt(&self, psbt: &str) -> Result<String, RpcError> {
        let v: Value = self
            .wallet_call("walletprocesspsbt", vec![json!(psbt)])
            .await?;
        str_field(&v, "psbt", "walletprocesspsbt")
    }

    /// `finalizepsbt <psbt>`; returns the transaction when complete.
    pub async fn finalize_psbt(&self, psbt: &str) -> Result<Transaction, RpcError> {
        let v: Value = self.call("finalizepsbt", vec![json!(psbt)]).await?;
        if v.get("complete").and_then(Value::as_bool) != Some(true) {
            return Err(RpcError::Decode {
                method: "finalizepsbt".into(),
                detail: "PSBT not complete (wallet could not sign)".into(),
            });
        }
        let hex = str_field(&v, "hex", "finalizepsbt")?;
        deserialize_hex(&hex).map_err(|e| RpcError::Decode {
            method: "finalizepsbt".into(),
            detail: e.to_string(),
        })
    }

    /// `getnewaddress "" <type>` (`bech32`, `mweb` on Litecoin, ...).
    pub async fn get_new_address(&self, address_type: &str) -> Result<String, RpcError> {
        self.wallet_call("getnewaddress", vec![json!(""), json!(address_type)])
            .await
    }

    /// `n` new wallet addresses in one batch request (`getnewaddress "" <type>` each).
    pub async fn get_new_addresses(
        &self,
        n: usize,
        address_type: &str,
    ) -> Result<Vec<String>, RpcError> {
        let params = (0..n)
            .map(|_| vec![json!(""), json!(address_type)])
            .collect();
        self.wallet_batch("getnewaddress", params)
            .await?
            .into_iter()
            .map(|r| r.and_then(|v| as_string("getnewaddress", v)))
            .collect()
    }

    /// The output script of a wallet address (`getaddressinfo`), which works for any network's
    /// address format.
    pub async fn address_script_pubkey(&self, address: &str) -> Result<ScriptBuf, RpcError> {
        let v: Value = self
            .wallet_call("getaddressinfo", vec![json!(address)])
            .await?;
        let hex = str_field(&v, "scriptPubKey", "getaddressinfo")?;
        ScriptBuf::from_hex(&hex).map_err(|e| RpcError::Decode {
            method: "getaddressinfo".into(),
            detail: e.to_string(),
        })
    }

    /// `generatetoaddress <n> <address>`.
    pub async fn generate_to_address(
        &self,
        n: u64,
        address: &str,
    ) -> Result<Vec<BlockHash>, RpcError> {
        self.call("generatetoaddress", vec![json!(n), json!(address)])
            .await
    }

    /// `invalidateblock <hash>`.
    pub async fn invalidate_block(&self, hash: &BlockHash) -> Result<(), RpcError> {
        let _: Value = self.call("invalidateblock", vec![json!(hash)]).await?;
        Ok(())
    }

    /// `createwallet <name>`; an existing wallet is loaded instead.
    pub async fn create_or_load_wallet(&self, name: &str) -> Result<(), RpcError> {
        match self.call::<Value>("createwallet", vec![json!(name)]).await {
            Ok(_) => Ok(()),
            Err(e)
                if e.code() == Some(RPC_WALLET_ERROR)
                    || e.code() == Some(RPC_WALLET_ALREADY_LOADED) =>
            {
                match self.call::<Value>("loadwallet", vec![json!(name)]).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.code() == Some(RPC_WALLET_ALREADY_LOADED) => Ok(()),
                    Err(e) if e.to_string().contains("already loaded") => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `getbalance` of the wallet, in satoshis (confirmed, trusted).
    pub async fn get_balance(&self) -> Result<u64, RpcError> {
        let v: Value = self.wallet_call("getbalance", vec![]).await?;
        coin_value_to_sats(&v).ok_or_else(|| RpcError::Decode {
            method: "getbalance".into(),
            detail: v.to_string(),
        })
    }

    /// `sendtoaddress <address> <amount>`; returns the txid.
    pub async fn send_to_address(&self, address: &str, sats: u64) -> Result<Txid, RpcError> {
        self.wallet_call(
            "sendtoaddress",
            vec![json!(address), json!(sats_to_coin_string(sats))],
        )
        .await
    }

    /// `stop`.
    pub async fn stop(&self) -> Result<(), RpcError> {
        let _: Value = self.call("stop", vec![]).await?;
        Ok(())
    }
}

fn str_field(v: &Value, field: &str, method: &str) -> Result<String, RpcError> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| RpcError::Decode {
            method: method.to_owned(),
            detail: format!("no `{field}` in {v}"),
        })
}

/// A result that must be a JSON string (a transaction's hex, an address).
fn as_string(method: &str, v: Value) -> Result<String, RpcError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(RpcError::Decode {
            method: method.into(),
            detail: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact() {
        assert_eq!(sats_to_coin_string(100_000), "0.00100000");
        assert_eq!(
            sats_to_coin_string(2_100_000_000_000_001),
            "21000000.00000001"
        );
        assert_eq!(coin_value_to_sats(&json!(0.00100000)), Some(100_000));
        assert_eq!(
            coin_value_to_sats(&json!(20999999.99999999)),
            Some(2_099_999_999_999_999)
        );
        assert_eq!(coin_value_to_sats(&json!(-1)), None);
    }

    #[test]
    fn error_classes() {
        let rpc = |code, m: &str| RpcError::Rpc {
            code,
            message: m.into(),
        };
        assert!(RpcError::Transport("refused".into()).is_transient());
        // A full RPC work queue (many concurrent requests): retry, on old and new Core.
        for status in [500, 503] {
            assert!(RpcError::Http {
                status,
                body: "Work queue depth exceeded".into()
            }
            .is_transient());
        }
        assert!(!RpcError::Http {
            status: 500,
            body: "other".into()
        }
        .is_transient());
        assert!(rpc(RPC_IN_WARMUP, "Loading block index").is_transient());
        assert!(!rpc(-26, "non-mandatory-script-verify-flag").is_transient());
        assert!(rpc(-26, "non-final").is_non_final());
        assert!(rpc(-27, "Transaction already in block chain").is_already_known());
        assert!(rpc(-27, "Transaction outputs already in utxo set").is_already_known());
        assert!(rpc(-26, "txn-already-known").is_already_known());
        assert!(rpc(-26, "txn-already-in-mempool").is_already_known());
        assert!(!rpc(-26, "txn-mempool-conflict").is_already_known());
        assert!(!rpc(-25, "bad-txns-inputs-missingorspent").is_already_known());
        let ce: ChainError = rpc(-26, "bad").into();
        assert!(!ce.is_transient());
        let ce: ChainError = RpcError::Http {
            status: 503,
            body: String::new(),
        }
        .into();
        assert!(ce.is_transient());
        assert!(!format!("{:?}", Auth::UserPass("u".into(), "secret".into())).contains("secret"));
    }
}
