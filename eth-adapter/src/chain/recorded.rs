//! Transactions recorded before their broadcast (the outbox), on their way again after a
//! restart or by another process: rebroadcast, judged dead, or unblocked by filling a nonce
//! gap below them.

use swap_core::store::SignedTx;

use super::*;

/// How long a gap in this account's nonces must stay put before it is filled (see
/// [`EthChain::fill_gap_below`]): far above the milliseconds a round's broadcasts take.
const GAP_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

impl EthChain {
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
}
