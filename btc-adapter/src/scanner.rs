//! One block scanner for every watched HTLC (no I/O here: the caller feeds blocks and the
//! mempool; see [`crate::chain::BtcChain`] for the RPC side).
//!
//! - Watched output scripts live in one map (`script_pubkey -> watchers`); a block is matched
//!   against it in one pass: each output is one hash lookup, each input one lookup in the map
//!   of known HTLC outpoints. The cost does not grow with the number of swaps.
//! - Reorgs: the scanner keeps the hash of every block it applied. The caller compares them
//!   with the node's and calls [`Scanner::rollback_to`] on the first difference; everything
//!   learned above that height is forgotten and rescanned.
//! - The mempool is a separate, replaceable view ([`Scanner::set_mempool`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use bitcoin::consensus::encode::deserialize;
use bitcoin::{BlockHash, OutPoint, ScriptBuf, Transaction, Txid};

/// Errors while scanning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// A transaction that is not a Litecoin HogEx failed to parse.
    #[error("transaction {txid} in block {block} does not parse: {detail}")]
    Parse {
        /// Its id as the node reports it.
        txid: String,
        /// The block (or "mempool").
        block: String,
        /// The parser's complaint.
        detail: String,
    },
    /// Not valid hex.
    #[error("transaction {txid}: invalid hex")]
    Hex {
        /// Its id as the node reports it.
        txid: String,
    },
    /// The block does not connect to the last scanned block (reorg during the scan).
    #[error("block {height} does not connect to the scanned chain")]
    Disconnected {
        /// Height of the block offered.
        height: u64,
    },
}

/// True for the serialization of a Litecoin MWEB transaction (extended flag byte with bit 0x08).
pub fn is_mweb_serialization(raw: &[u8]) -> bool {
    raw.len() > 6 && raw[4] == 0x00 && raw[5] & 0x08 != 0
}

/// Parses a block's transactions (hex, in block order), skipping only the Litecoin HogEx: the
/// block's last transaction, MWEB-serialized (flag 0x08), which rust-bitcoin cannot decode. It
/// only spends the previous HogEx output and MWEB peg-ins, never an HTLC. Any other failure is
/// an error.
pub fn parse_block_txs<'a>(
    block: &str,
    txs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Transaction>, ScanError> {
    let n = txs.len();
    let mut out = Vec::with_capacity(n);
    for (i, (txid, hex)) in txs.enumerate() {
        let raw = hex::decode(hex).map_err(|_| ScanError::Hex {
            txid: txid.to_owned(),
        })?;
        match deserialize::<Transaction>(&raw) {
            Ok(tx) => out.push(tx),
            Err(_) if i + 1 == n && i > 0 && is_mweb_serialization(&raw) => {
                tracing::trace!(%txid, block, "skipping HogEx transaction");
            }
            Err(e) => {
                return Err(ScanError::Parse {
                    txid: txid.to_owned(),
                    block: block.to_owned(),
                    detail: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// An output paying a watched script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    /// Where.
    pub outpoint: OutPoint,
    /// How much (satoshis).
    pub value: u64,
    /// The block height, `None` in the mempool.
    pub height: Option<u64>,
}

/// A transaction spending a watched output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    /// The spending transaction.
    pub txid: Txid,
    /// The block height, `None` in the mempool.
    pub height: Option<u64>,
    /// The input's witness items (the preimage is among them for a claim).
    pub witness: Vec<Vec<u8>>,
    /// The spending transaction itself (for fee bumping).
    pub tx: Transaction,
}

/// Everything known about one watched script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptView {
    /// Confirmed fundings first (by height, then block order), then mempool ones.
    pub fundings: Vec<(Funding, Option<Spend>)>,
}

#[derive(Debug, Default)]
struct MempoolView {
    fundings: HashMap<ScriptBuf, Vec<Funding>>,
    spends: HashMap<OutPoint, Spend>,
}

/// The scanner state.
#[derive(Debug, Default)]
pub struct Scanner {
    /// script -> watch start height (the lowest requested).
    watched: HashMap<ScriptBuf, u64>,
    fundings: HashMap<ScriptBuf, Vec<Funding>>,
    /// Confirmed funding outpoints -> their script.
    outpoints: HashMap<OutPoint, ScriptBuf>,
    spends: HashMap<OutPoint, Spend>,
    hashes: BTreeMap<u64, BlockHash>,
    /// The next height to scan (when anything is watched).
    next: Option<u64>,
    mempool: MempoolView,
}

impl Scanner {
    /// An empty scanner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches `script` from `from_height` on. When that is below what was already scanned,
    /// the scanner rolls back so that the next scan covers it.
    pub fn watch(&mut self, script: ScriptBuf, from_height: u64) {
        match self.watched.get_mut(&script) {
            // Already covered from there on: nothing to do.
            Some(start) if *start <= from_height => return,
            Some(start) => *start = from_height,
            None => {
                self.watched.insert(script, from_height);
            }
        }
        match self.next {
            None => self.next = Some(from_height),
            Some(next) if from_height < next => {
                // Rescan from there: forget everything at or above it.
                self.rollback_to(from_height.saturating_sub(1));
                self.next = Some(from_height);
            }
            _ => {}
        }
    }

    /// Stops watching `script` and forgets its fundings and their spends (watching it again
    /// from an earlier height rescans from there).
    pub fn unwatch(&mut self, script: &ScriptBuf) {
        self.watched.remove(script);
        for f in self.fundings.remove(script).unwrap_or_default() {
            self.outpoints.remove(&f.outpoint);
            self.spends.remove(&f.outpoint);
        }
        for f in self.mempool.fundings.remove(script).unwrap_or_default() {
            self.mempool.spends.remove(&f.outpoint);
        }
    }

    /// Whether `script` is watched.
    pub fn is_watched(&self, script: &ScriptBuf) -> bool {
        self.watched.contains_key(script)
    }

    /// How many scripts are watched.
    pub fn watched_len(&self) -> usize {
        self.watched.len()
    }

    /// The next height to scan, `None` when nothing is watched.
    pub fn next_height(&self) -> Option<u64> {
        self.next
    }

    /// The height of the last applied block.
    pub fn last_height(&self) -> Option<u64> {
        self.hashes.keys().next_back().copied()
    }

    /// The hash recorded for `height`.
    pub fn hash_at(&self, height: u64) -> Option<BlockHash> {
        self.hashes.get(&height).copied()
    }

    /// Applies block `height`. `prev` must be the hash recorded for `height - 1` when there is one.
    pub fn apply_block(
        &mut self,
        height: u64,
        hash: BlockHash,
        prev: Option<BlockHash>,
        txs: &[Transaction],
    ) -> Result<(), ScanError> {
        if self.next != Some(height) {
            return Err(ScanError::Disconnected { height });
        }
        if let (Some(recorded), Some(prev)) =
            (height.checked_sub(1).and_then(|h| self.hash_at(h)), prev)
        {
            if recorded != prev {
                return Err(ScanError::Disconnected { height });
            }
        }
        for tx in txs {
            self.match_tx(tx, Some(height));
        }
        self.hashes.insert(height, hash);
        self.next = Some(height + 1);
        Ok(())
    }

    fn match_tx(&mut self, tx: &Transaction, height: Option<u64>) {
        let mut txid = None;
        if !self.outpoints.is_empty() {
            for input in &tx.input {
                if self.outpoints.contains_key(&input.previous_output) {
                    let id = *txid.get_or_insert_with(|| tx.compute_txid());
                    self.spends.insert(
                        input.previous_output,
                        Spend {
                            txid: id,
                            height,
                            witness: input.witness.to_vec(),
                            tx: tx.clone(),
                        },
                    );
                }
            }
        }
        for (vout, output) in tx.output.iter().enumerate() {
            if self.watched.contains_key(&output.script_pubkey) {
                let id = *txid.get_or_insert_with(|| tx.compute_txid());
                let outpoint = OutPoint::new(id, vout as u32);
                let list = self
                    .fundings
                    .entry(output.script_pubkey.clone())
                    .or_default();
                if !list.iter().any(|f| f.outpoint == outpoint) {
                    list.push(Funding {
                        outpoint,
                        value: output.value.to_sat(),
                        height,
                    });
                }
                self.outpoints
                    .insert(outpoint, output.script_pubkey.clone());
            }
        }
    }

    /// Forgets every block above `height` (and what was found in them).
    pub fn rollback_to(&mut self, height: u64) {
        let above = |h: Option<u64>| h.is_some_and(|h| h > height);
        self.hashes.retain(|h, _| *h <= height);
        self.spends.retain(|_, s| !above(s.height));
        let mut dropped = HashSet::new();
        for list in self.fundings.values_mut() {
            list.retain(|f| {
                let keep = !above(f.height);
                if !keep {
                    dropped.insert(f.outpoint);
                }
                keep
            });
        }
        self.outpoints.retain(|o, _| !dropped.contains(o));
        self.spends.retain(|o, _| !dropped.contains(o));
        if let Some(next) = self.next {
            self.next = Some(next.min(height + 1));
        }
    }

    /// Replaces the mempool view with these transactions (any order; parents before children
    /// is not required).
    pub fn set_mempool<'a>(&mut self, txs: impl IntoIterator<Item = &'a Transaction>) {
        let txs: Vec<&Transaction> = txs.into_iter().collect();
        let mut view = MempoolView::default();
        // Outputs first, so that spends of mempool fundings are found whatever the order.
        let mut mempool_outpoints = HashSet::new();
        for tx in &txs {
            let mut txid = None;
            for (vout, output) in tx.output.iter().enumerate() {
                if self.watched.contains_key(&output.script_pubkey) {
                    let id = *txid.get_or_insert_with(|| tx.compute_txid());
                    let outpoint = OutPoint::new(id, vout as u32);
                    mempool_outpoints.insert(outpoint);
                    view.fundings
                        .entry(output.script_pubkey.clone())
                        .or_default()
                        .push(Funding {
                            outpoint,
                            value: output.value.to_sat(),
                            height: None,
                        });
                }
            }
        }
        for tx in &txs {
            for input in &tx.input {
                let o = input.previous_output;
                if self.outpoints.contains_key(&o) || mempool_outpoints.contains(&o) {
                    view.spends.insert(
                        o,
                        Spend {
                            txid: tx.compute_txid(),
                            height: None,
                            witness: input.witness.to_vec(),
                            tx: (*tx).clone(),
                        },
                    );
                }
            }
        }
        self.mempool = view;
    }

    /// What is known about `script`: confirmed fundings (by height), then mempool ones, each
    /// with its spend if any (a confirmed spend wins over a mempool one).
    pub fn view(&self, script: &ScriptBuf) -> ScriptView {
        let mut fundings: Vec<Funding> = self.fundings.get(script).cloned().unwrap_or_default();
        fundings.sort_by_key(|f| f.height);
        for f in self.mempool.fundings.get(script).into_iter().flatten() {
            if !fundings.iter().any(|c| c.outpoint == f.outpoint) {
                fundings.push(f.clone());
            }
        }
        ScriptView {
            fundings: fundings
                .into_iter()
                .map(|f| {
                    let spend = self
                        .spends
                        .get(&f.outpoint)
                        .or_else(|| self.mempool.spends.get(&f.outpoint))
                        .cloned();
                    (f, spend)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{absolute, transaction, Amount, Sequence, TxIn, TxOut, Witness};

    fn script(b: u8) -> ScriptBuf {
        ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([b; 32]))
    }

    fn tx(inputs: &[OutPoint], outputs: &[(ScriptBuf, u64)], witness: &[&[u8]]) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: inputs
                .iter()
                .map(|o| TxIn {
                    previous_output: *o,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::from_slice(witness),
                })
                .collect(),
            output: outputs
                .iter()
                .map(|(s, v)| TxOut {
                    value: Amount::from_sat(*v),
                    script_pubkey: s.clone(),
                })
                .collect(),
        }
    }

    fn bh(b: u8) -> BlockHash {
        BlockHash::from_byte_array([b; 32])
    }

    #[test]
    fn finds_funding_and_spend_and_rolls_back() {
        let mut s = Scanner::new();
        s.watch(script(1), 10);
        assert_eq!(s.next_height(), Some(10));
        let other = OutPoint::new(Txid::from_byte_array([9; 32]), 0);
        let fund = tx(&[other], &[(script(2), 5), (script(1), 1000)], &[]);
        let op = OutPoint::new(fund.compute_txid(), 1);
        s.apply_block(10, bh(10), None, std::slice::from_ref(&fund))
            .unwrap();
        let v = s.view(&script(1));
        assert_eq!(v.fundings.len(), 1);
        assert_eq!(v.fundings[0].0.outpoint, op);
        assert_eq!(v.fundings[0].0.height, Some(10));
        assert!(v.fundings[0].1.is_none());
        // Mempool spend.
        let spend = tx(&[op], &[(script(3), 900)], &[b"sig", &[7; 32]]);
        s.set_mempool([&spend]);
        let v = s.view(&script(1));
        assert_eq!(v.fundings[0].1.as_ref().unwrap().height, None);
        // Confirmed spend.
        s.apply_block(11, bh(11), Some(bh(10)), std::slice::from_ref(&spend))
            .unwrap();
        s.set_mempool([]);
        let v = s.view(&script(1));
        let sp = v.fundings[0].1.as_ref().unwrap();
        assert_eq!(sp.height, Some(11));
        assert_eq!(sp.witness[1], vec![7; 32]);
        // Wrong parent.
        assert_eq!(
            s.apply_block(12, bh(12), Some(bh(99)), &[]),
            Err(ScanError::Disconnected { height: 12 })
        );
        // Reorg of the spend block.
        s.rollback_to(10);
        assert_eq!(s.next_height(), Some(11));
        assert!(s.view(&script(1)).fundings[0].1.is_none());
        // Reorg of the funding block.
        s.rollback_to(9);
        assert!(s.view(&script(1)).fundings.is_empty());
        assert_eq!(s.last_height(), None);
        // Rescan finds it again, once.
        s.apply_block(10, bh(10), None, std::slice::from_ref(&fund))
            .unwrap();
        assert_eq!(s.view(&script(1)).fundings.len(), 1);
    }

    #[test]
    fn funding_and_spend_in_same_block_and_mempool_chain() {
        let mut s = Scanner::new();
        s.watch(script(1), 5);
        let fund = tx(&[OutPoint::null()], &[(script(1), 1000)], &[]);
        let op = OutPoint::new(fund.compute_txid(), 0);
        let spend = tx(&[op], &[(script(3), 900)], &[]);
        s.apply_block(5, bh(5), None, &[fund.clone(), spend.clone()])
            .unwrap();
        assert!(s.view(&script(1)).fundings[0].1.is_some());
        // Mempool: child before parent.
        let mut m = Scanner::new();
        m.watch(script(1), 5);
        m.set_mempool([&spend, &fund]);
        let v = m.view(&script(1));
        assert_eq!(v.fundings.len(), 1);
        assert_eq!(v.fundings[0].1.as_ref().unwrap().txid, spend.compute_txid());
    }

    #[test]
    fn late_watch_rescans() {
        let mut s = Scanner::new();
        s.watch(script(1), 10);
        s.apply_block(10, bh(10), None, &[]).unwrap();
        s.apply_block(11, bh(11), Some(bh(10)), &[]).unwrap();
        s.watch(script(2), 11);
        assert_eq!(s.next_height(), Some(11));
        assert_eq!(s.last_height(), Some(10));
        s.watch(script(3), 20);
        assert_eq!(s.next_height(), Some(11));
        s.apply_block(11, bh(11), Some(bh(10)), &[]).unwrap();
        // Watching again from the same (or a later) height does not rescan.
        s.watch(script(1), 10);
        s.watch(script(2), 11);
        assert_eq!(s.next_height(), Some(12));
        // From an earlier height it does.
        s.watch(script(2), 10);
        assert_eq!(s.next_height(), Some(10));
    }

    #[test]
    fn only_hogex_is_skipped() {
        let good = bitcoin::consensus::encode::serialize_hex(&tx(
            &[OutPoint::null()],
            &[(script(1), 1)],
            &[],
        ));
        // version 2, marker 0, flag 8, then garbage: MWEB-serialized
        let hogex = "0200000000080102030405";
        let txs = [("a", good.as_str()), ("h", hogex)];
        assert_eq!(parse_block_txs("b", txs.iter().copied()).unwrap().len(), 1);
        // Not last: error.
        let txs = [("h", hogex), ("a", good.as_str())];
        assert!(matches!(
            parse_block_txs("b", txs.iter().copied()),
            Err(ScanError::Parse { .. })
        ));
        // Last but not MWEB: error.
        let txs = [("a", good.as_str()), ("x", "02000000000201")];
        assert!(parse_block_txs("b", txs.iter().copied()).is_err());
        let txs = [("a", good.as_str()), ("x", "zz")];
        assert!(matches!(
            parse_block_txs("b", txs.iter().copied()),
            Err(ScanError::Hex { .. })
        ));
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        /// One step: append a block built from `(kind, a, b)` instructions, or roll back.
        #[derive(Debug, Clone)]
        enum Step {
            Block(Vec<(u8, u8, u8)>),
            Rollback(u8),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => prop::collection::vec((0u8..2, any::<u8>(), any::<u8>()), 0..4)
                    .prop_map(Step::Block),
                1 => (1u8..4).prop_map(Step::Rollback),
            ]
        }

        proptest! {
            /// After any sequence of blocks and reorgs, the scanner's view of every watched
            /// script equals a from-scratch computation over the current chain.
            #[test]
            fn scanner_matches_naive_model(steps in prop::collection::vec(step(), 1..40)) {
                let watched: Vec<ScriptBuf> = (1..=3).map(script).collect();
                let mut s = Scanner::new();
                for w in &watched {
                    s.watch(w.clone(), 0);
                }
                let mut chain: Vec<Vec<Transaction>> = Vec::new();
                let mut nonce = 0u32;
                for st in steps {
                    match st {
                        Step::Rollback(n) => {
                            let keep = chain.len().saturating_sub(n as usize);
                            chain.truncate(keep);
                            match keep.checked_sub(1) {
                                Some(h) => s.rollback_to(h as u64),
                                None => {
                                    s = Scanner::new();
                                    for w in &watched {
                                        s.watch(w.clone(), 0);
                                    }
                                }
                            }
                        }
                        Step::Block(instrs) => {
                            // A valid chain: only unspent outputs can be spent.
                            let spent: HashSet<OutPoint> = chain
                                .iter()
                                .flatten()
                                .flat_map(|t| t.input.iter().map(|i| i.previous_output))
                                .collect();
                            let mut all_outs: Vec<OutPoint> = chain
                                .iter()
                                .flatten()
                                .flat_map(|t| {
                                    let id = t.compute_txid();
                                    (0..t.output.len() as u32).map(move |v| OutPoint::new(id, v))
                                })
                                .filter(|o| !spent.contains(o))
                                .collect();
                            let mut txs = Vec::new();
                            for (kind, a, b) in instrs {
                                nonce += 1;
                                let mut filler = [0u8; 32];
                                filler[..4].copy_from_slice(&nonce.to_be_bytes());
                                let input = if kind == 1 && !all_outs.is_empty() {
                                    let i = a as usize % all_outs.len();
                                    all_outs.swap_remove(i)
                                } else {
                                    OutPoint::new(Txid::from_byte_array(filler), 0)
                                };
                                let out_script = script(1 + a % 4); // 4 = unwatched
                                txs.push(tx(&[input], &[(out_script, 1 + b as u64)], &[&[b; 32]]));
                            }
                            let h = chain.len() as u64;
                            let prev = h.checked_sub(1).and_then(|p| s.hash_at(p));
                            let mut hb = [0u8; 32];
                            hb[..4].copy_from_slice(&nonce.to_be_bytes());
                            hb[4..12].copy_from_slice(&h.to_be_bytes());
                            s.apply_block(h, BlockHash::from_byte_array(hb), prev, &txs).unwrap();
                            chain.push(txs);
                        }
                    }
                    // Naive model.
                    for w in &watched {
                        let mut expected = Vec::new();
                        for (h, block) in chain.iter().enumerate() {
                            for t in block {
                                for (v, o) in t.output.iter().enumerate() {
                                    if &o.script_pubkey != w {
                                        continue;
                                    }
                                    let op = OutPoint::new(t.compute_txid(), v as u32);
                                    let spend = chain
                                        .iter()
                                        .enumerate()
                                        .flat_map(|(sh, b)| b.iter().map(move |t| (sh, t)))
                                        .find(|(_, t)| t.input.iter().any(|i| i.previous_output == op))
                                        .map(|(sh, t)| (t.compute_txid(), sh as u64));
                                    expected.push((op, o.value.to_sat(), h as u64, spend));
                                }
                            }
                        }
                        let got: Vec<_> = s
                            .view(w)
                            .fundings
                            .into_iter()
                            .map(|(f, sp)| {
                                (
                                    f.outpoint,
                                    f.value,
                                    f.height.unwrap(),
                                    sp.map(|sp| (sp.txid, sp.height.unwrap())),
                                )
                            })
                            .collect();
                        prop_assert_eq!(got, expected);
                    }
                }
            }
        }
    }
}
