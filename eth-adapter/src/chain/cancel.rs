//! Cancelling a lock that was signed but is not mined ([`Rail::cancel_lock`]): a transfer of
//! nothing to ourselves with the same nonce and higher fees takes its place, so that the lock
//! can never be mined after its swap gave up (it may sit in mempools, or be broadcast again by
//! anyone who kept it).
//!
//! The cancel is recorded in the outbox before its broadcast, like the lock. Once the nonce is
//! used by a transaction as deep as a lock must be, both records are discarded.

use alloy::consensus::Transaction as _;
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::network::NetworkTransactionBuilder;
use swap_core::store::{SendKey, SignedTx, TxKind};
use swap_core::Cause;

use super::*;

pub(super) fn outbox_error(e: swap_core::store::StoreError) -> EthError {
    EthError::Rpc(format!("outbox: {e}"))
}

/// A signed transaction of the outbox, decoded.
pub(super) fn decode(raw: &[u8]) -> Result<alloy::consensus::TxEnvelope, EthError> {
    alloy::consensus::TxEnvelope::decode_2718(&mut &raw[..])
        .map_err(|e| EthError::Inconsistent(format!("outbox transaction unreadable: {e}")))
}

/// How a nonce of ours is used by mined transactions (see [`EthChain::nonce_use`]).
pub(super) enum NonceUse {
    /// Not as of the latest block.
    Free,
    /// Used, not yet as deep as a lock must be (`depth` blocks): a reorg could free it.
    Shallow { depth: u64 },
    /// Used, as deep as a lock must be.
    Deep,
}

impl EthChain {
    /// Whether a mined transaction of ours uses `nonce` as of `latest`, and how deep: a
    /// transaction recorded at that nonce is dead only once the use is a lock's depth deep.
    pub(super) async fn nonce_use(
        &self,
        nonce: u64,
        latest: &scan::ScanTip,
    ) -> Result<NonceUse, EthError> {
        let used_at = |block: u64| async move {
            self.provider
                .get_transaction_count(self.address())
                .block_id(alloy::eips::BlockId::number(block))
                .await
                .map_err(rpc_err)
        };
        if used_at(latest.number).await? <= nonce {
            return Ok(NonceUse::Free);
        }
        let depth = u64::from(self.cfg.params.lock_confirmations.max(1));
        if latest.number + 1 >= depth && used_at(latest.number + 1 - depth).await? > nonce {
            Ok(NonceUse::Deep)
        } else {
            Ok(NonceUse::Shallow { depth })
        }
    }

    pub(super) async fn cancel_lock_htlc(&self, p: &HtlcParams) -> Result<TxRef, ChainError> {
        self.signer()?;
        let h = EthHtlc::from_params(p)?;
        let _swap_guard = self.swap_guard(h.id()).await;
        let lock_key = SendKey {
            swap: p.swap_id,
            rail: self.cfg.params.rail(),
            kind: TxKind::Lock,
        };
        let cancel_key = SendKey {
            kind: TxKind::Cancel,
            ..lock_key
        };
        let Some(recorded) = self.outbox.signed(&lock_key).await.map_err(outbox_error)? else {
            // Nothing was ever signed for this lock: nothing can be mined.
            return Ok(TxRef(String::new()));
        };
        let lock = decode(&recorded.raw)?;
        let nonce = lock.nonce();
        let receipt = self
            .provider
            .get_transaction_receipt(*lock.tx_hash())
            .await
            .map_err(rpc_err)?;
        if receipt.as_ref().is_some_and(|r| r.status()) {
            return Err(ChainError::new(
                Cause::AlreadySpent,
                format!(
                    "lock {} is mined: it is refunded, not cancelled",
                    recorded.txref
                ),
            ));
        }
        let cancel = self
            .outbox
            .signed(&cancel_key)
            .await
            .map_err(outbox_error)?;
        let cancel = match cancel {
            Some(c) if decode(&c.raw)?.nonce() == nonce => Some(c),
            Some(stale) => {
                // The cancel of an earlier lock of this swap: not this one's.
                self.outbox
                    .discard(&[cancel_key], &stale.txref)
                    .await
                    .map_err(outbox_error)?;
                None
            }
            None => None,
        };
        // Is the nonce used by a transaction deep enough (the lock reverted, our cancel, or
        // anything else of ours)? Then the lock can never be mined.
        let latest = scan::latest(&self.provider).await?;
        match self.nonce_use(nonce, &latest).await? {
            NonceUse::Free => {}
            NonceUse::Shallow { depth } => {
                return Err(ChainError::not_ready(format!(
                    "nonce {nonce} of lock {} is used; waiting for {depth} confirmations",
                    recorded.txref
                )))
            }
            NonceUse::Deep => {
                self.outbox
                    .discard(&[lock_key], &recorded.txref)
                    .await
                    .map_err(outbox_error)?;
                let txref = match cancel {
                    Some(c) => {
                        self.outbox
                            .discard(&[cancel_key], &c.txref)
                            .await
                            .map_err(outbox_error)?;
                        c.txref
                    }
                    None => TxRef(String::new()),
                };
                tracing::info!(chain = "eth", swap_id = %p.swap_id, lock = %recorded.txref, "lock cancelled for good");
                return Ok(txref);
            }
        }
        let signed = match cancel {
            Some(c) => c,
            None => {
                let signed = self.sign_cancel(&lock, latest.base_fee).await?;
                self.outbox
                    .record_signed(&[cancel_key], &signed)
                    .await
                    .map_err(outbox_error)?;
                signed
            }
        };
        match self.provider.send_raw_transaction(&signed.raw).await {
            Ok(_) => {
                tracing::info!(chain = "eth", swap_id = %p.swap_id, lock = %recorded.txref, cancel = %signed.txref, "lock cancel sent");
                // Above a free nonce it would wait for this account's next send.
                let fees = decode(&signed.raw)?;
                if let Err(e) = self
                    .fill_gap_below(
                        nonce,
                        fees.max_fee_per_gas(),
                        fees.max_priority_fee_per_gas().unwrap_or(0),
                    )
                    .await
                {
                    tracing::warn!(chain = "eth", swap_id = %p.swap_id, error = %e, "a free nonce below a cancel not filled");
                }
                Err(ChainError::not_ready(format!(
                    "cancel {} not mined yet",
                    signed.txref
                )))
            }
            Err(e) => {
                let e = rpc_err(e);
                if e.is_transient() {
                    return Err(e.into());
                }
                // Already known, or its nonce just got used: the next call sees which.
                Err(ChainError::not_ready(format!(
                    "cancel {}: {e}",
                    signed.txref
                )))
            }
        }
    }

    /// A transfer of nothing to ourselves with the lock's nonce, paying more than the lock
    /// (12.5 % more: a node needs 10 % to replace it; and at least the current base fee twice).
    /// Not held to the configured fee caps: it costs 21,000 gas, and it is what keeps the funds.
    async fn sign_cancel(
        &self,
        lock: &alloy::consensus::TxEnvelope,
        base_fee: Option<u128>,
    ) -> Result<SignedTx, EthError> {
        let bump = |fee: u128| fee + fee / 8 + 1;
        let prio = bump(lock.max_priority_fee_per_gas().unwrap_or(0)).max(1_000_000_000);
        let max_fee = bump(lock.max_fee_per_gas()).max(base_fee.unwrap_or(0) * 2 + prio);
        self.sign_transfer_to_self(lock.nonce(), max_fee, prio)
            .await
    }

    /// A transfer of nothing to ourselves at `nonce` with these fees.
    pub(super) async fn sign_transfer_to_self(
        &self,
        nonce: u64,
        max_fee: u128,
        prio: u128,
    ) -> Result<SignedTx, EthError> {
        let wallet = EthereumWallet::from(self.signer()?.clone());
        let envelope = TransactionRequest::default()
            .with_from(self.address())
            .with_to(self.address())
            .with_value(U256::ZERO)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id().await?)
            .with_gas_limit(21_000)
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(prio)
            .build(&wallet)
            .await
            .map_err(|e| EthError::InvalidParams(format!("signing: {e}")))?;
        Ok(SignedTx {
            txref: txref(*envelope.tx_hash()),
            raw: envelope.encoded_2718(),
        })
    }
}
