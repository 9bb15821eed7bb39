//! What this adapter's account can spend, checked before a swap is agreed (a taker or maker
//! that cannot fund its lock must say so before the other side locks anything).

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use swap_core::types::Asset;
use swap_core::Funds;

use crate::bindings::IERC20Permit;
use crate::error::{rpc_err, EthError};
use crate::EthChain;

/// Gas budgeted for one lock when checking funds (an ERC-20 lock with an approve measures
/// ~135,000; an ETH lock ~48,000).
pub const LOCK_GAS_ALLOWANCE: u64 = 150_000;

impl EthChain {
    /// This account's balance of `asset`, its ETH for gas, and what one lock's gas may cost at
    /// the current gas price (doubled for headroom); gas comes out of the balance for ETH.
    pub async fn funds(&self, asset: &Asset) -> Result<Funds, EthError> {
        let me = self.address();
        let wei = u256_to_u128(self.provider().get_balance(me).await.map_err(rpc_err)?);
        let price = self.provider().get_gas_price().await.map_err(rpc_err)?;
        let gas_allowance = price
            .saturating_mul(2)
            .saturating_mul(u128::from(LOCK_GAS_ALLOWANCE));
        let balance = match asset {
            Asset::Eth => wei,
            Asset::Erc20 { token, .. } => {
                let token = IERC20Permit::new(Address::from(token.0), self.provider());
                u256_to_u128(token.balanceOf(me).call().await.map_err(|e| {
                    EthError::Rejected(format!("reading the token balance failed: {e}"))
                })?)
            }
            other => {
                return Err(EthError::InvalidParams(format!(
                    "{other:?} is not an Ethereum asset"
                )))
            }
        };
        Ok(Funds {
            balance,
            fee_balance: wei,
            fee_allowance: gas_allowance,
            fees_from_asset: *asset == Asset::Eth,
        })
    }
}

fn u256_to_u128(v: U256) -> u128 {
    u128::try_from(v).unwrap_or(u128::MAX)
}
