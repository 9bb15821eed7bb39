//! Funding HTLCs from the node wallet: the locks of one round in one transaction, recorded in
//! the outbox before its broadcast; the locks asked while a round runs wait for the next one
//! and go out together.
//!
//! For every lock asked: an HTLC already funded on chain or in the mempool answers that funding;
//! a lock with a transaction in the outbox (signed by this or another process on the same store,
//! maybe never broadcast, maybe evicted) has that transaction broadcast again, never a second
//! funding while the first could still be mined (one whose coins a mined transaction spent, a
//! lock's depth of blocks ago, is discarded and funded anew); the other locks are funded together (one output per HTLC, at most
//! [`MAX_FUNDING_OUTPUTS`] per transaction), and the signed funding is recorded for all of them,
//! only if none has one yet, before it is broadcast. A funding the node rejects for good is
//! discarded from the outbox: nothing was sent, a later round may build a new one.

use bitcoin::consensus::encode::{deserialize, serialize};
use swap_core::store::{SendKey, SignedTx, StoreError};

use super::cancel::{outbox_error, WalletTx};
use swap_core::TxKind;

use super::*;

/// One HTLC output of a funding: the locks asked for it (one HTLC asked twice in a round is
/// funded once) and its send in the outbox.
struct Output {
    asked: Vec<usize>,
    script: ScriptBuf,
    address: String,
    amount: u64,
    key: SendKey,
}

/// Whether a recorded funding the node refuses can never be mined.
enum Dead {
    /// Not known to be (refused for another reason, or its coins' spend not in the chain).
    No,
    /// A mined transaction spent its coins, `blocks` blocks too recently.
    NotDeepYet { blocks: u64 },
    /// For good: fund anew.
    Yes,
}

/// The answers a caller waited for; one whose round was dropped midway is "not handled"
/// (asked again, the lock finds its funding in the outbox).
fn not_handled_as_errors(
    answers: Vec<Result<Result<TxRef, ChainError>, tokio::sync::oneshot::error::RecvError>>,
) -> Vec<Result<TxRef, ChainError>> {
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|_| Err(ChainError::transient("lock not handled"))))
        .collect()
}

/// When the last funding round ended and how long it took: the next one rests as long (at most
/// [`MAX_FUNDING_REST`]) before it takes the locks asked. A node wallet holding thousands of
/// coins takes seconds to build each funding (its coin selection goes over all of them), and
/// rounds back to back would keep it, and every other call to the node (the balance and tip
/// reads of new swaps, the block scans) waiting all the time; resting keeps the wallet's
/// funding work to about half of its time and lets each round gather what was asked meanwhile.
/// A wallet that answers in milliseconds rests milliseconds.
#[derive(Debug, Default)]
pub(super) struct RoundPace {
    ended: Option<tokio::time::Instant>,
    took: std::time::Duration,
}

/// A lock waiting for the next funding round, with where its answer goes.
#[derive(Debug)]
pub(super) struct QueuedLock {
    htlc: HtlcParams,
    answer: tokio::sync::oneshot::Sender<Result<TxRef, ChainError>>,
}

impl BtcChain {
    pub(super) fn send_key(&self, htlc: &HtlcParams) -> SendKey {
        SendKey {
            swap: htlc.swap_id,
            rail: self.params.rail(),
            kind: TxKind::Lock,
        }
    }

    /// Funds every HTLC of `locks` that needs it; one answer per lock, in order.
    ///
    /// One round at a time in this process, and a round takes every lock asked until it
    /// starts: the locks asked while a round runs (other swaps' steps, other callers) wait for
    /// it and are funded together by the next one, in one transaction per
    /// [`MAX_FUNDING_OUTPUTS`], however many callers asked. A round rests as long as the last
    /// one took before it starts ([`RoundPace`]). A concurrent call for the same HTLC
    /// finds the first one's funding in the outbox; a second wallet transaction spends the
    /// first one's change. A round dropped midway leaves either nothing or a recorded funding
    /// behind, and the locks it had taken answered "not handled" (asked again, they find it).
    pub(super) async fn fund(&self, locks: &[&HtlcParams]) -> Vec<Result<TxRef, ChainError>> {
        if self.is_watch_only() {
            return locks.iter().map(|_| Err(watch_only())).collect();
        }
        if locks.is_empty() {
            return Vec::new();
        }
        let answers: Vec<_> = {
            let mut queue = self.queue();
            locks
                .iter()
                .map(|htlc| {
                    let (answer, wait) = tokio::sync::oneshot::channel();
                    queue.push(QueuedLock {
                        htlc: (*htlc).clone(),
                        answer,
                    });
                    wait
                })
                .collect()
        };
        let mut answered = std::pin::pin!(futures::future::join_all(answers));
        tokio::select! {
            biased;
            // Funded by a round another caller ran: nothing more to wait for.
            done = &mut answered => return not_handled_as_errors(done),
            mut pace = self.funding.lock() => {
                // Ours, unless a round that started after we asked took them already.
                if !self.queue().is_empty() {
                    if let Some(ended) = pace.ended {
                        tokio::time::sleep_until(ended + pace.took.min(MAX_FUNDING_REST)).await;
                    }
                    self.run_round(&mut pace).await;
                }
            }
        }
        not_handled_as_errors(answered.await)
    }

    /// Takes every lock queued and funds them in one round (the caller holds `funding`).
    /// Locks whose callers gave up waiting are left out: a swap that stopped waiting for its
    /// lock (its task ended) may have gone on to cancel it, and nobody would watch an HTLC
    /// funded now.
    async fn run_round(&self, pace: &mut RoundPace) {
        let taken: Vec<QueuedLock> = std::mem::take(&mut *self.queue())
            .into_iter()
            .filter(|q| !q.answer.is_closed())
            .collect();
        if taken.is_empty() {
            return;
        }
        let started = tokio::time::Instant::now();
        let htlcs: Vec<&HtlcParams> = taken.iter().map(|q| &q.htlc).collect();
        let results = self.fund_round(&htlcs).await;
        for (queued, result) in taken.into_iter().zip(results) {
            // A caller that gave up since no longer listens; its lock is recorded anyway.
            let _ = queued.answer.send(result);
        }
        let ended = tokio::time::Instant::now();
        *pace = RoundPace {
            ended: Some(ended),
            took: ended - started,
        };
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<QueuedLock>> {
        // The queue is only pushed to and emptied: a panic elsewhere leaves it usable.
        self.fund_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One funding round over `locks` (the caller holds `funding`).
    async fn fund_round(&self, locks: &[&HtlcParams]) -> Vec<Result<TxRef, ChainError>> {
        let mut answers: Vec<Option<Result<TxRef, ChainError>>> = vec![None; locks.len()];
        let mut outputs: Vec<Output> = Vec::new();
        let tip;
        {
            let mut st = self.state.lock().await;
            let mut registered = Vec::new();
            for (i, htlc) in locks.iter().enumerate() {
                match sats(htlc).and_then(|amount| Ok((self.register(&mut st, htlc)?, amount))) {
                    Ok(r) => registered.push((i, r)),
                    Err(e) => answers[i] = Some(Err(e)),
                }
            }
            // One scan per round: a funding made since the last one (by an external wallet
            // paying the HTLC address) is answered, not funded again. (Ours are in the outbox.)
            if let Err(e) = self.sync(&mut st).await {
                return locks.iter().map(|_| Err(e.clone())).collect();
            }
            tip = st.tip;
            let mut by_script: HashMap<ScriptBuf, usize> = HashMap::new();
            for (i, ((w, script), amount)) in registered {
                if let (_, Some(funding), _) = self.status(&st, &w, &script) {
                    answers[i] = Some(Ok(TxRef(funding.outpoint.txid.to_string())));
                } else if let Some(&o) = by_script.get(&script) {
                    outputs[o].asked.push(i);
                } else {
                    match w.htlc.address(self.params.chain) {
                        Ok(address) => {
                            by_script.insert(script.clone(), outputs.len());
                            outputs.push(Output {
                                asked: vec![i],
                                script,
                                address,
                                amount,
                                key: self.send_key(locks[i]),
                            });
                        }
                        Err(e) => answers[i] = Some(Err(permanent(e))),
                    }
                }
            }
        }
        let mut to_fund = Vec::new();
        for output in outputs {
            let answer = match self.outbox.signed(&output.key).await {
                Ok(None) => {
                    to_fund.push(output);
                    continue;
                }
                Ok(Some(signed)) => {
                    match self.rebroadcast_lock(&signed, &output, tip).await {
                        Ok(Some(txref)) => Ok(txref),
                        // It can never be mined, and its record is gone: funded anew below.
                        Ok(None) => {
                            to_fund.push(output);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(outbox_error(e)),
            };
            for i in output.asked {
                answers[i] = Some(answer.clone());
            }
        }
        let mut rest = to_fund.into_iter();
        loop {
            let batch: Vec<Output> = rest.by_ref().take(MAX_FUNDING_OUTPUTS).collect();
            if batch.is_empty() {
                break;
            }
            for (asked, answer) in self.fund_batch(batch).await {
                for i in asked {
                    answers[i] = Some(answer.clone());
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(ChainError::transient("lock not handled"))))
            .collect()
    }

    /// Broadcasts again a funding recorded in the outbox (ours, maybe never sent or evicted).
    ///
    /// `None`: the node refuses it and it can never be mined, because a mined transaction spent
    /// one of its coins (a process recorded it and died before its broadcast, and another
    /// process on the same wallet spent those coins meanwhile) and `lock_confirmations` blocks
    /// came after the tip at which this process first saw that (see
    /// [`BtcChain::recorded_funding_dead`]); its record is discarded, and the lock is funded
    /// anew. Until then the lock waits (not ready); one refused for another reason stays
    /// recorded and refused: a second funding while the first could still be mined could fund
    /// the HTLC twice. A lock whose swap is cancelling (a cancel is recorded) is never funded
    /// anew.
    async fn rebroadcast_lock(
        &self,
        signed: &SignedTx,
        output: &Output,
        tip: u64,
    ) -> Result<Option<TxRef>, ChainError> {
        let tx: Transaction = deserialize(&signed.raw).map_err(|e| {
            ChainError::permanent(format!("outbox funding {} unreadable: {e}", signed.txref))
        })?;
        if !tx.output.iter().any(|o| o.script_pubkey == output.script) {
            return Err(permanent(format!(
                "outbox funding {} does not pay this HTLC",
                signed.txref
            )));
        }
        let refused = match self.rpc.send_raw_transaction(&tx).await {
            Ok(txid) => return Ok(Some(TxRef(txid.to_string()))),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => e,
        };
        let refused_for_good = || {
            permanent(format!(
                "our funding {} is no longer valid ({refused}); not funding twice",
                signed.txref
            ))
        };
        match self.recorded_funding_dead(&tx, tip).await? {
            Dead::No => return Err(refused_for_good()),
            Dead::NotDeepYet { blocks } => {
                return Err(ChainError::not_ready(format!(
                    "our funding {} can no longer be mined (a mined transaction spent its coins): \
                     funding anew after {blocks} more block(s)",
                    signed.txref
                )))
            }
            Dead::Yes => {}
        }
        let cancel_key = SendKey {
            kind: TxKind::Cancel,
            ..output.key
        };
        if self
            .outbox
            .signed(&cancel_key)
            .await
            .map_err(outbox_error)?
            .is_some()
        {
            return Err(refused_for_good());
        }
        let forgot = self
            .outbox
            .discard(&[output.key], &signed.txref)
            .await
            .map_err(outbox_error)?;
        if forgot == 0 {
            // Another process discarded it (and may have recorded a new one): next round.
            return Err(ChainError::transient(
                "the lock's recorded funding changed meanwhile",
            ));
        }
        warn!(chain = %self.params.chain, swap_id = %output.key.swap, funding = %signed.txref, "recorded funding can never be mined (a mined transaction spent its coins): funding anew");
        Ok(None)
    }

    /// Whether the recorded funding `tx` (refused by the node) can never be mined: it is not
    /// mined itself (asked before and after its coins), and one of its coins is spent by a
    /// transaction in the node's chain (its parent in the chain, the coin not in the chain's
    /// unspent set). `Yes` only once `lock_confirmations` blocks came after the tip at which
    /// this process first saw that, that tip still in the chain (a process that restarts counts
    /// again): a spend seen once may be reorged out, and the funding seen dead in a race with
    /// its own mining.
    async fn recorded_funding_dead(&self, tx: &Transaction, tip: u64) -> Result<Dead, ChainError> {
        let txid = tx.compute_txid();
        let depth = u64::from(self.params.lock_confirmations.max(1));
        let mined = |w: Option<WalletTx>| w.is_some_and(|w| w.confirmations > 0);
        let dead = !mined(self.wallet_tx(txid).await?)
            && self.funding_is_dead(tx).await?
            && !mined(self.wallet_tx(txid).await?);
        if !dead {
            self.state.lock().await.dead_fundings.remove(&txid);
            return Ok(Dead::No);
        }
        let seen = self.state.lock().await.dead_fundings.get(&txid).cloned();
        let (since, since_hash) = match seen {
            Some((h, hash)) if self.rpc.get_block_hash(h).await? == hash => (h, hash),
            // First seen now, or its tip was reorged out: counting starts at this tip.
            _ => (tip, self.rpc.get_block_hash(tip).await?),
        };
        // Kept once deep enough: the other locks the same funding carried find it there (one
        // entry per dead funding, which are rare).
        self.state
            .lock()
            .await
            .dead_fundings
            .insert(txid, (since, since_hash));
        Ok(match (since + depth).checked_sub(tip) {
            Some(left) if left > 0 => Dead::NotDeepYet { blocks: left },
            _ => Dead::Yes,
        })
    }

    /// Funds `batch` with one transaction. When the wallet cannot build it, funds each output
    /// on its own, so that one output the wallet refuses or cannot afford does not fail the
    /// others.
    async fn fund_batch(&self, batch: Vec<Output>) -> Vec<(Vec<usize>, Result<TxRef, ChainError>)> {
        let mut answers = Vec::new();
        match self.send_funding(&batch).await {
            Ok(txid) => {
                info!(chain = %self.params.chain, count = batch.len(), %txid, "funding sent");
                for o in batch {
                    answers.push((o.asked, Ok(TxRef(txid.to_string()))));
                }
            }
            Err(FundingFailure::WalletRefused(e)) if batch.len() > 1 => {
                warn!(chain = %self.params.chain, count = batch.len(), error = %e, "funding batch refused; funding its HTLCs one by one");
                for o in batch {
                    let answer = self
                        .send_funding(std::slice::from_ref(&o))
                        .await
                        .map(|txid| TxRef(txid.to_string()))
                        .map_err(FundingFailure::into_error);
                    answers.push((o.asked, answer));
                }
            }
            Err(failure) => {
                let e = failure.into_error();
                for o in batch {
                    answers.push((o.asked, Err(e.clone())));
                }
            }
        }
        answers
    }

    /// Builds and signs one wallet transaction paying every output of `batch`, records it in
    /// the outbox for each of them, then broadcasts it, holding the outbox's spend guard of the
    /// wallet throughout: two processes on one wallet (the exchange server's workers) never
    /// pick the same coins, of which the later funding would replace the earlier (fundings are
    /// replaceable, for their cancel) or be refused. (The wallet's own coin locks are not
    /// used: they outlive a crashed process until the node restarts, and would hold back the
    /// coins of a funding that was never sent. The guard ends with its process.) A wallet
    /// spent from outside xswap can still take the coins: that funding is found dead and
    /// funded anew.
    async fn send_funding(&self, batch: &[Output]) -> Result<Txid, FundingFailure> {
        let _guard = self
            .outbox
            .spend_guard(&self.spend_guard_name())
            .await
            .map_err(|e| FundingFailure::Final(outbox_error(e)))?;
        self.send_funding_guarded(batch).await
    }

    /// [`Self::send_funding`] under the wallet's spend guard.
    async fn send_funding_guarded(&self, batch: &[Output]) -> Result<Txid, FundingFailure> {
        let built = |e: RpcError| {
            if e.is_transient() {
                FundingFailure::Final(e.into())
            } else {
                FundingFailure::WalletRefused(e.into())
            }
        };
        let feerate = self.feerate().await.map_err(FundingFailure::Final)?;
        let pay: Vec<(&str, u64)> = batch
            .iter()
            .map(|o| (o.address.as_str(), o.amount))
            .collect();
        let psbt = self
            .rpc
            .wallet_create_funded_psbt(&pay, feerate)
            .await
            .map_err(built)?;
        let psbt = self.rpc.wallet_process_psbt(&psbt).await.map_err(built)?;
        let tx = self.rpc.finalize_psbt(&psbt).await.map_err(built)?;
        for o in batch {
            let paying = tx
                .output
                .iter()
                .filter(|out| out.script_pubkey == o.script && out.value.to_sat() == o.amount)
                .count();
            if paying != 1 {
                return Err(FundingFailure::Final(permanent(
                    "wallet built a funding that does not pay each HTLC exactly once",
                )));
            }
        }
        let signed = SignedTx {
            txref: TxRef(tx.compute_txid().to_string()),
            raw: serialize(&tx),
        };
        let keys: Vec<SendKey> = batch.iter().map(|o| o.key).collect();
        match self.outbox.record_signed(&keys, &signed).await {
            Ok(()) => {}
            // Another process recorded a funding for one of these locks since we looked: ours
            // is never broadcast, theirs is, next round.
            Err(e @ StoreError::AlreadyRecorded { .. }) => {
                return Err(FundingFailure::Final(ChainError::transient(e)))
            }
            Err(e) => return Err(FundingFailure::Final(outbox_error(e))),
        }
        // From here on it may be out: the record stays unless the node rejects it.
        match self.rpc.send_raw_transaction(&tx).await {
            Ok(txid) => Ok(txid),
            // Maybe sent: the outbox has it, the next round broadcasts it again.
            Err(e) if e.is_transient() => Err(FundingFailure::Recorded(e.into())),
            // An HTTP or decoding failure (a proxy's 502 after the node took it): maybe sent,
            // the record stays.
            Err(e) if !matches!(e, RpcError::Rpc { .. }) => Err(FundingFailure::Recorded(e.into())),
            // Rejected by the node itself: nothing was sent, a later round may build a new one.
            // (Not split up: the node's reasons, such as a too long chain of unconfirmed
            // transactions or a low feerate, would reject each part as well.)
            Err(e) => {
                if let Err(d) = self.outbox.discard(&keys, &signed.txref).await {
                    warn!(chain = %self.params.chain, error = %d, "could not discard a rejected funding from the outbox");
                }
                Err(FundingFailure::Final(e.into()))
            }
        }
    }
}
