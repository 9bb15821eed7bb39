//! A per-account nonce manager: concurrent swaps from one account never reuse a nonce.

use std::future::Future;

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use tokio::sync::Mutex;

use crate::error::{rpc_err, EthError};

/// Hands out nonces for one account.
///
/// [`NonceManager::send_with`] holds a lock from choosing the nonce until the node has accepted
/// (or rejected) the transaction, so sends from many tasks are serialized while waiting for
/// receipts stays concurrent. The next nonce is the larger of the node's pending count and the
/// local counter (which covers nodes that are slow to count a just-sent transaction); after a
/// rejection or a reorg ([`NonceManager::reset`]) the node's count is trusted again.
#[derive(Debug)]
pub struct NonceManager {
    account: Address,
    next: Mutex<Option<u64>>,
}

impl NonceManager {
    /// A manager for `account`.
    pub fn new(account: Address) -> Self {
        Self {
            account,
            next: Mutex::new(None),
        }
    }

    /// Forgets the local counter (after a reorg or a dropped transaction).
    pub async fn reset(&self) {
        *self.next.lock().await = None;
    }

    /// Runs `send` with the next nonce; the nonce is consumed only if `send` succeeds.
    pub async fn send_with<T, F, Fut>(&self, provider: &DynProvider, send: F) -> Result<T, EthError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<T, EthError>>,
    {
        let mut guard = self.next.lock().await;
        let pending = provider
            .get_transaction_count(self.account)
            .pending()
            .await
            .map_err(rpc_err)?;
        let nonce = match *guard {
            Some(local) => local.max(pending),
            None => pending,
        };
        match send(nonce).await {
            Ok(v) => {
                *guard = Some(nonce + 1);
                Ok(v)
            }
            Err(e) => {
                *guard = None;
                Err(e)
            }
        }
    }
}
