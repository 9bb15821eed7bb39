//! Locks (ETH, ERC-20 by permit or approve), claims (batched when concurrent) and refunds.

use swap_core::store::{SendKey, TxKind};

use super::*;

/// Claims one transaction carries at most (~7,000 gas each: well within a block).
pub(super) const MAX_CLAIM_BATCH: usize = 100;

/// Claims this close to their expiry (seconds of chain time) are never batched.
pub(super) const CLAIM_ALONE_WITHIN_SECS: u64 = 600;

/// A claim waiting in [`EthChain::claim_queue`] for the next claim transaction. `Debug` leaves
/// the preimage out.
pub(super) struct ClaimRequest {
    h: EthHtlc,
    preimage: B256,
    /// The transaction carrying it and how many claims that transaction has, or the error.
    reply: oneshot::Sender<Result<(B256, usize), EthError>>,
}

impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("id", &self.h.id())
            .field("preimage", &"<redacted>")
            .finish()
    }
}

/// The call data of a single claim of `h`.
pub(super) fn claim_input(h: &EthHtlc, preimage: B256) -> Bytes {
    if h.is_eth() {
        HTLC::claimCall {
            preimage,
            amount: h.amount,
            sender: h.sender,
            recipient: h.recipient,
            expiry: U256::from(h.expiry),
        }
        .abi_encode()
        .into()
    } else {
        HTLC::claimTokenCall {
            preimage,
            token: h.token,
            amount: h.amount,
            sender: h.sender,
            recipient: h.recipient,
            expiry: U256::from(h.expiry),
        }
        .abi_encode()
        .into()
    }
}

/// The call data of `claimBatch` for these swaps and preimages, grouped by (token, recipient)
/// so that each pair is paid once.
pub(super) fn claim_batch_input(mut claims: Vec<(EthHtlc, B256)>) -> Bytes {
    claims.sort_by_key(|(h, _)| (h.token, h.recipient));
    HTLC::claimBatchCall {
        preimages: claims.iter().map(|(_, pre)| *pre).collect(),
        swaps: claims.iter().map(|(h, _)| h.as_batch_entry()).collect(),
    }
    .abi_encode()
    .into()
}

impl EthChain {
    /// Locks the swap (idempotent; see [`Rail::lock`]). Returns the lock transaction.
    pub async fn lock_htlc(&self, p: &HtlcParams) -> Result<B256, EthError> {
        let h = EthHtlc::from_params(p)?;
        self.check_decimals(p).await?;
        if h.sender != self.address() {
            return Err(EthError::InvalidParams(format!(
                "sender {} is not this adapter's account {}",
                h.sender,
                self.address()
            )));
        }
        let id = h.id();
        let _swap_guard = self.swap_guard(id).await;
        // Held for the whole ERC-20 flow so allowances of concurrent swaps never clash.
        let _token_guard = if h.is_eth() {
            None
        } else {
            Some(self.token_flow.lock().await)
        };
        let found = self.find_retrying(&h, p).await?;
        if let Some(tx) = found.lock_tx {
            // Funded, or already claimed or refunded: never lock the same parameters twice.
            return Ok(tx);
        }
        if found.tip.timestamp >= h.expiry {
            return Err(EthError::InvalidParams(format!(
                "expiry {} is not after the chain's time {}: refusing to lock",
                h.expiry, found.tip.timestamp
            )));
        }
        // Recorded in the outbox before it is broadcast: a lock signed before (by this process
        // or another on the same store, maybe never sent, maybe evicted) is broadcast again
        // rather than built anew, unless its nonce went to another transaction.
        let key = SendKey {
            swap: p.swap_id,
            rail: self.cfg.params.rail(),
            kind: TxKind::Lock,
        };
        while let Some(signed) = self
            .outbox
            .signed(&key)
            .await
            .map_err(|e| EthError::Rpc(format!("outbox: {e}")))?
        {
            match self.resume_recorded(&signed).await {
                Ok(Some(tx)) => return Ok(tx),
                Ok(None) => {
                    tracing::warn!(chain = "eth", swap_id = %p.swap_id, tx = %signed.txref, "recorded lock can never be mined (its nonce was used): building a new one");
                }
                // Mined and reverted (an ERC-20 permit that expired before a late rebroadcast,
                // an allowance another process changed): its nonce is spent, it will never lock.
                // Unless the swap got locked anyway, build a new one.
                Err(e @ EthError::Reverted { .. }) => {
                    if let Some(tx) = self.find_retrying(&h, p).await?.lock_tx {
                        return Ok(tx);
                    }
                    tracing::warn!(chain = "eth", swap_id = %p.swap_id, tx = %signed.txref, error = %e, "recorded lock reverted: building a new one");
                }
                Err(e) => return Err(e),
            }
            self.outbox
                .discard(&[key], &signed.txref)
                .await
                .map_err(|e| EthError::Rpc(format!("outbox: {e}")))?;
        }
        let built = if h.is_eth() {
            let call = HTLC::lockCall {
                hashlock: h.hashlock,
                recipient: h.recipient,
                expiry: U256::from(h.expiry),
            };
            Ok((call.abi_encode(), h.amount))
        } else {
            self.token_lock_input(&h).await.map(|i| (i, U256::ZERO))
        };
        let (input, value) = built?;
        let tx = self
            .send_recorded(self.cfg.htlc, input.into(), value, &[key])
            .await?;
        tracing::info!(chain = "eth", swap_id = %p.swap_id, tx = %tx, "htlc lock sent");
        match self.wait(tx).await {
            Ok(_) => Ok(tx),
            Err(e @ EthError::Reverted { .. }) => {
                // Reverted: if the swap is locked anyway (an earlier send of ours won the race),
                // that lock is the answer; otherwise the revert is the error.
                match self.find_retrying(&h, p).await {
                    Ok(Found {
                        lock_tx: Some(t), ..
                    }) => Ok(t),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The call data for an ERC-20 lock: with a permit when the token accepts an EIP-2612
    /// permit (checked by calling it), otherwise after an `approve` of exactly the amount (when
    /// the allowance is short).
    pub(super) async fn token_lock_input(&self, h: &EthHtlc) -> Result<Vec<u8>, EthError> {
        let token = IERC20Permit::new(h.token, &self.provider);
        let me = self.address();
        let allowance = token
            .allowance(me, self.cfg.htlc)
            .call()
            .await
            .map_err(|e| {
                EthError::Rejected(crate::error::scrub_urls(&format!("allowance(): {e}")))
            })?;
        let plain = HTLC::lockTokenCall {
            hashlock: h.hashlock,
            token: h.token,
            amount: h.amount,
            recipient: h.recipient,
            expiry: U256::from(h.expiry),
        };
        if allowance >= h.amount {
            return Ok(plain.abi_encode());
        }
        let permit = match (
            token.nonces(me).call().await,
            token.DOMAIN_SEPARATOR().call().await,
        ) {
            (Ok(nonce), Ok(domain)) => Some((nonce, domain)),
            _ => None,
        };
        if let Some((nonce, domain)) = permit {
            let now = scan::latest(&self.provider).await?.timestamp;
            let deadline = U256::from(now + 3600);
            let msg = Permit {
                owner: me,
                spender: self.cfg.htlc,
                value: h.amount,
                nonce,
                deadline,
            };
            let mut buf = Vec::with_capacity(66);
            buf.extend_from_slice(b"\x19\x01");
            buf.extend_from_slice(domain.as_slice());
            buf.extend_from_slice(msg.eip712_hash_struct().as_slice());
            let digest = keccak256(&buf);
            let sig = self
                .signer()?
                .sign_hash(&digest)
                .await
                .map_err(|e| EthError::Rejected(format!("signing permit: {e}")))?;
            let (v, r, s) = (27 + u8::from(sig.v()), sig.r().into(), sig.s().into());
            // Having `nonces()` and `DOMAIN_SEPARATOR()` does not make a token EIP-2612 (DAI's
            // `permit` takes other arguments): the contract ignores a failed permit, so try this
            // one first (anyone may call `permit`; nothing is sent) and fall back to `approve`.
            let works = token
                .permit(me, self.cfg.htlc, h.amount, deadline, v, r, s)
                .call()
                .await
                .is_ok();
            if works {
                let call = HTLC::lockTokenWithPermitCall {
                    hashlock: h.hashlock,
                    token: h.token,
                    amount: h.amount,
                    recipient: h.recipient,
                    expiry: U256::from(h.expiry),
                    deadline,
                    v,
                    r,
                    s,
                };
                return Ok(call.abi_encode());
            }
            tracing::info!(chain = "eth", token = %h.token, "token has no EIP-2612 permit: using approve");
        }
        let approve = IERC20Permit::approveCall {
            spender: self.cfg.htlc,
            value: h.amount,
        };
        self.send_and_wait(h.token, approve.abi_encode().into(), U256::ZERO)
            .await?;
        Ok(plain.abi_encode())
    }

    /// Claims the swap with `preimage` (idempotent; see [`Rail::claim`]).
    pub async fn claim_htlc(&self, p: &HtlcParams, preimage: &Preimage) -> Result<B256, EthError> {
        let h = EthHtlc::from_params(p)?;
        if !p.hashlock.matches(preimage) {
            return Err(EthError::InvalidParams(
                "preimage does not match the hashlock".into(),
            ));
        }
        let id = h.id();
        let _swap_guard = self.swap_guard(id).await;
        let found = self.find_retrying(&h, p).await?;
        match &found.status {
            HtlcStatus::Claimed { txref, .. } => return parse_txref(txref),
            HtlcStatus::Refunded { .. } => {
                return Err(EthError::Impossible("swap was refunded".into()))
            }
            HtlcStatus::Absent => return Err(EthError::NotReady("swap is not locked".into())),
            HtlcStatus::Funded { .. } => {}
        }
        if found.tip.timestamp >= h.expiry {
            return Err(EthError::Impossible("swap expired: cannot claim".into()));
        }
        if let Some(tx) = self.resume_inflight(id, Op::Claim).await? {
            return Ok(tx);
        }
        let pre = B256::from(*preimage.as_bytes());
        // A batch is all or nothing: a claim close to its expiry goes alone, so that nothing
        // in someone else's batch (an entry claimed or expired meanwhile) can delay it.
        let sent = if h.expiry.saturating_sub(found.tip.timestamp) < CLAIM_ALONE_WITHIN_SECS {
            self.send(self.cfg.htlc, claim_input(&h, pre), U256::ZERO)
                .await
                .map(|tx| (tx, 1))
        } else {
            self.send_claim_batched(h, pre).await
        };
        let (tx, batched) = match sent {
            Ok(sent) => sent,
            Err(e) => return self.after_failure(&h, p, e, true).await,
        };
        self.inflight.lock().await.insert((id, Op::Claim), tx);
        tracing::info!(chain = "eth", swap_id = %p.swap_id, tx = %tx, batch = batched, "htlc claim sent");
        match self.wait(tx).await {
            Ok(_) => Ok(tx),
            Err(EthError::Reverted { .. }) if batched > 1 => {
                // A batch is all or nothing: one entry that became unclaimable after the
                // estimate reverts the others too. Claim this one on its own.
                self.inflight.lock().await.remove(&(id, Op::Claim));
                tracing::warn!(chain = "eth", swap_id = %p.swap_id, tx = %tx, "claim batch reverted; claiming alone");
                let tx = match self
                    .send(self.cfg.htlc, claim_input(&h, pre), U256::ZERO)
                    .await
                {
                    Ok(tx) => tx,
                    Err(e) => return self.after_failure(&h, p, e, true).await,
                };
                self.inflight.lock().await.insert((id, Op::Claim), tx);
                match self.wait(tx).await {
                    Ok(_) => Ok(tx),
                    Err(e) => self.after_failure(&h, p, e, true).await,
                }
            }
            Err(e) => self.after_failure(&h, p, e, true).await,
        }
    }

    /// Sends the claim of `h`, together with the other claims asked for meanwhile: concurrent
    /// claims of this adapter become one `claimBatch` transaction (~7,000 gas per extra swap
    /// instead of ~32,000 each) without waiting for anything. The caller that gets the
    /// `claimer` lock sends every queued claim (up to [`MAX_CLAIM_BATCH`] per transaction)
    /// while the others wait for its answer; claims queued while it sends go with the next.
    /// Returns the transaction and how many claims it carries.
    pub(super) async fn send_claim_batched(
        &self,
        h: EthHtlc,
        pre: B256,
    ) -> Result<(B256, usize), EthError> {
        let (reply, mut answer) = oneshot::channel();
        self.claim_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ClaimRequest {
                h,
                preimage: pre,
                reply,
            });
        let interrupted =
            || EthError::Rpc("the claim batch carrying this claim was interrupted; retry".into());
        tokio::select! {
            a = &mut answer => return a.unwrap_or_else(|_| Err(interrupted())),
            claimer = self.claimer.lock() => {
                match answer.try_recv() {
                    Ok(a) => return a,
                    Err(oneshot::error::TryRecvError::Closed) => return Err(interrupted()),
                    // Still queued: send the queue (ours included).
                    Err(oneshot::error::TryRecvError::Empty) => self.send_claim_queue().await,
                }
                drop(claimer);
            }
        }
        answer.await.unwrap_or_else(|_| Err(interrupted()))
    }

    /// The batch leader's work (with `claimer` held): sends every queued claim.
    pub(super) async fn send_claim_queue(&self) {
        loop {
            let batch: Vec<ClaimRequest> = {
                let mut q = self
                    .claim_queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                q.retain(|r| !r.reply.is_closed());
                let n = q.len().min(MAX_CLAIM_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            if batch.len() == 1 {
                let r = &batch[0];
                let sent = self
                    .send(self.cfg.htlc, claim_input(&r.h, r.preimage), U256::ZERO)
                    .await;
                for r in batch {
                    let _ = r.reply.send(sent.clone().map(|tx| (tx, 1)));
                }
                continue;
            }
            let input = claim_batch_input(batch.iter().map(|r| (r.h, r.preimage)).collect());
            let n = batch.len();
            match self.send(self.cfg.htlc, input, U256::ZERO).await {
                Ok(tx) => {
                    tracing::info!(chain = "eth", tx = %tx, claims = n, "claim batch sent");
                    for r in batch {
                        let _ = r.reply.send(Ok((tx, n)));
                    }
                }
                Err(e) => {
                    // The estimate failed for the batch (one entry would revert, say): each
                    // claim goes on its own, so the good ones are not held back.
                    tracing::warn!(chain = "eth", claims = n, error = %e, "claim batch not sent; claiming one by one");
                    for r in batch {
                        let sent = self
                            .send(self.cfg.htlc, claim_input(&r.h, r.preimage), U256::ZERO)
                            .await;
                        let _ = r.reply.send(sent.map(|tx| (tx, 1)));
                    }
                }
            }
        }
    }

    /// Refunds the swap to its sender (idempotent; see [`Rail::refund`]).
    pub async fn refund_htlc(&self, p: &HtlcParams) -> Result<B256, EthError> {
        let h = EthHtlc::from_params(p)?;
        let id = h.id();
        let _swap_guard = self.swap_guard(id).await;
        let found = self.find_retrying(&h, p).await?;
        match &found.status {
            HtlcStatus::Refunded { txref, .. } => return parse_txref(txref),
            HtlcStatus::Claimed { .. } => {
                return Err(EthError::Impossible(
                    "swap was claimed: read the preimage from htlc_status".into(),
                ))
            }
            HtlcStatus::Absent => return Err(EthError::NotReady("swap is not locked".into())),
            HtlcStatus::Funded { .. } => {}
        }
        if let Some(tx) = self.resume_inflight(id, Op::Refund).await? {
            return Ok(tx);
        }
        let input = if h.is_eth() {
            HTLC::refundCall {
                hashlock: h.hashlock,
                amount: h.amount,
                sender: h.sender,
                recipient: h.recipient,
                expiry: U256::from(h.expiry),
            }
            .abi_encode()
        } else {
            HTLC::refundTokenCall {
                hashlock: h.hashlock,
                token: h.token,
                amount: h.amount,
                sender: h.sender,
                recipient: h.recipient,
                expiry: U256::from(h.expiry),
            }
            .abi_encode()
        };
        let tx = match self.send(self.cfg.htlc, input.into(), U256::ZERO).await {
            Ok(tx) => tx,
            Err(EthError::WouldRevert(Revert::Htlc(HTLC::HTLCErrors::NotExpired(_)))) => {
                return Err(EthError::NotReady(format!(
                    "swap not refundable before {}",
                    h.expiry
                )))
            }
            Err(e) => return self.after_failure(&h, p, e, false).await,
        };
        self.inflight.lock().await.insert((id, Op::Refund), tx);
        tracing::info!(chain = "eth", swap_id = %p.swap_id, tx = %tx, "htlc refund sent");
        match self.wait(tx).await {
            Ok(_) => Ok(tx),
            Err(e) => self.after_failure(&h, p, e, false).await,
        }
    }

    /// After a failed claim or refund: if someone else did the same thing first, that is
    /// success; otherwise the original error.
    pub(super) async fn after_failure(
        &self,
        h: &EthHtlc,
        p: &HtlcParams,
        err: EthError,
        claim: bool,
    ) -> Result<B256, EthError> {
        if let Ok(found) = self.find_retrying(h, p).await {
            match (&found.status, claim) {
                (HtlcStatus::Claimed { txref, .. }, true)
                | (HtlcStatus::Refunded { txref, .. }, false) => return parse_txref(txref),
                _ => {}
            }
        }
        Err(err)
    }

    /// Claims several swaps in one transaction (all or nothing on chain). Swaps already claimed
    /// (mined) are skipped; every other swap must be funded and every preimage must match, or
    /// nothing is sent. Returns `None` when every swap was already claimed.
    pub async fn claim_batch(
        &self,
        items: &[(HtlcParams, Preimage)],
    ) -> Result<Option<B256>, EthError> {
        let mut claims = Vec::with_capacity(items.len());
        for (p, pre) in items {
            let h = EthHtlc::from_params(p)?;
            if !p.hashlock.matches(pre) {
                return Err(EthError::InvalidParams(format!(
                    "swap {}: preimage does not match",
                    p.swap_id
                )));
            }
            match self.find_retrying(&h, p).await?.status {
                HtlcStatus::Funded { .. } => {}
                HtlcStatus::Claimed { .. } => continue,
                HtlcStatus::Refunded { .. } => {
                    return Err(EthError::Impossible(format!(
                        "swap {} was refunded",
                        p.swap_id
                    )))
                }
                HtlcStatus::Absent => {
                    return Err(EthError::NotReady(format!(
                        "swap {} is not locked",
                        p.swap_id
                    )))
                }
            }
            claims.push((h, B256::from(*pre.as_bytes())));
        }
        if claims.is_empty() {
            return Ok(None);
        }
        self.send_and_wait(self.cfg.htlc, claim_batch_input(claims), U256::ZERO)
            .await
            .map(Some)
    }

    /// Refunds several expired swaps in one transaction (all or nothing).
    pub async fn refund_batch(&self, items: &[HtlcParams]) -> Result<B256, EthError> {
        let mut hashlocks = Vec::with_capacity(items.len());
        let mut swaps = Vec::with_capacity(items.len());
        for p in items {
            let h = EthHtlc::from_params(p)?;
            hashlocks.push(h.hashlock);
            swaps.push(h.as_batch_entry());
        }
        let mut order: Vec<usize> = (0..swaps.len()).collect();
        order.sort_by_key(|&i| (swaps[i].token, swaps[i].sender));
        let call = HTLC::refundBatchCall {
            hashlocks: order.iter().map(|&i| hashlocks[i]).collect(),
            swaps: order.iter().map(|&i| swaps[i].clone()).collect(),
        };
        self.send_and_wait(self.cfg.htlc, call.abi_encode().into(), U256::ZERO)
            .await
    }
}
