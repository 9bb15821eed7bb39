//! Two-party payment channels on `contracts/Channel.sol`: naming a channel, checking a state
//! and signing it exactly as the contract verifies it.
//!
//! The calldata structs are the contract's own bindings ([`Params`], [`State`], [`Lock`],
//! [`Sig`], [`Record`], [`Frozen`]). What both parties sign is the EIP-712 struct
//! `State(bytes32 channelId, uint64 version, ...)` (the calldata [`State`] plus the channel id,
//! which the contract derives from [`Params`]) in the domain `("xswap Channel", "1", chain id,
//! contract)`; the digest comes from alloy's [`SolStruct::eip712_signing_hash`].
//!
//! A state must satisfy `balanceA + balanceB + sum(locks) + withdrawnA + withdrawnB ==
//! depositA + depositB`, where the deposits and withdrawals are the cumulative on-chain amounts
//! the state accounts for (see the contract's header for how a state pays out).
//!
//! What to check before signing, beyond [`ChannelRef::check`] (done by [`ChannelRef::sign`]):
//! [`ChannelRef::check_next`] against the last co-signed state and the chain at a final block
//! (versions, deposit and withdrawal totals, withdrawal expiries), and that no new lock's
//! hashlock is revealed ([`ChannelRef::revealed_at`]) or was ever used before. The secret
//! registry is global (every channel of the contract, anyone may reveal) and permanent: a
//! lock whose hashlock is already revealed pays its receiver unconditionally.

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{keccak256, uint, Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolStruct, SolValue};

use crate::bindings::Channel;
use crate::error::{rpc_err, scrub_urls};
use crate::EthError;

pub use crate::bindings::Channel::{Frozen, Lock, Params, Record, Sig, State};

/// The most pending locks a state may hold (`Channel.MAX_LOCKS`).
pub const MAX_LOCKS: usize = 64;
/// The longest a lock can hold a settlement after the closing deadline, in seconds
/// (`Channel.MAX_LOCK_TTL`, 30 days): at settlement a lock's expiry counts as
/// `min(expiry, deadline + MAX_LOCK_TTL)`. [`ChannelRef::check`] refuses a lock expiring later
/// than `now + MAX_LOCK_TTL`, so that cap never changes how a lock signed by this crate
/// resolves (the deadline is at least the close time plus the challenge period).
pub const MAX_LOCK_TTL: u64 = 30 * 24 * 3600;
/// EIP-712 domain name.
pub const DOMAIN_NAME: &str = "xswap Channel";
/// EIP-712 domain version.
pub const DOMAIN_VERSION: &str = "1";

/// secp256k1 order / 2: signatures with a larger `s` are refused (their malleable twin).
const HALF_N: U256 = uint!(0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0_U256);

mod typed {
    alloy::sol! {
        /// The EIP-712 struct both parties sign (`Channel.STATE_TYPEHASH`).
        #[derive(Debug)]
        struct State {
            bytes32 channelId;
            uint64 version;
            uint128 balanceA;
            uint128 balanceB;
            bytes32 locksHash;
            uint128 depositA;
            uint128 depositB;
            uint128 withdrawnA;
            uint128 withdrawnB;
            uint64 withdrawExpiry;
            bool isFinal;
        }
    }
}

/// What can be wrong with a state or a signature, found before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Version 0 is the implicit unsigned state (`closeUnsigned`); signed states start at 1.
    #[error("signed states start at version 1")]
    ZeroVersion,
    /// More pending locks than the contract accepts.
    #[error("{0} pending locks, at most {MAX_LOCKS}")]
    TooManyLocks(usize),
    /// A lock whose `from` is neither party.
    #[error("lock {0} is from neither party")]
    LockSender(usize),
    /// `locksHash` is not the hash of the locks.
    #[error("the state's locks hash does not match its locks")]
    LocksHash,
    /// Balances, locks and withdrawals do not add up to the deposits.
    #[error("balances + locks + withdrawals != deposits")]
    Sum,
    /// A final state (cooperative close) must have no pending locks.
    #[error("a final state has pending locks")]
    FinalWithLocks,
    /// A lock expiring later than `now + MAX_LOCK_TTL`: the contract would cut its expiry.
    #[error("lock {index} expires at {expiry}, after {latest} (now + MAX_LOCK_TTL)")]
    LockTooLong {
        /// The lock's position.
        index: usize,
        /// Its expiry.
        expiry: u64,
        /// The latest expiry accepted.
        latest: u64,
    },
    /// Signing failed, or a signature is malformed, malleable or from someone else.
    #[error("signature: {0}")]
    Signature(String),
    /// Nothing is signed after a final state.
    #[error("the previous state is final")]
    AfterFinal,
    /// A new state must have a higher version than the last one signed.
    #[error("version {next} does not follow version {prev}")]
    NotNewer {
        /// The last signed version.
        prev: u64,
        /// The new state's version.
        next: u64,
    },
    /// A party's deposit total shrank from the last signed state.
    #[error("the deposit total of {0:?} shrank")]
    DepositShrank(Side),
    /// A party's deposit total counts more than the chain holds (at a final block).
    #[error("the deposit total of {0:?} counts a deposit not final on chain")]
    DepositNotOnChain(Side),
    /// A party's withdrawn total is below what the chain already paid it.
    #[error("the withdrawn total of {0:?} is below the withdrawals already executed")]
    BelowExecuted(Side),
    /// A party's withdrawn total shrank while a signed withdrawal may still be executed
    /// (before the previous state's `withdrawExpiry`).
    #[error("the withdrawn total of {0:?} shrank before the previous withdrawal lapsed")]
    WithdrawalDropped(Side),
    /// `withdrawExpiry` moved earlier while the previous one is still running.
    #[error("the withdrawal expiry moved earlier before the previous one lapsed")]
    WithdrawExpiryShortened,
}

/// One side of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// `Params.a`.
    A,
    /// `Params.b`.
    B,
}

/// A channel's cumulative amounts on chain (the contract's `status` view) at a final block,
/// and that block's timestamp: what [`ChannelRef::check_next`] compares a new state with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnChain {
    /// A's cumulative deposits.
    pub deposit_a: u128,
    /// B's cumulative deposits.
    pub deposit_b: u128,
    /// A's executed withdrawals.
    pub withdrawn_a: u128,
    /// B's executed withdrawals.
    pub withdrawn_b: u128,
    /// The block's timestamp.
    pub time: u64,
}

/// A channel as deployed: its parameters, the chain and the contract. Everything needed to
/// name it and to sign or verify its states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRef {
    /// The parameters hashed into the id.
    pub params: Params,
    /// The chain id (EIP-155).
    pub chain_id: u64,
    /// The `Channel` contract.
    pub contract: Address,
}

impl ChannelRef {
    /// A channel of `params` on `chain_id` in the contract at `contract`.
    pub fn new(params: Params, chain_id: u64, contract: Address) -> Self {
        Self {
            params,
            chain_id,
            contract,
        }
    }

    /// The channel id: `keccak256(abi.encode(chainid, contract, a, b, token, challengePeriod,
    /// salt))`.
    pub fn id(&self) -> B256 {
        keccak256(
            (
                U256::from(self.chain_id),
                self.contract,
                self.params.clone(),
            )
                .abi_encode(),
        )
    }

    /// The address of `side`.
    pub fn party(&self, side: Side) -> Address {
        match side {
            Side::A => self.params.a,
            Side::B => self.params.b,
        }
    }

    /// Which side `who` is, if a party.
    pub fn side_of(&self, who: Address) -> Option<Side> {
        if who == self.params.a {
            Some(Side::A)
        } else if who == self.params.b {
            Some(Side::B)
        } else {
            None
        }
    }

    /// The EIP-712 domain of the contract.
    pub fn domain(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(DOMAIN_NAME.into()),
            Some(DOMAIN_VERSION.into()),
            Some(U256::from(self.chain_id)),
            Some(self.contract),
            None,
        )
    }

    /// The digest both parties sign for `state` (equals the contract's `hashState`).
    pub fn digest(&self, state: &State) -> B256 {
        let typed = typed::State {
            channelId: self.id(),
            version: state.version,
            balanceA: state.balanceA,
            balanceB: state.balanceB,
            locksHash: state.locksHash,
            depositA: state.depositA,
            depositB: state.depositB,
            withdrawnA: state.withdrawnA,
            withdrawnB: state.withdrawnB,
            withdrawExpiry: state.withdrawExpiry,
            isFinal: state.isFinal,
        };
        typed.eip712_signing_hash(&self.domain())
    }

    /// Checks what the contract checks of a state without chain data: version, locks (count,
    /// senders, hash) and the sum. Stricter than the contract: a final state must have no
    /// locks (only such a state can close cooperatively), and no lock may expire later than
    /// `now + MAX_LOCK_TTL` (see [`MAX_LOCK_TTL`]).
    ///
    /// `now` is the current time in unix seconds (the signer's clock or the latest block's
    /// timestamp); it must not run ahead of the chain's clock by more than the challenge
    /// period, which keeps the contract's cap (deadline + `MAX_LOCK_TTL`) out of reach.
    pub fn check(&self, state: &State, locks: &[Lock], now: u64) -> Result<(), ChannelError> {
        if state.version == 0 {
            return Err(ChannelError::ZeroVersion);
        }
        if locks.len() > MAX_LOCKS {
            return Err(ChannelError::TooManyLocks(locks.len()));
        }
        if let Some(i) = locks.iter().position(|l| self.side_of(l.from).is_none()) {
            return Err(ChannelError::LockSender(i));
        }
        if locks_hash(locks) != state.locksHash {
            return Err(ChannelError::LocksHash);
        }
        if state.isFinal && !locks.is_empty() {
            return Err(ChannelError::FinalWithLocks);
        }
        let latest = now.saturating_add(MAX_LOCK_TTL);
        if let Some((index, l)) = locks.iter().enumerate().find(|(_, l)| l.expiry > latest) {
            return Err(ChannelError::LockTooLong {
                index,
                expiry: l.expiry,
                latest,
            });
        }
        let out = [
            state.balanceA,
            state.balanceB,
            state.withdrawnA,
            state.withdrawnB,
        ]
        .into_iter()
        .chain(locks.iter().map(|l| l.amount))
        .fold(U256::ZERO, |acc, x| acc + U256::from(x));
        if out != U256::from(state.depositA) + U256::from(state.depositB) {
            return Err(ChannelError::Sum);
        }
        Ok(())
    }

    /// Checks that `next` may be signed after `prev`, the last state this side signed (the
    /// counterparty may hold it co-signed even if it never returned its signature), with the
    /// chain as `chain` shows it at a final block (on top of [`ChannelRef::check`]). These
    /// are the off-chain rules under which executing any signed withdrawal, at any time, never
    /// makes the latest state unusable (see the contract's header):
    /// - nothing is signed after a final state, and versions grow;
    /// - deposit totals never shrink and count only deposits final on chain;
    /// - withdrawn totals never fall below the withdrawals already executed, and never shrink,
    ///   except that a withdrawal that lapsed unexecuted may be dropped: a total may shrink only
    ///   once `chain.time >= prev.withdrawExpiry`;
    /// - `withdrawExpiry` never moves earlier while `prev`'s is running, so `prev`'s is the
    ///   latest expiry of every signed state that could still be withdrawn.
    pub fn check_next(
        &self,
        prev: &State,
        next: &State,
        chain: &OnChain,
    ) -> Result<(), ChannelError> {
        if prev.isFinal {
            return Err(ChannelError::AfterFinal);
        }
        if next.version <= prev.version {
            return Err(ChannelError::NotNewer {
                prev: prev.version,
                next: next.version,
            });
        }
        let running = chain.time < prev.withdrawExpiry;
        let sides = [
            (
                Side::A,
                (prev.depositA, next.depositA, chain.deposit_a),
                (prev.withdrawnA, next.withdrawnA, chain.withdrawn_a),
            ),
            (
                Side::B,
                (prev.depositB, next.depositB, chain.deposit_b),
                (prev.withdrawnB, next.withdrawnB, chain.withdrawn_b),
            ),
        ];
        for (side, (pd, nd, cd), (pw, nw, cw)) in sides {
            if nd < pd {
                return Err(ChannelError::DepositShrank(side));
            }
            if nd > cd {
                return Err(ChannelError::DepositNotOnChain(side));
            }
            if nw < cw {
                return Err(ChannelError::BelowExecuted(side));
            }
            if nw < pw && running {
                return Err(ChannelError::WithdrawalDropped(side));
            }
        }
        if running && next.withdrawExpiry < prev.withdrawExpiry {
            return Err(ChannelError::WithdrawExpiryShortened);
        }
        Ok(())
    }

    /// The channel's amounts at block `at` (pass a final block, e.g.
    /// [`BlockNumberOrTag::Finalized`]) and that block's timestamp, for
    /// [`ChannelRef::check_next`]. Fails unless the channel is open at that block.
    pub async fn on_chain(
        &self,
        provider: &DynProvider,
        at: BlockNumberOrTag,
    ) -> Result<OnChain, EthError> {
        let block = provider
            .get_block_by_number(at)
            .await
            .map_err(rpc_err)?
            .ok_or_else(|| EthError::NotReady(format!("no block {at}")))?;
        let number = block.header.number;
        self.open_at(provider, BlockId::number(number), block.header.timestamp)
            .await?
            .ok_or_else(|| {
                EthError::NotReady(format!(
                    "channel {} is not open at block {number}",
                    self.id()
                ))
            })
    }

    /// The channel's amounts at `block` (whose timestamp is `time`) if it is open there,
    /// `None` if it is not (never opened, closing or settled).
    pub async fn open_at(
        &self,
        provider: &DynProvider,
        block: BlockId,
        time: u64,
    ) -> Result<Option<OnChain>, EthError> {
        let st = Channel::new(self.contract, provider)
            .status(self.id())
            .block(block)
            .call()
            .await
            .map_err(contract_err)?;
        if st.st != 1 {
            return Ok(None);
        }
        let small = |x: U256| {
            u128::try_from(x).map_err(|_| EthError::Inconsistent(format!("amount {x} too large")))
        };
        Ok(Some(OnChain {
            deposit_a: small(st.depositA)?,
            deposit_b: small(st.depositB)?,
            withdrawn_a: small(st.withdrawnA)?,
            withdrawn_b: small(st.withdrawnB)?,
            time,
        }))
    }

    /// When the preimage of `hashlock` was revealed in the contract's secret registry (the
    /// timestamp of the block that revealed it), or `None` if it never was, as of the latest
    /// block.
    ///
    /// The registry is global and permanent: one per contract, shared by every channel, open
    /// to anyone, never reset. A lock pays its receiver if its hashlock was revealed before
    /// the lock's expiry, whenever and by whomever; so a lock whose hashlock is already
    /// revealed is a payment, not a conditional one. Never sign a lock whose hashlock is
    /// revealed (check with this) or that was used before, in any channel or HTLC.
    pub async fn revealed_at(
        &self,
        provider: &DynProvider,
        hashlock: B256,
    ) -> Result<Option<u64>, EthError> {
        let t = Channel::new(self.contract, provider)
            .revealedAt(hashlock)
            .call()
            .await
            .map_err(contract_err)?;
        if t.is_zero() {
            return Ok(None);
        }
        u64::try_from(t)
            .map(Some)
            .map_err(|_| EthError::Inconsistent(format!("reveal time {t} too large")))
    }

    /// Signs `state` with `signer` (after [`ChannelRef::check`]-ing it with `locks` at `now`).
    pub fn sign(
        &self,
        signer: &PrivateKeySigner,
        state: &State,
        locks: &[Lock],
        now: u64,
    ) -> Result<Sig, ChannelError> {
        self.check(state, locks, now)?;
        let key =
            secp256k1::SecretKey::from_slice(&signer.credential().to_bytes()).map_err(|_| {
                ChannelError::Signature("the signing key is not a secp256k1 key".into())
            })?;
        let msg = secp256k1::Message::from_digest(self.digest(state).0);
        let (id, rs) = secp()
            .sign_ecdsa_recoverable(&msg, &key)
            .serialize_compact();
        let mut key = key;
        key.non_secure_erase();
        let v = u8::try_from(id.to_i32())
            .ok()
            .filter(|v| *v <= 1)
            .ok_or_else(|| ChannelError::Signature("recovery id above 1".into()))?;
        let sig = Sig {
            v: 27 + v,
            r: B256::from_slice(&rs[..32]),
            s: B256::from_slice(&rs[32..]),
        };
        // libsecp256k1 signs with a low s; make sure, the contract refuses anything else. (The
        // peer recovers the signer before it takes the state; so does the contract.)
        if U256::from_be_bytes(sig.s.0) > HALF_N {
            return Err(ChannelError::Signature("high s".into()));
        }
        Ok(sig)
    }

    /// Checks that `sig` is `signer`'s signature of `state` by the contract's rules: v is 27
    /// or 28, s is in the lower half of the curve order, and it recovers to `signer`.
    pub fn verify(&self, state: &State, sig: &Sig, signer: Address) -> Result<(), ChannelError> {
        let got = self.signer_of(state, sig)?;
        if got == signer {
            Ok(())
        } else {
            Err(ChannelError::Signature(format!(
                "signed by {got}, expected {signer}"
            )))
        }
    }

    /// Who signed `state` with `sig`, by the contract's rules (v 27 or 28, s in the lower
    /// half of the curve order, r and s below the order, and not zero).
    pub fn signer_of(&self, state: &State, sig: &Sig) -> Result<Address, ChannelError> {
        let bad = |m: &str| Err(ChannelError::Signature(m.to_string()));
        if sig.v != 27 && sig.v != 28 {
            return bad("v is not 27 or 28");
        }
        let s = U256::from_be_bytes(sig.s.0);
        if s > HALF_N {
            return bad("s is in the upper half of the curve order");
        }
        if s.is_zero() || sig.r.is_zero() {
            return bad("r or s is zero");
        }
        let mut rs = [0u8; 64];
        rs[..32].copy_from_slice(&sig.r.0);
        rs[32..].copy_from_slice(&sig.s.0);
        let parsed = secp256k1::ecdsa::RecoveryId::from_i32(i32::from(sig.v - 27))
            .and_then(|id| secp256k1::ecdsa::RecoverableSignature::from_compact(&rs, id))
            .map_err(|e| ChannelError::Signature(e.to_string()))?;
        let msg = secp256k1::Message::from_digest(self.digest(state).0);
        let key = secp()
            .recover_ecdsa(&msg, &parsed)
            .map_err(|e| ChannelError::Signature(e.to_string()))?;
        Ok(Address::from_raw_public_key(
            &key.serialize_uncompressed()[1..],
        ))
    }
}

/// One libsecp256k1 context for the process (creating one costs more than a signature).
fn secp() -> &'static secp256k1::Secp256k1<secp256k1::All> {
    static SECP: std::sync::OnceLock<secp256k1::Secp256k1<secp256k1::All>> =
        std::sync::OnceLock::new();
    SECP.get_or_init(secp256k1::Secp256k1::new)
}

/// An error from a contract call: a transport error classified as elsewhere, anything else
/// (decoding, a revert) a rejection.
fn contract_err(e: alloy::contract::Error) -> EthError {
    match e {
        alloy::contract::Error::TransportError(t) => rpc_err(t),
        other => EthError::Rejected(scrub_urls(&other.to_string())),
    }
}

/// The hash a state commits to for its pending locks: zero when there are none, else
/// `keccak256(abi.encode(locks))` (equals the contract's `hashLocks`).
pub fn locks_hash(locks: &[Lock]) -> B256 {
    if locks.is_empty() {
        B256::ZERO
    } else {
        keccak256(locks.to_vec().abi_encode())
    }
}

impl Record {
    /// The part of the record fixed for the whole closing (deadline and nets), which `update`
    /// takes: the same for every `Closing` event of one closing.
    pub fn frozen(&self) -> Frozen {
        Frozen {
            deadline: self.deadline,
            netA: self.netA,
            netB: self.netB,
        }
    }
}

impl From<&crate::bindings::Channel::Closing> for Record {
    /// The record `settle` takes (and, through [`Record::frozen`], `update`), from the
    /// `Closing` event that committed it.
    fn from(e: &crate::bindings::Channel::Closing) -> Self {
        Record {
            version: e.version,
            deadline: e.deadline,
            netA: e.netA,
            netB: e.netB,
            payA: e.payA,
            payB: e.payB,
            locksHash: e.locksHash,
        }
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
