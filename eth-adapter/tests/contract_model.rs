//! Model-based test of HTLC.sol: a few hundred random lock / claim / refund steps (right and
//! wrong preimages, any caller, ETH and ERC-20, controlled block times) against a real anvil.
//! After every step the contract's balances equal the sum of the swaps the model holds
//! locked, every swap's slot matches the model, and each transaction succeeded exactly when
//! the model says it must.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::common;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use devnet::anvil::Devnet;
use devnet::test_contracts::TestToken;
use eth_adapter::bindings::HTLC;
use eth_adapter::EthHtlc;
use serde_json::json;
use sha2::{Digest, Sha256};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Swap {
    htlc: EthHtlc,
    preimage: B256,
    locked: bool,
}

fn provider(net: &Devnet, i: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(net.signer(i)))
        .connect_http(net.url().parse().unwrap())
        .erased()
}

async fn send(
    net: &Devnet,
    p: &DynProvider,
    to: Address,
    input: Vec<u8>,
    value: U256,
    at: u64,
) -> bool {
    net.rpc("evm_setNextBlockTimestamp", json!([at])).await;
    let tx = TransactionRequest::default()
        .with_to(to)
        .with_input(input)
        .with_value(value)
        .with_gas_limit(400_000);
    let r = p
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    r.status()
}

#[tokio::test]
async fn random_operations_keep_the_books_balanced() {
    let net = Devnet::start().await;
    let users: Vec<DynProvider> = (0..4).map(|i| provider(&net, i)).collect();
    let htlc = *HTLC::deploy(users[0].clone()).await.unwrap().address();
    let token = TestToken::deploy(users[0].clone(), "M".into(), 18)
        .await
        .unwrap();
    let t = *token.address();
    for (i, u) in users.iter().enumerate() {
        let tk = TestToken::new(t, u.clone());
        tk.mint(net.address(i), U256::from(10u128.pow(24)))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        tk.approve(htlc, U256::MAX)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    let mut now = common::now(&net).await + 10;
    let mut rng = Rng(0x5eed_1234_abcd_0001);

    // A pool of swaps; some share hashlocks, amounts or parties, to probe the id.
    let mut swaps = Vec::new();
    for k in 0..12u64 {
        let preimage = B256::from(U256::from(1 + k % 5));
        let hashlock = B256::from_slice(&Sha256::digest(preimage.0));
        let sender = (k % 3) as usize;
        let recipient = ((k + 1) % 4) as usize;
        swaps.push(Swap {
            htlc: EthHtlc {
                hashlock,
                amount: U256::from(1_000 + 7 * (k % 4)),
                token: if k % 2 == 0 { Address::ZERO } else { t },
                sender: net.address(sender),
                recipient: net.address(recipient),
                expiry: now + 200 + 150 * (k % 6),
            },
            preimage,
            locked: false,
        });
    }

    let mut outcomes = [0u32; 2];
    for step in 0..250 {
        now += 1 + rng.below(40);
        let i = rng.below(swaps.len() as u64) as usize;
        let s = &swaps[i];
        let h = s.htlc;
        let expiry = U256::from(h.expiry);
        let (ok, expect_ok, next_locked) = match rng.below(3) {
            0 => {
                let sender = (0..4).position(|j| net.address(j) == h.sender).unwrap();
                let (input, value) = if h.is_eth() {
                    (
                        HTLC::lockCall {
                            hashlock: h.hashlock,
                            recipient: h.recipient,
                            expiry,
                        }
                        .abi_encode(),
                        h.amount,
                    )
                } else {
                    (
                        HTLC::lockTokenCall {
                            hashlock: h.hashlock,
                            token: h.token,
                            amount: h.amount,
                            recipient: h.recipient,
                            expiry,
                        }
                        .abi_encode(),
                        U256::ZERO,
                    )
                };
                let ok = send(&net, &users[sender], htlc, input, value, now).await;
                (ok, !s.locked, true)
            }
            1 => {
                let right = rng.below(4) != 0;
                let pre = if right {
                    s.preimage
                } else {
                    B256::from(U256::from(99u64))
                };
                let input = if h.is_eth() {
                    HTLC::claimCall {
                        preimage: pre,
                        amount: h.amount,
                        sender: h.sender,
                        recipient: h.recipient,
                        expiry,
                    }
                    .abi_encode()
                } else {
                    HTLC::claimTokenCall {
                        preimage: pre,
                        token: h.token,
                        amount: h.amount,
                        sender: h.sender,
                        recipient: h.recipient,
                        expiry,
                    }
                    .abi_encode()
                };
                let caller = rng.below(4) as usize;
                let ok = send(&net, &users[caller], htlc, input, U256::ZERO, now).await;
                (ok, s.locked && right && now < h.expiry, false)
            }
            _ => {
                let input = if h.is_eth() {
                    HTLC::refundCall {
                        hashlock: h.hashlock,
                        amount: h.amount,
                        sender: h.sender,
                        recipient: h.recipient,
                        expiry,
                    }
                    .abi_encode()
                } else {
                    HTLC::refundTokenCall {
                        hashlock: h.hashlock,
                        token: h.token,
                        amount: h.amount,
                        sender: h.sender,
                        recipient: h.recipient,
                        expiry,
                    }
                    .abi_encode()
                };
                let caller = rng.below(4) as usize;
                let ok = send(&net, &users[caller], htlc, input, U256::ZERO, now).await;
                (ok, s.locked && now >= h.expiry, false)
            }
        };
        assert_eq!(ok, expect_ok, "step {step}: swap {i} at time {now}");
        outcomes[ok as usize] += 1;
        if ok {
            swaps[i].locked = next_locked;
        }
        // The books: balances equal what the model holds locked; slots match the model.
        let eth: U256 = swaps
            .iter()
            .filter(|s| s.locked && s.htlc.is_eth())
            .map(|s| s.htlc.amount)
            .sum();
        let tok: U256 = swaps
            .iter()
            .filter(|s| s.locked && !s.htlc.is_eth())
            .map(|s| s.htlc.amount)
            .sum();
        assert_eq!(
            net.provider().get_balance(htlc).await.unwrap(),
            eth,
            "step {step}"
        );
        assert_eq!(
            token.balanceOf(htlc).call().await.unwrap(),
            tok,
            "step {step}"
        );
        for s in &swaps {
            let slot = net
                .provider()
                .get_storage_at(htlc, s.htlc.id().into())
                .await
                .unwrap();
            assert_eq!(slot == U256::from(1), s.locked, "step {step}");
        }
    }
    // Both outcomes were exercised plenty.
    assert!(outcomes[0] > 30 && outcomes[1] > 30, "{outcomes:?}");
}
