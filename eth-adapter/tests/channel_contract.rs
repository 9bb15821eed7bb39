//! The payment channel contract (`contracts/Channel.sol`) against a real anvil: opening, top-ups,
//! withdrawals, cooperative and unilateral closes, the secret registry, and every refusal
//! (replays, forged and malleable signatures, bad sums, too many locks, bad tokens,
//! re-entrancy, reverting receivers). Accounts: 0 = A, 1 = B, 2 = a third party (watchtower,
//! relayer) that sends transactions so that the parties' balances change by exact payouts.
//! Helpers: `common/channel.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{uint, Address, B256, I256, U256};
use alloy::providers::Provider;
use alloy::sol_types::{SolCall, SolError};
use common::channel::{mined, record, secret, sign_raw, st, ChannelEnv, HOUR, ONE};
use devnet::anvil::Devnet;
use devnet::gas::{measure_channel, RAIDEN};
use devnet::test_contracts::{FeeToken, TestToken};
use eth_adapter::bindings::Channel::{self, ChannelErrors};
use eth_adapter::channel::{
    locks_hash, ChannelError, ChannelRef, Lock, OnChain, Side, Sig, State, MAX_LOCKS,
};

/// Simulates `$call` and returns the decoded `Channel` error it reverts with, which must be
/// `$variant`.
macro_rules! reverts_with {
    ($call:expr, $variant:ident) => {{
        let err = $call
            .call()
            .await
            .expect_err(concat!("expected revert ", stringify!($variant)));
        match err.as_decoded_interface_error::<ChannelErrors>() {
            Some(ChannelErrors::$variant(e)) => e,
            other => panic!("expected {}, got {other:?} ({err})", stringify!($variant)),
        }
    }};
}

fn u(x: u128) -> U256 {
    U256::from(x)
}

#[tokio::test]
async fn rust_mirror_matches_the_contract() {
    let t = ChannelEnv::start().await;
    let c = &t.c[0];
    let ch = t.chan(1);
    assert_eq!(
        c.channelId(ch.params.clone()).call().await.unwrap(),
        ch.id()
    );
    let separator = c.domainSeparator().call().await.unwrap();
    assert_eq!(separator, ch.domain().separator());
    assert_eq!(c.MAX_LOCKS().call().await.unwrap(), U256::from(MAX_LOCKS));
    let locks: Vec<Lock> = (0..3u8)
        .map(|i| Lock {
            from: if i % 2 == 0 { ch.params.a } else { ch.params.b },
            amount: u128::from(i) * 1_000 + 7,
            hashlock: secret(i).1,
            expiry: 1_700_000_000 + u64::from(i),
        })
        .collect();
    for n in 0..=locks.len() {
        let l = locks[..n].to_vec();
        assert_eq!(c.hashLocks(l.clone()).call().await.unwrap(), locks_hash(&l));
    }
    let mut s = st(9, 1, u128::MAX, u128::MAX, 3);
    s.locksHash = locks_hash(&locks);
    (s.withdrawnA, s.withdrawnB) = (5, u128::MAX - 1);
    s.withdrawExpiry = u64::MAX - 3;
    for fin in [false, true] {
        s.isFinal = fin;
        let on_chain = c
            .hashState(ch.params.clone(), s.clone())
            .call()
            .await
            .unwrap();
        assert_eq!(on_chain, ch.digest(&s));
    }
}

#[tokio::test]
async fn eth_open_top_up_and_cooperative_close_pay_exactly() {
    let t = ChannelEnv::start().await;
    let ch = t.chan(1);
    let (a, b, p) = (ch.params.a, ch.params.b, ch.params.clone());
    assert_eq!(t.status(&ch).await.0, 0);
    reverts_with!(t.deposit(0, &ch, 0), ZeroAmount);
    reverts_with!(t.deposit(2, &ch, ONE), NotParty);
    reverts_with!(t.c[0].depositToken(p.clone(), u(ONE)), WrongToken);
    let r = mined(t.deposit(0, &ch, ONE)).await;
    let opened = r.decoded_log::<Channel::Opened>().expect("Opened").data;
    assert_eq!((opened.channelId, opened.a, opened.b), (ch.id(), a, b));
    mined(t.deposit(1, &ch, 2 * ONE)).await;
    mined(t.deposit(0, &ch, ONE / 2)).await;
    let dep_a = ONE + ONE / 2;
    let zero = U256::ZERO;
    assert_eq!(t.status(&ch).await, (1, u(dep_a), u(2 * ONE), zero, zero));

    // Final state: A 1.2, B 2.3. A then tops up 0.3 more, which the state does not know of.
    let mut fin = st(5, ONE + ONE / 5, 2 * ONE + 3 * ONE / 10, dep_a, 2 * ONE);
    let not_final = t.sign2(&ch, &fin, &[]);
    reverts_with!(t.coop(2, &ch, &fin, &not_final), NotFinal);
    fin.isFinal = true;
    let mut with_lock = fin.clone();
    with_lock.locksHash = B256::repeat_byte(1);
    let sigs = t.sign2_raw(&ch, &with_lock);
    reverts_with!(t.coop(2, &ch, &with_lock, &sigs), PendingLocks);
    let sigs = t.sign2(&ch, &fin, &[]);
    mined(t.deposit(0, &ch, 3 * ONE / 10)).await;

    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.coop(2, &ch, &fin, &sigs)).await;
    assert_eq!(t.balance(a).await - a0, u(ONE + ONE / 2));
    assert_eq!(t.balance(b).await - b0, u(2 * ONE + 3 * ONE / 10));
    assert_eq!(t.balance(t.contract()).await, zero);
    assert_eq!(t.status(&ch).await.0, 3);
    // Settled for good: no second close, no reopening of the same id.
    reverts_with!(t.coop(2, &ch, &fin, &sigs), NotOpen);
    reverts_with!(t.deposit(0, &ch, ONE), NotOpen);
    reverts_with!(t.c[0].closeUnsigned(p), NotOpen);
}

#[tokio::test]
async fn erc20_open_top_up_and_cooperative_close_pay_exactly() {
    let t = ChannelEnv::start().await;
    let tok = TestToken::deploy(t.p[0].clone(), "T".into(), 6)
        .await
        .unwrap();
    let tb = TestToken::new(*tok.address(), t.p[1].clone());
    let ch = t.chan_between(0, 1, 1, *tok.address());
    let (a, b, p) = (ch.params.a, ch.params.b, ch.params.clone());
    for (who, tk) in [(a, &tok), (b, &tb)] {
        mined(tok.mint(who, u(1_000))).await;
        mined(tk.approve(t.contract(), u(1_000))).await;
    }
    reverts_with!(t.deposit(0, &ch, 1), WrongToken);
    mined(t.c[0].depositToken(p.clone(), u(100))).await;
    mined(t.c[1].depositToken(p.clone(), u(50))).await;
    mined(t.c[0].depositToken(p.clone(), u(10))).await;
    assert_eq!(tok.balanceOf(t.contract()).call().await.unwrap(), u(160));
    let mut fin = st(7, 30, 130, 110, 50);
    fin.isFinal = true;
    mined(t.coop(2, &ch, &fin, &t.sign2(&ch, &fin, &[]))).await;
    assert_eq!(tok.balanceOf(a).call().await.unwrap(), u(1_000 - 110 + 30));
    assert_eq!(tok.balanceOf(b).call().await.unwrap(), u(1_000 - 50 + 130));
    assert_eq!(
        tok.balanceOf(t.contract()).call().await.unwrap(),
        U256::ZERO
    );
}

#[tokio::test]
async fn fee_on_transfer_token_is_refused() {
    let t = ChannelEnv::start().await;
    let fee = FeeToken::deploy(t.p[0].clone()).await.unwrap();
    mined(fee.mint(t.net.address(0), u(ONE))).await;
    mined(fee.approve(t.contract(), u(ONE))).await;
    let ch = t.chan_between(0, 1, 1, *fee.address());
    let deposit = t.c[0].depositToken(ch.params.clone(), u(ONE / 2));
    reverts_with!(deposit, BalanceMismatch);
    assert_eq!(t.status(&ch).await.0, 0, "not opened");
    assert_eq!(
        fee.balanceOf(t.contract()).call().await.unwrap(),
        U256::ZERO
    );
}

#[tokio::test]
async fn deposits_and_params_are_checked() {
    let t = ChannelEnv::start().await;
    let ch = t.chan(1);
    let mut bad = vec![ch.clone(), ch.clone(), ch.clone(), ch.clone()];
    bad[0].params.b = ch.params.a;
    bad[1].params.b = Address::ZERO;
    bad[2].params.challengePeriod = HOUR - 1;
    bad[3].params.challengePeriod = 30 * 24 * HOUR + 1;
    for c in &bad {
        reverts_with!(t.deposit(0, c, 1), BadParams);
    }
    // Cumulative deposits are bounded by 2^120 - 1 per party.
    let tok = TestToken::deploy(t.p[0].clone(), "T".into(), 18)
        .await
        .unwrap();
    let max = t.c[0].MAX_DEPOSIT().call().await.unwrap();
    assert_eq!(max, (U256::from(1) << 120) - U256::from(1));
    mined(tok.mint(ch.params.a, max * U256::from(2))).await;
    mined(tok.approve(t.contract(), max * U256::from(2))).await;
    let p = t.chan_between(0, 1, 2, *tok.address()).params;
    let one_more = max + U256::from(1);
    reverts_with!(t.c[0].depositToken(p.clone(), one_more), AmountTooLarge);
    mined(t.c[0].depositToken(p.clone(), max)).await;
    reverts_with!(t.c[0].depositToken(p, U256::from(1)), AmountTooLarge);
}

#[tokio::test]
async fn withdraw_while_open() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    // v1: A paid B 0.2. v2: B withdraws 0.5 of its 1.2.
    let v1 = st(1, 8 * ONE / 10, 12 * ONE / 10, ONE, ONE);
    let mut v2 = st(2, 8 * ONE / 10, 7 * ONE / 10, ONE, ONE);
    v2.withdrawnB = ONE / 2;
    let wexp = common::now(&t.net).await + 24 * HOUR;
    v2.withdrawExpiry = wexp;
    let (s1, s2) = (t.sign2(&ch, &v1, &[]), t.sign2(&ch, &v2, &[]));
    reverts_with!(t.withdraw(2, &ch, &v1, &[], &s1), NothingToWithdraw);
    let b0 = t.balance(b).await;
    mined(t.withdraw(2, &ch, &v2, &[], &s2)).await;
    assert_eq!(t.balance(b).await - b0, u(ONE / 2));
    let half = u(ONE / 2);
    assert_eq!(t.status(&ch).await, (1, u(ONE), u(ONE), U256::ZERO, half));
    // Once only; and a state from before the withdrawal cannot withdraw.
    reverts_with!(t.withdraw(2, &ch, &v2, &[], &s2), NothingToWithdraw);
    let mut older = v1.clone();
    older.withdrawnA = ONE / 10;
    older.balanceA -= ONE / 10;
    let so = t.sign2(&ch, &older, &[]);
    reverts_with!(t.withdraw(2, &ch, &older, &[], &so), StaleWithdrawal);
    // A withdrawal that would leave the channel short (B would take 2.0 of the 1.5 left,
    // counting a deposit A never made).
    let mut short = st(3, ONE / 2, 0, 2 * ONE, ONE);
    short.withdrawnB = 25 * ONE / 10;
    short.withdrawExpiry = wexp;
    let ss = t.sign2(&ch, &short, &[]);
    reverts_with!(t.withdraw(2, &ch, &short, &[], &ss), Underfunded);
    // A withdrawal needs both signatures.
    let mut v3 = v2.clone();
    v3.version = 3;
    v3.withdrawnA = ONE / 10;
    v3.balanceA -= ONE / 10;
    let (s3a, _) = t.sign2(&ch, &v3, &[]);
    reverts_with!(
        t.withdraw(2, &ch, &v3, &[], &(s3a.clone(), s3a)),
        BadSignature
    );

    // Closing with the withdrawal state pays the rest: A 0.8, B 0.7 (B already got 0.5).
    let rec = record(&mined(t.close(1, &ch, &v2, &[], &s2)).await);
    assert_eq!((rec.payA, rec.payB), (u(8 * ONE / 10), u(7 * ONE / 10)));
    reverts_with!(t.withdraw(2, &ch, &v1, &[], &s1), NotOpen);
    t.net.advance_time(HOUR).await;
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle(2, &ch, &rec, &[])).await;
    assert_eq!(t.balance(a).await - a0, u(8 * ONE / 10));
    assert_eq!(t.balance(b).await - b0, u(7 * ONE / 10));
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
}

#[tokio::test]
async fn unilateral_close_is_replaced_by_a_watchtower_and_settles_after_the_period() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    let states = [
        st(1, 15 * ONE / 10, ONE / 2, ONE, ONE),
        st(2, ONE / 2, 15 * ONE / 10, ONE, ONE),
        st(3, 4 * ONE / 10, 16 * ONE / 10, ONE, ONE),
        st(4, 3 * ONE / 10, 17 * ONE / 10, ONE, ONE),
    ];
    let sigs: Vec<_> = states.iter().map(|s| t.sign2(&ch, s, &[])).collect();
    // A closes with the old state that suits it.
    let r1 = record(&mined(t.close(0, &ch, &states[0], &[], &sigs[0])).await);
    assert_eq!(r1.version, 1);
    assert_eq!(t.status(&ch).await.0, 2);
    reverts_with!(t.deposit(1, &ch, 1), NotOpen);
    reverts_with!(t.close(1, &ch, &states[1], &[], &sigs[1]), NotOpen);
    reverts_with!(t.settle(2, &ch, &r1, &[]), ChallengeOpen);

    // B's watchtower (a third account) answers with version 3.
    let r3 = record(&mined(t.update(2, &ch, &r1, &states[2], &[], &sigs[2])).await);
    assert_eq!((r3.version, r3.deadline), (3, r1.deadline));
    // An older or equal version, or a stale record, is refused.
    reverts_with!(
        t.update(0, &ch, &r3, &states[1], &[], &sigs[1]),
        StaleVersion
    );
    reverts_with!(
        t.update(0, &ch, &r3, &states[2], &[], &sigs[2]),
        StaleVersion
    );
    // The part fixed at close (deadline, nets) must match; the outcome (version, payouts)
    // need not: any record of this closing will do for `update`, only the latest for `settle`.
    let mut later = r1.clone();
    later.deadline += 1;
    let mut richer = r1.clone();
    richer.netB += I256::ONE;
    for bad in [&later, &richer] {
        reverts_with!(t.update(0, &ch, bad, &states[3], &[], &sigs[3]), BadRecord);
    }
    t.update(0, &ch, &r1, &states[3], &[], &sigs[3])
        .call()
        .await
        .unwrap();
    reverts_with!(t.settle(2, &ch, &r1, &[]), BadRecord);

    // The period ends at the deadline: no more updates, settlement from then on.
    t.next_block_at(r1.deadline - 1).await;
    t.net.mine(1).await;
    reverts_with!(t.settle(2, &ch, &r3, &[]), ChallengeOpen);
    t.next_block_at(r1.deadline).await;
    t.net.mine(1).await;
    reverts_with!(
        t.update(0, &ch, &r3, &states[3], &[], &sigs[3]),
        ChallengeOver
    );
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle(2, &ch, &r3, &[])).await;
    assert_eq!(t.balance(a).await - a0, u(4 * ONE / 10));
    assert_eq!(t.balance(b).await - b0, u(16 * ONE / 10));
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
    assert_eq!(t.status(&ch).await.0, 3);
    reverts_with!(t.settle(2, &ch, &r3, &[]), NotClosing);
}

#[tokio::test]
async fn close_unsigned_returns_deposits_and_yields_to_a_signed_state() {
    let t = ChannelEnv::start().await;
    // B never signed anything: A gets its deposit back.
    let ch = t.chan(1);
    let a = ch.params.a;
    mined(t.deposit(0, &ch, ONE)).await;
    reverts_with!(t.c[2].closeUnsigned(ch.params.clone()), NotParty);
    let rec = record(&mined(t.c[0].closeUnsigned(ch.params.clone())).await);
    assert_eq!((rec.version, rec.payA, rec.payB), (0, u(ONE), U256::ZERO));
    t.net.advance_time(HOUR).await;
    let a0 = t.balance(a).await;
    mined(t.settle(2, &ch, &rec, &[])).await;
    assert_eq!(t.balance(a).await - a0, u(ONE));

    // A closes unsigned although it signed v1 giving most to B: B's v1 replaces it.
    let ch = t.funded(2, ONE, ONE).await;
    let v1 = st(1, ONE / 5, 18 * ONE / 10, ONE, ONE);
    let sigs = t.sign2(&ch, &v1, &[]);
    let r0 = record(&mined(t.c[0].closeUnsigned(ch.params.clone())).await);
    let r1 = record(&mined(t.update(1, &ch, &r0, &v1, &[], &sigs)).await);
    t.net.advance_time(HOUR).await;
    let (a0, b0) = (t.balance(a).await, t.balance(ch.params.b).await);
    mined(t.settle(2, &ch, &r1, &[])).await;
    assert_eq!(t.balance(a).await - a0, u(ONE / 5));
    assert_eq!(t.balance(ch.params.b).await - b0, u(18 * ONE / 10));
}

#[tokio::test]
async fn locks_are_resolved_by_the_secret_registry() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    let exp = common::now(&t.net).await + 2 * HOUR;
    let lock = |from, amount, n| Lock {
        from,
        amount,
        hashlock: secret(n).1,
        expiry: exp,
    };
    let locks = vec![
        lock(a, ONE / 10, 1),     // revealed early: to B
        lock(b, 2 * ONE / 10, 2), // revealed after expiry: back to B
        lock(a, 3 * ONE / 10, 3), // never revealed: back to A
        lock(b, ONE / 20, 4),     // revealed exactly at expiry: too late, back to B
    ];
    let mut s = st(1, 6 * ONE / 10, 75 * ONE / 100, ONE, ONE);
    s.locksHash = locks_hash(&locks);
    let sigs = t.sign2(&ch, &s, &locks);
    // The wrong locks for the hash, or a lock from a stranger, cannot close.
    reverts_with!(t.close(1, &ch, &s, &locks[..3], &sigs), LocksMismatch);
    let mut odd = locks.clone();
    odd[0].from = t.net.address(2);
    let mut so = s.clone();
    so.locksHash = locks_hash(&odd);
    reverts_with!(t.close(1, &ch, &so, &odd, &t.sign2_raw(&ch, &so)), BadLock);

    let r = mined(t.c[1].reveal(secret(1).0)).await;
    let block = r.block_number.unwrap().into();
    let block = t.net.provider().get_block_by_number(block).await.unwrap();
    let revealed = t.c[0].revealedAt(secret(1).1).call().await.unwrap();
    assert_eq!(revealed, U256::from(block.unwrap().header.timestamp));
    reverts_with!(t.c[0].reveal(secret(1).0), AlreadyRevealed);
    let rec = record(&mined(t.close(1, &ch, &s, &locks, &sigs)).await);
    t.net.advance_time(HOUR).await;
    // Past the deadline but before the expiries, unrevealed locks hold the settlement.
    let e = reverts_with!(t.settle(2, &ch, &rec, &locks), LockPending);
    assert_eq!(e.hashlock, secret(2).1);
    reverts_with!(t.settle(2, &ch, &rec, &locks[1..]), LocksMismatch);
    t.next_block_at(exp).await;
    mined(t.c[0].reveal(secret(4).0)).await;
    t.next_block_at(exp + 1).await;
    mined(t.c[0].reveal(secret(2).0)).await;
    let at = |n| t.c[0].revealedAt(secret(n).1);
    assert_eq!(at(4).call().await.unwrap(), U256::from(exp));
    assert_eq!(at(2).call().await.unwrap(), U256::from(exp + 1));
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    t.next_block_at(exp + 2).await;
    let r = mined(t.settle(2, &ch, &rec, &locks)).await;
    // As HTLC.sol's claim (`block.timestamp < expiry`): a lock pays its receiver only if its
    // secret was revealed strictly before its expiry.
    // A: 0.6 + 0.3 (unrevealed, back); B: 0.75 + 0.1 (revealed early) + 0.2 (revealed late,
    // back) + 0.05 (revealed at expiry, back).
    let (pay_a, pay_b) = (u(9 * ONE / 10), u(11 * ONE / 10));
    assert_eq!(t.balance(a).await - a0, pay_a);
    assert_eq!(t.balance(b).await - b0, pay_b);
    let settled = r.decoded_log::<Channel::Settled>().unwrap().data;
    assert_eq!((settled.paidA, settled.paidB), (pay_a, pay_b));
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
}

#[tokio::test]
async fn max_locks_bound_is_enforced() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    let exp = common::now(&t.net).await + 2 * HOUR;
    let many: Vec<Lock> = (0..=MAX_LOCKS)
        .map(|i| Lock {
            from: if i % 2 == 0 { a } else { b },
            amount: 1_000,
            hashlock: secret(i as u8).1,
            expiry: exp,
        })
        .collect();
    let state_for = |locks: &[Lock]| {
        let from = |who| {
            locks
                .iter()
                .filter(|l| l.from == who)
                .map(|l| l.amount)
                .sum::<u128>()
        };
        let mut s = st(1, ONE - from(a), ONE - from(b), ONE, ONE);
        s.locksHash = locks_hash(locks);
        s
    };
    let s = state_for(&many);
    reverts_with!(
        t.close(1, &ch, &s, &many, &t.sign2_raw(&ch, &s)),
        TooManyLocks
    );
    // MAX_LOCKS locks close and settle (all expired unrevealed: back to their senders).
    let locks = &many[..MAX_LOCKS];
    let s = state_for(locks);
    let rec = record(&mined(t.close(1, &ch, &s, locks, &t.sign2(&ch, &s, locks))).await);
    t.net.advance_time(3 * HOUR).await;
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    let r = mined(t.settle(2, &ch, &rec, locks)).await;
    println!("settle with {MAX_LOCKS} locks: {} gas", r.gas_used);
    assert!(r.gas_used < 500_000, "{}", r.gas_used);
    assert_eq!(t.balance(a).await - a0, u(ONE));
    assert_eq!(t.balance(b).await - b0, u(ONE));
}

#[tokio::test]
async fn states_of_other_channels_contracts_and_chains_are_refused() {
    let t = ChannelEnv::start().await;
    let x = t.funded(1, ONE, ONE).await;
    let y = t.funded(2, ONE, ONE).await;
    let s = st(1, ONE / 2, 15 * ONE / 10, ONE, ONE);
    let sx = t.sign2(&x, &s, &[]);
    // X's signatures on Y.
    reverts_with!(t.close(1, &y, &s, &[], &sx), BadSignature);
    // Signed for another chain id.
    let mut other_chain = y.clone();
    other_chain.chain_id = 1;
    let sc = t.sign2(&other_chain, &s, &[]);
    reverts_with!(t.close(1, &y, &s, &[], &sc), BadSignature);
    // The same channel parameters on a second deployment of the contract.
    let c2 = Channel::deploy(t.p[0].clone()).await.unwrap();
    mined(c2.deposit(x.params.clone()).value(u(ONE))).await;
    let c2b = Channel::new(*c2.address(), t.p[1].clone());
    mined(c2b.deposit(x.params.clone()).value(u(ONE))).await;
    let (sa, sb) = sx.clone();
    reverts_with!(
        c2.close(x.params.clone(), s.clone(), vec![], sa, sb),
        BadSignature
    );
    // The genuine use still works.
    mined(t.close(1, &x, &s, &[], &sx)).await;
}

#[tokio::test]
async fn forged_and_malleable_signatures_are_refused() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let s = st(1, ONE / 2, 15 * ONE / 10, ONE, ONE);
    let (sa, sb) = t.sign2(&ch, &s, &[]);
    let with_a = |bad: Sig| t.close(1, &ch, &s, &[], &(bad, sb.clone()));
    // The genuine pair would pass.
    with_a(sa.clone()).call().await.unwrap();
    reverts_with!(with_a(sign_raw(&ch, &t.key(2), &s)), BadSignature);
    reverts_with!(
        t.close(1, &ch, &s, &[], &(sa.clone(), sa.clone())),
        BadSignature
    );
    // The malleable twin (n - s, other v) recovers A's address, yet is refused.
    let n = uint!(0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141_U256);
    let twin = Sig {
        v: 55 - sa.v,
        r: sa.r,
        s: (n - U256::from_be_bytes(sa.s.0)).into(),
    };
    let (r, s_twin) = (U256::from_be_bytes(twin.r.0), U256::from_be_bytes(twin.s.0));
    let parsed = alloy::primitives::Signature::new(r, s_twin, twin.v == 28);
    let recovered = parsed.recover_address_from_prehash(&ch.digest(&s)).unwrap();
    assert_eq!(recovered, ch.params.a);
    reverts_with!(with_a(twin), BadSignature);
    for v in [0u8, 1, 29] {
        reverts_with!(with_a(Sig { v, ..sa.clone() }), BadSignature);
    }
    // ecrecover returns zero for r = 0 or s = 0.
    reverts_with!(
        with_a(Sig {
            r: B256::ZERO,
            ..sa.clone()
        }),
        BadSignature
    );
    reverts_with!(
        with_a(Sig {
            s: B256::ZERO,
            ..sa.clone()
        }),
        BadSignature
    );
    // Version 0 is never a signed state.
    let mut v0 = s.clone();
    v0.version = 0;
    reverts_with!(
        t.close(1, &ch, &v0, &[], &t.sign2_raw(&ch, &v0)),
        StaleVersion
    );
}

#[tokio::test]
async fn states_whose_sums_exceed_the_deposits_are_refused() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    let close = |s: &State, locks: &[Lock]| t.close(1, &ch, s, locks, &t.sign2_raw(&ch, s));
    // Balances above the deposits the state counts.
    reverts_with!(close(&st(1, ONE, ONE + 1, ONE, ONE), &[]), SumMismatch);
    // Counting a deposit A never made, to B's profit.
    reverts_with!(close(&st(1, 0, 3 * ONE, 2 * ONE, ONE), &[]), Underfunded);
    // Amounts near 2^128 that would wrap 128-bit sums.
    let max = |from, n| Lock {
        from,
        amount: u128::MAX,
        hashlock: secret(n).1,
        expiry: 1,
    };
    let locks = [max(a, 1), max(b, 2)];
    let mut huge = st(1, 0, 0, u128::MAX, u128::MAX);
    huge.locksHash = locks_hash(&locks);
    reverts_with!(close(&huge, &locks), Underfunded);
    // A lock on top of balances that already use everything.
    let one_wei = [Lock {
        amount: 1,
        ..max(a, 1)
    }];
    let mut over = st(1, ONE, ONE, ONE, ONE);
    over.locksHash = locks_hash(&one_wei);
    reverts_with!(close(&over, &one_wei), SumMismatch);
    assert_eq!(t.status(&ch).await.0, 1, "nothing was closed");
}

#[tokio::test]
async fn reverting_receiver_is_credited_and_withdraws_later() {
    let t = ChannelEnv::start().await;
    let ch = t.chan_between(0, 3, 1, Address::ZERO);
    let (a, b) = (ch.params.a, ch.params.b);
    mined(t.deposit(0, &ch, ONE)).await;
    mined(t.deposit(3, &ch, ONE)).await;
    let mut fin = st(4, ONE / 2, 15 * ONE / 10, ONE, ONE);
    fin.isFinal = true;
    let sigs = t.sign2(&ch, &fin, &[]);
    let party = t.contract_party(3).await;
    mined(party.setRejecting(true)).await;

    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    let r = mined(t.coop(2, &ch, &fin, &sigs)).await;
    assert_eq!(t.balance(a).await - a0, u(ONE / 2), "A is paid");
    assert_eq!(t.balance(b).await, b0, "B refused the payment");
    let credited = r.decoded_log::<Channel::Credited>().expect("Credited").data;
    assert_eq!((credited.account, credited.amount), (b, u(15 * ONE / 10)));
    let credit = || t.c[0].credit(b, Address::ZERO);
    assert_eq!(credit().call().await.unwrap(), u(15 * ONE / 10));
    assert_eq!(t.balance(t.contract()).await, u(15 * ONE / 10));

    // B takes its credit later: not to itself while it still refuses ETH, then elsewhere.
    let to = |to| {
        Channel::withdrawCreditCall {
            token: Address::ZERO,
            to,
        }
        .abi_encode()
    };
    reverts_with!(party.exec(t.contract(), to(b).into()), TransferFailed);
    let elsewhere = t.net.address(5);
    let e0 = t.balance(elsewhere).await;
    mined(party.exec(t.contract(), to(elsewhere).into())).await;
    assert_eq!(t.balance(elsewhere).await - e0, u(15 * ONE / 10));
    assert_eq!(credit().call().await.unwrap(), U256::ZERO);
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
    reverts_with!(party.exec(t.contract(), to(elsewhere).into()), NoCredit);
    reverts_with!(t.c[2].withdrawCredit(Address::ZERO, elsewhere), NoCredit);
}

#[tokio::test]
async fn reentrant_party_cannot_double_pay() {
    let t = ChannelEnv::start().await;
    let ch1 = t.chan_between(0, 3, 1, Address::ZERO);
    let ch2 = t.chan_between(0, 3, 2, Address::ZERO);
    for ch in [&ch1, &ch2] {
        mined(t.deposit(0, ch, ONE)).await;
        mined(t.deposit(3, ch, ONE)).await;
    }
    let b = ch1.params.b;
    let s = st(1, ONE / 2, 15 * ONE / 10, ONE, ONE);
    let rec = record(&mined(t.close(0, &ch1, &s, &[], &t.sign2(&ch1, &s, &[]))).await);
    let mut w = st(1, ONE, ONE / 2, ONE, ONE);
    w.withdrawnB = ONE / 2;
    w.withdrawExpiry = common::now(&t.net).await + 24 * HOUR;
    let (wa, wb) = t.sign2(&ch2, &w, &[]);
    t.net.advance_time(HOUR).await;
    let party = t.contract_party(3).await;
    let reentrancy = Channel::Reentrancy::SELECTOR;

    // Paid by settle, B calls settle again.
    let again = Channel::settleCall {
        p: ch1.params.clone(),
        rec: rec.clone(),
        locks: vec![],
    };
    mined(party.arm(t.contract(), again.abi_encode().into())).await;
    let b0 = t.balance(b).await;
    mined(t.settle(2, &ch1, &rec, &[])).await;
    assert_eq!(t.balance(b).await - b0, u(15 * ONE / 10));
    let f = party.flags().call().await.unwrap();
    assert_eq!(
        (f.attempts, f.reentrySucceeded, f.reentryError.0),
        (1, 0, reentrancy)
    );
    assert_eq!(
        t.balance(t.contract()).await,
        u(2 * ONE),
        "only channel 2 left"
    );

    // Paid by withdraw, B calls withdraw again with the same state.
    let again = Channel::withdrawCall {
        p: ch2.params.clone(),
        s: w.clone(),
        locks: vec![],
        sa: wa.clone(),
        sb: wb.clone(),
    };
    mined(party.arm(t.contract(), again.abi_encode().into())).await;
    let b0 = t.balance(b).await;
    mined(t.withdraw(2, &ch2, &w, &[], &(wa, wb))).await;
    assert_eq!(t.balance(b).await - b0, u(ONE / 2));
    let f = party.flags().call().await.unwrap();
    assert_eq!(
        (f.attempts, f.reentrySucceeded, f.reentryError.0),
        (2, 0, reentrancy)
    );
    assert_eq!(t.balance(t.contract()).await, u(15 * ONE / 10));
    assert_eq!(
        t.c[0].credit(b, Address::ZERO).call().await.unwrap(),
        U256::ZERO
    );
}

/// A receiver re-entering from `settleFinal`'s payout is refused; one re-entering `close`
/// (which does not call out) from a withdrawal's payout closes with nets that already count
/// the whole withdrawal, and the settlement pays exactly the rest.
#[tokio::test]
async fn reentrant_party_settle_final_and_close_from_withdraw() {
    let t = ChannelEnv::start().await;
    let ch1 = t.chan_between(0, 3, 1, Address::ZERO);
    let ch2 = t.chan_between(0, 3, 2, Address::ZERO);
    for ch in [&ch1, &ch2] {
        mined(t.deposit(0, ch, ONE)).await;
        mined(t.deposit(3, ch, ONE)).await;
    }
    let (a, b) = (ch1.params.a, ch1.params.b);
    let s = st(1, ONE, ONE, ONE, ONE);
    let rec = record(&mined(t.close(0, &ch1, &s, &[], &t.sign2(&ch1, &s, &[]))).await);
    let mut fin = st(2, ONE / 2, 15 * ONE / 10, ONE, ONE);
    fin.isFinal = true;
    let (fa, fb) = t.sign2(&ch1, &fin, &[]);
    // ch2: both withdraw, A 0.2 and B 0.3.
    let mut w = st(1, 8 * ONE / 10, 7 * ONE / 10, ONE, ONE);
    (w.withdrawnA, w.withdrawnB) = (2 * ONE / 10, 3 * ONE / 10);
    w.withdrawExpiry = common::now(&t.net).await + HOUR;
    let (wa, wb) = t.sign2(&ch2, &w, &[]);
    let party = t.contract_party(3).await;

    let again = Channel::settleFinalCall {
        p: ch1.params.clone(),
        f: rec.frozen(),
        s: fin.clone(),
        sa: fa.clone(),
        sb: fb.clone(),
    };
    mined(party.arm(t.contract(), again.abi_encode().into())).await;
    let b0 = t.balance(b).await;
    mined(t.settle_final(2, &ch1, &rec, &fin, &(fa, fb))).await;
    assert_eq!(t.balance(b).await - b0, u(15 * ONE / 10));
    let f = party.flags().call().await.unwrap();
    let reentrancy = Channel::Reentrancy::SELECTOR;
    assert_eq!(
        (f.attempts, f.reentrySucceeded, f.reentryError.0),
        (1, 0, reentrancy)
    );
    assert_eq!(t.balance(t.contract()).await, u(2 * ONE), "ch2 left");

    // Paid by withdraw, B closes ch2 with the same state from inside its payout.
    let close_again = Channel::closeCall {
        p: ch2.params.clone(),
        s: w.clone(),
        locks: vec![],
        sa: wa.clone(),
        sb: wb.clone(),
    };
    mined(party.arm(t.contract(), close_again.abi_encode().into())).await;
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    let r = mined(t.withdraw(2, &ch2, &w, &[], &(wa, wb))).await;
    assert_eq!(t.balance(a).await - a0, u(2 * ONE / 10));
    assert_eq!(t.balance(b).await - b0, u(3 * ONE / 10));
    let f = party.flags().call().await.unwrap();
    assert_eq!((f.attempts, f.reentrySucceeded), (2, 1));
    let rec2 = record(&r);
    let net = |x: u128| I256::try_from(x).unwrap();
    assert_eq!(
        (rec2.netA, rec2.netB),
        (net(8 * ONE / 10), net(7 * ONE / 10))
    );
    assert_eq!((rec2.payA, rec2.payB), (u(8 * ONE / 10), u(7 * ONE / 10)));
    t.net.advance_time(HOUR).await;
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle(2, &ch2, &rec2, &[])).await;
    assert_eq!(t.balance(a).await - a0, u(8 * ONE / 10));
    assert_eq!(t.balance(b).await - b0, u(7 * ONE / 10));
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
}

#[tokio::test]
async fn gas_goals() {
    let net = Devnet::start().await;
    let g = measure_channel(&net).await;
    println!("{g:#?}");
    let r = RAIDEN;
    for c in [g.eth, g.erc20] {
        assert!(c.open < r.open_with_deposit, "{c:?}");
        assert!(c.deposit < r.deposit, "{c:?}");
        assert!(c.cooperative_close < r.cooperative_settle, "{c:?}");
        // A final state ending a closing channel: compared with Raiden's cooperative settle.
        assert!(c.settle_final < r.cooperative_settle, "{c:?}");
        assert!(c.close < r.close, "{c:?}");
        assert!(c.update < r.update, "{c:?}");
        assert!(c.reveal < r.register_secret, "{c:?}");
        assert!(c.settle_no_lock < r.settle, "{c:?}");
        assert!(c.settle_one_lock < r.settle + r.unlock, "{c:?}");
        assert!(c.per_lock() < r.unlock, "{c:?}");
        assert!(c.unilateral_one_lock() <= 250_000, "{c:?}");
    }
    assert!(g.eth.open <= 70_000, "{:?}", g.eth);
    assert!(g.eth.cooperative_close <= 70_000, "{:?}", g.eth);
}

/// A cheater who closed with an old state cannot front-run the honest update with one older
/// version after another: `update` checks only what is fixed at close (deadline, nets) and
/// that the version grows, so an honest update prepared against the record at close still
/// succeeds after any lower update was mined first.
#[tokio::test]
async fn update_front_run_by_lower_versions_still_succeeds() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    let states: Vec<State> = (1..=5u64)
        .map(|v| {
            st(
                v,
                2 * ONE - u128::from(v) * ONE / 5,
                u128::from(v) * ONE / 5,
                ONE,
                ONE,
            )
        })
        .collect();
    let sigs: Vec<_> = states.iter().map(|s| t.sign2(&ch, s, &[])).collect();
    // A (the cheater) closes with v1; B's watchtower prepares update(v5) against that record.
    let r1 = record(&mined(t.close(0, &ch, &states[0], &[], &sigs[0])).await);
    // A's updates with v2, then v3, are mined first (front-running).
    let r2 = record(&mined(t.update(0, &ch, &r1, &states[1], &[], &sigs[1])).await);
    mined(t.update(0, &ch, &r2, &states[2], &[], &sigs[2])).await;
    // The honest update, computed against the record at close, still goes through.
    let r5 = record(&mined(t.update(2, &ch, &r1, &states[4], &[], &sigs[4])).await);
    assert_eq!((r5.version, r5.deadline), (5, r1.deadline));
    // Nothing lower or equal can follow it.
    reverts_with!(
        t.update(0, &ch, &r1, &states[3], &[], &sigs[3]),
        StaleVersion
    );
    reverts_with!(
        t.update(0, &ch, &r1, &states[4], &[], &sigs[4]),
        StaleVersion
    );
    // Settlement needs the latest record exactly.
    t.net.advance_time(HOUR).await;
    reverts_with!(t.settle(2, &ch, &r2, &[]), BadRecord);
    let mut forged = r5.clone();
    forged.payA += U256::from(1);
    forged.payB -= U256::from(1);
    reverts_with!(t.settle(2, &ch, &forged, &[]), BadRecord);
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle(2, &ch, &r5, &[])).await;
    assert_eq!(t.balance(a).await - a0, u(ONE));
    assert_eq!(t.balance(b).await - b0, u(ONE));
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
}

/// Only the parties may start a closing: a third party that saw a co-signed state in the
/// mempool (the final state of a pending cooperative close, a withdrawal) cannot turn it into
/// a challenge-period wait. Watchtowers only need `update`.
#[tokio::test]
async fn only_a_party_can_close() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let mut fin = st(3, ONE / 2, 15 * ONE / 10, ONE, ONE);
    fin.isFinal = true;
    let fs = t.sign2(&ch, &fin, &[]);
    let mut w = st(2, ONE / 2, ONE, ONE, ONE);
    w.withdrawnB = ONE / 2;
    let ws = t.sign2(&ch, &w, &[]);
    for by in [2, 3] {
        reverts_with!(t.close(by, &ch, &fin, &[], &fs), NotParty);
        reverts_with!(t.close(by, &ch, &w, &[], &ws), NotParty);
        reverts_with!(t.c[by].closeUnsigned(ch.params.clone()), NotParty);
    }
    assert_eq!(t.status(&ch).await.0, 1, "still open");
    // Either party may.
    t.close(0, &ch, &w, &[], &ws).call().await.unwrap();
    t.close(1, &ch, &w, &[], &ws).call().await.unwrap();
    // The cooperative close goes through at once.
    let (a, b) = (ch.params.a, ch.params.b);
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.coop(2, &ch, &fin, &fs)).await;
    assert_eq!(t.balance(a).await - a0, u(ONE / 2));
    assert_eq!(t.balance(b).await - b0, u(15 * ONE / 10));
}

/// A co-signed final state ends a closing channel at once (`settleFinal`), with the deposits
/// and withdrawals frozen at close: a party that front-runs a cooperative close with `close`,
/// or closes with an old state, does not impose the challenge period.
#[tokio::test]
async fn final_state_ends_a_closing_channel_at_once() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    // v1: A 0.8, B 1.2. v2: B withdraws 0.5 (executed). v3 final: A 0.6, B 0.9.
    let v1 = st(1, 8 * ONE / 10, 12 * ONE / 10, ONE, ONE);
    let mut v2 = st(2, 8 * ONE / 10, 7 * ONE / 10, ONE, ONE);
    v2.withdrawnB = ONE / 2;
    v2.withdrawExpiry = common::now(&t.net).await + HOUR;
    let mut fin = st(3, 6 * ONE / 10, 9 * ONE / 10, ONE, ONE);
    fin.withdrawnB = ONE / 2;
    fin.isFinal = true;
    let (s1, s2, sf) = (
        t.sign2(&ch, &v1, &[]),
        t.sign2(&ch, &v2, &[]),
        t.sign2(&ch, &fin, &[]),
    );
    reverts_with!(
        t.settle_final(2, &ch, &record_stub(), &fin, &sf),
        NotClosing
    );
    mined(t.withdraw(2, &ch, &v2, &[], &s2)).await;
    // B closes with the old v1 while A's cooperative close is pending: A's is mined after.
    let rec = record(&mined(t.close(1, &ch, &v1, &[], &s1)).await);
    reverts_with!(t.coop(0, &ch, &fin, &sf), NotOpen);
    // Not final, with locks, or under another frozen part: refused.
    reverts_with!(t.settle_final(2, &ch, &rec, &v2, &s2), NotFinal);
    let mut locked = fin.clone();
    locked.locksHash = B256::repeat_byte(1);
    let sl = t.sign2_raw(&ch, &locked);
    reverts_with!(t.settle_final(2, &ch, &rec, &locked, &sl), PendingLocks);
    let mut other = rec.clone();
    other.netB += I256::ONE;
    reverts_with!(t.settle_final(2, &ch, &other, &fin, &sf), BadRecord);
    // The final state pays at once, well before the deadline.
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle_final(2, &ch, &rec, &fin, &sf)).await;
    assert_eq!(t.balance(a).await - a0, u(6 * ONE / 10));
    assert_eq!(t.balance(b).await - b0, u(9 * ONE / 10));
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
    assert_eq!(t.status(&ch).await.0, 3);
    reverts_with!(t.settle_final(2, &ch, &rec, &fin, &sf), NotClosing);
    reverts_with!(t.settle(2, &ch, &rec, &[]), NotClosing);

    // B front-runs the cooperative close with `close(final)` itself: ended at once as well.
    let ch = t.funded(2, ONE, ONE).await;
    let mut fin = st(4, ONE / 4, 7 * ONE / 4, ONE, ONE);
    fin.isFinal = true;
    let sf = t.sign2(&ch, &fin, &[]);
    let rec = record(&mined(t.close(1, &ch, &fin, &[], &sf)).await);
    reverts_with!(t.coop(0, &ch, &fin, &sf), NotOpen);
    // A "final" state older than the closing one (both signed after a final state): refused.
    let mut old_final = st(3, ONE, ONE, ONE, ONE);
    old_final.isFinal = true;
    let r5 = {
        let v5 = st(5, ONE / 4, 7 * ONE / 4, ONE, ONE);
        let s5 = t.sign2(&ch, &v5, &[]);
        record(&mined(t.update(2, &ch, &rec, &v5, &[], &s5)).await)
    };
    let so = t.sign2(&ch, &old_final, &[]);
    reverts_with!(t.settle_final(2, &ch, &r5, &old_final, &so), StaleVersion);
    reverts_with!(t.settle_final(2, &ch, &r5, &fin, &sf), StaleVersion);
    let mut fin6 = fin.clone();
    fin6.version = 6;
    let s6 = t.sign2(&ch, &fin6, &[]);
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle_final(2, &ch, &rec, &fin6, &s6)).await;
    assert_eq!(t.balance(a).await - a0, u(ONE / 4));
    assert_eq!(t.balance(b).await - b0, u(7 * ONE / 4));
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
}

/// A record for a channel that is not closing (only its fixed part is sent).
fn record_stub() -> eth_adapter::channel::Record {
    eth_adapter::channel::Record {
        version: 0,
        deadline: 0,
        netA: I256::ZERO,
        netB: I256::ZERO,
        payA: U256::ZERO,
        payB: U256::ZERO,
        locksHash: B256::ZERO,
    }
}

/// No lock can hold a settlement longer than `MAX_LOCK_TTL` (30 days) after the deadline: a
/// lock's effective expiry is min(expiry, deadline + MAX_LOCK_TTL), with the usual rule (paid
/// to its receiver iff revealed strictly before it).
#[tokio::test]
async fn far_lock_expiries_are_capped_at_the_deadline_plus_max_lock_ttl() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    let ttl = 30 * 24 * HOUR;
    let max_ttl = t.c[0].MAX_LOCK_TTL().call().await.unwrap();
    assert_eq!(max_ttl, U256::from(ttl));
    assert_eq!(ttl, eth_adapter::channel::MAX_LOCK_TTL);
    let far = |from, amount, n| Lock {
        from,
        amount,
        hashlock: secret(n).1,
        expiry: u64::MAX,
    };
    let locks = vec![
        far(a, ONE / 10, 1), // never revealed: back to A at the cap
        far(b, ONE / 5, 2),  // revealed before the cap: to A
        far(a, ONE / 20, 3), // revealed exactly at the cap: too late, back to A
    ];
    let mut s = st(1, 85 * ONE / 100, 8 * ONE / 10, ONE, ONE);
    s.locksHash = locks_hash(&locks);
    // A careful client does not sign such locks (see `ChannelRef::check`); a signed one must
    // still not freeze the channel.
    let sigs = t.sign2_raw(&ch, &s);
    let rec = record(&mined(t.close(0, &ch, &s, &locks, &sigs)).await);
    let cap = rec.deadline + ttl;
    mined(t.c[0].reveal(secret(2).0)).await;
    t.next_block_at(cap - 1).await;
    t.net.mine(1).await;
    let e = reverts_with!(t.settle(2, &ch, &rec, &locks), LockPending);
    assert_eq!(e.hashlock, secret(1).1);
    t.next_block_at(cap).await;
    mined(t.c[1].reveal(secret(3).0)).await;
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle(2, &ch, &rec, &locks)).await;
    assert_eq!(t.balance(a).await - a0, u(12 * ONE / 10));
    assert_eq!(t.balance(b).await - b0, u(8 * ONE / 10));
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
}

/// The channel's amounts at the latest block (a final block on a real chain).
async fn on_chain(t: &ChannelEnv, ch: &ChannelRef) -> OnChain {
    ch.on_chain(t.net.provider(), BlockNumberOrTag::Latest)
        .await
        .unwrap()
}

/// An abandoned co-signed withdrawal lapses at its `withdrawExpiry`, and a later state may
/// drop it only then (`ChannelRef::check_next`): executing it late cannot make the later
/// state unusable. The review's sequence: D_A = D_B = 100; v5: B withdraws 50 (signed, not
/// executed); v9: A 200, B 0, no withdrawal; B executes v5; A closes with v9 and gets 200.
#[tokio::test]
async fn lapsed_withdrawal_cannot_invalidate_a_newer_state() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, 100, 100).await;
    let (a, b) = (ch.params.a, ch.params.b);
    let expiry = common::now(&t.net).await + HOUR;
    let mut v5 = st(5, 100, 50, 100, 100);
    v5.withdrawnB = 50;
    v5.withdrawExpiry = expiry;
    let s5 = t.sign2(&ch, &v5, &[]);
    let v9 = st(9, 200, 0, 100, 100);
    // While v5 could still be executed, a careful client refuses to drop its withdrawal.
    assert_eq!(
        ch.check_next(&v5, &v9, &on_chain(&t, &ch).await),
        Err(ChannelError::WithdrawalDropped(Side::B))
    );
    t.next_block_at(expiry).await;
    t.net.mine(1).await;
    ch.check_next(&v5, &v9, &on_chain(&t, &ch).await).unwrap();
    let s9 = t.sign2(&ch, &v9, &[]);
    // B executes v5 now: it lapsed.
    reverts_with!(t.withdraw(1, &ch, &v5, &[], &s5), WithdrawalExpired);
    reverts_with!(t.withdraw(2, &ch, &v5, &[], &s5), WithdrawalExpired);
    // A closes with v9 and gets 200; B cannot answer with v5.
    let rec = record(&mined(t.close(0, &ch, &v9, &[], &s9)).await);
    reverts_with!(t.update(1, &ch, &rec, &v5, &[], &s5), StaleVersion);
    t.net.advance_time(HOUR).await;
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle(2, &ch, &rec, &[])).await;
    assert_eq!(t.balance(a).await - a0, u(200));
    assert_eq!(t.balance(b).await, b0);
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);

    // Executed in time, the withdrawal cannot be dropped: the next state keeps it.
    let ch = t.funded(2, 100, 100).await;
    let expiry = common::now(&t.net).await + HOUR;
    v5.withdrawExpiry = expiry;
    let s5 = t.sign2(&ch, &v5, &[]);
    let b0 = t.balance(b).await;
    mined(t.withdraw(2, &ch, &v5, &[], &s5)).await;
    assert_eq!(t.balance(b).await - b0, u(50));
    t.next_block_at(expiry).await;
    t.net.mine(1).await;
    let chain = on_chain(&t, &ch).await;
    assert_eq!(
        ch.check_next(&v5, &v9, &chain),
        Err(ChannelError::BelowExecuted(Side::B))
    );
    let mut v9 = st(9, 150, 0, 100, 100);
    v9.withdrawnB = 50;
    ch.check_next(&v5, &v9, &chain).unwrap();
    let s9 = t.sign2(&ch, &v9, &[]);
    let rec = record(&mined(t.close(0, &ch, &v9, &[], &s9)).await);
    t.net.advance_time(HOUR).await;
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle(2, &ch, &rec, &[])).await;
    assert_eq!(t.balance(a).await - a0, u(150));
    assert_eq!(t.balance(b).await, b0);
    assert_eq!(t.balance(t.contract()).await, U256::ZERO);
}

/// The secret registry is global and permanent: a preimage revealed for any purpose pays
/// every lock on its hashlock, in any channel, so the off-chain side must refuse to sign a
/// lock whose hashlock is revealed (`ChannelRef::revealed_at`) or reused.
#[tokio::test]
async fn secret_registry_is_global_and_readable_before_signing() {
    let t = ChannelEnv::start().await;
    let ch = t.funded(1, ONE, ONE).await;
    let (a, b) = (ch.params.a, ch.params.b);
    let (pre, hashlock) = secret(9);
    assert_eq!(
        ch.revealed_at(t.net.provider(), hashlock).await.unwrap(),
        None
    );
    // A third party reveals it, for its own purpose.
    let r = mined(t.c[2].reveal(pre)).await;
    let block = t
        .net
        .provider()
        .get_block_by_number(r.block_number.unwrap().into())
        .await
        .unwrap()
        .unwrap();
    let at = ch.revealed_at(t.net.provider(), hashlock).await.unwrap();
    assert_eq!(at, Some(block.header.timestamp));
    // A lock on it, signed later by a careless client, is a plain payment to its receiver.
    let lock = Lock {
        from: a,
        amount: ONE / 10,
        hashlock,
        expiry: common::now(&t.net).await + 2 * HOUR,
    };
    let mut s = st(1, 9 * ONE / 10, ONE, ONE, ONE);
    s.locksHash = locks_hash(std::slice::from_ref(&lock));
    let sigs = t.sign2(&ch, &s, std::slice::from_ref(&lock));
    let rec = record(&mined(t.close(0, &ch, &s, std::slice::from_ref(&lock), &sigs)).await);
    t.net.advance_time(HOUR).await;
    let (a0, b0) = (t.balance(a).await, t.balance(b).await);
    mined(t.settle(2, &ch, &rec, &[lock])).await;
    assert_eq!(t.balance(a).await - a0, u(9 * ONE / 10));
    assert_eq!(t.balance(b).await - b0, u(11 * ONE / 10));
}
