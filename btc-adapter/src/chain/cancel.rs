//! Cancelling a funding that was signed but is not on chain ([`Rail::cancel_lock`]): one of
//! its inputs is spent back to the wallet, so that the funding can never be mined after its
//! swap gave up (a wallet rebroadcasts its unconfirmed transactions; anyone who saw it may too).
//!
//! The cancel is recorded in the outbox before its broadcast, like the funding. Once it is as
//! deep as a lock must be, both records are discarded: a later lock of the same HTLC (a
//! responder whose counter-lock came back after a reorg) builds a new funding.

use bitcoin::consensus::encode::{deserialize, serialize};
use serde_json::{json, Value};
use swap_core::store::{SendKey, SignedTx};
use swap_core::TxKind;

use super::*;

/// An outbox read or write that failed: transient (the store may answer next time).
pub(super) fn outbox_error(e: swap_core::store::StoreError) -> ChainError {
    ChainError::transient(format!("outbox: {e}"))
}

/// What the wallet says about one of its transactions.
pub(super) struct WalletTx {
    /// Negative when it conflicts with a mined transaction.
    pub(super) confirmations: i64,
    /// The block the wallet says holds it.
    blockhash: Option<bitcoin::BlockHash>,
    tx: Transaction,
}

impl BtcChain {
    pub(super) async fn cancel_funding(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        if self.is_watch_only() {
            return Err(watch_only());
        }
        // No funding round meanwhile (it would broadcast the recorded funding again).
        let _no_round = self.funding.lock().await;
        let lock_key = self.send_key(htlc);
        let cancel_key = SendKey {
            kind: TxKind::Cancel,
            ..lock_key
        };
        let Some(recorded) = self.outbox.signed(&lock_key).await.map_err(outbox_error)? else {
            // Nothing was ever signed for this lock: nothing can be mined.
            return Ok(TxRef(String::new()));
        };
        let funding: Transaction = deserialize(&recorded.raw)
            .map_err(|e| permanent(format!("outbox funding {} unreadable: {e}", recorded.txref)))?;
        let fid = funding.compute_txid();
        if self
            .wallet_tx(fid)
            .await?
            .is_some_and(|w| w.confirmations > 0)
        {
            return Err(ChainError::new(
                Cause::AlreadySpent,
                format!("funding {fid} is mined: the lock is refunded, not cancelled"),
            ));
        }
        // In the mempool: the lock is on the rail (the swap sees it funded and refunds it once
        // mined; if it is evicted, a later call cancels it).
        if self
            .rpc
            .call::<Value>("getmempoolentry", vec![json!(fid.to_string())])
            .await
            .is_ok()
        {
            return Err(ChainError::new(
                Cause::AlreadySpent,
                format!("funding {fid} is in the mempool: the lock is refunded, not cancelled"),
            ));
        }
        let depth = i64::from(self.params.lock_confirmations.max(1));
        let done = |txref: TxRef| async move {
            self.outbox
                .discard(&[lock_key], &recorded.txref)
                .await
                .map_err(outbox_error)?;
            if !txref.0.is_empty() {
                self.outbox
                    .discard(&[cancel_key], &txref)
                    .await
                    .map_err(outbox_error)?;
            }
            info!(chain = %self.params.chain, swap_id = %htlc.swap_id, funding = %fid, "funding cancelled for good");
            Ok(txref)
        };
        if let Some(signed) = self
            .outbox
            .signed(&cancel_key)
            .await
            .map_err(outbox_error)?
        {
            let cancel: Transaction = deserialize(&signed.raw).map_err(|e| {
                permanent(format!("outbox cancel {} unreadable: {e}", signed.txref))
            })?;
            let conflicts = cancel.input.iter().any(|i| {
                funding
                    .input
                    .iter()
                    .any(|f| f.previous_output == i.previous_output)
            });
            if conflicts {
                let confirmations = self
                    .wallet_tx(cancel.compute_txid())
                    .await?
                    .map_or(0, |w| w.confirmations);
                if confirmations >= depth {
                    return done(signed.txref).await;
                }
                if confirmations > 0 {
                    return Err(ChainError::not_ready(format!(
                        "cancel {} has {confirmations} of {depth} confirmations",
                        signed.txref
                    )));
                }
                if self.funding_is_dead(&funding).await? {
                    return done(signed.txref).await;
                }
                return match self.rpc.send_raw_transaction(&cancel).await {
                    Ok(_) => Err(ChainError::not_ready(format!(
                        "cancel {} not mined yet",
                        signed.txref
                    ))),
                    Err(e) if e.is_transient() => Err(e.into()),
                    Err(e) => Err(ChainError::not_ready(format!(
                        "cancel {} refused for now ({e})",
                        signed.txref
                    ))),
                };
            }
            // A cancel of an earlier funding of this HTLC: not this one's.
            self.outbox
                .discard(&[cancel_key], &signed.txref)
                .await
                .map_err(outbox_error)?;
        }
        if self.funding_is_dead(&funding).await? {
            return done(TxRef(String::new())).await;
        }
        // Never again rebroadcast by the wallet, and its coins free to spend (refused when the
        // wallet never saw it, or while it is in the mempool: nothing to do then).
        let _ = self
            .rpc
            .wallet_call::<Value>("abandontransaction", vec![json!(fid.to_string())])
            .await;
        let cancel = self.build_cancel(&funding).await?;
        let signed = SignedTx {
            txref: TxRef(cancel.compute_txid().to_string()),
            raw: serialize(&cancel),
        };
        self.outbox
            .record_signed(&[cancel_key], &signed)
            .await
            .map_err(outbox_error)?;
        match self.rpc.send_raw_transaction(&cancel).await {
            Ok(txid) => {
                info!(chain = %self.params.chain, swap_id = %htlc.swap_id, funding = %fid, cancel = %txid, "funding cancel sent");
                Err(ChainError::not_ready(format!("cancel {txid} sent")))
            }
            Err(e) if e.is_transient() || !matches!(e, RpcError::Rpc { .. }) => Err(e.into()),
            Err(e) => {
                // Refused: nothing went out; the next call builds another.
                let _ = self.outbox.discard(&[cancel_key], &signed.txref).await;
                Err(ChainError::not_ready(format!(
                    "cancel refused for now ({e})"
                )))
            }
        }
    }

    /// A wallet transaction spending the funding's first input back to the wallet, at a
    /// feerate above the funding's (so that it also replaces it where it lingers).
    async fn build_cancel(&self, funding: &Transaction) -> Result<Transaction, ChainError> {
        let mut spent = 0u64;
        let mut first = None;
        for input in &funding.input {
            let parent = self
                .wallet_tx(input.previous_output.txid)
                .await?
                .ok_or_else(|| {
                    permanent(format!(
                        "funding input {} is not the wallet's",
                        input.previous_output
                    ))
                })?;
            let out = usize::try_from(input.previous_output.vout)
                .ok()
                .and_then(|i| parent.tx.output.get(i))
                .ok_or_else(|| permanent("funding input not in its parent"))?;
            spent += out.value.to_sat();
            first.get_or_insert(out.value.to_sat());
        }
        let (Some(value), Some(input)) = (first, funding.input.first()) else {
            return Err(permanent("funding without inputs"));
        };
        let paid: u64 = funding.output.iter().map(|o| o.value.to_sat()).sum();
        let vsize = funding.vsize() as u64;
        let funding_rate = spent.saturating_sub(paid).div_ceil(vsize.max(1));
        let feerate = self.feerate().await?.max(funding_rate + 1);
        let address = self.rpc.get_new_address("bech32").await?;
        let v: Value = self
            .rpc
            .wallet_call(
                "walletcreatefundedpsbt",
                vec![
                    json!([{ "txid": input.previous_output.txid.to_string(), "vout": input.previous_output.vout }]),
                    json!([{ address: crate::rpc::sats_to_coin_string(value) }]),
                    json!(0),
                    json!({
                        "add_inputs": false,
                        "subtractFeeFromOutputs": [0],
                        "fee_rate": feerate,
                        "replaceable": true,
                    }),
                ],
            )
            .await?;
        let psbt = v
            .get("psbt")
            .and_then(Value::as_str)
            .ok_or_else(|| permanent("walletcreatefundedpsbt: no psbt"))?;
        let psbt = self.rpc.wallet_process_psbt(psbt).await?;
        Ok(self.rpc.finalize_psbt(&psbt).await?)
    }

    /// True when the funding can never be mined: one of its inputs is spent by a mined
    /// transaction (it is not mined itself: checked before).
    pub(super) async fn funding_is_dead(&self, funding: &Transaction) -> Result<bool, ChainError> {
        for input in &funding.input {
            let o = input.previous_output;
            let unspent: Value = self
                .rpc
                .call(
                    "gettxout",
                    vec![json!(o.txid.to_string()), json!(o.vout), json!(false)],
                )
                .await?;
            if !unspent.is_null() {
                continue;
            }
            // Not in the chain's unspent set: spent by a mined transaction, or its parent is
            // not mined (then nothing is decided yet). The parent's block as the node has it
            // (the wallet follows the node with a lag: in a reorg it may still call a parent
            // mined that is no longer in the chain).
            let Some(block) = self.wallet_tx(o.txid).await?.and_then(|w| w.blockhash) else {
                continue;
            };
            let header = self.rpc.get_block_header(&block).await?;
            if header
                .get("confirmations")
                .and_then(Value::as_i64)
                .is_some_and(|c| c > 0)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `gettransaction`: `None` when the wallet does not know the transaction.
    pub(super) async fn wallet_tx(&self, txid: Txid) -> Result<Option<WalletTx>, ChainError> {
        let v: Value = match self
            .rpc
            .wallet_call("gettransaction", vec![json!(txid.to_string()), json!(true)])
            .await
        {
            Ok(v) => v,
            // -5: invalid or non-wallet transaction id.
            Err(RpcError::Rpc { code: -5, .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let confirmations = v.get("confirmations").and_then(Value::as_i64).unwrap_or(0);
        let hex = v
            .get("hex")
            .and_then(Value::as_str)
            .ok_or_else(|| permanent("gettransaction: no hex"))?;
        let raw = hex::decode(hex).map_err(permanent)?;
        let tx: Transaction = deserialize(&raw).map_err(permanent)?;
        let blockhash = v
            .get("blockhash")
            .and_then(Value::as_str)
            .and_then(|h| h.parse().ok());
        Ok(Some(WalletTx {
            confirmations,
            blockhash,
            tx,
        }))
    }
}
