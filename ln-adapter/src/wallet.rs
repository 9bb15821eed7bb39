//! Channel funding from the node's wallet.

use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{ScriptBuf, Transaction};
use btc_adapter::network::segwit_address;
use btc_adapter::rpc::{coin_value_to_sats, sats_to_coin_string, RpcClient};
use serde_json::{json, Value};
use swap_core::ChainId;

use crate::error::LnError;

/// A signed transaction paying `sats` to LDK's funding script, funded and signed by the node
/// wallet (`fundrawtransaction` with `bech32` change and its inputs locked, then
/// `signrawtransactionwithwallet`). Every input must be segwit: LDK refuses a funding
/// transaction whose txid a signature could change, and on Litecoin an MWEB coin would make an
/// MWEB transaction. So the inputs are chosen here, among the wallet's confirmed segwit coins
/// ([`segwit_inputs`]), and the wallet adds none when they cover the funding and its fee: a
/// wallet that also holds legacy or MWEB coins funds channels from its segwit ones. The
/// transaction is checked again after signing (refused, inputs released, if the wallet added a
/// coin of another kind).
pub(crate) async fn funding_transaction(
    rpc: &RpcClient,
    chain: ChainId,
    script: ScriptBuf,
    sats: u64,
    fee_sat_vb: u64,
) -> Result<Transaction, LnError> {
    // The output by address: a transaction without inputs has no unambiguous serialization
    // (rust-bitcoin writes it in segwit form, which the node's decoder refuses).
    let address = segwit_address(chain, &script).map_err(|e| LnError::Wallet(e.to_string()))?;
    let inputs = segwit_inputs(rpc, sats, fee_sat_vb).await?;
    let unfunded: String = rpc
        .call(
            "createrawtransaction",
            vec![
                json!(inputs),
                json!([{ address: sats_to_coin_string(sats) }]),
            ],
        )
        .await?;
    let funded: Value = rpc
        .wallet_call(
            "fundrawtransaction",
            vec![
                json!(unfunded),
                json!({"fee_rate": fee_sat_vb, "change_type": "bech32", "lockUnspents": true}),
            ],
        )
        .await?;
    let hex = funded
        .get("hex")
        .and_then(Value::as_str)
        .ok_or_else(|| LnError::Wallet(format!("fundrawtransaction answered {funded}")))?;
    let signed: Value = rpc
        .wallet_call("signrawtransactionwithwallet", vec![json!(hex)])
        .await?;
    if signed.get("complete").and_then(Value::as_bool) != Some(true) {
        return Err(LnError::Wallet(format!(
            "wallet could not sign the funding transaction: {}",
            signed.get("errors").cloned().unwrap_or(Value::Null)
        )));
    }
    let hex = signed
        .get("hex")
        .and_then(Value::as_str)
        .ok_or_else(|| LnError::Wallet("signed funding transaction without hex".into()))?;
    let tx: Transaction = match deserialize_hex(hex) {
        Ok(tx) => tx,
        Err(e) => {
            // An MWEB transaction (the wallet spent MWEB coins): refused, inputs released.
            unlock_hex(rpc, hex).await;
            return Err(LnError::Wallet(format!(
                "funding transaction does not parse (MWEB coins?): {e}"
            )));
        }
    };
    if tx.input.iter().any(|i| i.witness.is_empty()) {
        unlock_inputs(rpc, &tx).await;
        return Err(LnError::Wallet(
            "the wallet funded the channel with a non-segwit input".into(),
        ));
    }
    Ok(tx)
}

/// Virtual bytes of a funding transaction's fixed part and two outputs (P2WSH, P2WPKH change),
/// and of each P2WPKH input (a P2SH-wrapped one is 23 more: covered by the margin).
const FUNDING_BASE_VB: u64 = 11 + 43 + 31;
const INPUT_VB: u64 = 68;
/// Satoshis chosen beyond the estimated fee, so the wallet need not add a coin of its own.
const FEE_MARGIN_SATS: u64 = 1_000;

/// The most a funding takes from the wallet beyond the channel's value at `fee_sat_vb`: its
/// fee with two inputs and the margin chosen beyond it.
pub(crate) fn funding_fee_bound(fee_sat_vb: u64) -> u64 {
    (FUNDING_BASE_VB + 2 * INPUT_VB)
        .saturating_mul(fee_sat_vb)
        .saturating_add(FEE_MARGIN_SATS)
}

/// Outpoints (`{"txid", "vout"}`) of confirmed, spendable segwit coins of the wallet that
/// cover `sats` and the fee at `fee_sat_vb`, largest first. A coin is segwit when its output
/// script is a witness program (v0 key or script hash, taproot) or a P2SH-wrapped witness key
/// hash (`sh(wpkh(...))`); legacy and MWEB coins are never chosen. Not enough of them: a
/// wallet error saying what the wallet holds.
async fn segwit_inputs(rpc: &RpcClient, sats: u64, fee_sat_vb: u64) -> Result<Vec<Value>, LnError> {
    let unspent: Vec<Value> = rpc.wallet_call("listunspent", vec![json!(1)]).await?;
    let mut coins: Vec<(u64, Value)> = unspent
        .iter()
        .filter(|u| u.get("spendable").and_then(Value::as_bool) == Some(true))
        .filter(|u| u.get("safe").and_then(Value::as_bool) != Some(false))
        .filter(|u| is_segwit_coin(u))
        .filter_map(|u| {
            let value = coin_value_to_sats(u.get("amount")?)?;
            Some((
                value,
                json!({"txid": u.get("txid")?, "vout": u.get("vout")?}),
            ))
        })
        .collect();
    coins.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut chosen = Vec::new();
    let mut total = 0u64;
    for (value, outpoint) in coins {
        chosen.push(outpoint);
        total = total.saturating_add(value);
        let fee = (FUNDING_BASE_VB + INPUT_VB * chosen.len() as u64).saturating_mul(fee_sat_vb);
        if total >= sats.saturating_add(fee).saturating_add(FEE_MARGIN_SATS) {
            return Ok(chosen);
        }
    }
    Err(LnError::Wallet(format!(
        "the wallet's confirmed segwit coins hold {total} sat, not enough to fund {sats} sat \
         and its fee (legacy and MWEB coins cannot fund a channel)"
    )))
}

/// Whether a `listunspent` entry is a segwit coin (see [`segwit_inputs`]).
fn is_segwit_coin(u: &Value) -> bool {
    let script = u.get("scriptPubKey").and_then(Value::as_str).unwrap_or("");
    let witness_program = match script.get(..4) {
        // v0: 20-byte key hash or 32-byte script hash.
        Some("0014") => script.len() == 44,
        Some("0020") => script.len() == 68,
        // v1 (taproot): 32-byte key.
        Some("5120") => script.len() == 68,
        _ => false,
    };
    let wrapped = u
        .get("desc")
        .and_then(Value::as_str)
        .is_some_and(|d| d.starts_with("sh(wpkh("));
    witness_program || wrapped
}

/// Releases the wallet's lock on `tx`'s inputs (a funding transaction that will not be used).
pub(crate) async fn unlock_inputs(rpc: &RpcClient, tx: &Transaction) {
    let outpoints: Vec<Value> = tx
        .input
        .iter()
        .map(|i| json!({"txid": i.previous_output.txid, "vout": i.previous_output.vout}))
        .collect();
    if let Err(e) = rpc
        .wallet_call::<Value>("lockunspent", vec![json!(true), json!(outpoints)])
        .await
    {
        tracing::warn!(error = %e, "could not unlock the inputs of a discarded funding transaction");
    }
}

/// Releases the wallet's lock on the inputs of a transaction rust-bitcoin cannot parse, as the
/// node decodes them.
async fn unlock_hex(rpc: &RpcClient, hex: &str) {
    let decoded: Result<Value, _> = rpc.call("decoderawtransaction", vec![json!(hex)]).await;
    let outpoints: Vec<Value> = decoded
        .ok()
        .and_then(|d| d.get("vin").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| Some(json!({"txid": i.get("txid")?, "vout": i.get("vout")?})))
        .collect();
    if outpoints.is_empty() {
        return;
    }
    if let Err(e) = rpc
        .wallet_call::<Value>("lockunspent", vec![json!(true), json!(outpoints)])
        .await
    {
        tracing::warn!(error = %e, "could not unlock the inputs of a refused funding transaction");
    }
}

#[cfg(test)]
mod tests {
    use super::is_segwit_coin;
    use serde_json::json;

    #[test]
    fn only_segwit_coins_fund_channels() {
        let coin = |script: &str, desc: &str| json!({"scriptPubKey": script, "desc": desc});
        let key = "00".repeat(20);
        let hash = "00".repeat(32);
        assert!(is_segwit_coin(&coin(&format!("0014{key}"), "wpkh([..])#x")));
        assert!(is_segwit_coin(&coin(&format!("0020{hash}"), "")));
        assert!(is_segwit_coin(&coin(&format!("5120{hash}"), "tr(..)")));
        assert!(is_segwit_coin(&coin(
            &format!("a914{key}87"),
            "sh(wpkh([..]))#y"
        )));
        // Legacy key hash, bare script hash, an MWEB output (no script), a truncated program.
        assert!(!is_segwit_coin(&coin(
            &format!("76a914{key}88ac"),
            "pkh([..])#z"
        )));
        assert!(!is_segwit_coin(&coin(
            &format!("a914{key}87"),
            "sh(multi(..))"
        )));
        assert!(!is_segwit_coin(&json!({"address": "ltcmweb1qq..."})));
        assert!(!is_segwit_coin(&coin("0014abcd", "")));
    }
}
