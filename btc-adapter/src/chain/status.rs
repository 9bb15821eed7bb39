//! Pure status derivation: an HTLC's state from what the scanner knows of its script.

use super::*;
use swap_core::Finality;

pub(super) fn confirmations(tip: u64, height: Option<u64>) -> u32 {
    match height {
        Some(h) if tip >= h => u32::try_from(tip - h + 1).unwrap_or(u32::MAX),
        _ => 0,
    }
}

/// What a spend of the HTLC is: a claim (with the preimage) or a refund.
pub(super) fn classify(htlc: &Htlc, spend: &Spend, tip: u64) -> HtlcStatus {
    let finality = Finality::confirmations(confirmations(tip, spend.height));
    let txref = TxRef(spend.txid.to_string());
    match extract_preimage(htlc.hashlock(), spend.witness.iter().map(Vec::as_slice)) {
        Some(p) => HtlcStatus::Claimed {
            preimage: Preimage::from_bytes(p),
            txref,
            finality,
        },
        None => HtlcStatus::Refunded { txref, finality },
    }
}

/// The status of an HTLC from what the scanner knows about its script.
///
/// - The *primary* funding is the first output with exactly the agreed amount, else the first
///   one (confirmed before mempool): it is what `claim`/`refund` spend and what `Funded`
///   reports, with the amount found on chain.
/// - If the primary is spent, its spend decides: `Claimed` (the witness holds a 32-byte
///   preimage of the hashlock) or `Refunded`.
/// - If the primary is unspent but another output of the same script was claimed, the secret
///   is out: `Claimed` with that spend, so that the other party learns it. (`claim`/`refund`
///   still act on the unspent primary.)
pub(super) fn derive_status(
    view: &ScriptView,
    params: &HtlcParams,
    htlc: &Htlc,
    tip: u64,
    asset: Asset,
) -> (HtlcStatus, Option<Funding>, Option<Spend>) {
    let agreed = sats(params).unwrap_or(0);
    let primary = view
        .fundings
        .iter()
        .find(|(f, _)| f.value == agreed)
        .or_else(|| view.fundings.first());
    let Some((funding, spend)) = primary else {
        return (HtlcStatus::Absent, None, None);
    };
    let status = match spend {
        Some(spend) => classify(htlc, spend, tip),
        None => {
            let revealed = view
                .fundings
                .iter()
                .filter_map(|(_, s)| s.as_ref())
                .map(|s| classify(htlc, s, tip))
                .find(|st| matches!(st, HtlcStatus::Claimed { .. }));
            revealed.unwrap_or_else(|| HtlcStatus::Funded {
                lock: ObservedLock {
                    txref: TxRef(funding.outpoint.txid.to_string()),
                    asset,
                    amount: Amount::Sats(Sats(funding.value)),
                    sender: params.sender,
                    recipient: params.recipient,
                    hashlock: params.hashlock,
                    expiry: params.expiry,
                },
                finality: Finality::confirmations(confirmations(tip, funding.height)),
            })
        }
    };
    (status, Some(funding.clone()), spend.clone())
}

pub(super) fn sats(params: &HtlcParams) -> Result<u64, ChainError> {
    match params.amount {
        Amount::Sats(Sats(s)) if s > 0 => Ok(s),
        other => Err(permanent(format!(
            "amount {other} is not a positive sat amount"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_as_a_shared_chain_object() {
        fn assert_dyn(_: std::sync::Arc<dyn Rail>) {}
        let rpc = RpcConfig {
            url: "http://127.0.0.1:1".into(),
            auth: crate::rpc::Auth::UserPass("u".into(), "p".into()),
            wallet: None,
            timeout: std::time::Duration::from_secs(1),
        };
        let chain_id = ChainId::new(ChainFamily::Litecoin, swap_core::Network::Regtest);
        let chain = BtcChain::new(BtcConfig::new(chain_id, rpc.clone()), &[3; 32]).unwrap();
        assert_eq!(chain.asset(), Asset::Ltc);
        assert!(format!("{chain:?}").contains("redacted"));
        assert_dyn(std::sync::Arc::new(chain));
        let eth = ChainId::new(ChainFamily::Ethereum, swap_core::Network::Mainnet);
        assert!(BtcChain::new(BtcConfig::new(eth, rpc), &[3; 32]).is_err());
    }

    fn fixture() -> (HtlcParams, Htlc, Preimage) {
        let s = Preimage::from_bytes([7; 32]);
        let c = SwapKey::from_secret(bitcoin::secp256k1::SecretKey::from_slice(&[1; 32]).unwrap());
        let r = SwapKey::from_secret(bitcoin::secp256k1::SecretKey::from_slice(&[2; 32]).unwrap());
        let params = HtlcParams {
            swap_id: swap_core::SwapId([1; 16]),
            key_index: 0,
            hashlock: s.hashlock(),
            asset: Asset::Btc,
            amount: Amount::Sats(Sats(1_000)),
            sender: Account::PublicKey(r.public_key_bytes()),
            recipient: Account::PublicKey(c.public_key_bytes()),
            expiry: swap_core::Expiry::Height(Height(500)),
            watch_from: Height(100),
            rail_data: None,
        };
        let htlc = Htlc::from_params(&params).unwrap();
        (params, htlc, s)
    }

    fn funding(b: u8, value: u64, height: Option<u64>) -> Funding {
        Funding {
            outpoint: OutPoint::new(bitcoin::hashes::Hash::from_byte_array([b; 32]), 0),
            value,
            height,
        }
    }

    fn spend(b: u8, height: Option<u64>, witness: Vec<Vec<u8>>) -> Spend {
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::from_consensus(b as u32),
            input: vec![],
            output: vec![],
        };
        Spend {
            txid: tx.compute_txid(),
            height,
            witness,
            tx,
        }
    }

    #[test]
    fn status_rules() {
        let (p, htlc, s) = fixture();
        let st = |view: ScriptView| derive_status(&view, &p, &htlc, 110, Asset::Btc);
        assert_eq!(st(ScriptView::default()).0, HtlcStatus::Absent);

        // Wrong amount reported as found; confirmations from the tip.
        let (status, f, _) = st(ScriptView {
            fundings: vec![(funding(1, 999, Some(105)), None)],
        });
        match status {
            HtlcStatus::Funded { lock, finality } => {
                assert_eq!(lock.amount, Amount::Sats(Sats(999)));
                assert_eq!(finality, Finality::Depth(6));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.unwrap().value, 999);

        // The exact-amount output is the primary even when it comes later.
        let (status, f, _) = st(ScriptView {
            fundings: vec![
                (funding(1, 999, Some(105)), None),
                (funding(2, 1_000, None), None),
            ],
        });
        assert!(matches!(
            status,
            HtlcStatus::Funded {
                finality: Finality::Mempool,
                ..
            }
        ));
        assert_eq!(f.unwrap().value, 1_000);

        // Claim: preimage extracted. Refund: no preimage.
        let claim = spend(3, Some(110), vec![s.as_bytes().to_vec(), vec![1; 71]]);
        let (status, _, sp) = st(ScriptView {
            fundings: vec![(funding(1, 1_000, Some(105)), Some(claim.clone()))],
        });
        assert_eq!(
            status,
            HtlcStatus::Claimed {
                preimage: s.clone(),
                txref: TxRef(claim.txid.to_string()),
                finality: Finality::Depth(1)
            }
        );
        assert!(sp.is_some());
        let refund = spend(4, None, vec![vec![1; 71], vec![], vec![0x51]]);
        let (status, _, _) = st(ScriptView {
            fundings: vec![(funding(1, 1_000, Some(105)), Some(refund))],
        });
        assert!(matches!(
            status,
            HtlcStatus::Refunded {
                finality: Finality::Mempool,
                ..
            }
        ));
        // A 32-byte item that is not the preimage is not a claim.
        let fake = spend(5, None, vec![vec![9; 32]]);
        let (status, _, _) = st(ScriptView {
            fundings: vec![(funding(1, 1_000, Some(105)), Some(fake))],
        });
        assert!(matches!(status, HtlcStatus::Refunded { .. }));

        // Secret revealed by a claim of another output: reported, primary stays unspent.
        let (status, f, sp) = st(ScriptView {
            fundings: vec![
                (funding(1, 500, Some(104)), Some(claim.clone())),
                (funding(2, 1_000, Some(105)), None),
            ],
        });
        assert!(matches!(status, HtlcStatus::Claimed { .. }));
        assert_eq!(f.unwrap().value, 1_000);
        assert!(sp.is_none());
    }

    #[tokio::test]
    async fn unreachable_node_is_transient() {
        let rpc = RpcConfig {
            url: "http://127.0.0.1:1".into(),
            auth: crate::rpc::Auth::UserPass("u".into(), "p".into()),
            wallet: None,
            timeout: std::time::Duration::from_secs(1),
        };
        let chain_id = ChainId::new(ChainFamily::Bitcoin, swap_core::Network::Regtest);
        let chain = BtcChain::new(BtcConfig::new(chain_id, rpc), &[3; 32]).unwrap();
        assert!(chain.tip().await.unwrap_err().is_transient());
    }
}
