//! Status derivation: a swap's state from the shared log scan, the storage slot and the mempool.

use super::*;

impl EthChain {
    /// Brings the shared scan up to date (watching `h`): a scan that started at or after
    /// `asked` is reused (concurrent questions asked together share one), an older one is not.
    /// Then reads the swap's state from the scanned events. With `verify_slot` (actions), the contract's storage
    /// slot of the swap is read too and must agree with the events.
    pub(super) async fn find(
        &self,
        h: &EthHtlc,
        p: &HtlcParams,
        mempool: bool,
        asked: std::time::Instant,
        verify_slot: bool,
    ) -> Result<Found, EthError> {
        let id = h.id();
        let (tip, events, pending, read_slot) = {
            let mut scanner = self.scanner.lock().await;
            scanner.watch(id, h.hashlock, p.watch_from.0);
            let last = *self
                .refreshed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let reuse = last
                .filter(|_| !scanner.has_backfill())
                .filter(|r| r.started >= asked)
                .map(|r| r.tip);
            let (tip, reorged) = match reuse {
                Some(tip) => (tip, false),
                None => {
                    let started = std::time::Instant::now();
                    // A refresh that fails half way (after rolling back a reorg) leaves a scan
                    // nobody may answer from until one completes.
                    *self
                        .refreshed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    let r = scanner
                        .refresh(&self.provider, self.cfg.htlc, self.cfg.log_chunk)
                        .await?;
                    if self.cfg.mempool_preimages {
                        scanner.set_pending_claims(self.pending_claims().await);
                    }
                    *self
                        .refreshed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Refreshed { started, tip: r.0 });
                    r
                }
            };
            if reorged {
                self.nonces.reset().await;
            }
            let pending = if mempool {
                scanner.pending_claim(h.hashlock)
            } else {
                None
            };
            // The first look at a swap reads its slot too: that is how a lock made before
            // the watch window is found (the scan sees everything after it).
            let read_slot = verify_slot || !scanner.slot_seen(id);
            (tip, scanner.events(id), pending, read_slot)
        };
        let slot_locked = if read_slot {
            let locked = self.slot_at(id, tip.hash).await? == U256::from(1);
            self.scanner.lock().await.set_slot_seen(id);
            Some(locked)
        } else {
            None
        };
        let last_lock = events
            .iter()
            .rposition(|e| matches!(e.kind, EventKind::Locked(_)));
        let lock_event = match last_lock {
            Some(i) => Some(events[i].clone()),
            None if slot_locked == Some(true) || !events.is_empty() => {
                // Locked before the watch window (watch_from was too late; the slot is set, or
                // a claim or refund was seen): search backwards
                // from watch_from, one log chunk at a time, for the newest lock.
                let chunk = self.cfg.log_chunk.max(1);
                let mut hi = p.watch_from.0.min(tip.number);
                loop {
                    let lo = hi.saturating_sub(chunk - 1);
                    let found =
                        scan::logs_for(&self.provider, self.cfg.htlc, &[id], lo, hi, chunk).await?;
                    let newest = found
                        .into_iter()
                        .filter(|e| matches!(e.kind, EventKind::Locked(_)))
                        .max_by_key(|e| (e.block, e.log_index));
                    if newest.is_some() || lo == 0 {
                        break newest;
                    }
                    hi = lo - 1;
                }
            }
            None => None,
        };
        let after: Vec<_> = match last_lock {
            Some(i) => events[i + 1..].to_vec(),
            // The lock (if found) predates every scanned event.
            None => events.clone(),
        };
        // Without the slot, the events decide: locked while nothing followed the last lock.
        let locked = slot_locked.unwrap_or(lock_event.is_some() && after.is_empty());
        let status = super::derive::derive_status(
            &super::derive::Seen {
                id,
                hashlock: h.hashlock,
                tip: tip.number,
                lock: lock_event.as_ref(),
                after: &after,
                locked,
                pending,
            },
            &p.asset,
        )?;
        Ok(Found {
            status,
            lock_tx: lock_event.map(|e| e.tx),
            tip,
        })
    }

    /// Claims waiting in the node's mempool (`txpool_content`, through alloy's typed txpool
    /// API), by hashlock: the preimage and the transaction. Read once per shared scan; nodes
    /// that do not expose the txpool simply yield nothing.
    pub(super) async fn pending_claims(&self) -> HashMap<B256, (B256, B256)> {
        use alloy::consensus::Transaction as _;
        use alloy::providers::ext::TxPoolApi;
        let mut out = HashMap::new();
        let Ok(pool) = self.provider.txpool_content().await else {
            return out;
        };
        for tx in pool.pending.values().flat_map(|by_nonce| by_nonce.values()) {
            if tx.inner.to() != Some(self.cfg.htlc) {
                continue;
            }
            let hash = *tx.inner.tx_hash();
            for pre in claim_preimages(tx.inner.input()) {
                let hashlock = B256::from_slice(&Sha256::digest(pre.0));
                out.insert(hashlock, (pre, hash));
            }
        }
        out
    }

    /// [`Self::find`] for actions: mined state only, from a scan that started after the call,
    /// checked against the contract's storage. A claim still in the mempool is never taken as
    /// done: it may never be mined (a counterparty could broadcast a low-fee claim precisely
    /// to stop us from claiming or refunding in time).
    pub(super) async fn find_retrying(
        &self,
        h: &EthHtlc,
        p: &HtlcParams,
    ) -> Result<Found, EthError> {
        let asked = std::time::Instant::now();
        self.find_retrying_with(h, p, false, asked, true).await
    }

    pub(super) async fn find_retrying_with(
        &self,
        h: &EthHtlc,
        p: &HtlcParams,
        mempool: bool,
        asked: std::time::Instant,
        verify_slot: bool,
    ) -> Result<Found, EthError> {
        let mut last = None;
        for attempt in 0..3 {
            // A retry after an inconsistent answer always scans afresh.
            let asked = if attempt == 0 {
                asked
            } else {
                std::time::Instant::now()
            };
            match self.find(h, p, mempool, asked, verify_slot).await {
                Err(e @ EthError::Inconsistent(_)) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| EthError::Inconsistent("no answer".into())))
    }

    /// For an ERC-20 swap: the token's `decimals()` must be the one the terms state (amounts in
    /// the terms are only meaningful with the right decimals). Tokens without `decimals()`
    /// (it is optional in ERC-20) cannot be checked and are accepted.
    pub(super) async fn check_decimals(&self, p: &HtlcParams) -> Result<(), EthError> {
        let swap_core::types::Asset::Erc20 { token, decimals } = &p.asset else {
            return Ok(());
        };
        let token = Address::from(token.0);
        let cached = self.decimals.lock().await.get(&token).copied();
        let onchain = match cached {
            Some(d) => d,
            None => {
                let d = match IERC20Permit::new(token, &self.provider)
                    .decimals()
                    .call()
                    .await
                {
                    Ok(d) => Some(d),
                    Err(alloy::contract::Error::TransportError(e)) if !e.is_error_resp() => {
                        return Err(EthError::Rpc(crate::error::scrub_urls(&e.to_string())))
                    }
                    Err(_) => None,
                };
                self.decimals.lock().await.insert(token, d);
                d
            }
        };
        match onchain {
            Some(d) if d != *decimals => Err(EthError::InvalidParams(format!(
                "token {token} has {d} decimals, the terms say {decimals}"
            ))),
            _ => Ok(()),
        }
    }

    /// Serializes actions on one swap (two concurrent `lock` calls for the same swap must not
    /// both send).
    pub(super) async fn swap_guard(&self, id: B256) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = match self.per_swap.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(id).or_default().clone()
        };
        m.lock_owned().await
    }

    /// The swap's state (the engine's [`Rail::htlc_status`] with this crate's error type).
    ///
    /// With [`EthConfig::mempool_preimages`], a claim still in the node's mempool is reported
    /// as `Claimed` with 0 confirmations (the preimage is public from then on). `lock`, `claim`
    /// and `refund` never rely on it: they act on mined state only.
    pub async fn status(&self, p: &HtlcParams) -> Result<HtlcStatus, EthError> {
        Ok(self
            .status_found(p, std::time::Instant::now())
            .await?
            .status)
    }

    /// The status from a scan that started at or after `asked`.
    pub(super) async fn status_found(
        &self,
        p: &HtlcParams,
        asked: std::time::Instant,
    ) -> Result<Found, EthError> {
        let h = EthHtlc::from_params(p)?;
        self.check_decimals(p).await?;
        self.find_retrying_with(&h, p, self.cfg.mempool_preimages, asked, false)
            .await
    }

    /// [`Rail::htlc_status`] from a scan that started at or after `asked`.
    pub(super) async fn status_since(
        &self,
        htlc: &HtlcParams,
        asked: std::time::Instant,
    ) -> Result<HtlcStatus, ChainError> {
        let found = self.status_found(htlc, asked).await?;
        if found.status != HtlcStatus::Absent {
            return Ok(found.status);
        }
        // Not the agreed lock, but perhaps a lock by the agreed sender under the same hashlock
        // with other parameters: report it as found so the engine refuses it and says why
        // (protocol rule 4). Only the agreed sender can have made it (the contract's sender is
        // msg.sender), so nobody else can make a swap look wrong.
        // The shared scan keeps every lock under a watched hashlock: no lookup per swap.
        let h = EthHtlc::from_params(htlc)?;
        let Some(other) = self
            .scanned_locks_with_hashlock(&h, found.tip)
            .await
            .into_iter()
            .find(|f| f.locked && f.htlc.sender == h.sender)
        else {
            return Ok(HtlcStatus::Absent);
        };
        self.foreign_lock_status(htlc, other)
    }
}
