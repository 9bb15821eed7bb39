//! Channel funding from the node's wallet.

use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{ScriptBuf, Transaction};
use btc_adapter::network::segwit_address;
use btc_adapter::rpc::{sats_to_coin_string, RpcClient};
use serde_json::{json, Value};
use swap_core::ChainId;

use crate::error::LnError;

/// A signed transaction paying `sats` to LDK's funding script, funded and signed by the node
/// wallet (`fundrawtransaction` with `bech32` change and its inputs locked, then
/// `signrawtransactionwithwallet`). Every input must be segwit: LDK refuses a funding
/// transaction whose txid a signature could change. On Litecoin, a wallet holding MWEB coins
/// would produce an MWEB transaction, which does not parse here and is refused.
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
    let unfunded: String = rpc
        .call(
            "createrawtransaction",
            vec![json!([]), json!([{ address: sats_to_coin_string(sats) }])],
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
