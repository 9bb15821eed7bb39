//! Every revert path of HTLC.sol, and the token edge cases (USDT-style, fee-on-transfer,
//! false-returning), and re-entrancy, against a real anvil.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use devnet::anvil::Devnet;
use devnet::test_contracts::{FalseToken, FeeToken, NoBoolToken, Reentrant, TestToken};
use eth_adapter::bindings::HTLC::{self, HTLCErrors, HTLCInstance};
use sha2::{Digest, Sha256};

struct T {
    net: Devnet,
    /// HTLC as seen by account 0 (sender), 1 (recipient), 2 (third party).
    a: HTLCInstance<DynProvider>,
    b: HTLCInstance<DynProvider>,
    c: HTLCInstance<DynProvider>,
    alice: Address,
    bob: Address,
    /// Account 0's provider (one per account: each caches its nonces).
    pa: DynProvider,
}

fn wallet_provider(net: &Devnet, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(i)))
        .connect_http(net.url().parse().unwrap())
        .erased()
}

async fn setup() -> T {
    let net = Devnet::start().await;
    let pa = wallet_provider(&net, 0);
    let a = HTLC::deploy(pa.clone()).await.unwrap();
    let pa2 = pa.clone();
    let addr = *a.address();
    T {
        b: HTLC::new(addr, wallet_provider(&net, 1)),
        c: HTLC::new(addr, wallet_provider(&net, 2)),
        alice: net.address(0),
        bob: net.address(1),
        pa: pa2,
        a,
        net,
    }
}

fn secret(n: u8) -> (B256, B256) {
    let pre = B256::repeat_byte(n);
    (pre, B256::from_slice(&Sha256::digest(pre.0)))
}

macro_rules! reverts_with {
    ($call:expr, $variant:ident) => {{
        let err = $call
            .call()
            .await
            .expect_err(concat!("expected revert ", stringify!($variant)));
        match err.as_decoded_interface_error::<HTLCErrors>() {
            Some(HTLCErrors::$variant(_)) => {}
            other => panic!("expected {}, got {other:?} ({err})", stringify!($variant)),
        }
    }};
}

macro_rules! mined {
    ($call:expr) => {{
        let r = $call.send().await.unwrap().get_receipt().await.unwrap();
        assert!(r.status(), "transaction reverted");
        r
    }};
}

const ONE: u128 = 1_000_000_000_000_000_000;

#[tokio::test]
async fn eth_revert_paths() {
    let t = setup().await;
    let now = common::now(&t.net).await;
    let exp = U256::from(now + 3600);
    let amt = U256::from(ONE);
    let (pre, hl) = secret(1);

    reverts_with!(t.a.lock(hl, t.bob, exp).value(U256::ZERO), ZeroAmount);
    reverts_with!(t.a.lock(hl, Address::ZERO, exp).value(amt), ZeroRecipient);
    // Nothing locked yet.
    reverts_with!(t.b.claim(pre, amt, t.alice, t.bob, exp), NotLocked);

    mined!(t.a.lock(hl, t.bob, exp).value(amt));
    // Duplicate with identical parameters.
    reverts_with!(t.a.lock(hl, t.bob, exp).value(amt), AlreadyLocked);
    // Wrong preimage, wrong amount, wrong parties, wrong expiry: no such swap.
    reverts_with!(t.b.claim(secret(2).0, amt, t.alice, t.bob, exp), NotLocked);
    reverts_with!(
        t.b.claim(pre, amt + U256::from(1), t.alice, t.bob, exp),
        NotLocked
    );
    reverts_with!(t.b.claim(pre, amt, t.bob, t.bob, exp), NotLocked);
    reverts_with!(
        t.b.claim(pre, amt, t.alice, t.bob, exp + U256::from(1)),
        NotLocked
    );
    // An ERC-20 claim with token 0 is refused.
    reverts_with!(
        t.b.claimToken(pre, Address::ZERO, amt, t.alice, t.bob, exp),
        ZeroToken
    );
    // Refund before expiry.
    reverts_with!(t.a.refund(hl, amt, t.alice, t.bob, exp), NotExpired);

    // A third party claims: the recipient is paid.
    let before = t.net.provider().get_balance(t.bob).await.unwrap();
    mined!(t.c.claim(pre, amt, t.alice, t.bob, exp));
    let after = t.net.provider().get_balance(t.bob).await.unwrap();
    assert_eq!(after - before, amt);
    // Double claim.
    reverts_with!(t.b.claim(pre, amt, t.alice, t.bob, exp), NotLocked);
    assert_eq!(
        t.net.provider().get_balance(*t.a.address()).await.unwrap(),
        U256::ZERO
    );

    // Refund path: lock another, expire it, refund twice, claim after refund.
    let (pre2, hl2) = secret(3);
    let exp2 = U256::from(now + 7200);
    mined!(t.a.lock(hl2, t.bob, exp2).value(amt));
    t.net.advance_time(7300).await;
    reverts_with!(t.b.claim(pre2, amt, t.alice, t.bob, exp2), Expired);
    let before = t.net.provider().get_balance(t.alice).await.unwrap();
    mined!(t.c.refund(hl2, amt, t.alice, t.bob, exp2));
    let after = t.net.provider().get_balance(t.alice).await.unwrap();
    assert_eq!(after - before, amt, "refund by anyone pays the sender");
    reverts_with!(t.a.refund(hl2, amt, t.alice, t.bob, exp2), NotLocked);
    reverts_with!(t.b.claim(pre2, amt, t.alice, t.bob, exp2), Expired);
}

#[tokio::test]
async fn claim_exactly_at_expiry_fails_and_refund_succeeds() {
    let t = setup().await;
    let now = common::now(&t.net).await;
    let exp = now + 100;
    let amt = U256::from(ONE);
    let (pre, hl) = secret(7);
    mined!(t.a.lock(hl, t.bob, U256::from(exp)).value(amt));
    // Next block at exactly `expiry`: claim must fail, refund must work.
    t.net
        .rpc("evm_setNextBlockTimestamp", serde_json::json!([exp]))
        .await;
    let r =
        t.b.claim(pre, amt, t.alice, t.bob, U256::from(exp))
            .gas(200_000)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    assert!(!r.status(), "claim at expiry must revert");
    t.net
        .rpc("evm_setNextBlockTimestamp", serde_json::json!([exp + 1]))
        .await;
    // (exp + 1 because the previous block already used `exp`.)
    mined!(t.a.refund(hl, amt, t.alice, t.bob, U256::from(exp)));
}

#[tokio::test]
async fn batch_paths() {
    let t = setup().await;
    let now = common::now(&t.net).await;
    let exp = U256::from(now + 3600);
    let amt = U256::from(ONE);
    let swap = |recipient| HTLC::Swap {
        amount: amt,
        token: Address::ZERO,
        sender: t.alice,
        recipient,
        expiry: exp,
    };
    let (p1, h1) = secret(10);
    let (p2, h2) = secret(11);
    let (p3, h3) = secret(12);
    mined!(t.a.lock(h1, t.bob, exp).value(amt));
    mined!(t.a.lock(h2, t.bob, exp).value(amt));
    mined!(t.a.lock(h3, t.alice, exp).value(amt));
    reverts_with!(
        t.c.claimBatch(vec![p1], vec![swap(t.bob), swap(t.bob)]),
        LengthMismatch
    );
    // One bad entry (wrong preimage) reverts the whole batch.
    reverts_with!(
        t.c.claimBatch(vec![p1, secret(99).0], vec![swap(t.bob), swap(t.bob)]),
        NotLocked
    );
    // The same swap twice in one batch.
    reverts_with!(
        t.c.claimBatch(vec![p1, p1], vec![swap(t.bob), swap(t.bob)]),
        NotLocked
    );
    let bob_before = t.net.provider().get_balance(t.bob).await.unwrap();
    let alice_before = t.net.provider().get_balance(t.alice).await.unwrap();
    // Mixed recipients: bob, bob, alice.
    mined!(t.c.claimBatch(
        vec![p1, p2, p3],
        vec![swap(t.bob), swap(t.bob), swap(t.alice)]
    ));
    assert_eq!(
        t.net.provider().get_balance(t.bob).await.unwrap() - bob_before,
        amt * U256::from(2)
    );
    assert_eq!(
        t.net.provider().get_balance(t.alice).await.unwrap() - alice_before,
        amt
    );

    // Refund batch.
    let (_, h4) = secret(13);
    let (_, h5) = secret(14);
    mined!(t.a.lock(h4, t.bob, exp).value(amt));
    mined!(t.a.lock(h5, t.bob, exp).value(amt));
    reverts_with!(
        t.c.refundBatch(vec![h4, h5], vec![swap(t.bob), swap(t.bob)]),
        NotExpired
    );
    reverts_with!(t.c.refundBatch(vec![h4], vec![]), LengthMismatch);
    t.net.advance_time(3601).await;
    mined!(t
        .c
        .refundBatch(vec![h4, h5], vec![swap(t.bob), swap(t.bob)]));
    reverts_with!(t.c.refundBatch(vec![h4], vec![swap(t.bob)]), NotLocked);
    assert_eq!(
        t.net.provider().get_balance(*t.a.address()).await.unwrap(),
        U256::ZERO
    );
}

#[tokio::test]
async fn erc20_paths() {
    let t = setup().await;
    let pa = t.pa.clone();
    let htlc = *t.a.address();
    let now = common::now(&t.net).await;
    let exp = U256::from(now + 3600);
    let amt = U256::from(1_000_000u64);

    // Standard token.
    let tok = TestToken::deploy(pa.clone(), "T".into(), 6).await.unwrap();
    mined!(tok.mint(t.alice, amt * U256::from(10)));
    let (pre, hl) = secret(20);
    reverts_with!(t.a.lockToken(hl, Address::ZERO, amt, t.bob, exp), ZeroToken);
    // No allowance: the token's transferFrom reverts.
    assert!(t
        .a
        .lockToken(hl, *tok.address(), amt, t.bob, exp)
        .call()
        .await
        .is_err());
    mined!(tok.approve(htlc, amt * U256::from(10)));
    reverts_with!(
        t.a.lockToken(hl, *tok.address(), U256::ZERO, t.bob, exp),
        ZeroAmount
    );
    mined!(t.a.lockToken(hl, *tok.address(), amt, t.bob, exp));
    reverts_with!(
        t.a.lockToken(hl, *tok.address(), amt, t.bob, exp),
        AlreadyLocked
    );
    // ETH claim of a token swap: no such swap.
    reverts_with!(t.b.claim(pre, amt, t.alice, t.bob, exp), NotLocked);
    mined!(t
        .c
        .claimToken(pre, *tok.address(), amt, t.alice, t.bob, exp));
    assert_eq!(tok.balanceOf(t.bob).call().await.unwrap(), amt);
    reverts_with!(
        t.b.claimToken(pre, *tok.address(), amt, t.alice, t.bob, exp),
        NotLocked
    );

    // USDT-style token (no return value): lock, claim and refund work.
    let nb = NoBoolToken::deploy(pa.clone()).await.unwrap();
    mined!(nb.mint(t.alice, amt * U256::from(10)));
    mined!(nb.approve(htlc, amt * U256::from(10)));
    let (pre, hl) = secret(21);
    mined!(t.a.lockToken(hl, *nb.address(), amt, t.bob, exp));
    mined!(t.b.claimToken(pre, *nb.address(), amt, t.alice, t.bob, exp));
    assert_eq!(nb.balanceOf(t.bob).call().await.unwrap(), amt);
    let (_, hl_r) = secret(22);
    mined!(t
        .a
        .lockToken(hl_r, *nb.address(), amt, t.bob, U256::from(now + 10)));

    // Fee-on-transfer token: rejected by the balance check.
    let fee = FeeToken::deploy(pa.clone()).await.unwrap();
    mined!(fee.mint(t.alice, amt * U256::from(10)));
    mined!(fee.approve(htlc, amt * U256::from(10)));
    reverts_with!(
        t.a.lockToken(secret(23).1, *fee.address(), amt, t.bob, exp),
        BalanceMismatch
    );

    // Token returning false: rejected.
    let f = FalseToken::deploy(pa.clone()).await.unwrap();
    mined!(f.mint(t.alice, amt));
    reverts_with!(
        t.a.lockToken(secret(24).1, *f.address(), amt, t.bob, exp),
        TransferFailed
    );

    // Not a token at all (an EOA).
    reverts_with!(
        t.a.lockToken(secret(25).1, t.bob, amt, t.bob, exp),
        TransferFailed
    );

    // Refund of the no-bool swap after expiry.
    t.net.advance_time(20).await;
    let before = nb.balanceOf(t.alice).call().await.unwrap();
    mined!(t.c.refundToken(
        hl_r,
        *nb.address(),
        amt,
        t.alice,
        t.bob,
        U256::from(now + 10)
    ));
    assert_eq!(nb.balanceOf(t.alice).call().await.unwrap() - before, amt);
}

#[tokio::test]
async fn permit_lock() {
    let t = setup().await;
    // The adapter uses permit for EIP-2612 tokens: no approve transaction is sent.
    let pa = t.pa.clone();
    let tok = TestToken::deploy(pa.clone(), "Permit Token".into(), 18)
        .await
        .unwrap();
    mined!(tok.mint(t.alice, U256::from(ONE)));
    let chain = common::chain_for(&t.net, *t.a.address(), 0);
    let (p, _) = common::token_swap(&t.net, *tok.address(), 18, 0, 1, ONE / 2, 3600).await;
    let nonce_before = t
        .net
        .provider()
        .get_transaction_count(t.alice)
        .await
        .unwrap();
    swap_core::rail::Rail::lock(&chain, &p).await.unwrap();
    let nonce_after = t
        .net
        .provider()
        .get_transaction_count(t.alice)
        .await
        .unwrap();
    assert_eq!(
        nonce_after,
        nonce_before + 1,
        "one transaction: lock with permit"
    );
    assert_eq!(tok.nonces(t.alice).call().await.unwrap(), U256::from(1));
    assert_eq!(
        tok.balanceOf(*t.a.address()).call().await.unwrap(),
        U256::from(ONE / 2)
    );
}

#[tokio::test]
async fn reentrancy_cannot_double_spend() {
    let t = setup().await;
    let pa = t.pa.clone();
    let htlc = *t.a.address();
    let attacker = Reentrant::deploy(pa.clone(), htlc).await.unwrap();
    let evil = *attacker.address();
    let now = common::now(&t.net).await;
    let exp = U256::from(now + 3600);
    let amt = U256::from(ONE);

    // Claim re-entrancy: the attacker is the recipient and re-claims while being paid.
    let (pre, hl) = secret(30);
    mined!(t.a.lock(hl, evil, exp).value(amt));
    // A second, identical-looking pot that must stay untouched.
    mined!(t.a.lock(secret(31).1, t.bob, exp).value(amt));
    mined!(attacker.arm(pre, amt, t.alice, evil, exp, false));
    mined!(t.c.claim(pre, amt, t.alice, evil, exp));
    assert_eq!(attacker.received().call().await.unwrap(), amt);
    assert_eq!(attacker.attempts().call().await.unwrap(), U256::from(1));
    assert_eq!(
        attacker.reentrySucceeded().call().await.unwrap(),
        U256::ZERO
    );
    assert_eq!(t.net.provider().get_balance(htlc).await.unwrap(), amt);

    // Refund re-entrancy: the attacker is the sender and re-refunds while being paid.
    let attacker2 = Reentrant::deploy(pa.clone(), htlc).await.unwrap();
    let evil2 = *attacker2.address();
    let (_, hl2) = secret(32);
    let exp2 = U256::from(now + 60);
    mined!(attacker2.lockFromHere(hl2, t.bob, exp2).value(amt));
    mined!(attacker2.arm(hl2, amt, evil2, t.bob, exp2, true));
    t.net.advance_time(61).await;
    mined!(t.c.refund(hl2, amt, evil2, t.bob, exp2));
    assert_eq!(attacker2.received().call().await.unwrap(), amt);
    assert_eq!(
        attacker2.reentrySucceeded().call().await.unwrap(),
        U256::ZERO
    );
    assert_eq!(t.net.provider().get_balance(htlc).await.unwrap(), amt);
}

#[tokio::test]
async fn permit_front_run_does_not_block_the_lock() {
    use alloy::primitives::keccak256;
    use alloy::signers::SignerSync;
    use alloy::sol_types::SolStruct;
    use eth_adapter::bindings::Permit;

    let t = setup().await;
    let htlc = *t.a.address();
    let tok = TestToken::deploy(t.pa.clone(), "P".into(), 18)
        .await
        .unwrap();
    let amt = U256::from(ONE);
    mined!(tok.mint(t.alice, amt));
    let now = common::now(&t.net).await;
    let exp = U256::from(now + 3600);
    let deadline = U256::from(now + 600);
    let domain = tok.DOMAIN_SEPARATOR().call().await.unwrap();
    let msg = Permit {
        owner: t.alice,
        spender: htlc,
        value: amt,
        nonce: U256::ZERO,
        deadline,
    };
    let mut buf = b"\x19\x01".to_vec();
    buf.extend_from_slice(domain.as_slice());
    buf.extend_from_slice(msg.eip712_hash_struct().as_slice());
    let sig = t.net.signer(0).sign_hash_sync(&keccak256(&buf)).unwrap();
    let (v, r, s) = (
        27 + u8::from(sig.v()),
        B256::from(sig.r()),
        B256::from(sig.s()),
    );
    let (_, hl) = secret(40);

    // A bad signature and no allowance: the lock fails.
    assert!(t
        .a
        .lockTokenWithPermit(hl, *tok.address(), amt, t.bob, exp, deadline, v, s, r)
        .call()
        .await
        .is_err());

    // Carol front-runs the permit with Alice's signature.
    let tok_c = TestToken::new(*tok.address(), wallet_provider(&t.net, 2));
    mined!(tok_c.permit(t.alice, htlc, amt, deadline, v, r, s));
    // Alice's lock still goes through: the failed permit is ignored, the allowance is there.
    mined!(t
        .a
        .lockTokenWithPermit(hl, *tok.address(), amt, t.bob, exp, deadline, v, r, s));
    assert_eq!(tok.balanceOf(htlc).call().await.unwrap(), amt);
}
