//! An ERC-20 channel end to end through the library on anvil: both parties deposit a test
//! token (approve + depositToken), two nodes over TCP pay each other with hashlocked
//! transfers (lock, then claim with the preimage), close cooperatively with one
//! `cooperativeClose`, and each gets exactly its token balance.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use devnet::anvil::Devnet;
use devnet::test_contracts::TestToken;
use eth_adapter::bindings::Channel;
use eth_adapter::channel::{ChannelRef, Params, Side};
use eth_channel::msg::{UpdateKind, WireLock};
use eth_channel::{hashlock_of, Config, Node, Party};
use tokio::net::TcpListener;

use crate::rail::{side, wallet};

const DEP_A: u128 = 10_000_000;
const DEP_B: u128 = 5_000_000;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `from` (party address `by`) pays `amount` to the other node: a lock, then its claim.
async fn pay(from: &Node, to: &Node, id: B256, by: Address, amount: u128, n: u8) {
    let pre = B256::repeat_byte(n);
    let lock = WireLock {
        from: by,
        amount,
        hashlock: hashlock_of(&pre),
        expiry: unix_now() + 3600,
    };
    from.propose(id, UpdateKind::Lock { lock }).await.unwrap();
    to.propose(
        id,
        UpdateKind::Claim {
            hashlock: hashlock_of(&pre),
            preimage: pre,
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erc20_channel_pays_both_ways_and_closes_with_exact_token_balances() {
    let net = Devnet::start().await;
    let w0 = wallet(&net, 0);
    let contract = *Channel::deploy(w0.clone()).await.unwrap().address();
    let tok = TestToken::deploy(w0, "Six".into(), 6).await.unwrap();
    let token = *tok.address();
    let chain_id = net.provider().get_chain_id().await.unwrap();
    let chan = ChannelRef::new(
        Params {
            a: net.address(0),
            b: net.address(1),
            token,
            challengePeriod: 3600,
            salt: B256::repeat_byte(60),
        },
        chain_id,
        contract,
    );
    let id = chan.id();
    let minted = U256::from(100_000_000u64);
    for i in [0, 1] {
        let r = tok
            .mint(net.address(i), minted)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(r.status());
    }
    for (i, amount) in [(0, DEP_A), (1, DEP_B)] {
        let t = TestToken::new(token, wallet(&net, i));
        let r = t
            .approve(contract, U256::from(amount))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(r.status());
        let c = Channel::new(contract, wallet(&net, i));
        let r = c
            .depositToken(chan.params.clone(), U256::from(amount))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(r.status());
    }
    let token_of = |who: Address| {
        let tok = tok.clone();
        async move { tok.balanceOf(who).call().await.unwrap() }
    };
    assert_eq!(token_of(contract).await, U256::from(DEP_A + DEP_B));

    let (a, b) = (side(&net, 0, 2), side(&net, 1, 2));
    for (s, me, peer) in [(&a, Side::A, &b), (&b, Side::B, &a)] {
        let i = if me == Side::A { 0 } else { 1 };
        Party::open(
            chan.clone(),
            me,
            net.signer(i),
            Config::default(),
            DEP_A,
            DEP_B,
            &s.store,
        )
        .unwrap();
        s.node.add_channel(id, peer.net_id.public()).unwrap();
    }
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = l.local_addr().unwrap();
    let server = b.node.clone();
    tokio::spawn(async move { server.serve(l).await });
    a.node.connect(b_addr, b.net_id.public()).await.unwrap();
    for _ in 0..200 {
        if b.node.connected(a.net_id.public()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A pays B 3 tokens, B pays A 1, A pays B 0.25.
    pay(&a.node, &b.node, id, a.addr, 3_000_000, 1).await;
    pay(&b.node, &a.node, id, b.addr, 1_000_000, 2).await;
    pay(&a.node, &b.node, id, a.addr, 250_000, 3).await;
    let (pa, pb) = (DEP_A - 3_250_000 + 1_000_000, DEP_B + 3_250_000 - 1_000_000);
    let latest = b.node.with_party(id, |p| p.latest().clone()).unwrap();
    assert_eq!((latest.state.balanceA, latest.state.balanceB), (pa, pb));
    assert!(latest.locks.is_empty());

    // The final state, co-signed, then one cooperativeClose (sent by B).
    a.node.propose(id, UpdateKind::Close).await.unwrap();
    let fin = b.node.with_party(id, |p| p.latest().clone()).unwrap();
    assert!(fin.state.isFinal);
    assert_eq!(fin, a.node.with_party(id, |p| p.latest().clone()).unwrap());
    let (sa, sb) = fin.sigs().unwrap();
    let c = Channel::new(contract, wallet(&net, 1));
    let r = c
        .cooperativeClose(chan.params.clone(), fin.state.clone(), sa, sb)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());
    assert_eq!(
        token_of(net.address(0)).await,
        minted - U256::from(DEP_A) + U256::from(pa)
    );
    assert_eq!(
        token_of(net.address(1)).await,
        minted - U256::from(DEP_B) + U256::from(pb)
    );
    assert_eq!(token_of(contract).await, U256::ZERO);
    assert_eq!(
        Channel::new(contract, net.provider())
            .status(id)
            .call()
            .await
            .unwrap()
            .st,
        3,
        "settled"
    );
}
