//! Following the node: blocks (with reorgs) and the mempool into the shared scanner.

use super::status::derive_status;
use super::*;

impl BtcChain {
    /// Brings the scanner up to date with the node: blocks (with reorg handling), then the
    /// mempool. Repeated when the best block changed meanwhile, so that a transaction mined
    /// between the block scan and the mempool read is never missed by both (which would make a
    /// funding look absent to `lock`).
    pub(super) async fn sync(&self, st: &mut State) -> Result<(), ChainError> {
        // Even a sync that fails may have changed the scan (e.g. rolled back a reorged block):
        // what was checked before it is stale.
        let started = std::time::Instant::now();
        // Until this sync completes, no earlier one counts as fresh: a sync that fails half
        // way (after rolling back a reorged block, before reading the mempool again) leaves
        // a scan that must not be answered from.
        st.synced_at = None;
        st.synced_from = None;
        for _ in 0..5 {
            let info = self.rpc.get_blockchain_info().await?;
            let (Some(tip), Some(best)) = (
                info.get("blocks").and_then(serde_json::Value::as_u64),
                info.get("bestblockhash")
                    .and_then(serde_json::Value::as_str),
            ) else {
                return Err(permanent(format!(
                    "unexpected getblockchaininfo answer: {info}"
                )));
            };
            let best = best.to_owned();
            self.sync_once(st, tip).await?;
            let after = self.rpc.get_best_block_hash().await?;
            if after.to_string() == best {
                st.synced_at = Some(std::time::Instant::now());
                st.synced_from = Some(started);
                st.dirty = false;
                return Ok(());
            }
        }
        Err(ChainError::new(
            Cause::Inconsistent,
            "the best block kept changing during the scan",
        ))
    }

    pub(super) async fn sync_once(&self, st: &mut State, tip: u64) -> Result<(), ChainError> {
        // Roll back to the last block still on the node's best chain.
        while let Some(h) = st.scanner.last_height() {
            if h > tip {
                st.scanner.rollback_to(tip);
                continue;
            }
            let node_hash = self.rpc.get_block_hash(h).await?;
            if st.scanner.hash_at(h) == Some(node_hash) {
                break;
            }
            info!(chain = %self.params.chain, height = h, "reorg: rolling back");
            match h.checked_sub(1) {
                Some(prev) => st.scanner.rollback_to(prev),
                None => break,
            }
        }
        // Scan forward.
        let mut retries = 0;
        while let Some(next) = st.scanner.next_height() {
            if next > tip {
                break;
            }
            let hash = match self.rpc.get_block_hash(next).await {
                Ok(h) => h,
                // The chain got shorter since `tip` was read: the caller retries.
                Err(e) if e.code() == Some(RPC_INVALID_PARAMETER) => break,
                Err(e) => return Err(e.into()),
            };
            let block = self.rpc.get_block_verbose(&hash).await?;
            let txs = parse_block_txs(
                &hash.to_string(),
                block.tx.iter().map(|t| (t.txid.as_str(), t.hex.as_str())),
            )
            .map_err(scan_error)?;
            match st
                .scanner
                .apply_block(next, hash, block.previousblockhash, &txs)
            {
                Ok(()) => {}
                Err(ScanError::Disconnected { .. }) if retries < 100 => {
                    // The chain changed under us: step back and re-check.
                    retries += 1;
                    st.scanner.rollback_to(next.saturating_sub(2));
                }
                Err(e) => return Err(scan_error(e)),
            }
        }
        // Confirmations count only up to what was scanned.
        st.tip = match st.scanner.last_height() {
            Some(h) => h.min(tip),
            None => tip,
        };
        self.scanned_height
            .store(st.tip + 1, std::sync::atomic::Ordering::Relaxed);
        // Mempool.
        let txids = self.rpc.get_raw_mempool().await?;
        let current: std::collections::HashSet<Txid> = txids.iter().copied().collect();
        st.mempool.retain(|t, _| current.contains(t));
        let missing: Vec<Txid> = txids
            .into_iter()
            .filter(|t| !st.mempool.contains_key(t))
            .collect();
        for chunk in missing.chunks(MEMPOOL_BATCH) {
            let answers = self.rpc.get_raw_transactions_hex(chunk).await?;
            for (txid, answer) in chunk.iter().zip(answers) {
                let hex = match answer {
                    Ok(h) => h,
                    // Left the mempool since getrawmempool.
                    Err(e) if e.code() == Some(RPC_INVALID_ADDRESS_OR_KEY) => continue,
                    Err(e) => return Err(e.into()),
                };
                let raw = hex::decode(&hex).map_err(permanent)?;
                match bitcoin::consensus::encode::deserialize::<Transaction>(&raw) {
                    Ok(tx) => {
                        st.mempool.insert(*txid, Some(tx));
                    }
                    Err(_) if is_mweb_serialization(&raw) => {
                        // A Litecoin MWEB transaction: its canonical part reaches the chain in
                        // a block, where it is scanned; only 0-conf visibility is lost.
                        warn!(%txid, "skipping unparseable MWEB mempool transaction");
                        st.mempool.insert(*txid, None);
                    }
                    Err(e) => {
                        return Err(scan_error(ScanError::Parse {
                            txid: txid.to_string(),
                            block: "mempool".into(),
                            detail: e.to_string(),
                        }))
                    }
                }
            }
        }
        let txs: Vec<&Transaction> = st.mempool.values().flatten().collect();
        st.scanner.set_mempool(txs);
        Ok(())
    }

    /// Syncs unless a sync that started at or after `asked` has completed since and nothing
    /// was registered since: concurrent actions (hundreds of claims when a batch of swaps
    /// completes) then share one scan instead of one each, and each still acts on what the
    /// node said after it was asked.
    pub(super) async fn sync_since(
        &self,
        st: &mut State,
        asked: std::time::Instant,
    ) -> Result<(), ChainError> {
        if !st.dirty && st.synced_from.is_some_and(|from| from >= asked) {
            return Ok(());
        }
        self.sync(st).await
    }

    /// The status, the funding it is about and the spend of that funding, if any.
    pub(super) fn status(
        &self,
        st: &State,
        w: &Watched,
        script: &ScriptBuf,
    ) -> (HtlcStatus, Option<Funding>, Option<Spend>) {
        derive_status(
            &st.scanner.view(script),
            &w.params,
            &w.htlc,
            st.tip,
            self.asset(),
        )
    }

    /// The best block's height and time as read by a read that started at or after `asked`:
    /// callers that ask together (every take of a busy maker or taker asks) share one read,
    /// and none gets a tip read before it asked.
    pub(super) async fn tip_since(
        &self,
        asked: std::time::Instant,
    ) -> Result<ChainTip, ChainError> {
        self.tip_reads.since(&(), asked, || self.read_tip()).await
    }

    /// Reads the best block's height and time from the node.
    pub(super) async fn read_tip(&self) -> Result<ChainTip, ChainError> {
        let hash = self.rpc.get_best_block_hash().await?;
        let header = self.rpc.get_block_header(&hash).await?;
        let field = |f: &str| {
            header
                .get(f)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    ChainError::from(RpcError::Decode {
                        method: "getblockheader".into(),
                        detail: format!("no {f}"),
                    })
                })
        };
        Ok(ChainTip {
            height: Height(field("height")?),
            time: Timestamp(field("time")?),
        })
    }
}
