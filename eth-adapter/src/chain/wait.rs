//! Waiting for a sent transaction: its receipt (shared reads of the head and of new
//! blocks' receipts), a revert's reason, and sends resumed after a restart.

use super::*;

impl EthChain {
    /// A transaction not mined in time, described for its error: whether the node still has it,
    /// its nonce, and the account's mined and pending nonces (a gap or a fee below the base fee
    /// shows here). Best effort: what cannot be read is left out.
    async fn unmined(&self, tx: B256) -> String {
        use alloy::consensus::Transaction as _;
        let mut out = format!("{tx:#x}");
        match self.provider.get_transaction_by_hash(tx).await {
            Ok(Some(t)) => out.push_str(&format!(
                " (known to the node, nonce {}, max fee {} wei",
                t.inner.nonce(),
                t.inner.max_fee_per_gas()
            )),
            Ok(None) => out.push_str(" (unknown to the node"),
            Err(_) => out.push_str(" (node unreachable"),
        }
        let account = self.address();
        let mined = self.provider.get_transaction_count(account).latest().await;
        let pending = self.pending_count().await;
        let base_fee = scan::latest(&self.provider)
            .await
            .ok()
            .and_then(|l| l.base_fee);
        if let (Ok(m), Ok(p)) = (mined, pending) {
            out.push_str(&format!("; account nonces mined {m}, pending {p}"));
        }
        if let Some(b) = base_fee {
            out.push_str(&format!("; base fee {b} wei"));
        }
        out.push(')');
        out
    }

    /// The chain's head (block number) as read by a read that started at or after `asked`:
    /// callers that ask together share one read.
    pub(super) async fn head_since(&self, asked: std::time::Instant) -> Result<u64, EthError> {
        self.head
            .since(&(), asked, || async {
                self.provider.get_block_number().await.map_err(rpc_err)
            })
            .await
    }

    /// Waits for the receipt; a reverted transaction is an error.
    ///
    /// Every waiter polls on one clock (multiples of the poll interval since the adapter was
    /// made), reads the chain's head through one shared read per poll ([`Self::head_since`]),
    /// and looks for its receipt only when the head moved: its first look asks the node for
    /// its receipt, later ones find it among the new blocks' receipts, read once for all
    /// waiters (`receipts::ReceiptBook`): a thousand transactions waited for cost one head
    /// read per poll and one receipts read per block. A head that stays put is asked about
    /// again (for this receipt) after a quarter of the receipt timeout, then at doubling
    /// intervals, and once more at the deadline: a node may show a block before it serves the
    /// receipts in it, and a chain that mines only on demand (a devnet) may never move again.
    /// A transaction that such a later ask finds neither mined nor known to the node was
    /// dropped from its pool: that is an error then, not at the deadline.
    pub(super) async fn wait(&self, tx: B256) -> Result<TransactionReceipt, EthError> {
        let deadline = tokio::time::Instant::now() + self.cfg.receipt_timeout;
        let poll = self.cfg.poll_interval.max(Duration::from_millis(1));
        let first_recheck = (self.cfg.receipt_timeout / 4).max(poll);
        let mut checked_at: Option<u64> = None;
        let mut last_ask = tokio::time::Instant::now();
        let mut recheck = first_recheck;
        let mut asked = std::time::Instant::now();
        let mut registered = None;
        let mut last_direct = tokio::time::Instant::now();
        let mut asked_once = false;
        loop {
            let head = match self.head_since(asked).await {
                Ok(h) => Some(h),
                Err(e) if e.is_transient() => None,
                Err(e) => return Err(e),
            };
            let now = tokio::time::Instant::now();
            let moved = head.is_none() || head != checked_at;
            let stale = now.duration_since(last_ask) >= recheck || now >= deadline;
            let receipt = if moved || stale {
                recheck = if moved { first_recheck } else { recheck * 2 };
                checked_at = head;
                last_ask = now;
                // The book is trusted for a quarter of the receipt timeout at a time: then this
                // receipt is asked for again, whatever the book says (a node that fails to
                // serve block receipts, a reorg at a height already read, a load-balanced URL
                // whose backends lag each other).
                let due = now.duration_since(last_direct) >= first_recheck;
                match head {
                    Some(h) if !stale && !due && registered.is_some() && self.receipts.usable() => {
                        self.receipts.advance(&self.provider, h).await;
                        self.receipts.found(&tx)
                    }
                    _ => {
                        // Registered before the ask: mined after it, it is in a block above
                        // `h`, which the book reads.
                        if let (None, Some(h)) = (&registered, head) {
                            registered = Some(self.receipts.register(tx, h));
                        }
                        let first = !asked_once;
                        asked_once = true;
                        last_direct = now;
                        let receipt = self
                            .provider
                            .get_transaction_receipt(tx)
                            .await
                            .map_err(rpc_err)?;
                        // Asked again (a quarter of the timeout on) and neither mined nor
                        // known to the node: dropped from its pool (evicted, or left out of a
                        // block as invalid). Waiting on to the deadline would only hold the
                        // caller (and any send queued behind its nonce): its caller's next
                        // attempt broadcasts it again or builds a new one.
                        if receipt.is_none()
                            && !first
                            && (stale || due)
                            && matches!(self.provider.get_transaction_by_hash(tx).await, Ok(None))
                        {
                            return Err(EthError::Timeout(format!(
                                "{tx:#x} dropped: neither mined nor known to the node"
                            )));
                        }
                        receipt
                    }
                }
            } else {
                None
            };
            if let Some(r) = receipt {
                if r.status() {
                    return Ok(r);
                }
                let reason = self.revert_reason_of(tx, r.block_number).await;
                tracing::warn!(chain = "eth", %tx, reason = ?reason, "transaction reverted");
                return Err(EthError::Reverted {
                    tx: format!("{tx:#x}"),
                    reason,
                });
            }
            if now >= deadline {
                return Err(EthError::Timeout(self.unmined(tx).await));
            }
            // The next multiple of the poll interval on the common clock.
            let since = self.epoch.elapsed().as_nanos();
            let step = poll.as_nanos().max(1);
            let next = (since / step + 1) * step;
            let wake = self.epoch + Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX));
            tokio::time::sleep_until(wake).await;
            // Everyone woken at this instant shares the head read that follows it.
            asked = wake.into_std();
        }
    }

    /// Why a mined transaction reverted, by replaying it as a call against the state and
    /// environment of its own block (best effort: the state is the one after the block).
    pub(super) async fn revert_reason_of(&self, tx: B256, block: Option<u64>) -> Option<String> {
        match crate::tx::replay(&self.provider, tx, block?).await {
            Ok(()) => Some("unknown (a replay succeeds)".into()),
            Err(EthError::WouldRevert(m)) => Some(m.to_string()),
            Err(EthError::NotReady(_) | EthError::InvalidParams(_)) => None,
            Err(other) => Some(other.to_string()),
        }
    }

    /// Sends and waits for a successful receipt.
    pub(super) async fn send_and_wait(
        &self,
        to: Address,
        input: Bytes,
        value: U256,
    ) -> Result<B256, EthError> {
        let tx = self.send(to, input, value).await?;
        self.wait(tx).await?;
        Ok(tx)
    }

    /// A previous transaction for (id, op) that the node still knows, waited for.
    pub(super) async fn resume_inflight(&self, id: B256, op: Op) -> Result<Option<B256>, EthError> {
        let known = self.inflight.lock().await.get(&(id, op)).copied();
        let Some(tx) = known else { return Ok(None) };
        let seen = self
            .provider
            .get_transaction_by_hash(tx)
            .await
            .map_err(rpc_err)?;
        if seen.is_none() {
            // Dropped (evicted or reorged out): forget it and the nonce counter.
            self.inflight.lock().await.remove(&(id, op));
            self.nonces.reset().await;
            return Ok(None);
        }
        match self.wait(tx).await {
            Ok(_) => Ok(Some(tx)),
            Err(e @ EthError::Reverted { .. }) => {
                self.inflight.lock().await.remove(&(id, op));
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}
