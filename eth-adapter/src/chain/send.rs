//! Sending transactions: fees, nonces, receipts, reverts, and sends resumed after a restart.

use alloy::eips::eip2718::Encodable2718;
use alloy::network::NetworkTransactionBuilder;
use swap_core::store::{SendKey, SignedTx};

use super::*;

/// How long a gap in this account's nonces must stay put before it is filled (see
/// [`EthChain::fill_gap_below`]): far above the milliseconds a round's broadcasts take.
const GAP_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// `tx` signed with `nonce`: its raw bytes and hash.
async fn sign(
    tx: TransactionRequest,
    nonce: u64,
    wallet: &EthereumWallet,
) -> Result<(Vec<u8>, B256), EthError> {
    let envelope = tx
        .with_nonce(nonce)
        .build(wallet)
        .await
        .map_err(|e| EthError::InvalidParams(format!("signing: {e}")))?;
    Ok((envelope.encoded_2718(), *envelope.tx_hash()))
}

/// Broadcasts a round's signed transactions (their hashes, in nonce order); answers each by
/// its position, and whether some were held back.
///
/// When the node does not take one, the ones after it would wait behind its nonce, mined only
/// once that nonce is used, and their callers with them, holding the round's other answers
/// (the failed one's too: its swap could not even try again). So its nonce is filled at once
/// when that is safe (`fill`: see [`EthChain::fill_nonce_of`]; the failed send's record, if it
/// keeps one, can then never be mined, and its next attempt builds a new one) and the round
/// goes on; once per round (a round that ran out of funds pays for one filler, not one per
/// lock). Otherwise the rest are not broadcast now: they are answered "not sent yet"
/// (transient) and keep their records (another process on the store may have read one and
/// broadcast it: a record is given up only once its nonce is used); their swaps' next attempts
/// broadcast them again.
async fn broadcast_in_order<B, BF, F, FF>(
    signed: Vec<B256>,
    broadcast: B,
    fill: F,
) -> (Vec<Result<B256, EthError>>, bool)
where
    B: Fn(usize, B256) -> BF,
    BF: std::future::Future<Output = Result<B256, EthError>>,
    F: Fn(usize, EthError) -> FF,
    FF: std::future::Future<Output = Result<(), EthError>>,
{
    let mut out = Vec::with_capacity(signed.len());
    let (mut held, mut filled) = (false, false);
    for (k, hash) in signed.into_iter().enumerate() {
        if held {
            out.push(Err(EthError::Rpc(
                "not sent yet: a send before it in its round failed".into(),
            )));
            continue;
        }
        let r = broadcast(k, hash).await;
        if let Err(e) = &r {
            let f = if filled {
                Err(EthError::Rpc(
                    "a nonce of this round was filled already".into(),
                ))
            } else {
                fill(k, e.clone()).await
            };
            match f {
                Ok(()) => {
                    filled = true;
                    tracing::warn!(chain = "eth", tx = %hash, error = %e, "broadcast failed: its nonce filled by a transfer to self")
                }
                Err(f) => {
                    tracing::warn!(chain = "eth", tx = %hash, error = %e, fill = %f, "broadcast failed and its nonce not filled: the round's later sends are held back");
                    held = true;
                }
            }
        }
        out.push(r);
    }
    (out, held)
}

impl EthChain {
    pub(super) async fn chain_id(&self) -> Result<u64, EthError> {
        self.chain_id
            .get_or_try_init(|| async { self.provider.get_chain_id().await.map_err(rpc_err) })
            .await
            .copied()
    }

    /// Estimates gas and fees, takes a nonce and sends. Returns the transaction hash.
    /// Nothing is sent before [`EthChain::verify`] has passed: funds sent to an address that
    /// holds no HTLC contract (a typo in a config) would be lost.
    pub(super) async fn send(
        &self,
        to: Address,
        input: Bytes,
        value: U256,
    ) -> Result<B256, EthError> {
        self.send_recorded(to, input, value, &[]).await
    }

    /// [`EthChain::send`], with the signed transaction recorded in the outbox for the sends in
    /// `record` before it is broadcast (only if none has one yet: otherwise nothing is sent). A
    /// transaction the node rejects is discarded from the outbox (nothing went out); one whose
    /// broadcast failed otherwise stays there, to be broadcast again (see
    /// [`EthChain::rebroadcast_recorded`]).
    pub(super) async fn send_recorded(
        &self,
        to: Address,
        input: Bytes,
        value: U256,
        record: &[SendKey],
    ) -> Result<B256, EthError> {
        let wallet = EthereumWallet::from(self.signer()?.clone());
        self.verify().await?;
        let latest = scan::latest(&self.provider).await?;
        let tx = self.request(to, input, value, &latest).await?;
        // Read before the nonces are held: it is the count at `latest`, a fixed block.
        let mined = self.mined_nonce(&latest).await;
        self.nonces
            .send_with(&self.provider, |nonce| async move {
                let tx = self.queued(tx, nonce, mined, &latest);
                let (raw, hash) = sign(tx, nonce, &wallet).await?;
                if !record.is_empty() {
                    let signed = SignedTx {
                        txref: txref(hash),
                        raw: raw.clone(),
                    };
                    // Not recorded (another process recorded one first, or the store is down):
                    // nothing is sent; the next attempt broadcasts the recorded one.
                    self.outbox
                        .record_signed(record, &signed)
                        .await
                        .map_err(|e| EthError::Rpc(format!("outbox: {e}")))?;
                }
                self.broadcast(&raw, hash, record).await
            })
            .await
    }

    /// Sends a round of calls, each recorded in the outbox for its send before anything is
    /// broadcast: one gas estimate each (concurrently), one fee estimate, consecutive nonces
    /// taken at once, one outbox write for all, then the broadcasts in nonce order. Answers
    /// per call, in order. A send that another process recorded meanwhile is answered
    /// `AlreadyRecorded`-like (transient: the next round broadcasts the recorded one) and left
    /// out before anything is signed for good.
    pub(super) async fn send_recorded_each(
        &self,
        calls: Vec<(Address, Bytes, U256, SendKey)>,
    ) -> Vec<Result<B256, EthError>> {
        let all_fail = |e: EthError, n: usize| (0..n).map(|_| Err(e.clone())).collect::<Vec<_>>();
        let n = calls.len();
        let wallet = match self.signer() {
            Ok(s) => EthereumWallet::from(s.clone()),
            Err(e) => return all_fail(e, n),
        };
        if let Err(e) = self.verify().await {
            return all_fail(e, n);
        }
        let latest = match scan::latest(&self.provider).await {
            Ok(l) => l,
            Err(e) => return all_fail(e, n),
        };
        let mut answers: Vec<Option<Result<B256, EthError>>> = vec![None; n];
        // Estimated 32 at a time.
        let mut requests = Vec::with_capacity(n);
        for chunk in calls.chunks(32) {
            let estimated =
                futures::future::join_all(chunk.iter().map(|(to, input, value, _)| {
                    self.request(*to, input.clone(), *value, &latest)
                }))
                .await;
            requests.extend(estimated);
        }
        let requests = requests.into_iter().enumerate();
        let mut ready = Vec::new();
        for (i, r) in requests {
            match r {
                Ok(tx) => ready.push((i, tx)),
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        // Read before the nonces are held: it is the count at `latest`, a fixed block.
        let mined = self.mined_nonce(&latest).await;
        let sent = self
            .nonces
            .run_from(&self.provider, |first| async move {
                let mut out = Vec::new();
                let mut ready = ready;
                // Signed with consecutive nonces and recorded together; a send another process
                // recorded meanwhile is left out and the rest signed again (no nonce gap).
                let signed = loop {
                    let mut signed = Vec::with_capacity(ready.len());
                    for (k, (i, tx)) in ready.iter().enumerate() {
                        let nonce = first + k as u64;
                        match sign(
                            self.queued(tx.clone(), nonce, mined, &latest),
                            nonce,
                            &wallet,
                        )
                        .await
                        {
                            Ok(s) => signed.push((*i, s)),
                            Err(e) => {
                                // Nothing of this round was recorded: no nonce is used.
                                out.push((*i, Err(e)));
                                return (out, None);
                            }
                        }
                    }
                    let items: Vec<(SendKey, SignedTx)> = signed
                        .iter()
                        .map(|(i, (raw, hash))| {
                            (
                                calls[*i].3,
                                SignedTx {
                                    txref: txref(*hash),
                                    raw: raw.clone(),
                                },
                            )
                        })
                        .collect();
                    match self.outbox.record_each(&items).await {
                        Ok(taken) if taken.is_empty() => break signed,
                        Ok(taken) => ready.retain(|(i, _)| {
                            let left_out = taken.contains(&calls[*i].3);
                            if left_out {
                                out.push((
                                    *i,
                                    Err(EthError::Rpc(
                                        "outbox: another process recorded this send".into(),
                                    )),
                                ));
                            }
                            !left_out
                        }),
                        Err(e) => {
                            let e = EthError::Rpc(format!("outbox: {e}"));
                            out.extend(ready.iter().map(|(i, _)| (*i, Err(e.clone()))));
                            return (out, None);
                        }
                    }
                };
                let order: Vec<B256> = signed.iter().map(|(_, (_, h))| *h).collect();
                let signed = &signed;
                let calls = &calls;
                let (sent, held) = broadcast_in_order(
                    order,
                    |k, hash| async move {
                        let (i, (raw, _)) = &signed[k];
                        self.broadcast(raw, hash, &[calls[*i].3]).await
                    },
                    |k, e| async move { self.fill_nonce_of(&signed[k].1 .0, &e).await },
                )
                .await;
                let sent: Vec<_> = signed.iter().map(|(i, _)| *i).zip(sent).collect();
                out.extend(sent);
                // Every nonce of the round is used (a filled one included) unless some were
                // held back, or left out before signing: then the node is asked again.
                let next =
                    (!held && out.len() == signed.len()).then_some(first + signed.len() as u64);
                (out, next)
            })
            .await;
        match sent {
            Ok(out) => {
                for (i, r) in out {
                    answers[i] = Some(r);
                }
            }
            Err(e) => {
                for a in answers.iter_mut().filter(|a| a.is_none()) {
                    *a = Some(Err(e.clone()));
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(EthError::Rpc("send not handled".into()))))
            .collect()
    }

    /// Fills the nonce of `raw`, a signed transaction the node refused with `refusal`, with a
    /// transfer of nothing to ourselves at the same fees (broadcast, not recorded: it moves
    /// nothing). Only where that cannot take the place of anything: the refusal is for good
    /// (not a taken nonce, an underpriced replacement or a node in doubt), the node does not
    /// know `raw`, and no transaction of ours is pending at its nonce (the node's pending count
    /// is not above it); and at `raw`'s own fees, which replace nothing.
    async fn fill_nonce_of(&self, raw: &[u8], refusal: &EthError) -> Result<(), EthError> {
        use alloy::consensus::Transaction as _;
        if refusal.is_transient() {
            return Err(EthError::Rpc(
                "not filled: the refusal may be a taken nonce".into(),
            ));
        }
        let envelope = super::cancel::decode(raw)?;
        if self
            .provider
            .get_transaction_by_hash(*envelope.tx_hash())
            .await
            .map_err(rpc_err)?
            .is_some()
        {
            return Err(EthError::Rpc("not filled: the node has it".into()));
        }
        let pending = self.pending_count().await?;
        if pending > envelope.nonce() {
            return Err(EthError::Rpc(format!(
                "not filled: nonce {} is taken (pending count {pending})",
                envelope.nonce()
            )));
        }
        let filler = self
            .sign_transfer_to_self(
                envelope.nonce(),
                envelope.max_fee_per_gas(),
                envelope.max_priority_fee_per_gas().unwrap_or(0),
            )
            .await?;
        self.provider
            .send_raw_transaction(&filler.raw)
            .await
            .map(|_| ())
            .map_err(rpc_err)
    }

    /// How many of this account's transactions the node counts, mined and pending (a queued one
    /// above a free nonce not counted).
    async fn pending_count(&self) -> Result<u64, EthError> {
        self.provider
            .get_transaction_count(self.address())
            .pending()
            .await
            .map_err(rpc_err)
    }

    /// How many of this account's transactions are mined as of `latest` (`None` when the
    /// node cannot say: the send then counts none of ours ahead of it).
    async fn mined_nonce(&self, latest: &scan::ScanTip) -> Option<u64> {
        self.provider
            .get_transaction_count(self.address())
            .block_id(alloy::eips::BlockId::number(latest.number))
            .await
            .ok()
    }

    /// `tx` to be sent with `nonce`, its max fee raised for the wait behind this account's
    /// transactions not mined yet ([`crate::tx::queued_max_fee`]): thousands of locks sent
    /// together wait many full blocks, and a max fee set for the base fee of the block they
    /// were sent in falls below the base fee before they are mined.
    fn queued(
        &self,
        tx: TransactionRequest,
        nonce: u64,
        mined: Option<u64>,
        latest: &scan::ScanTip,
    ) -> TransactionRequest {
        let (Some(max_fee), Some(gas)) = (tx.max_fee_per_gas, tx.gas) else {
            return tx;
        };
        let fee = crate::tx::queued_max_fee(
            max_fee,
            tx.max_priority_fee_per_gas.unwrap_or(0),
            latest.base_fee.unwrap_or(0),
            mined.map_or(0, |m| nonce.saturating_sub(m)),
            gas,
            latest.gas_limit,
            self.cfg.max_fee_per_gas,
        );
        tx.with_max_fee_per_gas(fee)
    }

    /// A call to `to` as a transaction request: gas estimated against `latest` (by number:
    /// some nodes read an omitted tag as `pending`; a competing transaction in the mempool,
    /// say someone else's claim that may never be mined, must not stop ours), fees from one
    /// estimate per block within the configured caps.
    async fn request(
        &self,
        to: Address,
        input: Bytes,
        value: U256,
        latest: &scan::ScanTip,
    ) -> Result<TransactionRequest, EthError> {
        let chain_id = self.chain_id().await?;
        let base = TransactionRequest::default()
            .with_from(self.address())
            .with_to(to)
            .with_input(input)
            .with_value(value);
        let gas = self
            .provider
            .estimate_gas(base.clone())
            .block(alloy::eips::BlockId::number(latest.number))
            .await
            .map_err(rpc_err)?;
        let base_fee = latest.base_fee.unwrap_or_default();
        let cap = self.cfg.max_fee_per_gas;
        if base_fee > cap {
            return Err(EthError::FeeCap { base_fee, cap });
        }
        // One fee estimate per block, shared by every transaction sent on top of it.
        let cached = self
            .fee_estimate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .filter(|(block, _)| *block == latest.hash)
            .map(|(_, est)| est);
        let est = match cached {
            Some(est) => est,
            None => {
                let est = self
                    .provider
                    .estimate_eip1559_fees()
                    .await
                    .map_err(rpc_err)?;
                *self
                    .fee_estimate
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((latest.hash, est));
                est
            }
        };
        let (max_fee, prio) =
            crate::tx::capped_fees(&est, base_fee, cap, self.cfg.max_priority_fee_per_gas)?;
        Ok(base
            .with_chain_id(chain_id)
            .with_gas_limit(crate::tx::gas_limit(gas))
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(prio))
    }

    /// Broadcasts a signed transaction. When the node rejects it and does not have it (some
    /// nodes word "already known" in ways not recognised as such), nothing went out: it is
    /// discarded from the outbox for the sends in `record`, and a new one may be built. When
    /// in doubt the record stays.
    async fn broadcast(
        &self,
        raw: &[u8],
        hash: B256,
        record: &[SendKey],
    ) -> Result<B256, EthError> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(pending) => Ok(*pending.tx_hash()),
            Err(e) => {
                let e = rpc_err(e);
                if !record.is_empty()
                    && !e.is_transient()
                    && matches!(self.provider.get_transaction_by_hash(hash).await, Ok(None))
                {
                    let _ = self.outbox.discard(record, &txref(hash)).await;
                }
                Err(e)
            }
        }
    }

    /// A recorded transaction (of this process or another on the same store) on its way
    /// again: left alone when the node knows it, broadcast again when it does not; answers its
    /// hash, for the caller to wait for. `None` when it can never be mined: it was not mined
    /// and its nonce is taken by a mined transaction, whether or not the node still holds it
    /// (the caller discards it and builds a new one).
    pub(super) async fn rebroadcast_recorded(
        &self,
        signed: &SignedTx,
    ) -> Result<Option<B256>, EthError> {
        use alloy::consensus::Transaction as _;
        let envelope = super::cancel::decode(&signed.raw)?;
        let hash = *envelope.tx_hash();
        let found = self
            .provider
            .get_transaction_by_hash(hash)
            .await
            .map_err(rpc_err)?;
        let known = found.is_some();
        if found.is_some_and(|t| t.block_number.is_none()) {
            // Pending is not alive: a node's pool can keep a transaction whose nonce another
            // mined transaction of ours used (anvil parks one whose nonce below went out of
            // its pool's reckoning), and it is never mined. Dead as below; never when it is
            // the one that used the nonce (its receipt, asked after the counts, says so). Best
            // effort: a read that fails leaves it waited for, as before.
            if let Ok(latest) = scan::latest(&self.provider).await {
                if matches!(
                    self.nonce_use(envelope.nonce(), &latest).await,
                    Ok(super::cancel::NonceUse::Deep)
                ) && matches!(self.has_receipt(hash).await, Ok(false))
                {
                    return Ok(None);
                }
            }
        } else if !known {
            // Its nonce used by a mined transaction: dead once that is as deep as a lock must
            // be (a reorg could bring it back, and this one could be mined beside a new one).
            // The receipt is asked after the counts: had this one (sent meanwhile by another
            // process) used the nonce, it is there by then.
            let latest = scan::latest(&self.provider).await?;
            match self.nonce_use(envelope.nonce(), &latest).await? {
                super::cancel::NonceUse::Free => {}
                super::cancel::NonceUse::Deep if !self.has_receipt(hash).await? => return Ok(None),
                super::cancel::NonceUse::Deep => return Ok(Some(hash)),
                super::cancel::NonceUse::Shallow { depth } => {
                    return Err(EthError::Rpc(format!(
                        "recorded transaction {hash:#x}: nonce {} is used; a new one is built \
                         once that is {depth} blocks deep",
                        envelope.nonce()
                    )))
                }
            }
            // Another transaction of ours is pending at its nonce (sent since, the node's
            // count having been below it): broadcast again, it could outbid that one (a
            // claim, say). Left to wait: once that one is mined, this one is dead.
            if self.pending_count().await? > envelope.nonce() {
                return Err(EthError::Rpc(format!(
                    "recorded transaction {hash:#x} not sent again: nonce {} is taken by a \
                     pending transaction",
                    envelope.nonce()
                )));
            }
            match self.provider.send_raw_transaction(&signed.raw).await {
                Ok(_) => {
                    tracing::info!(chain = "eth", tx = %hash, "recorded transaction broadcast again")
                }
                // Kept even when refused for good: it may have gone out before (or from
                // another process on the store) and still be in other nodes' pools; only its
                // nonce being used proves it dead (a lock built anew at another nonce could be
                // mined beside it, after the first was claimed). Its swap's cancel, if it
                // comes to that, takes its nonce.
                Err(e) => return Err(rpc_err(e)),
            }
        }
        // A free nonce below it (a send refused for good whose nonce could not be filled
        // then): it would wait there until this account's next send. Filled now.
        if let Err(e) = self
            .fill_gap_below(
                envelope.nonce(),
                envelope.max_fee_per_gas(),
                envelope.max_priority_fee_per_gas().unwrap_or(0),
            )
            .await
        {
            tracing::warn!(chain = "eth", tx = %hash, error = %e, "a free nonce below a recorded transaction not filled");
        }
        Ok(Some(hash))
    }

    /// Whether the node has a receipt for `tx` (it was mined).
    async fn has_receipt(&self, tx: B256) -> Result<bool, EthError> {
        Ok(self
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(rpc_err)?
            .is_some())
    }

    /// Fills the nonces below `nonce` at which the node counts no transaction of ours (from
    /// its pending count up, see [`crate::nonce::NonceManager::fill_below`]) with transfers of
    /// nothing to ourselves at the given fees (those of the transaction at `nonce`, which
    /// waits behind them), so that `nonce`'s transaction can be mined rather than wait for
    /// this account's next send. A transaction recorded at a filled nonce and not at the node
    /// (another process's, or a refused one of ours) can then never be mined: its next attempt
    /// finds the nonce used (as deep as a lock must be) and builds a new one. Answers how many
    /// were filled.
    pub(super) async fn fill_gap_below(
        &self,
        nonce: u64,
        max_fee: u128,
        prio: u128,
    ) -> Result<u64, EthError> {
        // Read first without the account's nonces: a round in flight is not waited for when
        // there is no gap (the common case).
        let seen = self.pending_count().await?;
        if seen >= nonce {
            return Ok(0);
        }
        // A gap can be another process's round on the same store, recorded and being broadcast
        // in nonce order right now: filling under it would kill its locks (each rebuilt at a
        // new nonce, paying twice the gas). Such a round moves the node's count within
        // milliseconds; a gap that stays put for `GAP_SETTLE` is one nobody is filling.
        tokio::time::sleep(GAP_SETTLE).await;
        if self.pending_count().await? != seen {
            tracing::debug!(
                chain = "eth",
                waiting = nonce,
                "nonces below a recorded transaction are being taken: not filled now"
            );
            return Ok(0);
        }
        self.nonces
            .fill_below(&self.provider, nonce, |free| async move {
                let filler = self.sign_transfer_to_self(free, max_fee, prio).await?;
                let _ = self
                    .provider
                    .send_raw_transaction(&filler.raw)
                    .await
                    .map_err(rpc_err)?;
                tracing::warn!(
                    chain = "eth",
                    nonce = free,
                    waiting = nonce,
                    "a free nonce below a recorded transaction filled by a transfer to self"
                );
                Ok(())
            })
            .await
    }

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

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
