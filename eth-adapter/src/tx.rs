//! Pieces of sending a transaction that do not depend on [`crate::EthChain`]: the latest block,
//! fees under caps, the gas margin, replaying a mined transaction for its revert, and the
//! classification of node errors. [`crate::EthChain`] sends through them, and so does the
//! payment channel watcher (`eth-channel`), which records its transactions in its own store.

use alloy::eips::eip1559::Eip1559Estimation;
use alloy::network::TransactionBuilder;
use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;

pub use crate::error::{rpc_err, scrub_urls};
pub use crate::scan::{latest, ScanTip};
use crate::EthError;

/// The gas limit sent for a transaction whose estimate is `estimate`: 20 % and 10,000 above
/// it (a state change between the estimate and the inclusion must not make it run out).
pub fn gas_limit(estimate: u64) -> u64 {
    estimate + estimate / 5 + 10_000
}

/// The fees to send with (max fee per gas, max priority fee per gas) from the node's
/// estimate, under the caps; a base fee above `max_fee_cap` is [`EthError::FeeCap`].
pub fn capped_fees(
    est: &Eip1559Estimation,
    base_fee: u128,
    max_fee_cap: u128,
    max_priority_cap: u128,
) -> Result<(u128, u128), EthError> {
    if base_fee > max_fee_cap {
        return Err(EthError::FeeCap {
            base_fee,
            cap: max_fee_cap,
        });
    }
    let max_fee = est.max_fee_per_gas.min(max_fee_cap).max(base_fee);
    let prio = est
        .max_priority_fee_per_gas
        .min(max_priority_cap)
        .min(max_fee);
    Ok((max_fee, prio))
}

/// Full blocks beyond the wait behind our own transactions that a send's max fee is made to
/// outlast. Two, not more: a node may order its pool by max fee (anvil does), and with eight
/// (2.57x) the maker's locks, deep in its queue and so with the highest max fees, kept every
/// claim batch of the taker out of 15 blocks of a 10,000-swap run (a claim's max fee, set for
/// an empty queue, fell behind them); with two, 10,000 swaps took 22 blocks against 21.
pub const OTHERS_BLOCKS: u64 = 2;

/// The max fee per gas for a transaction that `ahead` of the sender's own transactions precede
/// in the pool (about `gas` each, in blocks of `block_gas`): it waits about
/// `ahead * gas / block_gas` full blocks, and each full block raises the base fee by an eighth
/// (EIP-1559), so a max fee that only covers today's base fee falls below it while the
/// transaction waits, and the transaction then cannot be mined until blocks empty (a node may
/// drop it meanwhile: anvil does). The fee covers the base fee's growth over that wait and
/// [`OTHERS_BLOCKS`] more, plus the priority fee; never below `max_fee` (the estimate), never
/// above `cap`. A max fee is only a bound: the transaction pays the base fee of its block plus
/// the priority fee.
pub fn queued_max_fee(
    max_fee: u128,
    prio: u128,
    base_fee: u128,
    ahead: u64,
    gas: u64,
    block_gas: u64,
    cap: u128,
) -> u128 {
    let blocks = ahead.saturating_mul(gas).div_ceil(block_gas.max(1)) + OTHERS_BLOCKS;
    let mut base = base_fee;
    for _ in 0..blocks {
        if base >= cap {
            break;
        }
        base = base.saturating_add(base / 8);
    }
    max_fee.max(base.saturating_add(prio)).min(cap)
}

/// Why mined transaction `tx` reverted: it is replayed as a call against the state and
/// environment of its block `block` (best effort: the state is the one after the block).
/// `Ok(())` when the replay succeeds (the reason is unknown); the revert as
/// [`EthError::WouldRevert`] (typed: see [`crate::Revert`]) otherwise.
pub async fn replay(provider: &DynProvider, tx: B256, block: u64) -> Result<(), EthError> {
    use alloy::consensus::Transaction as _;
    let sent = provider
        .get_transaction_by_hash(tx)
        .await
        .map_err(rpc_err)?
        .ok_or_else(|| EthError::NotReady(format!("transaction {tx:#x} unknown to the node")))?;
    let to = sent.inner.to().ok_or_else(|| {
        EthError::InvalidParams(format!("transaction {tx:#x} creates a contract"))
    })?;
    let req = TransactionRequest::default()
        .with_from(sent.inner.signer())
        .with_to(to)
        .with_input(sent.inner.input().clone())
        .with_value(sent.inner.value());
    provider
        .call(req)
        .block(alloy::eips::BlockId::number(block))
        .await
        .map(|_| ())
        .map_err(rpc_err)
}

#[cfg(test)]
mod tests {
    use super::queued_max_fee;

    const GWEI: u128 = 1_000_000_000;

    #[test]
    fn a_queued_transactions_max_fee_covers_the_base_fee_growth_while_it_waits() {
        // Estimate 3 gwei, priority 1 gwei, base fee 2 gwei, locks of 60,000 gas, 30M blocks.
        let fee = |estimate: u128, ahead: u64, cap: u128| {
            queued_max_fee(estimate, GWEI, 2 * GWEI, ahead, 60_000, 30_000_000, cap)
        };
        let grown = |blocks: u64| (0..blocks).fold(2 * GWEI, |b, _| b + b / 8);
        // Alone: 2 gwei grown by an eighth twice (2.53125 gwei), plus the priority fee.
        assert_eq!(fee(3 * GWEI, 0, 500 * GWEI), 3_531_250_000);
        assert_eq!(grown(2) + GWEI, 3_531_250_000);
        // 9,000 locks ahead: 18 full blocks, then two more.
        let deep = fee(3 * GWEI, 9_000, 500 * GWEI);
        assert_eq!(deep, grown(20) + GWEI);
        assert!(deep > 20 * GWEI, "20 full blocks raise the base fee ~10.5x");
        // Never above the cap, never below the estimate.
        assert_eq!(fee(3 * GWEI, 9_000, 5 * GWEI), 5 * GWEI);
        assert_eq!(fee(400 * GWEI, 10, 500 * GWEI), 400 * GWEI);
    }
}
