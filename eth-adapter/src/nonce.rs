//! A per-account nonce manager: concurrent swaps from one account never reuse a nonce.

use std::future::Future;

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use tokio::sync::Mutex;

use crate::error::{rpc_err, EthError};

const LAG_POLLS: u32 = 10;
const LAG_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Hands out nonces for one account.
///
/// [`NonceManager::send_with`] holds a lock from choosing the nonce until the node has accepted
/// (or rejected) the transaction, so sends from many tasks are serialized while waiting for
/// receipts stays concurrent. The nonce is the node's pending transaction count. The local
/// counter only detects a node that has not yet counted our previous transaction (a load
/// balancer behind the URL): then the manager waits briefly for the node to catch up, and if it
/// does not, trusts the node (our transaction was dropped; reusing its nonce fills the gap
/// instead of leaving every later transaction stuck behind it).
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
        self.run_from(provider, |nonce| async move {
            let sent = send(nonce).await;
            let next = sent.is_ok().then_some(nonce + 1);
            (sent, next)
        })
        .await?
    }

    /// Fills the nonces at which the node counts no transaction of this account, from its
    /// pending count up to `below` (not included), each with `fill(nonce)`, holding the
    /// account's nonces. One at a time, reading the count again after each: the count may then
    /// jump over transactions of ours the node held queued behind the free nonce, which are
    /// kept. Nothing is filled while this manager has handed out a nonce the node does not
    /// count yet (a node behind, or another behind a load balancer: that nonce may hold a
    /// transaction of ours on its way, a claim say). Answers how many were filled.
    pub async fn fill_below<F, Fut>(
        &self,
        provider: &DynProvider,
        below: u64,
        fill: F,
    ) -> Result<u64, EthError>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<(), EthError>>,
    {
        let mut guard = self.next.lock().await;
        let count = || async {
            provider
                .get_transaction_count(self.account)
                .pending()
                .await
                .map_err(rpc_err)
        };
        let mut free = count().await?;
        if guard.is_some_and(|local| free < local) {
            return Ok(0);
        }
        let mut filled = 0;
        while free < below {
            fill(free).await?;
            filled += 1;
            *guard = Some(free + 1);
            let next = count().await?;
            if next <= free {
                // The node does not count the fill (yet): not filled again over it.
                break;
            }
            free = next;
        }
        Ok(filled)
    }

    /// Runs `send` with the next nonce, holding the account's nonces until it returns: `send`
    /// may use several nonces in a row from it and answers the one after the last it used, or
    /// `None` when the node should be asked again (something was not accepted).
    pub async fn run_from<T, F, Fut>(&self, provider: &DynProvider, send: F) -> Result<T, EthError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = (T, Option<u64>)>,
    {
        let mut guard = self.next.lock().await;
        let mut nonce = 0;
        for attempt in 0..LAG_POLLS {
            nonce = provider
                .get_transaction_count(self.account)
                .pending()
                .await
                .map_err(rpc_err)?;
            match *guard {
                Some(local) if nonce < local && attempt + 1 < LAG_POLLS => {
                    tokio::time::sleep(LAG_POLL_INTERVAL).await;
                }
                _ => break,
            }
        }
        let (out, next) = send(nonce).await;
        *guard = next;
        Ok(out)
    }
}
