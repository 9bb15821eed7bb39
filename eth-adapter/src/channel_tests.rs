//! Channel states, their hashes and signatures.

use super::*;
use alloy::primitives::address;

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

/// A time before the locks' expiry (1,000,000).
const NOW: u64 = 900_000;

fn lock(from: Address, amount: u128, n: u8) -> Lock {
    Lock {
        from,
        amount,
        hashlock: B256::repeat_byte(n),
        expiry: 1_000_000,
    }
}

fn state(locks: &[Lock]) -> State {
    let locked: u128 = locks.iter().map(|l| l.amount).sum();
    State {
        version: 3,
        balanceA: 60 - locked,
        balanceB: 30,
        locksHash: locks_hash(locks),
        depositA: 70,
        depositB: 30,
        withdrawnA: 10,
        withdrawnB: 0,
        withdrawExpiry: 0,
        isFinal: false,
    }
}

#[test]
fn id_commits_to_every_parameter_chain_and_contract() {
    let c = chan();
    let id = c.id();
    let mut variants = vec![];
    let mut p = c.clone();
    p.params.a = address!("0x3000000000000000000000000000000000000003");
    variants.push(p);
    let mut p = c.clone();
    p.params.b = p.params.a;
    variants.push(p);
    let mut p = c.clone();
    p.params.token = address!("0x4000000000000000000000000000000000000004");
    variants.push(p);
    let mut p = c.clone();
    p.params.challengePeriod += 1;
    variants.push(p);
    let mut p = c.clone();
    p.params.salt = B256::repeat_byte(8);
    variants.push(p);
    let mut p = c.clone();
    p.chain_id = 1;
    variants.push(p);
    let mut p = c.clone();
    p.contract = Address::ZERO;
    variants.push(p);
    for v in variants {
        assert_ne!(v.id(), id, "{v:?}");
    }
    assert_eq!(chan().id(), id);
}

#[test]
fn locks_hash_is_zero_when_empty_and_abi_encoded_otherwise() {
    assert_eq!(locks_hash(&[]), B256::ZERO);
    let a = chan().params.a;
    let l = [lock(a, 5, 1), lock(a, 6, 2)];
    // offset, length, then 4 words per lock.
    let enc = l.to_vec().abi_encode();
    assert_eq!(enc.len(), 32 * (2 + 4 * 2));
    assert_eq!(U256::from_be_slice(&enc[..32]), U256::from(32));
    assert_eq!(U256::from_be_slice(&enc[32..64]), U256::from(2));
    assert_eq!(locks_hash(&l), keccak256(&enc));
    assert_ne!(locks_hash(&l), locks_hash(&[l[1].clone(), l[0].clone()]));
}

#[test]
fn signature_verifies_and_binds_every_field() {
    let c = chan();
    let key = PrivateKeySigner::random();
    let mut c2 = c.clone();
    c2.params.a = key.address();
    let s = state(&[]);
    let sig = c2.sign(&key, &s, &[], NOW).unwrap();
    assert!(sig.v == 27 || sig.v == 28);
    assert!(U256::from_be_bytes(sig.s.0) <= HALF_N);
    c2.verify(&s, &sig, key.address()).unwrap();
    // Another signer, another version, another chain or contract: refused.
    assert!(c2.verify(&s, &sig, c2.params.b).is_err());
    let mut newer = s.clone();
    newer.version += 1;
    assert!(c2.verify(&newer, &sig, key.address()).is_err());
    let mut fin = s.clone();
    fin.isFinal = true;
    assert_ne!(c2.digest(&fin), c2.digest(&s));
    let mut other_chain = c2.clone();
    other_chain.chain_id = 1;
    assert!(other_chain.verify(&s, &sig, key.address()).is_err());
    // The malleable twin (n - s, flipped v) recovers the same key but is refused.
    let n = uint!(0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141_U256);
    let twin = Sig {
        v: if sig.v == 27 { 28 } else { 27 },
        r: sig.r,
        s: (n - U256::from_be_bytes(sig.s.0)).into(),
    };
    assert!(c2.verify(&s, &twin, key.address()).is_err());
    let v29 = Sig { v: 29, ..sig };
    assert!(c2.verify(&s, &v29, key.address()).is_err());
    // Zero r or s, or r at the order: refused, never a panic.
    for broken in [
        Sig {
            r: B256::ZERO,
            ..sig
        },
        Sig {
            s: B256::ZERO,
            ..sig
        },
        Sig { r: n.into(), ..sig },
    ] {
        assert!(c2.verify(&s, &broken, key.address()).is_err());
    }
}

#[test]
fn libsecp256k1_signs_as_alloys_signer_does() {
    use alloy::signers::SignerSync;
    // Both sign deterministically (RFC 6979) with a low s: the same bytes, and each
    // recovers the other's.
    for _ in 0..20 {
        let key = PrivateKeySigner::random();
        let mut c = chan();
        c.params.a = key.address();
        let st = state(&[]);
        let ours = c.sign(&key, &st, &[], NOW).unwrap();
        let alloys = key.sign_hash_sync(&c.digest(&st)).unwrap();
        assert_eq!(ours.r, B256::from(alloys.r()));
        assert_eq!(ours.s, B256::from(alloys.s()));
        assert_eq!(ours.v, 27 + u8::from(alloys.v()));
        assert_eq!(
            alloys.recover_address_from_prehash(&c.digest(&st)).unwrap(),
            c.signer_of(&st, &ours).unwrap()
        );
    }
}

#[test]
fn check_mirrors_the_contract() {
    let c = chan();
    let a = c.params.a;
    let locks = [lock(a, 5, 1), lock(c.params.b, 5, 2)];
    let s = state(&locks);
    c.check(&s, &locks, NOW).unwrap();
    assert_eq!(c.check(&s, &locks[..1], NOW), Err(ChannelError::LocksHash));
    let mut z = s.clone();
    z.version = 0;
    assert_eq!(c.check(&z, &locks, NOW), Err(ChannelError::ZeroVersion));
    let mut more = s.clone();
    more.balanceB += 1;
    assert_eq!(c.check(&more, &locks, NOW), Err(ChannelError::Sum));
    let stranger = [lock(Address::ZERO, 5, 1), lock(a, 5, 2)];
    let s2 = state(&stranger);
    assert_eq!(
        c.check(&s2, &stranger, NOW),
        Err(ChannelError::LockSender(0))
    );
    let many: Vec<Lock> = (0..=MAX_LOCKS as u8).map(|i| lock(a, 0, i)).collect();
    assert_eq!(
        c.check(&state(&many), &many, NOW),
        Err(ChannelError::TooManyLocks(MAX_LOCKS + 1))
    );
    let mut fin = s.clone();
    fin.isFinal = true;
    assert_eq!(
        c.check(&fin, &locks, NOW),
        Err(ChannelError::FinalWithLocks)
    );
}

#[test]
fn check_next_enforces_growth_and_lapse_rules() {
    let c = chan();
    // prev: deposits 70/30, A withdrew 10 (executed), B withdraws 5 until t = 1,000.
    let mut prev = state(&[]);
    prev.balanceB -= 5;
    prev.withdrawnB = 5;
    prev.withdrawExpiry = 1_000;
    let chain = OnChain {
        deposit_a: 70,
        deposit_b: 30,
        withdrawn_a: 10,
        withdrawn_b: 0,
        time: 999,
    };
    let lapsed = OnChain {
        time: 1_000,
        ..chain
    };
    // A payment of 1 from A to B, keeping everything else.
    let mut next = prev.clone();
    next.version += 1;
    next.balanceA -= 1;
    next.balanceB += 1;
    c.check_next(&prev, &next, &chain).unwrap();
    let bad = |f: &dyn Fn(&mut State), on: &OnChain| {
        let mut n = next.clone();
        f(&mut n);
        c.check_next(&prev, &n, on)
    };
    let mut fin = prev.clone();
    fin.isFinal = true;
    assert_eq!(
        c.check_next(&fin, &next, &chain),
        Err(ChannelError::AfterFinal)
    );
    let not_newer = Err(ChannelError::NotNewer { prev: 3, next: 3 });
    assert_eq!(bad(&|n| n.version = 3, &chain), not_newer);
    // Deposits: never shrink, never count more than the chain holds.
    let shrank = bad(
        &|n| {
            n.depositA -= 1;
            n.balanceA -= 1;
        },
        &chain,
    );
    assert_eq!(shrank, Err(ChannelError::DepositShrank(Side::A)));
    let unseen = bad(
        &|n| {
            n.depositB += 1;
            n.balanceB += 1;
        },
        &chain,
    );
    assert_eq!(unseen, Err(ChannelError::DepositNotOnChain(Side::B)));
    // Withdrawals: never below the executed ones.
    let below = bad(
        &|n| {
            n.withdrawnA = 9;
            n.balanceA += 1;
        },
        &lapsed,
    );
    assert_eq!(below, Err(ChannelError::BelowExecuted(Side::A)));
    // B's pending withdrawal may be dropped only once it lapsed.
    let drop = |n: &mut State| {
        n.withdrawnB = 0;
        n.balanceB += 5;
        n.withdrawExpiry = 0;
    };
    assert_eq!(
        bad(&drop, &chain),
        Err(ChannelError::WithdrawalDropped(Side::B))
    );
    assert_eq!(bad(&drop, &lapsed), Ok(()));
    // Its expiry may not move earlier while it runs (later is fine).
    assert_eq!(
        bad(&|n| n.withdrawExpiry = 999, &chain),
        Err(ChannelError::WithdrawExpiryShortened)
    );
    assert_eq!(bad(&|n| n.withdrawExpiry = 2_000, &chain), Ok(()));
    assert_eq!(bad(&|n| n.withdrawExpiry = 0, &lapsed), Ok(()));
    // A new withdrawal by A on top of B's.
    let more = |n: &mut State| {
        n.withdrawnA += 20;
        n.balanceA -= 20;
    };
    assert_eq!(bad(&more, &chain), Ok(()));
}

#[test]
fn locks_beyond_max_lock_ttl_are_refused() {
    let c = chan();
    let key = PrivateKeySigner::random();
    let mut locks = vec![lock(c.params.a, 5, 1), lock(c.params.b, 5, 2)];
    let now = 1_700_000_000;
    locks[1].expiry = now + MAX_LOCK_TTL;
    c.check(&state(&locks), &locks, now).unwrap();
    locks[1].expiry += 1;
    let s = state(&locks);
    let too_long = Err(ChannelError::LockTooLong {
        index: 1,
        expiry: now + MAX_LOCK_TTL + 1,
        latest: now + MAX_LOCK_TTL,
    });
    assert_eq!(c.check(&s, &locks, now), too_long);
    assert_eq!(c.sign(&key, &s, &locks, now).map(|_| ()), too_long);
    c.check(&s, &locks, now + 1).unwrap();
    locks[0].expiry = u64::MAX;
    let s = state(&locks);
    // now + MAX_LOCK_TTL saturates.
    c.check(&s, &locks, u64::MAX - 1).unwrap();
    assert!(matches!(
        c.check(&s, &locks, now),
        Err(ChannelError::LockTooLong { index: 0, .. })
    ));
}
