//! Random sequences of valid updates in both directions: every co-signed state conserves the
//! capacity, both parties always agree on the latest state.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use alloy::primitives::B256;
use common::*;
use eth_adapter::channel::{OnChain, Side, State};
use eth_channel::{hashlock_of, ChannelStore, PartyError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Lock { by_a: bool, permille: u16, ttl: u64 },
    Claim { pick: usize },
    Cancel { pick: usize },
    Withdraw { by_a: bool, permille: u16 },
    Wait { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0u16..1000, 600u64..20_000).prop_map(|(by_a, permille, ttl)| Op::Lock { by_a, permille, ttl }),
        3 => any::<usize>().prop_map(|pick| Op::Claim { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => (any::<bool>(), 0u16..300).prop_map(|(by_a, permille)| Op::Withdraw { by_a, permille }),
        1 => (1u64..10_000).prop_map(|secs| Op::Wait { secs }),
    ]
}

fn conserved(s: &State, locked: u128) -> bool {
    s.balanceA + s.balanceB + locked + s.withdrawnA + s.withdrawnB == s.depositA + s.depositB
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_updates_conserve_and_agree(ops in prop::collection::vec(op(), 1..40)) {
        let mut pair = Pair::new();
        let mut now = NOW;
        let mut preimages: Vec<B256> = vec![];
        let mut n = 0u64;
        let mut applied = 0;
        for op in ops {
            // Withdrawals are executed by nobody here: the chain keeps the deposits.
            let chain = OnChain { time: now, ..chain() };
            let (by, step) = match op {
                Op::Wait { secs } => { now += secs; continue; }
                Op::Lock { by_a, permille, ttl } => {
                    let by = if by_a { Side::A } else { Side::B };
                    n += 1;
                    let pre = B256::from(alloy::primitives::U256::from(n));
                    let (p, _, _, _) = pair.roles(by);
                    let s = &p.latest().state;
                    let balance = if by_a { s.balanceA } else { s.balanceB };
                    let amount = balance * u128::from(permille) / 1000;
                    if amount == 0 { continue; }
                    preimages.push(pre);
                    (by, p.propose_lock(amount, hashlock_of(&pre), now + ttl, now, &chain))
                }
                Op::Claim { pick } | Op::Cancel { pick } => {
                    let locks = pair.a.latest().locks.clone();
                    if locks.is_empty() { continue; }
                    let l = &locks[pick % locks.len()];
                    let from_a = l.from == pair.chan.params.a;
                    if matches!(op, Op::Claim { .. }) {
                        if now >= l.expiry { continue; }
                        let pre = *preimages.iter().find(|p| hashlock_of(p) == l.hashlock).unwrap();
                        // The receiver claims.
                        let by = if from_a { Side::B } else { Side::A };
                        let (p, _, _, _) = pair.roles(by);
                        (by, p.propose_claim(pre, now, &chain))
                    } else {
                        now = now.max(l.expiry);
                        let chain = OnChain { time: now, ..chain };
                        let by = if from_a { Side::A } else { Side::B };
                        let (p, _, _, _) = pair.roles(by);
                        let step = p.propose_cancel(l.hashlock, now, &chain);
                        prop_assert!(step.is_ok(), "{step:?}");
                        pair.exchange(by, step.unwrap(), now, &chain);
                        applied += 1;
                        continue;
                    }
                }
                Op::Withdraw { by_a, permille } => {
                    let by = if by_a { Side::A } else { Side::B };
                    let (p, _, _, _) = pair.roles(by);
                    let s = &p.latest().state;
                    let balance = if by_a { s.balanceA } else { s.balanceB };
                    let amount = balance * u128::from(permille) / 1000;
                    if amount == 0 { continue; }
                    let expiry = now.max(s.withdrawExpiry) + 3600;
                    (by, p.propose_withdraw(amount, expiry, now, &chain))
                }
            };
            match step {
                Ok(step) => { pair.exchange(by, step, now, &chain); applied += 1; }
                // The only refusal of an honest proposal here: too many locks.
                Err(PartyError::Invalid(r)) => prop_assert_eq!(r.code, eth_channel::RejectCode::TooManyLocks),
                Err(e) => prop_assert!(false, "{e}"),
            }
            let l = pair.a.latest();
            prop_assert_eq!(l, pair.b.latest());
            prop_assert!(conserved(&l.state, l.locks.iter().map(|l| l.amount).sum()));
            prop_assert_eq!(l.state.version, applied);
            prop_assert!(l.sigs().is_some());
        }
        // Every stored state of both parties conserves, and both histories are the same.
        let ha = pair.sa.history(pair.a.id()).unwrap();
        let hb = pair.sb.history(pair.b.id()).unwrap();
        prop_assert_eq!(&ha, &hb);
        prop_assert_eq!(ha.len() as u64, applied);
        for s in &ha {
            prop_assert!(conserved(&s.state, s.locks.iter().map(|l| l.amount).sum()));
            let (sa, sb) = s.sigs().unwrap();
            pair.chan.verify(&s.state, &sa, pair.chan.params.a).unwrap();
            pair.chan.verify(&s.state, &sb, pair.chan.params.b).unwrap();
        }
    }
}
