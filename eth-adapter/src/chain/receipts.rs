//! Receipts of the transactions we wait for, read a block at a time.
//!
//! A waiter asks for its own receipt once (when it starts, and when the head stays put for
//! long: see `EthChain::wait`); after that, each new block's receipts are read once for every
//! waiter (`eth_getBlockReceipts`) and each waiter finds its own among them. A thousand
//! transactions waited for cost one call per block instead of a thousand, which matters most
//! where blocks are many (a devnet mining every transaction, a fast chain) or the node is
//! shared. A node without `eth_getBlockReceipts` gets the per-transaction asks, as before.
//!
//! Nothing is missed on one consistent node: a waiter registers, with the head it read,
//! before its first ask. A transaction the first ask did not find is mined in a block above
//! that head, and the book reads every block above the lowest head a registered waiter gave.
//! Where that does not hold (a reorg at a height already read, a load-balanced URL whose
//! backends lag each other, a node that keeps failing to serve block receipts), the waiter
//! asks for its own receipt again every quarter of the receipt timeout.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use alloy::eips::BlockId;
use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionReceipt;

/// Blocks read per [`ReceiptBook::advance`] call at most (the rest at the next one).
const MAX_BLOCKS_PER_ADVANCE: u64 = 512;
/// How long one block's receipts may take to read (the waiters wait behind the reader).
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Default)]
struct Book {
    /// Transactions waited for, and by how many waiters.
    waiting: HashMap<B256, usize>,
    /// Their receipts, once read in a block.
    found: HashMap<B256, TransactionReceipt>,
    /// Every block up to this one is read (for the waiters registered).
    read_to: Option<u64>,
    /// The node does not serve `eth_getBlockReceipts`.
    unsupported: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct ReceiptBook {
    book: Mutex<Book>,
    /// One reader of blocks at a time; the others find what it read.
    reading: tokio::sync::Mutex<()>,
}

/// A waiter's registration: unregisters when dropped.
pub(super) struct Waiting<'a> {
    book: &'a ReceiptBook,
    tx: B256,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut b = self.book.lock();
        if let Some(n) = b.waiting.get_mut(&self.tx) {
            *n -= 1;
            if *n == 0 {
                b.waiting.remove(&self.tx);
                b.found.remove(&self.tx);
            }
        }
        if b.waiting.is_empty() {
            // Nobody waits: the next waiter's head starts the reading again.
            b.read_to = None;
        }
    }
}

impl ReceiptBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether block receipts can be read from this node (else: ask per transaction).
    pub(super) fn usable(&self) -> bool {
        !self.lock().unsupported
    }

    /// Registers a waiter for `tx`, which was not mined at or below `head` unless its first
    /// ask (made after this) finds it.
    pub(super) fn register(&self, tx: B256, head: u64) -> Waiting<'_> {
        let mut b = self.lock();
        *b.waiting.entry(tx).or_default() += 1;
        b.read_to = Some(b.read_to.map_or(head, |r| r.min(head)));
        Waiting { book: self, tx }
    }

    /// `tx`'s receipt, if a block read holds it.
    pub(super) fn found(&self, tx: &B256) -> Option<TransactionReceipt> {
        self.lock().found.get(tx).cloned()
    }

    /// Reads the receipts of the blocks up to `head` not read yet, keeping the waited ones.
    /// A failure leaves the blocks to the next call (a node without the method: the book is
    /// unusable from then on).
    pub(super) async fn advance(&self, provider: &DynProvider, head: u64) {
        let _one = self.reading.lock().await;
        for _ in 0..MAX_BLOCKS_PER_ADVANCE {
            let next = match self.lock().read_to {
                Some(r) if r < head => r + 1,
                _ => return,
            };
            let read = provider.get_block_receipts(BlockId::number(next));
            let Ok(read) = tokio::time::timeout(READ_TIMEOUT, read).await else {
                tracing::debug!(
                    chain = "eth",
                    block = next,
                    "block receipts not read in time"
                );
                return;
            };
            let receipts = match read {
                Ok(Some(r)) => r,
                // The node shows the head before it serves the block: next time.
                Ok(None) => return,
                Err(alloy::transports::RpcError::ErrorResp(e)) if e.code == -32601 => {
                    tracing::debug!(
                        chain = "eth",
                        "no eth_getBlockReceipts: receipts asked per transaction"
                    );
                    self.lock().unsupported = true;
                    return;
                }
                Err(e) => {
                    tracing::debug!(chain = "eth", block = next, error = %e, "block receipts not read");
                    return;
                }
            };
            let mut b = self.lock();
            for r in receipts {
                if b.waiting.contains_key(&r.transaction_hash) {
                    b.found.insert(r.transaction_hash, r);
                }
            }
            // A waiter registered meanwhile with a lower head lowered `read_to`: keep it.
            if b.read_to.is_some_and(|r| r + 1 == next) {
                b.read_to = Some(next);
            }
        }
    }
}
