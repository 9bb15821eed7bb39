//! Locks found by hashlock whatever their other parameters: how a wrong lock is told apart.

use super::*;
use swap_core::Finality;

/// A lock found by hashlock: its parameters as the chain has them, whether it is still locked,
/// and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLock {
    /// The lock's parameters (compare them with the agreed terms).
    pub htlc: EthHtlc,
    /// The swap id of those parameters.
    pub id: B256,
    /// True while it is locked (neither claimed nor refunded).
    pub locked: bool,
    /// The lock transaction.
    pub tx: B256,
    /// Depth of the lock transaction.
    pub confirmations: u32,
}

impl EthChain {
    /// Every lock with this hashlock since block `from`, whatever its other parameters.
    ///
    /// [`Rail::htlc_status`] only ever reports the lock whose parameters are exactly the agreed
    /// ones (the swap id commits to all of them), so a lock with, say, the wrong amount shows up
    /// there as `Absent`. This tells the engine what is on chain instead, so it can refuse a
    /// wrong lock and say why.
    pub async fn locks_with_hashlock(
        &self,
        hashlock: B256,
        from: u64,
    ) -> Result<Vec<FoundLock>, EthError> {
        let tip = scan::latest(&self.provider).await?;
        self.locks_with_hashlock_at(hashlock, from, tip).await
    }

    /// Locks under `h`'s hashlock that the shared scan found (any parameters), as of `tip`.
    pub(super) async fn scanned_locks_with_hashlock(
        &self,
        h: &EthHtlc,
        tip: ScanTip,
    ) -> Vec<FoundLock> {
        let scanner = self.scanner.lock().await;
        scanner
            .locks_with_hashlock(h.hashlock)
            .into_iter()
            .map(|l| FoundLock {
                htlc: l.htlc,
                id: l.id,
                locked: l.locked,
                tx: l.tx,
                confirmations: (tip.number.saturating_sub(l.block) + 1) as u32,
            })
            .collect()
    }

    /// How `htlc_status` reports a lock by the agreed sender with other parameters.
    pub(super) fn foreign_lock_status(
        &self,
        htlc: &HtlcParams,
        other: FoundLock,
    ) -> Result<HtlcStatus, ChainError> {
        let asset = if other.htlc.token == Address::ZERO {
            swap_core::Asset::Eth
        } else {
            swap_core::Asset::Erc20 {
                token: core_addr(other.htlc.token),
                decimals: match &htlc.asset {
                    swap_core::Asset::Erc20 { token, decimals }
                        if *token == core_addr(other.htlc.token) =>
                    {
                        *decimals
                    }
                    _ => 0,
                },
            }
        };
        Ok(HtlcStatus::Funded {
            lock: ObservedLock {
                txref: txref(other.tx),
                amount: other.htlc.core_amount(&asset),
                asset,
                sender: Account::Evm(core_addr(other.htlc.sender)),
                recipient: Account::Evm(core_addr(other.htlc.recipient)),
                hashlock: other.htlc.core_hashlock(),
                expiry: Expiry::Time(Timestamp(other.htlc.expiry)),
            },
            finality: Finality::confirmations(other.confirmations),
        })
    }

    /// The HTLC contract's storage slot `id` in block `hash` (each read once per block).
    pub(super) async fn slot_at(&self, id: B256, hash: B256) -> Result<U256, EthError> {
        let cached = self
            .at_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at(hash)
            .slots
            .get(&id)
            .copied();
        if let Some(v) = cached {
            return Ok(v);
        }
        let v = self
            .provider
            .get_storage_at(self.cfg.htlc, id.into())
            .block_id(hash.into())
            .await
            .map_err(rpc_err)?;
        self.at_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at(hash)
            .slots
            .insert(id, v);
        Ok(v)
    }

    /// [`Self::locks_with_hashlock`] as of block `tip` (each answered once per block).
    pub(super) async fn locks_with_hashlock_at(
        &self,
        hashlock: B256,
        from: u64,
        tip: ScanTip,
    ) -> Result<Vec<FoundLock>, EthError> {
        let cached = self
            .at_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at(tip.hash)
            .locks
            .get(&(hashlock, from))
            .cloned();
        if let Some(v) = cached {
            return Ok(v);
        }
        let out = self.read_locks_with_hashlock(hashlock, from, tip).await?;
        self.at_block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .at(tip.hash)
            .locks
            .insert((hashlock, from), out.clone());
        Ok(out)
    }

    pub(super) async fn read_locks_with_hashlock(
        &self,
        hashlock: B256,
        from: u64,
        tip: ScanTip,
    ) -> Result<Vec<FoundLock>, EthError> {
        let events = scan::locks_with_hashlock(
            &self.provider,
            self.cfg.htlc,
            hashlock,
            from,
            tip.number,
            self.cfg.log_chunk,
        )
        .await?;
        let mut out = Vec::new();
        for e in events {
            let EventKind::Locked(htlc) = e.kind else {
                continue;
            };
            let slot = self.slot_at(e.id, tip.hash).await?;
            out.push(FoundLock {
                htlc,
                id: e.id,
                locked: slot == U256::from(1),
                tx: e.tx,
                confirmations: (tip.number.saturating_sub(e.block) + 1) as u32,
            });
        }
        Ok(out)
    }
}
