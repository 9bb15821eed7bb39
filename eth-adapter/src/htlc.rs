//! One swap as the contract sees it: its six parameters and its id.

use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::sol_types::{SolInterface, SolValue};
use swap_core::rail::HtlcParams;
use swap_core::types::{Account, Amount, Asset, EvmAddress, Expiry, Hashlock, TokenUnits, Wei};

use crate::bindings::HTLC;
use crate::error::EthError;

/// The parameters of one HTLC exactly as the contract hashes them into the swap id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthHtlc {
    /// `sha256(preimage)`.
    pub hashlock: B256,
    /// Wei or token base units.
    pub amount: U256,
    /// The ERC-20 token, or `Address::ZERO` for ETH.
    pub token: Address,
    /// Who locks and gets the refund.
    pub sender: Address,
    /// Who gets the claim.
    pub recipient: Address,
    /// Unix time from which the swap can be refunded (and no longer claimed).
    pub expiry: u64,
}

impl EthHtlc {
    /// The swap id and storage slot: `keccak256(abi.encode(hashlock, amount, token, sender,
    /// recipient, expiry))`.
    pub fn id(&self) -> B256 {
        keccak256(
            (
                self.hashlock,
                self.amount,
                self.token,
                self.sender,
                self.recipient,
                U256::from(self.expiry),
            )
                .abi_encode(),
        )
    }

    /// True for an ETH swap.
    pub fn is_eth(&self) -> bool {
        self.token == Address::ZERO
    }

    /// The batch-call form of these parameters (without the hashlock or preimage).
    pub fn as_batch_entry(&self) -> HTLC::Swap {
        HTLC::Swap {
            amount: self.amount,
            token: self.token,
            sender: self.sender,
            recipient: self.recipient,
            expiry: U256::from(self.expiry),
        }
    }

    /// Converts the engine's HTLC parameters, checking that they describe an Ethereum swap.
    pub fn from_params(p: &HtlcParams) -> Result<Self, EthError> {
        let bad = |m: &str| EthError::InvalidParams(m.to_string());
        let token = match (&p.asset, &p.amount) {
            (Asset::Eth, Amount::Wei(_)) => Address::ZERO,
            (Asset::Erc20 { token, decimals }, Amount::Token(t)) if t.decimals == *decimals => {
                if token.0 == [0u8; 20] {
                    return Err(bad("ERC-20 token address is zero"));
                }
                Address::from(token.0)
            }
            _ => {
                return Err(bad(
                    "asset is not ETH or an ERC-20, or amount unit does not fit",
                ))
            }
        };
        let amount = match p.amount {
            Amount::Wei(w) => U256::from(w.0),
            Amount::Token(t) => U256::from(t.units),
            Amount::Sats(_) => return Err(bad("amount in sats")),
        };
        if amount.is_zero() {
            return Err(bad("zero amount"));
        }
        let addr = |a: &Account, what: &str| match a {
            Account::Evm(e) => Ok(Address::from(e.0)),
            Account::PublicKey(_) => Err(bad(&format!("{what} is not an EVM address"))),
        };
        let sender = addr(&p.sender, "sender")?;
        let recipient = addr(&p.recipient, "recipient")?;
        if recipient == Address::ZERO {
            return Err(bad("recipient is the zero address"));
        }
        let expiry = match p.expiry {
            Expiry::Time(t) => t.0,
            Expiry::Height(_) => return Err(bad("expiry is a block height, not a timestamp")),
        };
        Ok(Self {
            hashlock: B256::from(p.hashlock.0),
            amount,
            token,
            sender,
            recipient,
            expiry,
        })
    }

    /// The engine's hashlock type.
    pub fn core_hashlock(&self) -> Hashlock {
        Hashlock(self.hashlock.0)
    }

    /// The engine's asset and amount for these parameters, given the asset they were made from
    /// (ERC-20 decimals are not on chain).
    pub(crate) fn core_amount(&self, asset: &Asset) -> Amount {
        let units = u128::try_from(self.amount).unwrap_or(u128::MAX);
        match asset {
            Asset::Erc20 { decimals, .. } => Amount::Token(TokenUnits {
                units,
                decimals: *decimals,
            }),
            _ => Amount::Wei(Wei(units)),
        }
    }
}

/// An address in the engine's type.
pub(crate) fn core_addr(a: Address) -> EvmAddress {
    EvmAddress(a.into_array())
}

/// Decodes revert data into the contract's custom error name, or hex when unknown.
/// Why a call reverts: one of the HTLC contract's typed errors, decoded with its ABI, or other
/// revert data (a token's error, a panic, a reason string). Code branches on the typed errors,
/// never on text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// A custom error of `HTLC.sol`.
    Htlc(HTLC::HTLCErrors),
    /// Any other revert data.
    Other(Vec<u8>),
}

impl std::fmt::Display for Revert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Revert::Htlc(e) => write!(f, "{e:?}"),
            Revert::Other(data) => write!(f, "revert data 0x{}", hex::encode(data)),
        }
    }
}

impl Revert {
    /// The revert as one of the payment channel contract's typed errors (`Channel.sol`), if it
    /// is one. Errors the two contracts share (`ZeroAmount()`, `TransferFailed()`,
    /// `BalanceMismatch()`: same selector) decode as [`Revert::Htlc`] first, so they are
    /// re-encoded and decoded with the channel's ABI here.
    pub fn channel(&self) -> Option<crate::bindings::Channel::ChannelErrors> {
        let data = match self {
            Revert::Htlc(e) => e.abi_encode(),
            Revert::Other(d) => d.clone(),
        };
        crate::bindings::Channel::ChannelErrors::abi_decode(&data).ok()
    }
}

/// Decodes revert data into [`Revert`].
pub fn decode_revert(data: &[u8]) -> Revert {
    match HTLC::HTLCErrors::abi_decode(data) {
        Ok(e) => Revert::Htlc(e),
        Err(_) => Revert::Other(data.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_abi_encoded_keccak() {
        let h = EthHtlc {
            hashlock: B256::repeat_byte(1),
            amount: U256::from(5),
            token: Address::ZERO,
            sender: Address::repeat_byte(2),
            recipient: Address::repeat_byte(3),
            expiry: 7,
        };
        let mut buf = Vec::new();
        buf.extend_from_slice(&[1u8; 32]);
        buf.extend_from_slice(&U256::from(5).to_be_bytes::<32>());
        buf.extend_from_slice(&[0u8; 32]);
        buf.extend_from_slice(&[0u8; 12]);
        buf.extend_from_slice(&[2u8; 20]);
        buf.extend_from_slice(&[0u8; 12]);
        buf.extend_from_slice(&[3u8; 20]);
        buf.extend_from_slice(&U256::from(7).to_be_bytes::<32>());
        assert_eq!(h.id(), keccak256(&buf));
    }
}
