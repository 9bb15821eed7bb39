//! Reading a channel's chain state and deciding what it needs ([`decide`] is pure).

use std::collections::HashMap;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};

use eth_adapter::bindings::Channel;
use eth_adapter::channel::{ChannelRef, Lock, Record, MAX_LOCK_TTL};
use eth_adapter::tx::rpc_err;

use super::{Action, Planned, Secrets, Skip, WatchConfig, WatchError, Watcher};
use crate::store::{ChannelStore, CoSigned, Saved};

/// The contract's `status` codes.
const OPEN: u8 = 1;
const CLOSING: u8 = 2;

/// A channel's state on chain, as one tick read it.
#[derive(Debug, Clone, Default)]
pub(super) struct View {
    /// The latest block's timestamp.
    pub now: u64,
    /// The contract's `status` (0 none, 1 open, 2 closing, 3 settled).
    pub status: u8,
    /// The latest closing record, while closing.
    pub record: Option<Record>,
    /// Reveal times of the hashlocks that matter (absent: not read; `None`: not revealed).
    pub revealed: HashMap<B256, Option<u64>>,
}

/// The receiver of `l` in `chan`.
fn receiver(chan: &ChannelRef, l: &Lock) -> Address {
    if l.from == chan.params.a {
        chan.params.b
    } else {
        chan.params.a
    }
}

/// What we hold of a channel besides its latest state: the co-signed history and our
/// abandoned proposals above the latest (signed by us: the peer may countersign one and
/// close with it).
#[derive(Debug, Clone, Default)]
pub(super) struct Held {
    /// The co-signed states, oldest first.
    pub history: Vec<CoSigned>,
    /// Our abandoned proposals above the latest co-signed state: (version, locks).
    pub abandoned: Vec<(u64, Vec<Lock>)>,
}

/// The locks of the state of `version` whose locks hash is `hash`, from what we hold.
fn locks_of(saved: &Saved, held: &Held, version: u64, hash: B256) -> Option<Vec<Lock>> {
    if version == 0 {
        return (hash == B256::ZERO).then(Vec::new);
    }
    let all = std::iter::once(saved.latest.clone())
        .chain(held.history.iter().cloned())
        .map(|c| (c.state.version, c.locks))
        .chain(
            saved
                .pending
                .iter()
                .map(|p| (p.state.version, p.state.locks())),
        )
        .chain(held.abandoned.iter().cloned());
    all.filter(|(v, _)| *v == version)
        .map(|(_, l)| l)
        .find(|l| eth_adapter::channel::locks_hash(l) == hash)
}

/// The hashlocks whose reveal time [`decide`] needs: locks we receive in our latest state,
/// and the closing state's locks (found among the co-signed states, our pending proposal
/// and our abandoned ones).
pub(super) fn hashlocks_needed(saved: &Saved, held: &Held, record: Option<&Record>) -> Vec<B256> {
    let me = saved.chan.party(saved.me);
    let mut out: Vec<B256> = saved
        .latest
        .locks
        .iter()
        .filter(|l| receiver(&saved.chan, l) == me)
        .map(|l| l.hashlock)
        .collect();
    if let Some(r) = record {
        if let Some(locks) = locks_of(saved, held, r.version, r.locksHash) {
            out.extend(locks.iter().map(|l| l.hashlock));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn call(action: Action, to: Address, input: Vec<u8>) -> Planned {
    Planned {
        action,
        to,
        input: input.into(),
    }
}

/// What the channel needs now. `held` is its co-signed states and our abandoned proposals
/// (for the locks of a closing state other than the latest).
pub(super) fn decide(
    saved: &Saved,
    held: &Held,
    view: &View,
    secrets: &dyn Secrets,
    cfg: &WatchConfig,
) -> (Vec<Planned>, Vec<Skip>) {
    let chan = &saved.chan;
    let id = chan.id();
    let me = chan.party(saved.me);
    let latest = &saved.latest;
    let now = view.now;
    let mut out = Vec::new();
    let mut skips = Vec::new();
    let revealed = |h: &B256| view.revealed.get(h).copied().flatten();
    // A reveal mined in the next block (time >= now + 1) still counts iff now + 1 < expiry.
    let can_reveal = |l: &Lock| now.saturating_add(1) < l.expiry;

    // Reveals: the locks we receive, hold the preimage of and are not revealed yet. While
    // open, those of our latest state at their cutoff (we close with that state, so each is
    // enforced); once closing, those of the closing's state at once, whichever state it is:
    // an older co-signed one, or one of our abandoned proposals that the peer countersigned.
    // A lock to us only in an abandoned proposal is not revealed while open: nothing we can
    // close with holds it, so a reveal would give the secret away for nothing (our own
    // proposals never add a lock to us, so the rules never make one).
    let closing = view.status == CLOSING;
    let mut candidates: Vec<Lock> = latest.locks.clone();
    if let Some(r) = &view.record {
        candidates.extend(locks_of(saved, held, r.version, r.locksHash).unwrap_or_default());
    }
    candidates.dedup_by_key(|l| l.hashlock);
    let mut due_lock = false;
    let mut reveals = Vec::new();
    for l in &candidates {
        if receiver(chan, l) != me || !(view.status == OPEN || closing) {
            continue;
        }
        let in_latest = latest.locks.contains(l);
        // While open, only a lock of our latest state at its cutoff; once closing, at once.
        let due = closing || (in_latest && now.saturating_add(cfg.claim_window) >= l.expiry);
        if !due {
            continue;
        }
        match revealed(&l.hashlock) {
            Some(t) => due_lock |= in_latest && t < l.expiry,
            None => {
                let Some(_) = secrets.preimage(&l.hashlock) else {
                    continue;
                };
                if !can_reveal(l) {
                    skips.push(Skip::Expired {
                        channel: id,
                        hashlock: l.hashlock,
                        expiry: l.expiry,
                        now,
                    });
                    continue;
                }
                due_lock |= in_latest;
                if !reveals.contains(&l.hashlock) {
                    reveals.push(l.hashlock);
                }
            }
        }
    }
    for hashlock in reveals {
        // The preimage goes into the calldata when signing (see `send`), not into the plan.
        out.push(call(
            Action::Reveal {
                channel: id,
                hashlock,
            },
            chan.contract,
            Vec::new(),
        ));
    }

    let sigs = latest.sigs();
    match (view.status, &view.record) {
        (OPEN, _) if due_lock => {
            if let Some((sa, sb)) = sigs {
                let input = Channel::closeCall {
                    p: chan.params.clone(),
                    s: latest.state.clone(),
                    locks: latest.locks.clone(),
                    sa,
                    sb,
                }
                .abi_encode();
                let version = latest.state.version;
                out.push(call(
                    Action::Close {
                        channel: id,
                        version,
                    },
                    chan.contract,
                    input,
                ));
            }
        }
        (CLOSING, Some(rec)) => {
            let ours = latest.state.version;
            if latest.state.isFinal && ours >= rec.version {
                if let Some((sa, sb)) = sigs {
                    let input = Channel::settleFinalCall {
                        p: chan.params.clone(),
                        f: rec.frozen(),
                        s: latest.state.clone(),
                        sa,
                        sb,
                    }
                    .abi_encode();
                    let action = Action::SettleFinal {
                        channel: id,
                        version: ours,
                    };
                    out.push(call(action, chan.contract, input));
                    return (out, skips);
                }
            }
            if rec.version < ours {
                if now < rec.deadline {
                    if let Some((sa, sb)) = sigs {
                        let input = Channel::updateCall {
                            p: chan.params.clone(),
                            f: rec.frozen(),
                            s: latest.state.clone(),
                            locks: latest.locks.clone(),
                            sa,
                            sb,
                        }
                        .abi_encode();
                        let action = Action::Update {
                            channel: id,
                            version: ours,
                        };
                        out.push(call(action, chan.contract, input));
                    }
                    return (out, skips);
                }
                skips.push(Skip::MissedChallenge {
                    channel: id,
                    closing: rec.version,
                    ours,
                });
            } else if rec.version > ours {
                skips.push(Skip::PeerAhead {
                    channel: id,
                    closing: rec.version,
                    ours,
                });
            }
            if now < rec.deadline {
                return (out, skips);
            }
            let Some(locks) = locks_of(saved, held, rec.version, rec.locksHash) else {
                skips.push(Skip::LocksUnknown {
                    channel: id,
                    version: rec.version,
                });
                return (out, skips);
            };
            // Every lock decided: revealed in time, or its (capped) expiry reached.
            let cap = rec.deadline.saturating_add(MAX_LOCK_TTL);
            let decided = locks.iter().all(|l| {
                let expiry = l.expiry.min(cap);
                revealed(&l.hashlock).is_some_and(|t| t < expiry) || now >= expiry
            });
            // A lock whose reveal time was not read (not ours to reveal) is read by the
            // caller: see `hashlocks_needed`.
            if decided {
                let input = Channel::settleCall {
                    p: chan.params.clone(),
                    rec: rec.clone(),
                    locks,
                }
                .abi_encode();
                let action = Action::Settle {
                    channel: id,
                    deadline: rec.deadline,
                    version: rec.version,
                };
                out.push(call(action, chan.contract, input));
            }
        }
        (CLOSING, None) => skips.push(Skip::NoClosingRecord { channel: id }),
        _ => {}
    }
    (out, skips)
}

impl Watcher {
    /// What channel `id` needs now, read from the chain with `now` the latest block's time
    /// (`tip` its number). Nothing is sent.
    pub(super) async fn plan(
        &mut self,
        id: B256,
        now: u64,
        tip: u64,
    ) -> Result<(Vec<Planned>, Vec<super::Skip>), WatchError> {
        let saved = self.store.load(id)?.ok_or(WatchError::UnknownChannel(id))?;
        if saved.chan.party(saved.me) != self.address() {
            return Err(WatchError::NotOurChannel(id));
        }
        let held = Held {
            history: self.store.history(id)?,
            abandoned: self
                .store
                .abandoned_states(id)?
                .into_iter()
                .map(|p| (p.state.version, p.state.locks()))
                .collect(),
        };
        let contract = Channel::new(saved.chan.contract, &self.provider);
        let status = contract
            .status(id)
            .call()
            .await
            .map_err(super::send::contract_err)?
            .st;
        let record = if status == CLOSING {
            self.closing_record(&saved.chan, tip).await?
        } else {
            self.channels
                .entry(id)
                .and_modify(|w| w.closing_from = None);
            None
        };
        let mut view = View {
            now,
            status,
            record,
            revealed: HashMap::new(),
        };
        for h in hashlocks_needed(&saved, &held, view.record.as_ref()) {
            let t = saved.chan.revealed_at(&self.provider, h).await?;
            view.revealed.insert(h, t);
        }
        Ok(decide(
            &saved,
            &held,
            &view,
            self.secrets.as_ref(),
            &self.cfg,
        ))
    }

    /// The latest `Closing` record of a closing channel (the highest version: versions only
    /// grow within a closing).
    async fn closing_record(
        &mut self,
        chan: &ChannelRef,
        tip: u64,
    ) -> Result<Option<Record>, WatchError> {
        let id = chan.id();
        let w = self.channels.get(&id).copied();
        let from = w
            .and_then(|w| w.closing_from)
            .or(w.map(|w| w.from_block))
            .unwrap_or(0);
        let filter = Filter::new()
            .address(chan.contract)
            .event_signature(Channel::Closing::SIGNATURE_HASH)
            .topic1(id);
        let chunk = self.cfg.log_chunk.max(1);
        let mut best: Option<(u64, Record)> = None;
        let mut start = from;
        while start <= tip {
            let end = tip.min(start.saturating_add(chunk - 1));
            let logs = self
                .provider
                .get_logs(&filter.clone().from_block(start).to_block(end))
                .await
                .map_err(rpc_err)?;
            for log in logs.iter().filter(|l| !l.removed) {
                let Ok(e) = log.log_decode::<Channel::Closing>() else {
                    continue;
                };
                let rec = Record::from(&e.inner.data);
                let block = log.block_number.unwrap_or(start);
                if best.as_ref().is_none_or(|(_, b)| rec.version >= b.version) {
                    let first = best.as_ref().map_or(block, |(f, _)| (*f).min(block));
                    best = Some((first, rec));
                }
            }
            start = end + 1;
        }
        if let Some((first, _)) = &best {
            if let Some(w) = self.channels.get_mut(&id) {
                w.closing_from.get_or_insert(*first);
            }
        }
        Ok(best.map(|(_, r)| r))
    }

    /// A `withdrawCredit` if the chain credits us in `token` (contract `contract`).
    pub(super) async fn plan_credit(
        &self,
        contract: Address,
        token: Address,
    ) -> Result<Option<Planned>, WatchError> {
        let me = self.address();
        let amount: U256 = Channel::new(contract, &self.provider)
            .credit(me, token)
            .call()
            .await
            .map_err(super::send::contract_err)?;
        if amount.is_zero() {
            return Ok(None);
        }
        let prefix = format!("credit:{token}:");
        let seq = self.store.count_txs(me, &prefix, super::TxStatus::Mined)?;
        let input = Channel::withdrawCreditCall {
            token,
            to: self.cfg.credit_to.unwrap_or(me),
        }
        .abi_encode();
        Ok(Some(call(
            Action::WithdrawCredit { token, amount, seq },
            contract,
            input,
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use alloy::primitives::address;
    use eth_adapter::channel::{locks_hash, Params, Side, Sig, State};

    use crate::watcher::SecretMap;

    const EXPIRY: u64 = 10_000;

    fn chan() -> ChannelRef {
        ChannelRef::new(
            Params {
                a: address!("0x1000000000000000000000000000000000000001"),
                b: address!("0x2000000000000000000000000000000000000002"),
                token: Address::ZERO,
                challengePeriod: 3600,
                salt: B256::repeat_byte(7),
            },
            31337,
            address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
        )
    }

    /// B's view: version 3 with a lock of 5 from A to B on `sha256(1 1 ...)`.
    fn saved() -> (Saved, SecretMap) {
        let c = chan();
        let pre = B256::repeat_byte(1);
        let locks = vec![Lock {
            from: c.params.a,
            amount: 5,
            hashlock: crate::hashlock_of(&pre),
            expiry: EXPIRY,
        }];
        let sig = Sig {
            v: 27,
            r: B256::repeat_byte(2),
            s: B256::repeat_byte(3),
        };
        let state = State {
            version: 3,
            balanceA: 45,
            balanceB: 50,
            locksHash: locks_hash(&locks),
            depositA: 50,
            depositB: 50,
            withdrawnA: 0,
            withdrawnB: 0,
            withdrawExpiry: 0,
            isFinal: false,
        };
        let secrets = SecretMap::new();
        secrets.insert(pre);
        let latest = CoSigned {
            state,
            locks,
            sig_a: Some(sig.clone()),
            sig_b: Some(sig),
        };
        (
            Saved {
                chan: c,
                me: Side::B,
                latest,
                pending: None,
                abandoned: None,
            },
            secrets,
        )
    }

    fn kinds(p: &[Planned]) -> Vec<&'static str> {
        p.iter()
            .map(|p| match p.action {
                Action::Update { .. } => "update",
                Action::Reveal { .. } => "reveal",
                Action::Close { .. } => "close",
                Action::Settle { .. } => "settle",
                Action::SettleFinal { .. } => "settleFinal",
                Action::WithdrawCredit { .. } => "credit",
            })
            .collect()
    }

    fn view(now: u64, status: u8, record: Option<Record>) -> View {
        View {
            now,
            status,
            record,
            revealed: HashMap::new(),
        }
    }

    fn record(s: &Saved, version: u64, deadline: u64) -> Record {
        Record {
            version,
            deadline,
            netA: alloy::primitives::I256::from_raw(U256::from(50)),
            netB: alloy::primitives::I256::from_raw(U256::from(50)),
            payA: U256::from(45),
            payB: U256::from(50),
            locksHash: if version == s.latest.state.version {
                s.latest.state.locksHash
            } else {
                B256::repeat_byte(9)
            },
        }
    }

    #[test]
    fn open_channel_enforces_a_lock_only_inside_its_claim_window_and_before_its_expiry() {
        let (s, secrets) = saved();
        let cfg = WatchConfig::default();
        let w = cfg.claim_window;
        let d = |now| decide(&s, &Held::default(), &view(now, OPEN, None), &secrets, &cfg);
        assert!(d(EXPIRY - w - 1).0.is_empty());
        assert_eq!(kinds(&d(EXPIRY - w).0), ["reveal", "close"]);
        assert_eq!(kinds(&d(EXPIRY - 2).0), ["reveal", "close"]);
        // The next block is stamped at least now + 1 = expiry: too late.
        for now in [EXPIRY - 1, EXPIRY, EXPIRY + 100] {
            let (p, skips) = d(now);
            assert!(p.is_empty(), "{p:?}");
            assert!(matches!(skips[..], [Skip::Expired { .. }]), "{skips:?}");
        }
        // Without the preimage nothing is due; once revealed in time, only the close.
        let none = SecretMap::new();
        assert!(decide(
            &s,
            &Held::default(),
            &view(EXPIRY - 10, OPEN, None),
            &none,
            &cfg
        )
        .0
        .is_empty());
        let mut v = view(EXPIRY + 5, OPEN, None);
        v.revealed
            .insert(s.latest.locks[0].hashlock, Some(EXPIRY - 1));
        assert_eq!(
            kinds(&decide(&s, &Held::default(), &v, &none, &cfg).0),
            ["close"]
        );
        v.revealed.insert(s.latest.locks[0].hashlock, Some(EXPIRY));
        assert!(decide(&s, &Held::default(), &v, &none, &cfg).0.is_empty());
    }

    #[test]
    fn closing_channel_is_updated_then_settled_once_every_lock_is_decided() {
        let (s, secrets) = saved();
        let none = SecretMap::new();
        let cfg = WatchConfig::default();
        // An older closing before its deadline: update (nothing to reveal without secrets).
        let old = record(&s, 2, 5_000);
        let (p, skips) = decide(
            &s,
            &Held::default(),
            &view(4_000, CLOSING, Some(old.clone())),
            &none,
            &cfg,
        );
        assert_eq!(kinds(&p), ["update"]);
        assert!(skips.is_empty());
        // Too late for it: reported; its locks unknown: no settle.
        let (p, skips) = decide(
            &s,
            &Held::default(),
            &view(5_000, CLOSING, Some(old)),
            &none,
            &cfg,
        );
        assert!(p.is_empty());
        assert!(matches!(
            skips[..],
            [Skip::MissedChallenge { .. }, Skip::LocksUnknown { .. }]
        ));
        // Our version: reveal at once with the secret; settle only when the lock is decided.
        let ours = record(&s, 3, 5_000);
        let at = |now| view(now, CLOSING, Some(ours.clone()));
        assert_eq!(
            kinds(&decide(&s, &Held::default(), &at(4_000), &secrets, &cfg).0),
            ["reveal"]
        );
        assert!(decide(&s, &Held::default(), &at(5_000), &none, &cfg)
            .0
            .is_empty());
        assert_eq!(
            kinds(&decide(&s, &Held::default(), &at(EXPIRY), &none, &cfg).0),
            ["settle"]
        );
        let mut v = at(5_000);
        v.revealed.insert(s.latest.locks[0].hashlock, Some(4_500));
        assert_eq!(
            kinds(&decide(&s, &Held::default(), &v, &none, &cfg).0),
            ["settle"]
        );
        // A newer closing than ours: nothing to answer.
        let (_, skips) = decide(
            &s,
            &Held::default(),
            &view(4_000, CLOSING, Some(record(&s, 4, 5_000))),
            &none,
            &cfg,
        );
        assert!(matches!(skips[..], [Skip::PeerAhead { .. }]));
    }
}
