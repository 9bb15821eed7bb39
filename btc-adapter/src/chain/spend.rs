//! Spending HTLCs: claims and refunds, their fees, fee bumps and replacing a refund.

use super::status::classify;
use super::*;

impl BtcChain {
    /// The feerate to pay (sat/vB): the node's estimate within the configured bounds. One
    /// estimate per scanned block (a round of claims asks once, not once each).
    pub(super) async fn feerate(&self) -> Result<u64, ChainError> {
        let height = self
            .scanned_height
            .load(std::sync::atomic::Ordering::Relaxed);
        let cached = *self
            .fee_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // (Zero: no scan yet.)
        if let Some((_, rate)) = cached.filter(|(at, _)| *at == height && height > 0) {
            return Ok(rate);
        }
        let estimate = self.rpc.estimate_smart_fee(self.fees.conf_target).await?;
        let rate = estimate.unwrap_or(self.fees.fallback_sat_vb).clamp(
            self.fees.min_sat_vb,
            self.fees.max_sat_vb.max(self.fees.min_sat_vb),
        );
        *self
            .fee_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((height, rate));
        Ok(rate)
    }

    pub(super) async fn payout_script(
        &self,
        st: &mut State,
        script: &ScriptBuf,
    ) -> Result<ScriptBuf, ChainError> {
        if let Some(s) = st.payout.get(script) {
            return Ok(s.clone());
        }
        let s = match &self.payout {
            Payout::Script(s) => s.clone(),
            Payout::NodeWallet => match st.payout_pool.pop() {
                Some(s) => s,
                None => {
                    // New wallet addresses for this and the other watched swaps that will
                    // want one (one batch request instead of two calls per claim or refund;
                    // each swap still gets its own address).
                    let waiting = st.swaps.len().saturating_sub(st.payout.len());
                    let n = waiting.clamp(1, PAYOUT_PREFETCH);
                    let addrs = self.rpc.get_new_addresses(n, "bech32").await?;
                    let mut pool = addrs
                        .iter()
                        .map(|a| crate::network::address_script(self.params.chain, a))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| permanent(format!("node wallet address: {e}")))?;
                    let s = pool
                        .pop()
                        .ok_or_else(|| permanent("node gave no address"))?;
                    st.payout_pool = pool;
                    s
                }
            },
        };
        st.payout.insert(script.clone(), s.clone());
        Ok(s)
    }

    pub(super) fn our_key(
        &self,
        params: &HtlcParams,
        role: SpendKind,
    ) -> Result<SwapKey, ChainError> {
        let key = self.swap_key(params.key_index)?;
        let expected = match role {
            SpendKind::Claim => params.recipient,
            SpendKind::Refund => params.sender,
        };
        if expected != Account::PublicKey(key.public_key_bytes()) {
            return Err(permanent(format!(
                "our key {} (index {}) is not the HTLC's {} key",
                key.public_key(),
                params.key_index,
                match role {
                    SpendKind::Claim => "claim",
                    SpendKind::Refund => "refund",
                }
            )));
        }
        Ok(key)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        &self,
        w: &Watched,
        kind: SpendKind,
        key: &SwapKey,
        preimage: Option<&Preimage>,
        funding: &Funding,
        destination: &ScriptBuf,
        feerate: u64,
    ) -> Result<SignedSpend, ChainError> {
        let out = HtlcOutput {
            outpoint: funding.outpoint,
            value: funding.value,
        };
        let fee = FeePolicy {
            feerate_sat_vb: feerate,
            max_fee_bps: self.fees.max_fee_bps,
        };
        match (kind, preimage) {
            (SpendKind::Claim, Some(p)) => build_claim(&w.htlc, out, destination, fee, key, p),
            (SpendKind::Refund, _) => build_refund(&w.htlc, out, destination, fee, key),
            (SpendKind::Claim, None) => Err(TxError::WrongPreimage),
        }
        .map_err(tx_error)
    }

    pub(super) async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        match self.rpc.send_raw_transaction(tx).await {
            Ok(txid) => Ok(txid),
            Err(e) if e.is_non_final() => Err(ChainError::not_ready(format!(
                "not final yet (timelock): {e}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a first claim or refund for `funding`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn spend(
        &self,
        st: &mut State,
        w: &Watched,
        script: &ScriptBuf,
        kind: SpendKind,
        key: &SwapKey,
        preimage: Option<&Preimage>,
        funding: &Funding,
    ) -> Result<TxRef, ChainError> {
        let destination = self.payout_script(st, script).await?;
        let feerate = self.feerate().await?;
        let signed = self.build(w, kind, key, preimage, funding, &destination, feerate)?;
        let txid = self.broadcast(&signed.tx).await?;
        info!(chain = %self.params.chain, swap_id = %w.params.swap_id, %txid, vsize = signed.vsize, fee = signed.fee, ?kind, "htlc spend sent");
        // Shown in the mempool view at once: a status read from the scan made before this
        // broadcast would otherwise still say "funded" and ask for the claim again.
        record_spend(st, script, kind, feerate, None, signed.tx);
        Ok(TxRef(txid.to_string()))
    }

    /// Replaces an unconfirmed spend with a higher fee when it has waited long enough.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn maybe_bump(
        &self,
        st: &mut State,
        w: &Watched,
        script: &ScriptBuf,
        kind: SpendKind,
        key: &SwapKey,
        preimage: Option<&Preimage>,
        funding: &Funding,
        current: &Spend,
    ) -> Result<TxRef, ChainError> {
        let pending = match st.pending.get(script) {
            Some(p) if p.txid == current.txid => p.clone(),
            _ => {
                // Sent before a restart (or by another instance): start the clock now.
                let out: u64 = current.tx.output.iter().map(|o| o.value.to_sat()).sum();
                let vsize = current.tx.vsize() as u64;
                let p = Pending {
                    kind,
                    txid: current.txid,
                    feerate: funding.value.saturating_sub(out) / vsize.max(1),
                    broadcast_height: st.tip,
                };
                st.pending.insert(script.clone(), p.clone());
                p
            }
        };
        let current_ref = TxRef(current.txid.to_string());
        if st.tip < pending.broadcast_height + u64::from(self.fees.bump_after_blocks) {
            return Ok(current_ref);
        }
        let (incremental, _) = self.rpc.relay_feerates().await?;
        let estimate = self.feerate().await?;
        let feerate = estimate
            .max(pending.feerate + pending.feerate / 4)
            .max(pending.feerate + incremental)
            .min(self.fees.max_sat_vb);
        if feerate <= pending.feerate {
            warn!(swap_id = %w.params.swap_id, "spend stuck at the maximum feerate");
            return Ok(current_ref);
        }
        // Pay the same destination as the spend being replaced.
        let destination = match current.tx.output.first() {
            Some(o) => o.script_pubkey.clone(),
            None => self.payout_script(st, script).await?,
        };
        let signed = match self.build(w, kind, key, preimage, funding, &destination, feerate) {
            Ok(s) => s,
            Err(e) => {
                warn!(swap_id = %w.params.swap_id, error = %e, "fee bump refused");
                return Ok(current_ref);
            }
        };
        let txid = match self.broadcast(&signed.tx).await {
            Ok(txid) => txid,
            Err(e) if !e.is_transient() => {
                // E.g. a Litecoin node without -mempoolreplacement ("txn-mempool-conflict"):
                // the original spend stays valid and pending.
                warn!(swap_id = %w.params.swap_id, error = %e, "fee bump rejected by the node");
                return Ok(current_ref);
            }
            Err(e) => return Err(e),
        };
        info!(chain = %self.params.chain, swap_id = %w.params.swap_id, old = %current.txid, %txid, feerate, "fee bump sent");
        record_spend(st, script, kind, feerate, Some(current.txid), signed.tx);
        Ok(TxRef(txid.to_string()))
    }

    /// Claims `funding` by replacing `refund`, the counterparty's unconfirmed refund of it
    /// (BIP-125; our claims and refunds signal RBF). The claim pays the least fee the node
    /// accepts for the replacement (the refund's fee plus the incremental relay feerate times
    /// the claim's vsize, at a feerate strictly above the refund's), or our usual feerate if
    /// that is more, within `max_sat_vb` and `max_fee_bps` (else the transient fee-too-high
    /// error). A rejection by the node (e.g. the refund was bumped meanwhile, or mined) is
    /// transient: the retry acts on a fresh scan.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn replace_refund(
        &self,
        st: &mut State,
        w: &Watched,
        script: &ScriptBuf,
        key: &SwapKey,
        preimage: Option<&Preimage>,
        funding: &Funding,
        refund: &Spend,
    ) -> Result<TxRef, ChainError> {
        let Some(preimage) = preimage else {
            return Err(tx_error(TxError::WrongPreimage));
        };
        // What the refund pays: the funding minus its outputs. (Ours have no other input; a
        // refund with more inputs, or with children in the mempool, needs more than this: the
        // node rejects the claim, a transient error, until the refund is mined.)
        let out: u64 = refund.tx.output.iter().map(|o| o.value.to_sat()).sum();
        let replaced = Replaced {
            fee: funding.value.saturating_sub(out),
            vsize: refund.tx.vsize() as u64,
        };
        let (incremental, _) = self.rpc.relay_feerates().await?;
        let policy = ReplacementPolicy {
            feerate_sat_vb: self.feerate().await?,
            incremental_sat_vb: incremental,
            max_sat_vb: self.fees.max_sat_vb,
            max_fee_bps: self.fees.max_fee_bps,
            replaced,
        };
        let destination = self.payout_script(st, script).await?;
        let output = HtlcOutput {
            outpoint: funding.outpoint,
            value: funding.value,
        };
        let signed = build_replacement_claim(&w.htlc, output, &destination, policy, key, preimage)
            .map_err(tx_error)?;
        let txid = match self.rpc.send_raw_transaction(&signed.tx).await {
            Ok(txid) => txid,
            Err(e) => {
                warn!(chain = %self.params.chain, swap_id = %w.params.swap_id, replaced = %refund.txid, error = %e, "claim replacing the refund rejected");
                return Err(ChainError::transient(format!(
                    "claim replacing refund {} rejected: {e}",
                    refund.txid
                )));
            }
        };
        info!(chain = %self.params.chain, swap_id = %w.params.swap_id, replaced = %refund.txid, %txid, fee = signed.fee, refund_fee = replaced.fee, vsize = signed.vsize, "claim sent, replacing the counterparty's refund");
        record_spend(
            st,
            script,
            SpendKind::Claim,
            signed.feerate_sat_vb,
            Some(refund.txid),
            signed.tx,
        );
        Ok(TxRef(txid.to_string()))
    }

    /// Replaces every claim or refund of this process that has waited `bump_after_blocks`
    /// unconfirmed, with a higher fee. Returns the replacements.
    pub async fn bump_fees(
        &self,
        preimages: &HashMap<swap_core::SwapId, Preimage>,
    ) -> Result<Vec<TxRef>, ChainError> {
        let mut st = self.state.lock().await;
        self.sync(&mut st).await?;
        let mut out = Vec::new();
        let pending: Vec<(ScriptBuf, Pending)> = st
            .pending
            .iter()
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect();
        for (script, p) in pending {
            let Some(w) = st.swaps.get(&script).cloned() else {
                continue;
            };
            let (_, funding, spend) = self.status(&st, &w, &script);
            let (Some(funding), Some(spend)) = (funding, spend) else {
                continue;
            };
            if spend.height.is_some() {
                continue;
            }
            // Our refund was replaced by the counterparty's claim (or the other way round):
            // that spend is theirs, not ours to bump. (A refund never replaces a claim: the
            // claim reveals the secret.)
            let spent_as = match classify(&w.htlc, &spend, st.tip) {
                HtlcStatus::Claimed { .. } => SpendKind::Claim,
                _ => SpendKind::Refund,
            };
            if spent_as != p.kind {
                continue;
            }
            let key = self.our_key(&w.params, p.kind)?;
            let preimage = preimages.get(&w.params.swap_id);
            if p.kind == SpendKind::Claim && preimage.is_none() {
                continue;
            }
            let r = self
                .maybe_bump(
                    &mut st, &w, &script, p.kind, &key, preimage, &funding, &spend,
                )
                .await?;
            if r.0 != spend.txid.to_string() {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub(super) async fn spend_or_bump(
        &self,
        params: &HtlcParams,
        kind: SpendKind,
        preimage: Option<&Preimage>,
        asked: std::time::Instant,
    ) -> Result<TxRef, ChainError> {
        let key = self.our_key(params, kind)?;
        let mut st = self.state.lock().await;
        let (w, script) = self.register(&mut st, params)?;
        self.sync_since(&mut st, asked).await?;
        let (_, funding, spend) = self.status(&st, &w, &script);
        let Some(funding) = funding else {
            return Err(ChainError::not_ready(
                "HTLC not funded (or funding not seen yet)",
            ));
        };
        match spend {
            // The funding we act on is spent: by us (idempotent answer, maybe a fee bump) or
            // through the other branch.
            Some(spend) => match (classify(&w.htlc, &spend, st.tip), kind) {
                (HtlcStatus::Claimed { .. }, SpendKind::Refund) => Err(permanent(
                    "HTLC already claimed: the secret is in htlc_status",
                )),
                // Their refund is only in the mempool: our claim replaces it (BIP-125).
                (HtlcStatus::Refunded { .. }, SpendKind::Claim) if spend.height.is_none() => {
                    self.replace_refund(&mut st, &w, &script, &key, preimage, &funding, &spend)
                        .await
                }
                (HtlcStatus::Refunded { .. }, SpendKind::Claim) => Err(ChainError::new(
                    Cause::AlreadySpent,
                    "HTLC already refunded",
                )),
                _ if spend.height.is_some() => Ok(TxRef(spend.txid.to_string())),
                _ => {
                    self.maybe_bump(&mut st, &w, &script, kind, &key, preimage, &funding, &spend)
                        .await
                }
            },
            None => {
                if kind == SpendKind::Refund && st.tip < u64::from(w.htlc.expiry_height()) {
                    return Err(ChainError::new(
                        Cause::NotReady {
                            until: Some(swap_core::Expiry::Height(Height(u64::from(
                                w.htlc.expiry_height(),
                            )))),
                        },
                        format!(
                            "not refundable before height {} (tip {})",
                            w.htlc.expiry_height(),
                            st.tip
                        ),
                    ));
                }
                self.spend(&mut st, &w, &script, kind, &key, preimage, &funding)
                    .await
            }
        }
    }
}

/// Records `tx`, our broadcast spend of `script` (replacing the unconfirmed spend `replaced`,
/// if any), as its pending spend, and shows it in the mempool view right away.
pub(super) fn record_spend(
    st: &mut State,
    script: &ScriptBuf,
    kind: SpendKind,
    feerate: u64,
    replaced: Option<Txid>,
    tx: Transaction,
) {
    let txid = tx.compute_txid();
    st.pending.insert(
        script.clone(),
        Pending {
            kind,
            txid,
            feerate,
            broadcast_height: st.tip,
        },
    );
    if let Some(replaced) = replaced {
        st.mempool.remove(&replaced);
    }
    st.mempool.insert(txid, Some(tx));
    let txs: Vec<&Transaction> = st.mempool.values().flatten().collect();
    st.scanner.set_mempool(txs);
}
