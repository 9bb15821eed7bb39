//! A channel leg's status, from the co-signed states and, while the lock is in force, the
//! chain's secret registry (see the module docs of [`super`]).

use alloy::primitives::B256;
use alloy::providers::Provider;
use eth_adapter::channel::Lock;
use swap_core::params::{ChainTip, Finality};
use swap_core::rail::{Cause, ChainError, HtlcParams, HtlcStatus};
use swap_core::types::{Height, Preimage, Timestamp, TxRef};

use super::errors::{eth_err, invalid};
use super::trace::{End, Leg};
use super::{txref, ChannelRail};

impl ChannelRail {
    /// The latest block: its height and time, and its hash (a read less than
    /// [`super::TIP_FRESH`] old answers again).
    pub(super) async fn tip_block(&self) -> Result<(ChainTip, B256), ChainError> {
        let fresh = *self
            .last_tip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((tip, hash, _)) = fresh.filter(|(_, _, at)| at.elapsed() < super::TIP_FRESH) {
            return Ok((tip, hash));
        }
        let asked = std::time::Instant::now();
        let b = self
            .chain
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| eth_err(eth_adapter::tx::rpc_err(e)))?
            .ok_or_else(|| ChainError::new(Cause::Unavailable, "no latest block"))?;
        let tip = ChainTip {
            height: Height(b.header.number),
            time: Timestamp(b.header.timestamp),
        };
        let mut last = self
            .last_tip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two reads at once: the lower answer never replaces a higher one.
        if last.is_none_or(|(t, _, _)| t.height <= tip.height) {
            *last = Some((tip, b.header.hash, asked));
        }
        Ok((tip, b.header.hash))
    }

    /// `htlc`'s status. With `tip` (the block just read), a lock found not revealed on chain
    /// at that block is not looked up again until the chain has another tip: a reveal is a
    /// transaction, so the answer cannot change without a new block. Only "not revealed" is
    /// kept: it was read at `tip` or later, so it holds at `tip`.
    pub(super) async fn status(
        &self,
        htlc: &HtlcParams,
        tip: Option<(Height, B256)>,
    ) -> Result<HtlcStatus, ChainError> {
        let leg = self.leg(htlc)?;
        let t = self.trace(&leg)?;
        match (&t.added, &t.ended) {
            (Some(_), Some((v, End::Claimed(pre)))) => Ok(HtlcStatus::Claimed {
                preimage: Preimage::from_bytes(pre.0),
                txref: txref(leg.id, *v),
                finality: Finality::Irrevocable,
            }),
            (Some(_), Some((v, End::Cancelled))) => Ok(HtlcStatus::Refunded {
                txref: txref(leg.id, *v),
                finality: Finality::Irrevocable,
            }),
            (Some((v, l)), None) => {
                if let Some((pre, tx, finality)) =
                    self.revealed_at_tip(&leg, htlc.watch_from, tip).await?
                {
                    return Ok(HtlcStatus::Claimed {
                        preimage: Preimage::from_bytes(pre.0),
                        txref: tx,
                        finality: self.reveal_finality(finality),
                    });
                }
                Ok(HtlcStatus::Funded {
                    lock: self.observed(htlc, &leg, leg.id, *v, l),
                    finality: Finality::Irrevocable,
                })
            }
            // Proposed by us and not co-signed: pending, or abandoned but still completable by
            // the peer until a higher version is co-signed. Never Absent while it may come
            // into force (a swap that gave up on an Absent lock would no longer watch it).
            (None, _) => match t.proposed_lock(&leg) {
                Some((v, lock)) => {
                    let l = Lock {
                        from: lock.from,
                        amount: lock.amount,
                        hashlock: lock.hashlock,
                        expiry: lock.expiry,
                    };
                    Ok(HtlcStatus::Funded {
                        lock: self.observed(htlc, &leg, leg.id, v, &l),
                        finality: Finality::Mempool,
                    })
                }
                None => Ok(HtlcStatus::Absent),
            },
        }
    }

    /// An on-chain reveal is as final as the chain: once it is as deep as the chain's own
    /// HTLCs must be, the lock is the receiver's for good (it pays the receiver whenever the
    /// channel settles), which a channel leg's status says as `Irrevocable`, the finality
    /// its swaps wait for.
    fn reveal_finality(&self, at: Finality) -> Finality {
        let chain = swap_core::params::ChainParams::for_chain(self.params.chain);
        if at.reaches(chain.required_finality()) {
            Finality::Irrevocable
        } else {
            at
        }
    }

    /// Fails when `leg`'s hashlock is revealed in its contract's secret registry, at any
    /// time (a lock on it would be a payment). "Never revealed" is kept with the tip read
    /// before asking (the registry was read at that tip or a later one) for the next lock
    /// at that tip, and counts as "not revealed in time" for the leg's status at that tip
    /// too: its first status needs no read of its own.
    pub(super) async fn not_revealed(&self, leg: &Leg) -> Result<(), ChainError> {
        let (at, tip) = self.tip_block().await?;
        let kept = self
            .never_revealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&leg.hashlock)
            == Some(&tip);
        if kept {
            return Ok(());
        }
        self.count_lookup();
        let revealed = leg
            .chan
            .revealed_at(&self.chain.provider, leg.hashlock)
            .await
            .map_err(eth_err)?;
        if revealed.is_some() {
            return Err(invalid("the hashlock is already revealed on chain"));
        }
        for m in [&self.never_revealed, &self.unrevealed] {
            m.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(leg.hashlock, tip);
        }
        // The events' scan begins at this tip at the latest, so that the lock's statuses at
        // later tips read the blocks' events rather than the registry (a scan that cannot
        // start now starts at a later status).
        let _ = self
            .reveals
            .begin(&self.chain.provider, leg.chan.contract, at.height.0)
            .await;
        Ok(())
    }

    /// [`ChannelRail::revealed`], or "not revealed" when it was so at block `tip`, or when
    /// the registry's events read since `from` do not have it ([`super::reveals`]).
    async fn revealed_at_tip(
        &self,
        leg: &Leg,
        from: Height,
        tip: Option<(Height, B256)>,
    ) -> Result<Option<(B256, TxRef, Finality)>, ChainError> {
        let known = |t: &B256| {
            self.unrevealed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&leg.hashlock)
                == Some(t)
        };
        if let Some((height, hash)) = tip {
            if known(&hash) {
                return Ok(None);
            }
            let scanned = self
                .reveals
                .revealed_since(
                    &self.chain.provider,
                    leg.chan.contract,
                    leg.hashlock,
                    from.0,
                    (height.0, hash),
                )
                .await
                // The scan could not answer: the leg is asked about on its own.
                .unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "reveal events not read");
                    None
                });
            if scanned == Some(false) {
                self.remember_unrevealed(leg.hashlock, hash);
                return Ok(None);
            }
        }
        let found = self.revealed(leg, from).await?;
        if let (None, Some((_, t))) = (&found, tip) {
            self.remember_unrevealed(leg.hashlock, t);
        }
        Ok(found)
    }

    fn remember_unrevealed(&self, hashlock: B256, tip: B256) {
        self.unrevealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(hashlock, tip);
    }
}
