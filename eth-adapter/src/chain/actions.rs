//! Locks (ETH, ERC-20 by permit or approve), claims (batched when concurrent) and refunds.

use swap_core::store::{SendKey, TxKind};

use super::*;

/// Claims one transaction carries at most (~7,000 gas each: well within a block).
pub(super) const MAX_CLAIM_BATCH: usize = 100;

/// Claims this close to their expiry (seconds of chain time) are never batched.
pub(super) const CLAIM_ALONE_WITHIN_SECS: u64 = 600;

/// What a claim needs, once checked against the chain.
enum ClaimCheck {
    /// Claimed already (by this transaction).
    Done(B256),
    /// To send; `alone` when too close to its expiry to share a batch.
    Send { alone: bool },
}

/// A lock before its transaction is signed.
enum Prepared {
    /// Locked already by this transaction.
    Done(B256),
    /// Its transaction recorded in the outbox is on its way (known to the node, or broadcast
    /// again): waited for beside the round's new sends, never before them (it may wait behind
    /// the nonce of one of them).
    Resumed(Box<Resumed>),
    /// To send.
    Send(Box<LockToSend>),
}

/// A recorded lock on its way: its HTLC, its send and transaction in the outbox, its swap's
/// guard.
struct Resumed {
    h: EthHtlc,
    params: HtlcParams,
    key: SendKey,
    txref: TxRef,
    tx: B256,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// A lock to send: its HTLC, its send in the outbox, its call, and its swap's guard.
struct LockToSend {
    h: EthHtlc,
    params: HtlcParams,
    key: SendKey,
    input: Bytes,
    value: U256,
    _guard: tokio::sync::OwnedMutexGuard<()>,
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
        self.lock_htlcs(&[p])
            .await
            .pop()
            .unwrap_or_else(|| Err(EthError::Rpc("lock not handled".into())))
    }

    /// Locks every swap of a round (idempotent each; see [`Rail::lock`]); one answer per lock,
    /// in order. Ether locks go out together (`EthChain::send_recorded_each`: consecutive
    /// nonces, one outbox write, no wait for one before the next is sent); ERC-20 locks one
    /// at a time (their allowance or permit flow holds the token lock).
    pub async fn lock_htlcs(&self, locks: &[&HtlcParams]) -> Vec<Result<B256, EthError>> {
        let prepared = futures::future::join_all(locks.iter().map(|p| self.prepare_lock(p))).await;
        let mut answers: Vec<Option<Result<B256, EthError>>> = vec![None; locks.len()];
        let mut batch = Vec::new();
        let mut tokens = Vec::new();
        let mut resumed = Vec::new();
        for (i, prep) in prepared.into_iter().enumerate() {
            match prep {
                Err(e) => answers[i] = Some(Err(e)),
                Ok(Prepared::Done(tx)) => answers[i] = Some(Ok(tx)),
                Ok(Prepared::Resumed(r)) => resumed.push((i, r)),
                Ok(Prepared::Send(send)) if send.h.is_eth() => batch.push((i, send)),
                Ok(Prepared::Send(send)) => tokens.push((i, send)),
            }
        }
        let calls = batch
            .iter()
            .map(|(_, s)| (self.cfg.htlc, s.input.clone(), s.value, s.key))
            .collect();
        let sent = self.send_recorded_each(calls).await;
        let ether = futures::future::join_all(
            batch
                .iter()
                .zip(sent)
                .map(|((i, send), r)| async move { (*i, self.confirm_lock(send, r).await) }),
        );
        let token = futures::future::join_all(tokens.iter().map(|(i, send)| async move {
            // Held for the whole ERC-20 flow so allowances of concurrent swaps never clash.
            let _token_guard = self.token_flow.lock().await;
            let r = match self.token_lock_input(&send.h).await {
                Ok(input) => {
                    self.send_recorded(self.cfg.htlc, input.into(), U256::ZERO, &[send.key])
                        .await
                }
                Err(e) => Err(e),
            };
            (*i, self.confirm_lock(send, r).await)
        }));
        let resumed = futures::future::join_all(
            resumed
                .iter()
                .map(|(i, r)| async move { (*i, self.confirm_resumed(r).await) }),
        );
        let (ether, token, resumed) = futures::join!(ether, token, resumed);
        for (i, r) in ether.into_iter().chain(token).chain(resumed) {
            answers[i] = Some(r);
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(EthError::Rpc("lock not handled".into()))))
            .collect()
    }

    /// A sent lock waited for. Reverted: if the swap is locked anyway (an earlier send of ours
    /// won the race), that lock is the answer; otherwise the revert is the error.
    async fn confirm_lock(
        &self,
        send: &LockToSend,
        sent: Result<B256, EthError>,
    ) -> Result<B256, EthError> {
        let tx = sent?;
        tracing::info!(chain = "eth", swap_id = %send.params.swap_id, tx = %tx, "htlc lock sent");
        match self.wait(tx).await {
            Ok(_) => Ok(tx),
            Err(e @ EthError::Reverted { .. }) => {
                match self.find_retrying(&send.h, &send.params).await {
                    Ok(Found {
                        lock_tx: Some(t), ..
                    }) => Ok(t),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A recorded lock on its way, waited for. Reverted (an ERC-20 permit that expired before a
    /// late rebroadcast, an allowance another process changed: its nonce is spent, it will
    /// never lock): unless the swap got locked anyway, its record is discarded once the revert
    /// is as deep as a lock must be, and the next attempt builds a new one (a transient error
    /// until then).
    async fn confirm_resumed(&self, r: &Resumed) -> Result<B256, EthError> {
        match self.wait(r.tx).await {
            Ok(_) => Ok(r.tx),
            Err(e @ EthError::Reverted { .. }) => {
                if let Some(tx) = self.find_retrying(&r.h, &r.params).await?.lock_tx {
                    return Ok(tx);
                }
                // Given up only as deep as a lock must be (a reorg could bring it back
                // mined with success beside a new one); until then, looked at again.
                let depth = u64::from(self.cfg.params.lock_confirmations.max(1));
                let block = self
                    .provider
                    .get_transaction_receipt(r.tx)
                    .await
                    .map_err(rpc_err)?
                    .and_then(|receipt| receipt.block_number);
                let head = self.provider.get_block_number().await.map_err(rpc_err)?;
                if block.is_none_or(|b| head + 1 < b + depth) {
                    return Err(EthError::Rpc(format!(
                        "recorded lock reverted ({e}); given up once {depth} blocks deep"
                    )));
                }
                tracing::warn!(chain = "eth", swap_id = %r.params.swap_id, tx = %r.txref, error = %e, "recorded lock reverted: a new one is built at the next attempt");
                self.outbox
                    .discard(&[r.key], &r.txref)
                    .await
                    .map_err(super::cancel::outbox_error)?;
                Err(EthError::Rpc(format!(
                    "recorded lock reverted ({e}): a new one is built at the next attempt"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Everything a lock needs before its transaction is signed: the checks, the swap's guard
    /// (held until the lock is mined or failed), and the lock found on chain, or the one
    /// recorded in the outbox put on its way again (waited for by the caller), if any.
    async fn prepare_lock(&self, p: &HtlcParams) -> Result<Prepared, EthError> {
        let h = EthHtlc::from_params(p)?;
        self.check_decimals(p).await?;
        if h.sender != self.address() {
            return Err(EthError::InvalidParams(format!(
                "sender {} is not this adapter's account {}",
                h.sender,
                self.address()
            )));
        }
        let guard = self.swap_guard(h.id()).await;
        let found = self.find_retrying(&h, p).await?;
        if let Some(tx) = found.lock_tx {
            // Funded, or already claimed or refunded: never lock the same parameters twice.
            return Ok(Prepared::Done(tx));
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
            .map_err(super::cancel::outbox_error)?
        {
            match self.rebroadcast_recorded(&signed).await? {
                Some(tx) => {
                    return Ok(Prepared::Resumed(Box::new(Resumed {
                        h,
                        params: p.clone(),
                        key,
                        txref: signed.txref,
                        tx,
                        _guard: guard,
                    })))
                }
                None => {
                    tracing::warn!(chain = "eth", swap_id = %p.swap_id, tx = %signed.txref, "recorded lock can never be mined (its nonce was used): building a new one");
                }
            }
            self.outbox
                .discard(&[key], &signed.txref)
                .await
                .map_err(super::cancel::outbox_error)?;
        }
        let (input, value) = if h.is_eth() {
            let call = HTLC::lockCall {
                hashlock: h.hashlock,
                recipient: h.recipient,
                expiry: U256::from(h.expiry),
            };
            (Bytes::from(call.abi_encode()), h.amount)
        } else {
            // Built under the token lock, when it is sent.
            (Bytes::new(), U256::ZERO)
        };
        Ok(Prepared::Send(Box::new(LockToSend {
            h,
            params: p.clone(),
            key,
            input,
            value,
            _guard: guard,
        })))
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
        self.claim_htlcs(&[(p, preimage)])
            .await
            .pop()
            .unwrap_or_else(|| Err(EthError::Rpc("claim not handled".into())))
    }

    /// Claims every swap of `items` (each idempotent, as [`Self::claim_htlc`]); one answer per
    /// item, in order. The claims go out together: up to `MAX_CLAIM_BATCH` per `claimBatch`
    /// transaction (~7,000 gas per extra swap instead of ~32,000 each), except a claim within
    /// `CLAIM_ALONE_WITHIN_SECS` of its expiry, which goes alone so that nothing in a batch
    /// (an entry claimed or expired meanwhile) can delay it. A batch whose estimate fails, or
    /// that reverts, is sent again one claim per transaction.
    pub async fn claim_htlcs(
        &self,
        items: &[(&HtlcParams, &Preimage)],
    ) -> Vec<Result<B256, EthError>> {
        let mut out: Vec<Option<Result<B256, EthError>>> = vec![None; items.len()];
        let mut ready = Vec::new();
        for (i, (p, pre)) in items.iter().enumerate() {
            match EthHtlc::from_params(p) {
                Err(e) => out[i] = Some(Err(e)),
                Ok(_) if !p.hashlock.matches(pre) => {
                    out[i] = Some(Err(EthError::InvalidParams(
                        "preimage does not match the hashlock".into(),
                    )))
                }
                Ok(h) => ready.push((i, h, B256::from(*pre.as_bytes()))),
            }
        }
        // One action at a time per swap, taken in a fixed order (two rounds sharing swaps
        // cannot deadlock); held until every claim of the round has its answer.
        let mut ids: Vec<B256> = ready.iter().map(|(_, h, _)| h.id()).collect();
        ids.sort();
        ids.dedup();
        let mut guards = Vec::with_capacity(ids.len());
        for id in ids {
            guards.push(self.swap_guard(id).await);
        }
        // Each claim checked against one scan that started after this call (shared).
        let asked = std::time::Instant::now();
        let checked = futures::future::join_all(
            ready
                .iter()
                .map(|(i, h, _)| self.check_claim(h, items[*i].0, asked)),
        )
        .await;
        let mut alone = Vec::new();
        let mut batched = Vec::new();
        for ((i, h, pre), c) in ready.into_iter().zip(checked) {
            match c {
                Ok(ClaimCheck::Done(tx)) => out[i] = Some(Ok(tx)),
                Ok(ClaimCheck::Send { alone: true }) => alone.push(vec![(i, h, pre)]),
                Ok(ClaimCheck::Send { alone: false }) => batched.push((i, h, pre)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let mut groups = alone;
        while !batched.is_empty() {
            let rest = batched.split_off(batched.len().min(MAX_CLAIM_BATCH));
            groups.push(std::mem::replace(&mut batched, rest));
        }
        // Sent one after the other (nonces), then waited for together.
        let mut sent = Vec::with_capacity(groups.len());
        for group in groups {
            let input = match group.as_slice() {
                [(_, h, pre)] => claim_input(h, *pre),
                _ => claim_batch_input(group.iter().map(|(_, h, pre)| (*h, *pre)).collect()),
            };
            match self.send(self.cfg.htlc, input, U256::ZERO).await {
                Ok(tx) => {
                    tracing::info!(chain = "eth", tx = %tx, claims = group.len(), "htlc claim sent");
                    sent.push((group, Ok(tx)));
                }
                Err(e) if group.len() > 1 => {
                    // The estimate failed for the batch (one entry would revert, say): each
                    // claim goes on its own, so the good ones are not held back.
                    tracing::warn!(chain = "eth", claims = group.len(), error = %e, "claim batch not sent; claiming one by one");
                    for one in group {
                        let r = self
                            .send(self.cfg.htlc, claim_input(&one.1, one.2), U256::ZERO)
                            .await;
                        sent.push((vec![one], r));
                    }
                }
                Err(e) => sent.push((group, Err(e))),
            }
        }
        for (group, r) in &sent {
            if let Ok(tx) = r {
                let mut inflight = self.inflight.lock().await;
                for (_, h, _) in group {
                    inflight.insert((h.id(), Op::Claim), *tx);
                }
            }
        }
        let answers = futures::future::join_all(sent.into_iter().map(|(group, r)| async move {
            let waited = match r {
                Ok(tx) => self.wait(tx).await.map(|_| tx),
                Err(e) => Err(e),
            };
            match waited {
                Ok(tx) => group.into_iter().map(|(i, ..)| (i, Ok(tx))).collect(),
                Err(e) => {
                    let batch = group.len() > 1;
                    futures::future::join_all(group.into_iter().map(|(i, h, pre)| {
                        let e = e.clone();
                        async move {
                            let p = items[i].0;
                            if batch && matches!(e, EthError::Reverted { .. }) {
                                // A batch is all or nothing: one entry that became
                                // unclaimable after the estimate reverts the others too.
                                self.inflight.lock().await.remove(&(h.id(), Op::Claim));
                                tracing::warn!(chain = "eth", swap_id = %p.swap_id, "claim batch reverted; claiming alone");
                                let alone = self
                                    .send_and_wait(self.cfg.htlc, claim_input(&h, pre), U256::ZERO)
                                    .await;
                                return match alone {
                                    Ok(tx) => (i, Ok(tx)),
                                    Err(e) => (i, self.after_failure(&h, p, e, true).await),
                                };
                            }
                            (i, self.after_failure(&h, p, e, true).await)
                        }
                    }))
                    .await
                }
            }
        }))
        .await;
        for (i, r) in answers.into_iter().flatten() {
            out[i] = Some(r);
        }
        drop(guards);
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(EthError::Rpc("claim not handled".into()))))
            .collect()
    }

    /// What claiming `h` needs, read from a scan that started at or after `asked`.
    async fn check_claim(
        &self,
        h: &EthHtlc,
        p: &HtlcParams,
        asked: std::time::Instant,
    ) -> Result<ClaimCheck, EthError> {
        let found = self.find_retrying_with(h, p, false, asked, true).await?;
        match &found.status {
            HtlcStatus::Claimed { txref, .. } => return parse_txref(txref).map(ClaimCheck::Done),
            HtlcStatus::Refunded { .. } => {
                return Err(EthError::Impossible("swap was refunded".into()))
            }
            HtlcStatus::Absent => return Err(EthError::NotReady("swap is not locked".into())),
            HtlcStatus::Funded { .. } => {}
        }
        if found.tip.timestamp >= h.expiry {
            return Err(EthError::Impossible("swap expired: cannot claim".into()));
        }
        if let Some(tx) = self.resume_inflight(h.id(), Op::Claim).await? {
            return Ok(ClaimCheck::Done(tx));
        }
        Ok(ClaimCheck::Send {
            alone: h.expiry.saturating_sub(found.tip.timestamp) < CLAIM_ALONE_WITHIN_SECS,
        })
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
