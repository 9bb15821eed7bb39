//! Adapter settings: the node, fees and payouts.

use super::*;

/// Fee settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeConfig {
    /// Feerate (sat/vB) when `estimatesmartfee` has no estimate (fresh regtest, new node).
    pub fallback_sat_vb: u64,
    /// Lowest feerate used.
    pub min_sat_vb: u64,
    /// Highest feerate used, fee bumps included.
    pub max_sat_vb: u64,
    /// Largest fee of a claim or refund, in basis points of the HTLC amount.
    pub max_fee_bps: u32,
    /// Confirmation target for `estimatesmartfee`.
    pub conf_target: u32,
    /// Replace an unconfirmed claim or refund after this many blocks.
    pub bump_after_blocks: u32,
}

impl Default for FeeConfig {
    fn default() -> Self {
        Self {
            fallback_sat_vb: 10,
            min_sat_vb: 1,
            max_sat_vb: 1_000,
            max_fee_bps: 500,
            conf_target: 3,
            bump_after_blocks: 2,
        }
    }
}

/// What to pay, for funding an HTLC from an external wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The HTLC's P2WSH address.
    pub address: String,
    /// The exact amount, in satoshis (litoshis).
    pub sats: u64,
    /// A BIP-21 URI with address and amount.
    pub uri: String,
}

/// Where claims and refunds pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payout {
    /// A fresh `bech32` (P2WPKH) address of the node's wallet per HTLC.
    NodeWallet,
    /// A fixed output script.
    Script(ScriptBuf),
}

/// Everything [`BtcChain::new`] needs besides the seed.
#[derive(Debug, Clone)]
pub struct BtcConfig {
    /// The expiry-rule parameters (use `ChainParams::for_chain`).
    pub params: ChainParams,
    /// The node (with the wallet that funds locks).
    pub rpc: RpcConfig,
    /// Fees.
    pub fees: FeeConfig,
    /// Where claims and refunds pay.
    pub payout: Payout,
}

impl BtcConfig {
    /// Default parameters, fees and payout for `chain`.
    pub fn new(chain: ChainId, rpc: RpcConfig) -> Self {
        Self {
            params: ChainParams::for_chain(chain),
            rpc,
            fees: FeeConfig::default(),
            payout: Payout::NodeWallet,
        }
    }
}
