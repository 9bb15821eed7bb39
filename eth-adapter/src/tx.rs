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
