//! Finding this account's locks from the contract alone, for an installation that lost its
//! swap database (`xswap recover`): every `Locked` event sent by this account whose swap has
//! neither a `Claimed` nor a `Refunded` event is still locked, and can be refunded by its
//! sender once it expires, with nothing but the event's parameters.

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use swap_core::rail::HtlcParams;
use swap_core::types::{Account, Amount, Asset, EvmAddress, Expiry, Height, SwapId, Timestamp};
use swap_core::types::{TokenUnits, Wei};

use crate::bindings::IERC20Permit;
use crate::error::EthError;
use crate::htlc::core_addr;
use crate::scan::{self, EventKind};
use crate::{EthChain, EthHtlc};

/// A lock this account made that the contract still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLock {
    /// The swap's parameters as the contract hashed them.
    pub htlc: EthHtlc,
    /// The block of its `Locked` event.
    pub block: u64,
}

impl OpenLock {
    /// The engine's parameters for this lock (`decimals` of its token, for an ERC-20), enough
    /// to refund it. The swap id is made up from the contract's id: the original is lost.
    pub fn params(&self, decimals: u8) -> HtlcParams {
        let h = &self.htlc;
        let (asset, amount) = if h.is_eth() {
            (Asset::Eth, Amount::Wei(Wei(h.amount.to::<u128>())))
        } else {
            (
                Asset::Erc20 {
                    token: EvmAddress(h.token.into_array()),
                    decimals,
                },
                Amount::Token(TokenUnits {
                    units: h.amount.to::<u128>(),
                    decimals,
                }),
            )
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.id()[..16]);
        HtlcParams {
            swap_id: SwapId(id),
            key_index: 0,
            hashlock: swap_core::types::Hashlock(h.hashlock.0),
            asset,
            amount,
            sender: Account::Evm(core_addr(h.sender)),
            recipient: Account::Evm(core_addr(h.recipient)),
            expiry: Expiry::Time(Timestamp(h.expiry)),
            watch_from: Height(self.block),
            rail_data: None,
        }
    }
}

impl EthChain {
    /// Every lock sent by this account since block `from` that the contract still holds
    /// (neither claimed nor refunded), oldest first.
    pub async fn open_locks(&self, from: u64) -> Result<Vec<OpenLock>, EthError> {
        let tip = scan::latest(self.provider()).await?;
        let events = scan::all_logs(
            self.provider(),
            self.config().htlc,
            from,
            tip.number,
            self.config().log_chunk,
        )
        .await?;
        let me = self.address();
        let mut open: HashMap<B256, OpenLock> = HashMap::new();
        let mut order = Vec::new();
        for e in events {
            match e.kind {
                EventKind::Locked(h) if h.sender == me => {
                    order.push(e.id);
                    open.insert(
                        e.id,
                        OpenLock {
                            htlc: h,
                            block: e.block,
                        },
                    );
                }
                EventKind::Claimed(_) | EventKind::Refunded => {
                    open.remove(&e.id);
                }
                EventKind::Locked(_) => {}
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|id| open.remove(&id))
            .collect())
    }

    /// The `decimals()` of `token` (18 when it has none).
    pub async fn token_decimals(&self, token: Address) -> u8 {
        IERC20Permit::new(token, self.provider())
            .decimals()
            .call()
            .await
            .unwrap_or(18)
    }
}
