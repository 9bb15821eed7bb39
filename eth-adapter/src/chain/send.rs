//! Sending transactions: fees, nonces, receipts, reverts, and sends resumed after a restart.

use alloy::eips::eip2718::Encodable2718;
use alloy::network::NetworkTransactionBuilder;
use swap_core::store::{SendKey, SignedTx};

use super::*;

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
    pub(super) async fn pending_count(&self) -> Result<u64, EthError> {
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
}

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
