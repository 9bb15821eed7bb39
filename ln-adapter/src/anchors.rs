//! Anchor channels (`option_anchors_zero_fee_htlc_tx`): the node wallet pays their fees on
//! chain.
//!
//! An anchor channel's commitment transaction carries a low fee agreed in advance, and its
//! HTLC transactions none: at a force close they are brought to the feerate of the moment with
//! coins of the node wallet (CPFP through the commitment's 330-sat anchor output; wallet
//! inputs and change added to the HTLC transactions, which the peer signed with
//! `SINGLE|ANYONECANPAY`). LDK asks for that with `Event::BumpTransaction`; its
//! `BumpTransactionEventHandler` builds the transactions over the [`NodeWallet`] here (coins
//! listed, change, signatures from the node's wallet) and broadcasts them.
//!
//! So an anchor channel is only safe with confirmed coins in the wallet: a channel is opened
//! or accepted only when the wallet holds [`crate::LnConfig::anchor_reserve_sats`] per anchor
//! channel ([`reserve_shortfall`]).
//!
//! Anchors are negotiated where the chain's relay policy relays 330-sat outputs (Bitcoin);
//! on Litecoin, whose nodes refuse outputs that small, they are off unless the operator's node
//! relays them ([`crate::LnConfig::anchors`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, WPubkeyHash};
use btc_adapter::rpc::{coin_value_to_sats, RpcClient};
use lightning::events::bump_transaction::{
    BumpTransactionEventHandler, Utxo, Wallet, WalletSource,
};
use lightning::ln::types::ChannelId;
use lightning::types::features::ChannelTypeFeatures;
use lightning::util::async_poll::AsyncResult;
use serde_json::{json, Value};

use crate::error::LnError;
use crate::io::{Broadcaster, TracingLogger, WalletKeys};
use crate::types::{ChainMonitor, ChannelManager};

/// LDK's handler of fee bumps, over the node wallet.
pub(crate) type Bumper = BumpTransactionEventHandler<
    Arc<Broadcaster>,
    Arc<Wallet<Arc<NodeWallet>, Arc<TracingLogger>>>,
    Arc<WalletKeys>,
    Arc<TracingLogger>,
>;

/// The node's wallet as LDK's source of coins for fee bumps.
pub(crate) struct NodeWallet {
    rpc: Arc<RpcClient>,
    /// The coins this node signed into a fee bump, until a mined transaction spends them. The
    /// wallet stops listing a coin once an unconfirmed bump of ours spends it, but LDK bumps a
    /// claim again with the coins it already used (a replacement at a higher feerate), so they
    /// are offered again while no block has spent them. (Kept in memory: after a restart a
    /// bump waiting in the mempool is raised with other coins.)
    signed: Mutex<HashMap<OutPoint, Utxo>>,
}

impl NodeWallet {
    pub(crate) fn new(rpc: Arc<RpcClient>) -> Self {
        Self {
            rpc,
            signed: Mutex::new(HashMap::new()),
        }
    }

    /// The wallet's coins for fee bumps and, beside them, the coins of our unconfirmed bumps
    /// that no mined transaction spent (those a block spent are forgotten).
    async fn coins(&self) -> Result<Vec<Utxo>, LnError> {
        let mut coins = bump_coins(&self.rpc).await?;
        let remembered: Vec<Utxo> = self
            .signed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for utxo in remembered {
            if coins.iter().any(|c| c.outpoint == utxo.outpoint) {
                continue;
            }
            // Unspent in the chain (the mempool left out): still ours to bump with.
            let unspent: Value = self
                .rpc
                .call(
                    "gettxout",
                    vec![
                        json!(utxo.outpoint.txid.to_string()),
                        json!(utxo.outpoint.vout),
                        json!(false),
                    ],
                )
                .await?;
            if unspent.is_null() {
                self.signed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&utxo.outpoint);
            } else {
                coins.push(utxo);
            }
        }
        Ok(coins)
    }
}

/// The wallet's confirmed, spendable, safe native segwit v0 key-hash coins: the kind whose
/// signature commits to its own amount only, so that the wallet can sign them in a
/// transaction whose other inputs (the anchor, the HTLC outputs) it knows nothing about.
async fn bump_coins(rpc: &RpcClient) -> Result<Vec<Utxo>, LnError> {
    let unspent: Vec<Value> = rpc.wallet_call("listunspent", vec![json!(1)]).await?;
    Ok(unspent.iter().filter_map(bump_coin).collect())
}

/// One `listunspent` entry as a coin for fee bumps (see [`bump_coins`]), if it is one.
fn bump_coin(u: &Value) -> Option<Utxo> {
    if u.get("spendable").and_then(Value::as_bool) != Some(true)
        || u.get("safe").and_then(Value::as_bool) == Some(false)
    {
        return None;
    }
    let script = ScriptBuf::from_hex(u.get("scriptPubKey")?.as_str()?).ok()?;
    let txid = u.get("txid")?.as_str()?.parse().ok()?;
    let vout = u32::try_from(u.get("vout")?.as_u64()?).ok()?;
    let value = coin_value_to_sats(u.get("amount")?)?;
    p2wpkh_utxo(OutPoint::new(txid, vout), Amount::from_sat(value), &script)
}

/// The coin `outpoint` of `value` paying to `script` as LDK's [`Utxo`], if `script` is a
/// native segwit v0 key hash (the only kind used for fee bumps: see [`bump_coins`]).
fn p2wpkh_utxo(outpoint: OutPoint, value: Amount, script: &bitcoin::Script) -> Option<Utxo> {
    if !script.is_p2wpkh() {
        return None;
    }
    let hash = WPubkeyHash::from_slice(script.as_bytes().get(2..22)?).ok()?;
    Some(Utxo::new_v0_p2wpkh(outpoint, value, &hash))
}

/// The anchor channels whose force-close fees the wallet may have to pay: those open or being
/// opened, and the closed ones whose outputs are still being claimed (their monitors still
/// hold balances). Also whether `channel` (pending or open) is one.
pub(crate) fn anchor_channels(
    channel_manager: &ChannelManager,
    chain_monitor: &ChainMonitor,
    channel: &ChannelId,
) -> (u64, bool) {
    let anchored = |t: &ChannelTypeFeatures| t.supports_anchors_zero_fee_htlc_tx();
    let mut ids = HashSet::new();
    for c in channel_manager.list_channels() {
        if c.channel_type.as_ref().is_some_and(anchored) {
            ids.insert(c.channel_id);
        }
    }
    for id in chain_monitor.list_monitors() {
        if ids.contains(&id) {
            continue;
        }
        if let Ok(monitor) = chain_monitor.get_monitor(id) {
            if anchored(&monitor.channel_type_features())
                && !monitor.get_claimable_balances().is_empty()
            {
                ids.insert(id);
            }
        }
    }
    (ids.len() as u64, ids.contains(channel))
}

/// The wallet's reserve for the force-close fees of anchor channels
/// ([`crate::LnNode::anchor_reserve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorReserve {
    /// Anchor channels open, being opened, or closed and still being claimed.
    pub anchor_channels: u64,
    /// What the wallet should hold for them (`anchor_reserve_sats` each).
    pub needed_sats: u64,
    /// What it holds in coins that can pay fee bumps (confirmed native segwit key hashes).
    pub held_sats: u64,
}

impl AnchorReserve {
    /// Whether the wallet holds less than the reserve: a force close of an anchor channel
    /// might not be paid for (its HTLC claims not broadcast).
    pub fn short(&self) -> bool {
        self.held_sats < self.needed_sats
    }
}

/// The sum of the wallet's coins that can pay fee bumps.
pub(crate) async fn bump_balance(rpc: &RpcClient) -> Result<u64, LnError> {
    Ok(bump_coins(rpc)
        .await?
        .iter()
        .map(|u| u.output.value.to_sat())
        .sum())
}

/// A funding the wallet cannot make and still keep the reserve of its anchor channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveShort {
    /// What the wallet holds in coins that can pay fee bumps.
    pub held_sats: u64,
    /// What the funding takes from it (the channel's value, its fee and margin).
    pub spending_sats: u64,
    /// Anchor channels counting the new one.
    pub anchor_channels: u64,
    /// The reserve per anchor channel.
    pub reserve_sats: u64,
    /// What the wallet lacks.
    pub missing_sats: u64,
}

impl std::fmt::Display for ReserveShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the wallet's confirmed native segwit coins ({} sat) do not cover {} sat of funding \
             and a reserve of {} sat for each of {} anchor channels, which pays their fees at a \
             force close: {} sat missing",
            self.held_sats,
            self.spending_sats,
            self.reserve_sats,
            self.anchor_channels,
            self.missing_sats
        )
    }
}

/// Whether the wallet can fund `spending` sats and keep `reserve_sats` for each of
/// `anchor_channels` anchor channels (the new one counted): `Ok(None)` when it can.
pub(crate) async fn check_reserve(
    rpc: &RpcClient,
    spending: u64,
    anchor_channels: u64,
    reserve_sats: u64,
) -> Result<Option<ReserveShort>, LnError> {
    let held = bump_balance(rpc).await?;
    Ok(
        reserve_shortfall(held, spending, anchor_channels, reserve_sats).map(|missing| {
            ReserveShort {
                held_sats: held,
                spending_sats: spending,
                anchor_channels,
                reserve_sats,
                missing_sats: missing,
            }
        }),
    )
}

/// What the wallet lacks to keep `reserve_sats` for each of `anchor_channels` anchor channels
/// after `spending` more sats leave it (a funding): `None` when it holds enough.
pub(crate) fn reserve_shortfall(
    bump_balance: u64,
    spending: u64,
    anchor_channels: u64,
    reserve_sats: u64,
) -> Option<u64> {
    let needed = reserve_sats
        .saturating_mul(anchor_channels)
        .saturating_add(spending);
    needed
        .checked_sub(bump_balance)
        .filter(|&missing| missing > 0)
}

/// Watches, at each block, that the wallet still holds the reserve of the node's anchor
/// channels: coins spent from it later (an on-chain swap leg funded from the same wallet, a
/// send by hand) would leave a force close's fee bumps unpaid. Logged once when it falls short
/// (an error naming what to send) and once when it is whole again.
pub(crate) struct ReserveWatch {
    channel_manager: Arc<ChannelManager>,
    chain_monitor: Arc<ChainMonitor>,
    reserve_sats: u64,
    /// Blocks in a row at which the reserve was short (our own funding or bump leaves its
    /// change unconfirmed for a block: one short block is not told).
    short_blocks: u32,
    was_short: bool,
    /// Whether the wallet could not be read at the last block (told once).
    unreadable: bool,
}

impl ReserveWatch {
    pub(crate) fn new(
        channel_manager: Arc<ChannelManager>,
        chain_monitor: Arc<ChainMonitor>,
        reserve_sats: u64,
    ) -> Self {
        Self {
            channel_manager,
            chain_monitor,
            reserve_sats,
            short_blocks: 0,
            was_short: false,
            unreadable: false,
        }
    }

    pub(crate) async fn check(&mut self, rpc: &RpcClient) {
        let (anchor_channels, _) = anchor_channels(
            &self.channel_manager,
            &self.chain_monitor,
            &ChannelId([0; 32]),
        );
        if anchor_channels == 0 {
            self.was_short = false;
            self.short_blocks = 0;
            return;
        }
        let short = match check_reserve(rpc, 0, anchor_channels, self.reserve_sats).await {
            Ok(short) => {
                self.unreadable = false;
                short
            }
            Err(e) => {
                if !self.unreadable {
                    tracing::warn!(error = %e, "anchor reserve: the wallet's coins could not be read (asked again at each block)");
                    self.unreadable = true;
                }
                return;
            }
        };
        self.short_blocks = match short {
            Some(_) => self.short_blocks.saturating_add(1),
            None => 0,
        };
        match (short, self.was_short) {
            (Some(short), false) if self.short_blocks >= 2 => {
                tracing::error!(
                    missing_sats = short.missing_sats,
                    anchor_channels,
                    "anchor reserve short: {short}; send coins to the node wallet, or a force \
                     close's claims may not be paid for"
                );
                self.was_short = true;
            }
            (None, true) => {
                tracing::info!(anchor_channels, "anchor reserve held again");
                self.was_short = false;
            }
            _ => {}
        }
    }
}

/// Signs the inputs `ours` (indexes) of `unsigned` with the node wallet
/// (`signrawtransactionwithwallet`); the other inputs are left for LDK. Each of `ours` must
/// come back with a witness, and nothing but witnesses may change.
async fn sign_ours(
    rpc: &RpcClient,
    unsigned: Transaction,
    ours: &[usize],
) -> Result<Transaction, LnError> {
    let answer: Value = rpc
        .wallet_call(
            "signrawtransactionwithwallet",
            vec![json!(serialize_hex(&unsigned))],
        )
        .await?;
    let hex = answer.get("hex").and_then(Value::as_str).ok_or_else(|| {
        LnError::Wallet(format!("signrawtransactionwithwallet answered {answer}"))
    })?;
    let signed: Transaction =
        deserialize_hex(hex).map_err(|e| LnError::Wallet(format!("signed fee bump: {e}")))?;
    if signed.compute_txid() != unsigned.compute_txid()
        || signed.input.len() != unsigned.input.len()
    {
        return Err(LnError::Wallet(
            "the wallet changed the fee bump transaction while signing it".into(),
        ));
    }
    let mut tx = unsigned;
    for &i in ours {
        let witness = signed.input[i].witness.clone();
        if witness.is_empty() {
            return Err(LnError::Wallet(format!(
                "the wallet did not sign input {i} of a fee bump (coin {})",
                tx.input[i].previous_output
            )));
        }
        tx.input[i].witness = witness;
    }
    Ok(tx)
}

impl WalletSource for NodeWallet {
    fn list_confirmed_utxos<'a>(&'a self) -> AsyncResult<'a, Vec<Utxo>, ()> {
        Box::pin(async move {
            self.coins().await.map_err(|e| {
                tracing::warn!(error = %e, "fee bump: cannot list the wallet's coins");
            })
        })
    }

    fn get_change_script<'a>(&'a self) -> AsyncResult<'a, ScriptBuf, ()> {
        Box::pin(async move {
            let script = async {
                let address: String = self
                    .rpc
                    .wallet_call("getrawchangeaddress", vec![json!("bech32")])
                    .await?;
                Ok::<_, LnError>(self.rpc.address_script_pubkey(&address).await?)
            };
            script.await.map_err(|e| {
                tracing::warn!(error = %e, "fee bump: no wallet address for change");
            })
        })
    }

    fn sign_psbt<'a>(&'a self, psbt: Psbt) -> AsyncResult<'a, Transaction, ()> {
        Box::pin(async move {
            // The wallet's inputs are those whose coin is a wallet key hash; LDK's own (anchor,
            // HTLC outputs) are witness scripts it signs after us.
            let ours: Vec<usize> = psbt
                .inputs
                .iter()
                .enumerate()
                .filter(|(_, i)| {
                    i.witness_utxo
                        .as_ref()
                        .is_some_and(|o| o.script_pubkey.is_p2wpkh())
                })
                .map(|(n, _)| n)
                .collect();
            let coins: Vec<Utxo> = ours
                .iter()
                .filter_map(|&n| {
                    let output = psbt.inputs.get(n)?.witness_utxo.as_ref()?;
                    let outpoint = psbt.unsigned_tx.input.get(n)?.previous_output;
                    p2wpkh_utxo(outpoint, output.value, &output.script_pubkey)
                })
                .collect();
            let unsigned = psbt.unsigned_tx;
            let signed = sign_ours(&self.rpc, unsigned, &ours).await.map_err(|e| {
                tracing::error!(error = %e, "fee bump: the wallet could not sign");
            })?;
            let mut remembered = self
                .signed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for coin in coins {
                remembered.insert(coin.outpoint, coin);
            }
            Ok(signed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_confirmed_safe_key_hash_coins_pay_fee_bumps() {
        let key = "11".repeat(20);
        let coin = |script: String, spendable: bool, safe: bool| {
            json!({
                "txid": "aa".repeat(32), "vout": 1, "amount": 0.0002,
                "scriptPubKey": script, "spendable": spendable, "safe": safe,
            })
        };
        let utxo = bump_coin(&coin(format!("0014{key}"), true, true)).expect("a P2WPKH coin");
        assert_eq!(utxo.output.value.to_sat(), 20_000);
        assert_eq!(utxo.outpoint.vout, 1);
        assert!(utxo.output.script_pubkey.is_p2wpkh());
        // Not spendable, unsafe (unconfirmed from others), taproot, wrapped, legacy, MWEB.
        assert!(bump_coin(&coin(format!("0014{key}"), false, true)).is_none());
        assert!(bump_coin(&coin(format!("0014{key}"), true, false)).is_none());
        assert!(bump_coin(&coin(format!("5120{}", "22".repeat(32)), true, true)).is_none());
        assert!(bump_coin(&coin(format!("a914{key}87"), true, true)).is_none());
        assert!(bump_coin(&coin(format!("76a914{key}88ac"), true, true)).is_none());
        assert!(bump_coin(&json!({"address": "ltcmweb1qq", "spendable": true})).is_none());
    }

    #[test]
    fn the_reserve_counts_every_anchor_channel_and_the_funding() {
        // 2 channels × 25,000 + a 100,000 funding = 150,000.
        assert_eq!(reserve_shortfall(150_000, 100_000, 2, 25_000), None);
        assert_eq!(reserve_shortfall(149_999, 100_000, 2, 25_000), Some(1));
        assert_eq!(reserve_shortfall(0, 0, 1, 25_000), Some(25_000));
        assert_eq!(reserve_shortfall(0, 0, 0, 25_000), None);
    }
}
