//! Funding HTLCs from the node wallet: concurrent locks batched into one transaction.

use super::*;

impl BtcChain {
    /// Rebroadcasts a funding this process sent that the node no longer shows.
    pub(super) async fn rebroadcast_lock(&self, tx: &Transaction) -> Result<TxRef, ChainError> {
        match self.rpc.send_raw_transaction(tx).await {
            Ok(txid) => Ok(TxRef(txid.to_string())),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => Err(permanent(format!(
                "our funding {} is no longer valid ({e}); not funding twice",
                tx.compute_txid()
            ))),
        }
    }

    /// The batch leader's work (called with `funder` held): takes every queued lock request,
    /// answers those whose HTLC got funded since they were checked, and funds the others with
    /// as few transactions as [`MAX_FUNDING_OUTPUTS`] allows. Every request taken is answered
    /// (or dropped with this future, which its caller sees as a transient error).
    pub(super) async fn fund_queued(&self) {
        let mut st = self.state.lock().await;
        let mut queue = std::mem::take(&mut st.lock_queue);
        // A caller that gave up does not get funded (it may never want to be again).
        queue.retain(|r| !r.reply.is_closed());
        if queue.is_empty() {
            return;
        }
        // Each request was checked against a fresh scan, but the leader may have waited since:
        // scan again, unless no sync started since every request was checked (a lone lock).
        if queue.iter().any(|r| r.checked_gen != st.sync_gen) {
            if let Err(e) = self.sync(&mut st).await {
                for r in queue {
                    let _ = r.reply.send(Err(e.clone()));
                }
                return;
            }
        }
        let mut outputs: Vec<FundingOutput> = Vec::new();
        let mut by_script: HashMap<ScriptBuf, usize> = HashMap::new();
        let mut sent: HashMap<Txid, (Transaction, Vec<LockRequest>)> = HashMap::new();
        for r in queue {
            if let (_, Some(funding), _) = self.status(&st, &r.w, &r.script) {
                let _ = r.reply.send(Ok(TxRef(funding.outpoint.txid.to_string())));
            } else if let Some((tx, _)) = st.locks_sent.get(&r.script) {
                // Funded by us after this request was checked (e.g. a concurrent call for the
                // same HTLC): make sure it is out, never fund again.
                sent.entry(tx.compute_txid())
                    .or_insert_with(|| (tx.clone(), Vec::new()))
                    .1
                    .push(r);
            } else if let Some(&i) = by_script.get(&r.script) {
                outputs[i].requests.push(r);
            } else {
                by_script.insert(r.script.clone(), outputs.len());
                outputs.push(FundingOutput { requests: vec![r] });
            }
        }
        for (tx, requests) in sent.into_values() {
            let answer = self.rebroadcast_lock(&tx).await;
            for r in requests {
                let _ = r.reply.send(answer.clone());
            }
        }
        let mut outputs = outputs.into_iter();
        loop {
            let batch: Vec<FundingOutput> = outputs.by_ref().take(MAX_FUNDING_OUTPUTS).collect();
            if batch.is_empty() {
                break;
            }
            self.fund_batch(&mut st, batch).await;
        }
    }

    /// Funds `batch` with one transaction and answers its requests. When the wallet cannot
    /// build that transaction, funds each output on its own, so that one output the wallet
    /// refuses or cannot afford does not fail the others.
    pub(super) async fn fund_batch(&self, st: &mut State, batch: Vec<FundingOutput>) {
        let failure = match self.send_funding(st, &batch).await {
            Ok(txid) => {
                info!(chain = %self.params.chain, count = batch.len(), %txid, "funding batch sent");
                for output in batch {
                    self.answer_funded(output, txid);
                }
                return;
            }
            Err(FundingFailure::WalletRefused(e)) if batch.len() > 1 => {
                warn!(chain = %self.params.chain, count = batch.len(), error = %e, "funding batch refused; funding its HTLCs one by one");
                for output in batch {
                    match self.send_funding(st, std::slice::from_ref(&output)).await {
                        Ok(txid) => self.answer_funded(output, txid),
                        Err(FundingFailure::WalletRefused(e) | FundingFailure::Final(e)) => {
                            for r in output.requests {
                                let _ = r.reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
                return;
            }
            Err(FundingFailure::WalletRefused(e) | FundingFailure::Final(e)) => e,
        };
        for output in batch {
            for r in output.requests {
                let _ = r.reply.send(Err(failure.clone()));
            }
        }
    }

    pub(super) fn answer_funded(&self, output: FundingOutput, txid: Txid) {
        let first = output.first();
        info!(chain = %self.params.chain, swap_id = %first.w.params.swap_id, %txid, amount = first.amount, "htlc funded");
        for r in output.requests {
            let _ = r.reply.send(Ok(TxRef(txid.to_string())));
        }
    }

    /// Builds, signs and broadcasts one wallet transaction paying every output of `batch`
    /// (recorded in `locks_sent` before the broadcast).
    pub(super) async fn send_funding(
        &self,
        st: &mut State,
        batch: &[FundingOutput],
    ) -> Result<Txid, FundingFailure> {
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
            .map(|o| (o.first().address.as_str(), o.first().amount))
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
                .filter(|out| {
                    out.script_pubkey == o.first().script && out.value.to_sat() == o.first().amount
                })
                .count();
            if paying != 1 {
                return Err(FundingFailure::Final(permanent(
                    "wallet built a funding that does not pay each HTLC exactly once",
                )));
            }
        }
        let now = std::time::Instant::now();
        for o in batch {
            st.locks_sent
                .insert(o.first().script.clone(), (tx.clone(), now));
        }
        match self.rpc.send_raw_transaction(&tx).await {
            Ok(txid) => Ok(txid),
            Err(e) if e.is_transient() => Err(FundingFailure::Final(e.into())),
            Err(e) => {
                // Rejected: nothing was sent, a retry may build a new one. (Not split up: the
                // node's reasons, such as a too long chain of unconfirmed transactions or a low
                // feerate, would reject each part as well.)
                for o in batch {
                    st.locks_sent.remove(&o.first().script);
                }
                Err(FundingFailure::Final(e.into()))
            }
        }
    }
}
