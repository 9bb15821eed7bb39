//! Signing, recording, broadcasting and resuming the watcher's transactions.

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;

use eth_adapter::bindings::Channel;
use eth_adapter::tx::{capped_fees, gas_limit, rpc_err, scrub_urls};
use eth_adapter::EthError;

use super::outbox::{Recorded, TxRecord, TxStatus};
use super::{Action, Finished, Planned, WatchError, Watcher};

/// What sending an action came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Broadcast (new, or a recorded one again).
    Sent(B256),
    /// A transaction of this intent is recorded and known to the node: wait for it.
    Waiting(B256),
    /// A transaction of this intent was mined already.
    Done,
    /// Its transactions reverted this often: not tried again.
    GaveUp(u64),
}

/// An error from a contract view call: transport errors classified as elsewhere, anything
/// else a rejection.
pub(super) fn contract_err(e: alloy::contract::Error) -> WatchError {
    match e {
        alloy::contract::Error::TransportError(t) => WatchError::Node(rpc_err(t)),
        other => WatchError::Node(EthError::Rejected(scrub_urls(&other.to_string()))),
    }
}

/// A node error on `intent`, with a revert decoded into the channel's typed errors.
fn typed(intent: &str, e: EthError) -> WatchError {
    match e {
        EthError::WouldRevert(r) => match r.channel() {
            Some(error) => WatchError::Refused {
                intent: intent.to_string(),
                error,
            },
            None => WatchError::WouldRevert {
                intent: intent.to_string(),
                revert: r,
            },
        },
        other => WatchError::Node(other),
    }
}

impl Watcher {
    async fn chain_id(&mut self) -> Result<u64, WatchError> {
        if let Some(id) = self.chain_id {
            return Ok(id);
        }
        let id = self.provider.get_chain_id().await.map_err(rpc_err)?;
        self.chain_id = Some(id);
        Ok(id)
    }

    /// The calldata of `p` (a reveal's preimage is filled in here, from the secrets source).
    fn input_of(&self, p: &Planned) -> Result<alloy::primitives::Bytes, WatchError> {
        if let Action::Reveal { hashlock, .. } = &p.action {
            let preimage = self
                .secrets
                .preimage(hashlock)
                .filter(|pre| crate::hashlock_of(pre) == *hashlock)
                .ok_or(WatchError::NoPreimage(*hashlock))?;
            return Ok(Channel::revealCall { preimage }.abi_encode().into());
        }
        Ok(p.input.clone())
    }

    /// Where `p`'s intent stands in the store: `Some` when nothing new may be sent.
    async fn existing(&self, p: &Planned) -> Result<Option<Outcome>, WatchError> {
        let me = self.address();
        let intent = p.action.intent();
        if let Some(r) = self.store.live_tx(me, &intent)? {
            if r.status == TxStatus::Pending {
                return Ok(Some(Outcome::Waiting(r.hash)));
            }
            // Mined: done, unless a reorg took it away (the chain needs it again).
            let receipt = self
                .provider
                .get_transaction_receipt(r.hash)
                .await
                .map_err(rpc_err)?;
            if receipt.is_some() {
                return Ok(Some(Outcome::Done));
            }
            self.store.finish_tx(
                r.hash,
                TxStatus::Mined,
                TxStatus::Reorged,
                Some("receipt gone"),
            )?;
        }
        let reverts = self.store.count_txs(me, &intent, TxStatus::Reverted)?;
        if reverts >= self.cfg.max_reverts {
            return Ok(Some(Outcome::GaveUp(reverts)));
        }
        Ok(None)
    }

    /// The node's fee estimate on top of `tip`, within the configured caps: (max fee, priority
    /// fee) per gas.
    async fn fees(&self, tip: &eth_adapter::tx::ScanTip) -> Result<(u128, u128), WatchError> {
        let est = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(rpc_err)?;
        Ok(capped_fees(
            &est,
            tip.base_fee.unwrap_or_default(),
            self.cfg.max_fee_per_gas,
            self.cfg.max_priority_fee_per_gas,
        )?)
    }

    /// Signs `p`'s transaction and records it, without broadcasting it. `Err` with the
    /// existing outcome when its intent already has a transaction (or gave up).
    async fn sign_and_record(
        &mut self,
        p: &Planned,
    ) -> Result<Result<TxRecord, Outcome>, WatchError> {
        if let Some(o) = self.existing(p).await? {
            return Ok(Err(o));
        }
        let intent = p.action.intent();
        let me = self.address();
        let chain_id = self.chain_id().await?;
        let input = self.input_of(p)?;
        let tip = eth_adapter::tx::latest(&self.provider).await?;
        let base = TransactionRequest::default()
            .with_from(me)
            .with_to(p.to)
            .with_input(input)
            .with_value(U256::ZERO);
        // Against the latest block: the contract's own checks decide before anything is sent.
        let gas = self
            .provider
            .estimate_gas(base.clone())
            .block(alloy::eips::BlockId::number(tip.number))
            .await
            .map_err(|e| typed(&intent, rpc_err(e)))?;
        let (max_fee, prio) = self.fees(&tip).await?;
        let req = base
            .with_chain_id(chain_id)
            .with_gas_limit(gas_limit(gas))
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(prio);
        // The nonce: after the node's pending ones and every one recorded pending (by this
        // process or another on the store, broadcast or not). A nonce another process
        // recorded meanwhile: sign again.
        for _ in 0..5 {
            let node = self
                .provider
                .get_transaction_count(me)
                .pending()
                .await
                .map_err(rpc_err)?;
            let recorded = self.store.max_pending_nonce(me)?.map_or(0, |n| n + 1);
            let nonce = node.max(recorded);
            let envelope = req
                .clone()
                .with_nonce(nonce)
                .build(&self.wallet)
                .await
                .map_err(|e| WatchError::Signing(e.to_string()))?;
            let rec = TxRecord {
                seq: 0,
                sender: me,
                intent: intent.clone(),
                channel: p.action.channel(),
                nonce,
                recorded_block: tip.number,
                hash: *envelope.tx_hash(),
                raw: envelope.encoded_2718(),
                status: TxStatus::Pending,
                detail: None,
            };
            match self.store.record_tx(&rec)? {
                Recorded::New => return Ok(Ok(rec)),
                Recorded::IntentTaken(r) => return Ok(Err(Outcome::Waiting(r.hash))),
                Recorded::NonceTaken => continue,
            }
        }
        Err(WatchError::Node(EthError::Inconsistent(
            "no free nonce after 5 attempts (other processes are sending)".into(),
        )))
    }

    /// Signs and records `p`'s transaction without broadcasting it: the first half of a
    /// send (the next [`Watcher::tick`] broadcasts it). `None` when its intent already has a
    /// transaction. For tests of a crash between recording and broadcasting, and for callers
    /// that broadcast elsewhere.
    pub async fn prepare(&mut self, p: &Planned) -> Result<Option<TxRecord>, WatchError> {
        Ok(self.sign_and_record(p).await?.ok())
    }

    /// What channel `id` needs now (nothing is sent; see [`Watcher::prepare`]).
    pub async fn plan_now(
        &mut self,
        id: B256,
    ) -> Result<(Vec<Planned>, Vec<super::Skip>), WatchError> {
        let tip = eth_adapter::tx::latest(&self.provider).await?;
        self.plan(id, tip.timestamp, tip.number).await
    }

    /// Sends `p` (see [`Outcome`]).
    pub(super) async fn send(&mut self, p: &Planned) -> Result<Outcome, WatchError> {
        let rec = match self.sign_and_record(p).await? {
            Ok(rec) => rec,
            Err(o) => return Ok(o),
        };
        tracing::info!(target: "eth_channel::watcher", intent = %rec.intent, tx = %rec.hash, nonce = rec.nonce, "watcher transaction recorded; broadcasting");
        self.broadcast(&rec).await?;
        Ok(Outcome::Sent(rec.hash))
    }

    /// Broadcasts a recorded transaction. A refusal is fine when the node knows the
    /// transaction anyway (another process broadcast it first); one the node does not know
    /// after a non-transient refusal ends it `obsolete` (nothing went out), its nonce then
    /// filled by a transfer to self unless it is used already ([`Watcher::fill`]); any other
    /// failure keeps it recorded for the next tick.
    async fn broadcast(&self, rec: &TxRecord) -> Result<(), WatchError> {
        self.broadcast_with(rec, true).await
    }

    /// [`Watcher::broadcast`]; `fill`: fill the nonce of a refused transaction (false for a
    /// fee bump, whose replaced transaction takes the nonce back).
    async fn broadcast_with(&self, rec: &TxRecord, fill: bool) -> Result<(), WatchError> {
        let Err(e) = self.provider.send_raw_transaction(&rec.raw).await else {
            return Ok(());
        };
        let e = rpc_err(e);
        match self.provider.get_transaction_by_hash(rec.hash).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) if !e.is_transient() => {
                let used = self
                    .provider
                    .get_transaction_count(rec.sender)
                    .latest()
                    .await
                    .map_err(rpc_err)?
                    > rec.nonce;
                if fill && !used {
                    self.fill(rec).await?;
                } else {
                    let detail = format!("rejected by the node: {e}");
                    self.store.finish_tx(
                        rec.hash,
                        TxStatus::Pending,
                        TxStatus::Obsolete,
                        Some(&detail),
                    )?;
                }
                Err(typed(&rec.intent, e))
            }
            _ => Err(typed(&rec.intent, e)),
        }
    }

    /// Replaces `rec` (refused by the node, its nonce unused) by a transfer of nothing to
    /// ourselves at its nonce with current fees, recorded before its broadcast; `rec` ends
    /// `obsolete` and its intent is decided again. A filler the node refuses too stays
    /// recorded: the next tick fills its nonce again.
    async fn fill(&self, rec: &TxRecord) -> Result<(), WatchError> {
        use alloy::consensus::Transaction as _;
        use alloy::eips::eip2718::Decodable2718;
        let env = alloy::consensus::TxEnvelope::decode_2718(&mut rec.raw.as_slice())
            .map_err(|e| WatchError::Inconsistent(format!("recorded transaction: {e}")))?;
        let chain_id = env.chain_id().ok_or_else(|| {
            WatchError::Inconsistent("recorded transaction without a chain id".into())
        })?;
        let tip = eth_adapter::tx::latest(&self.provider).await?;
        let (max_fee, prio) = self.fees(&tip).await?;
        let filler = TransactionRequest::default()
            .with_from(rec.sender)
            .with_to(rec.sender)
            .with_value(U256::ZERO)
            .with_chain_id(chain_id)
            .with_nonce(rec.nonce)
            .with_gas_limit(21_000)
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(prio)
            .build(&self.wallet)
            .await
            .map_err(|e| WatchError::Signing(e.to_string()))?;
        let new = TxRecord {
            seq: 0,
            sender: rec.sender,
            intent: format!("fill:{}", rec.nonce),
            channel: None,
            nonce: rec.nonce,
            recorded_block: tip.number,
            hash: *filler.tx_hash(),
            raw: filler.encoded_2718(),
            status: TxStatus::Pending,
            detail: None,
        };
        if !self.store.fill_tx(rec.hash, &new)? {
            return Ok(());
        }
        tracing::warn!(target: "eth_channel::watcher", intent = %rec.intent, tx = %rec.hash, nonce = rec.nonce, filler = %new.hash, "recorded transaction refused by the node: its nonce is filled by a transfer to self");
        if let Err(e) = self.provider.send_raw_transaction(&new.raw).await {
            tracing::warn!(target: "eth_channel::watcher", tx = %new.hash, error = %rpc_err(e), "nonce filler not broadcast; the next tick tries again");
        }
        Ok(())
    }

    /// How a pending recorded transaction stands on chain: `Some` when it ended (mined or
    /// reverted, with the contract's typed error when one is found).
    async fn ended(
        &self,
        rec: &TxRecord,
    ) -> Result<Option<(TxStatus, Option<String>)>, WatchError> {
        let receipt = self
            .provider
            .get_transaction_receipt(rec.hash)
            .await
            .map_err(rpc_err)?;
        Ok(match receipt {
            None => None,
            Some(r) if r.status() => Some((TxStatus::Mined, None)),
            Some(r) => {
                let why = match r.block_number {
                    Some(b) => match eth_adapter::tx::replay(&self.provider, rec.hash, b).await {
                        Err(EthError::WouldRevert(rv)) => match rv.channel() {
                            Some(err) => format!("{err:?}"),
                            None => rv.to_string(),
                        },
                        Err(e) => format!("reason unknown: {e}"),
                        Ok(()) => "reason unknown (a replay succeeds)".into(),
                    },
                    None => "reason unknown".into(),
                };
                tracing::warn!(target: "eth_channel::watcher", intent = %rec.intent, tx = %rec.hash, reason = %why, "watcher transaction reverted");
                Some((TxStatus::Reverted, Some(why)))
            }
        })
    }

    /// Brings every pending recorded transaction of this account one step on: a receipt ends
    /// it (mined or reverted); a transaction the node does not know is broadcast again (and
    /// ends at once if that mined it), or ends `obsolete` when its nonce was mined in another
    /// transaction (then a replaced transaction of that nonce may be the one mined); one
    /// pending for [`super::WatchConfig::bump_after_blocks`] is replaced with higher fees.
    pub async fn resume(&self) -> Result<Vec<Finished>, WatchError> {
        let me = self.address();
        let mut out = Vec::new();
        let pending = self.store.pending_txs(me)?;
        if pending.is_empty() {
            return Ok(out);
        }
        let tip = eth_adapter::tx::latest(&self.provider).await?;
        for rec in pending {
            let mut end = self.ended(&rec).await?;
            if end.is_none() {
                let known = self
                    .provider
                    .get_transaction_by_hash(rec.hash)
                    .await
                    .map_err(rpc_err)?
                    .is_some();
                if !known {
                    let mined = self
                        .provider
                        .get_transaction_count(me)
                        .latest()
                        .await
                        .map_err(rpc_err)?;
                    if mined > rec.nonce {
                        let why = format!("nonce {} went to another transaction", rec.nonce);
                        end = Some((TxStatus::Obsolete, Some(why)));
                    } else {
                        tracing::info!(target: "eth_channel::watcher", intent = %rec.intent, tx = %rec.hash, "recorded watcher transaction broadcast again");
                        match self.broadcast(&rec).await {
                            Ok(()) => end = self.ended(&rec).await?,
                            // Nothing lost: it stays recorded for the next tick.
                            Err(e) => {
                                tracing::warn!(target: "eth_channel::watcher", intent = %rec.intent, tx = %rec.hash, error = %e, "rebroadcast refused");
                            }
                        }
                    }
                }
                // Still pending (in the pool, or refused there: some nodes drop a transaction
                // whose fee cap fell below the base fee) for long enough: higher fees.
                let after = self.cfg.bump_after_blocks;
                let due = after > 0 && tip.number >= rec.recorded_block.saturating_add(after);
                if end.is_none() && due {
                    self.bump(&rec, &tip).await?;
                }
            }
            let Some((status, detail)) = end else {
                continue;
            };
            if self
                .store
                .finish_tx(rec.hash, TxStatus::Pending, status, detail.as_deref())?
            {
                out.push(Finished {
                    intent: rec.intent.clone(),
                    tx: rec.hash,
                    status,
                    detail,
                });
            }
            if status == TxStatus::Obsolete {
                // A transaction this one replaced may be the one that took the nonce.
                for old in self.store.replaced_txs(me, rec.nonce)? {
                    let Some((status, detail)) = self.ended(&old).await? else {
                        continue;
                    };
                    if self.store.finish_tx(
                        old.hash,
                        TxStatus::Replaced,
                        status,
                        detail.as_deref(),
                    )? {
                        out.push(Finished {
                            intent: old.intent.clone(),
                            tx: old.hash,
                            status,
                            detail,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Replaces pending `rec` by the same transaction with fees raised by a quarter at least
    /// (or to the node's current estimate, if higher), within the caps. Nothing when the caps
    /// leave no room for the 10 % nodes require of a replacement, or when another process
    /// replaced or ended it first. The new transaction is recorded before its broadcast; if
    /// the node refuses it, `rec` stays the pending one.
    async fn bump(&self, rec: &TxRecord, tip: &eth_adapter::tx::ScanTip) -> Result<(), WatchError> {
        use alloy::consensus::Transaction as _;
        use alloy::eips::eip2718::Decodable2718;
        let env = alloy::consensus::TxEnvelope::decode_2718(&mut rec.raw.as_slice())
            .map_err(|e| WatchError::Inconsistent(format!("recorded transaction: {e}")))?;
        let old_max = env.max_fee_per_gas();
        let old_prio = env.max_priority_fee_per_gas().unwrap_or(0);
        let est = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(rpc_err)?;
        let base = tip.base_fee.unwrap_or_default();
        let max_fee = (old_max + old_max / 4 + 1)
            .max(est.max_fee_per_gas)
            .max(base)
            .min(self.cfg.max_fee_per_gas);
        let prio = (old_prio + old_prio / 4 + 1)
            .max(est.max_priority_fee_per_gas)
            .min(self.cfg.max_priority_fee_per_gas)
            .min(max_fee);
        if max_fee < old_max + old_max / 10 + 1 || prio < old_prio + old_prio / 10 + 1 {
            tracing::warn!(target: "eth_channel::watcher", intent = %rec.intent, tx = %rec.hash, "pending transaction not bumped: fees at the configured caps");
            return Ok(());
        }
        let (Some(to), Some(chain_id)) = (env.to(), env.chain_id()) else {
            return Err(WatchError::Inconsistent(
                "recorded transaction without a recipient or chain id".into(),
            ));
        };
        let new_env = TransactionRequest::default()
            .with_from(rec.sender)
            .with_to(to)
            .with_input(env.input().clone())
            .with_value(env.value())
            .with_chain_id(chain_id)
            .with_nonce(rec.nonce)
            .with_gas_limit(env.gas_limit())
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(prio)
            .build(&self.wallet)
            .await
            .map_err(|e| WatchError::Signing(e.to_string()))?;
        let new = TxRecord {
            hash: *new_env.tx_hash(),
            raw: new_env.encoded_2718(),
            recorded_block: tip.number,
            ..rec.clone()
        };
        if !self.store.replace_tx(rec.hash, &new)? {
            return Ok(());
        }
        tracing::info!(target: "eth_channel::watcher", intent = %rec.intent, old = %rec.hash, new = %new.hash, max_fee, "pending watcher transaction replaced with higher fees");
        let Err(e) = self.broadcast_with(&new, false).await else {
            return Ok(());
        };
        // Refused and unknown to the node (the old one may still be pending there): the old
        // transaction is the pending one again. Otherwise (node unreachable) the next tick
        // broadcasts the new one again.
        let unknown = matches!(
            self.provider.get_transaction_by_hash(new.hash).await,
            Ok(None)
        );
        let mut restored = false;
        if unknown {
            self.store.finish_tx(
                new.hash,
                TxStatus::Pending,
                TxStatus::Obsolete,
                Some("replacement refused by the node"),
            )?;
            restored = self.store.live_tx(rec.sender, &rec.intent)?.is_none()
                && self
                    .store
                    .finish_tx(rec.hash, TxStatus::Replaced, TxStatus::Pending, None)?;
        }
        tracing::warn!(target: "eth_channel::watcher", intent = %rec.intent, tx = %new.hash, error = %e, restored, "replacement not broadcast");
        Ok(())
    }
}
