//! What a person needs around the node's hold invoices and channels (the `xswap ln` command
//! line): a BOLT11 invoice for a hold invoice (Bitcoin), the one-line payment target that
//! stands for one on Litecoin (no BOLT11 currency LDK knows), both read back as a
//! [`PaymentTarget`], and what is still on its way back to the wallet after closes.

use std::str::FromStr;

use bitcoin::secp256k1::PublicKey;
use bitcoin::Txid;
use lightning::bolt11_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Currency, Description};
use lightning::ln::channelmanager::Bolt11InvoiceParameters;
use lightning::sign::SpendableOutputDescriptor;
use lightning::types::payment::PaymentHash;
use lightning::util::sweep::OutputSpendStatus;
use swap_core::{ChainFamily, ChainId, Hashlock, Network, PublicKeyBytes, RouteHintHop};

use crate::error::LnError;
use crate::node::LnNode;
use crate::ops::PaymentTarget;

/// The prefix of the one-line payment target (see [`PaymentTarget::to_line`]).
pub const LINE_PREFIX: &str = "xswapln";

/// The BOLT11 currency of a Bitcoin chain; Litecoin (and Ethereum) have none LDK knows.
fn currency(chain: ChainId) -> Result<Currency, LnError> {
    match (chain.family, chain.network) {
        (ChainFamily::Bitcoin, Network::Mainnet) => Ok(Currency::Bitcoin),
        (ChainFamily::Bitcoin, Network::Testnet) => Ok(Currency::BitcoinTestnet),
        (ChainFamily::Bitcoin, Network::Signet) => Ok(Currency::Signet),
        (ChainFamily::Bitcoin, Network::Regtest) => Ok(Currency::Regtest),
        _ => Err(LnError::Config(format!(
            "no BOLT11 invoices on {chain}: use the one-line payment target"
        ))),
    }
}

/// Whether invoices on `chain` are BOLT11 (Bitcoin) rather than the one-line target.
pub fn has_bolt11(chain: ChainId) -> bool {
    currency(chain).is_ok()
}

impl PaymentTarget {
    /// The target as one line that [`PaymentTarget::from_line`] reads back:
    /// `xswapln:<chain>:<payee>:<payment hash>:<payment secret>:<amount msat>:<final CLTV delta>`,
    /// then, when the target has route hints, `:<hint>,<hint>...` with each hint
    /// `<source node>/<short channel id>/<base fee msat>/<fee per million>/<CLTV delta>`
    /// (for Litecoin, where there is no BOLT11 invoice). Nothing in it is a secret of the
    /// payee's beyond what a BOLT11 invoice carries (the payment secret only binds the payment
    /// to the invoice).
    pub fn to_line(&self, chain: ChainId) -> String {
        let mut line = format!(
            "{LINE_PREFIX}:{chain}:{}:{}:{}:{}:{}",
            self.payee,
            hex::encode(self.hashlock.0),
            hex::encode(self.payment_secret),
            self.amount_msat,
            self.final_cltv_delta
        );
        let hints: Vec<String> = self
            .route_hints
            .iter()
            .map(|h| {
                format!(
                    "{}/{}/{}/{}/{}",
                    hex::encode(h.src_node_id.0),
                    h.short_channel_id,
                    h.fee_base_msat,
                    h.fee_proportional_millionths,
                    h.cltv_expiry_delta
                )
            })
            .collect();
        if !hints.is_empty() {
            line.push(':');
            line.push_str(&hints.join(","));
        }
        line
    }

    /// Reads a line of [`PaymentTarget::to_line`] for `chain` (a line for another chain is
    /// refused; a line without route hints, as older versions wrote, is read too).
    pub fn from_line(line: &str, chain: ChainId) -> Result<Self, LnError> {
        let bad = |what: &str| LnError::Config(format!("payment line: {what}"));
        let parts: Vec<&str> = line.trim().split(':').collect();
        let (fields, hints) = match parts.as_slice() {
            [fields @ .., hints] if parts.len() == 8 => (fields, Some(*hints)),
            fields => (fields, None),
        };
        let [prefix, line_chain, payee, hash, secret, amount, cltv] = fields else {
            return Err(bad(&format!(
                "expected {LINE_PREFIX}:CHAIN:NODE_ID:HASH:SECRET:AMOUNT_MSAT:CLTV[:HINTS]"
            )));
        };
        if *prefix != LINE_PREFIX {
            return Err(bad(&format!("does not start with {LINE_PREFIX}:")));
        }
        if *line_chain != chain.to_string() {
            return Err(bad(&format!("for {line_chain}, this node is on {chain}")));
        }
        let bytes32 = |s: &str, what: &str| -> Result<[u8; 32], LnError> {
            hex::decode(s)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| bad(&format!("{what} is not 32 bytes of hex")))
        };
        let route_hints = hints
            .map(|all| {
                all.split(',')
                    .map(|hint| read_hint(hint).ok_or_else(|| bad(&format!("route hint {hint}"))))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            payee: PublicKey::from_str(payee).map_err(|_| bad("node id"))?,
            hashlock: Hashlock(bytes32(hash, "payment hash")?),
            payment_secret: bytes32(secret, "payment secret")?,
            amount_msat: amount.parse().map_err(|_| bad("amount"))?,
            final_cltv_delta: cltv.parse().map_err(|_| bad("CLTV delta"))?,
            route_hints,
        })
    }

    /// Reads a BOLT11 invoice for `chain` (its currency must be the chain's, it must carry an
    /// amount and must not have expired).
    pub fn from_bolt11(invoice: &str, chain: ChainId) -> Result<Self, LnError> {
        let bad = |what: String| LnError::Config(format!("invoice: {what}"));
        let invoice = Bolt11Invoice::from_str(invoice.trim()).map_err(|e| bad(e.to_string()))?;
        let want = currency(chain)?;
        if invoice.currency() != want {
            return Err(bad(format!(
                "for {:?}, this node is on {chain}",
                invoice.currency()
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if invoice.expiration_remaining_from_epoch(now).is_zero() {
            return Err(bad("expired".into()));
        }
        let amount_msat = invoice
            .amount_milli_satoshis()
            .ok_or_else(|| bad("no amount in it".into()))?;
        let final_cltv_delta = u32::try_from(invoice.min_final_cltv_expiry_delta())
            .map_err(|_| bad("CLTV delta too large".into()))?;
        Ok(Self {
            payee: invoice.get_payee_pub_key(),
            hashlock: Hashlock(bitcoin::hashes::Hash::to_byte_array(
                *invoice.payment_hash(),
            )),
            payment_secret: invoice.payment_secret().0,
            amount_msat,
            final_cltv_delta,
            // One intermediary at most: a hint of several hops is not one this node routes.
            route_hints: invoice
                .route_hints()
                .iter()
                .filter_map(|h| match h.0.as_slice() {
                    [hop] => Some(RouteHintHop {
                        src_node_id: PublicKeyBytes(hop.src_node_id.serialize()),
                        short_channel_id: hop.short_channel_id,
                        fee_base_msat: hop.fees.base_msat,
                        fee_proportional_millionths: hop.fees.proportional_millionths,
                        cltv_expiry_delta: hop.cltv_expiry_delta,
                    }),
                    _ => None,
                })
                .collect(),
        })
    }
}

/// One route hint of a payment line: `NODE/SCID/BASE/PPM/DELTA`.
fn read_hint(s: &str) -> Option<RouteHintHop> {
    let [node, scid, base, ppm, delta] = s.split('/').collect::<Vec<_>>()[..] else {
        return None;
    };
    let node = PublicKey::from_str(node).ok()?;
    Some(RouteHintHop {
        src_node_id: PublicKeyBytes(node.serialize()),
        short_channel_id: scid.parse().ok()?,
        fee_base_msat: base.parse().ok()?,
        fee_proportional_millionths: ppm.parse().ok()?,
        cltv_expiry_delta: delta.parse().ok()?,
    })
}

impl LnNode {
    /// A hold invoice for `hashlock` (see [`LnNode::hold_invoice`]) as a signed BOLT11 invoice
    /// with route hints for our channels. Bitcoin only. The invoice's final CLTV delta is
    /// LDK's: `min_final_cltv_delta` plus 3 blocks of slack.
    pub fn bolt11_hold_invoice(
        &self,
        hashlock: Hashlock,
        amount_msat: u64,
        expiry_secs: u32,
        min_final_cltv_delta: u16,
        description: &str,
    ) -> Result<String, LnError> {
        self.alive()?;
        currency(self.config.chain)?;
        let description = Description::new(description.to_owned())
            .map_err(|e| LnError::Config(format!("invoice description: {e}")))?;
        let params = Bolt11InvoiceParameters {
            amount_msats: Some(amount_msat),
            description: Bolt11InvoiceDescription::Direct(description),
            invoice_expiry_delta_secs: Some(expiry_secs),
            min_final_cltv_expiry_delta: Some(min_final_cltv_delta),
            payment_hash: Some(PaymentHash(hashlock.0)),
        };
        self.channel_manager
            .create_bolt11_invoice(params)
            .map(|i| i.to_string())
            .map_err(|e| LnError::Api(format!("invoice: {e:?}")))
    }

    /// The size of LDK's channel manager serialized, in bytes: what the node writes whole at
    /// each persist (benches print it). It grows with the payments this node sent in the last
    /// minutes: LDK keeps each one, for its idempotency, for 7 of its one-minute timer ticks
    /// after it completed.
    pub fn manager_bytes(&self) -> usize {
        lightning::util::ser::Writeable::encode(&*self.channel_manager).len()
    }

    /// The channel manager's writes since the node started (benches print them per swap;
    /// see `gate.rs`).
    pub fn manager_writes(&self) -> crate::ManagerWrites {
        self.store.gate().writes()
    }

    /// LDK timer ticks taken since the node started, by kind (see
    /// [`crate::LnConfig::forget_payments_above`]).
    pub fn timer_ticks(&self) -> crate::TimerTicks {
        self.ticks.get()
    }

    /// How long the node's background loop (LDK's background processing) has been running (polled) since the node
    /// started: its events, its messages, its manager writes. Benches print its share of a
    /// run: it is one task per node, so its share bounds how much of a core it can use.
    pub fn background_busy(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(
            self.background_busy
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// How many completed payments LDK still remembers (see
    /// [`crate::LnConfig::forget_payments_above`]).
    pub fn remembered_payments(&self) -> usize {
        crate::node::ticker::remembered(&self.channel_manager.list_recent_payments())
    }

    /// Whether the channel manager in the node's store is the one in memory (a quiet or
    /// stopped node's is: one LDK handed over with no monitor write in it waits in memory
    /// for at most one round of the node's watch task; see `gate.rs`). For tests.
    #[doc(hidden)]
    pub fn stored_manager_is_current(&self) -> Result<bool, LnError> {
        let (primary, secondary, key) = crate::gate::MANAGER;
        let stored =
            lightning::util::persist::KVStoreSync::read(&*self.store, primary, secondary, key)
                .map_err(|e| {
                    LnError::Store(std::io::Error::other(format!("channel manager: {e}")))
                })?;
        Ok(stored == lightning::util::ser::Writeable::encode(&*self.channel_manager))
    }

    /// The size of this node's channel monitors serialized, in bytes, summed: what is written
    /// whole once every [`crate::types::MAX_PENDING_MONITOR_UPDATES`] updates of a channel
    /// (benches print it). A monitor keeps the HTLC outputs of every revoked commitment, to
    /// punish its broadcast, so it grows with the channel's history.
    pub fn monitor_bytes(&self) -> usize {
        self.chain_monitor
            .list_monitors()
            .into_iter()
            .filter_map(|id| self.chain_monitor.get_monitor(id).ok())
            .map(|m| lightning::util::ser::Writeable::encode(&*m).len())
            .sum()
    }

    /// The calls this node has made to its chain node so far, per JSON-RPC method (benches
    /// print them).
    pub fn rpc_counts_by_method(&self) -> std::collections::BTreeMap<String, u64> {
        self.rpc.counts_by_method()
    }

    /// The chain this node is on.
    pub fn chain(&self) -> ChainId {
        self.config.chain
    }

    /// The wallet's reserve for the force-close fees of this node's anchor channels: how many
    /// there are, what they need, what the wallet holds that can pay fee bumps. A wallet short
    /// of it might not pay for a force close's claims; the node then refuses new anchor
    /// channels, and the existing ones need coins sent to the wallet.
    pub async fn anchor_reserve(&self) -> Result<crate::AnchorReserve, LnError> {
        let (anchor_channels, _) = crate::anchors::anchor_channels(
            &self.channel_manager,
            &self.chain_monitor,
            &lightning::ln::types::ChannelId([0; 32]),
        );
        let held_sats = crate::anchors::bump_balance(&self.rpc).await?;
        Ok(crate::AnchorReserve {
            anchor_channels,
            needed_sats: anchor_channels.saturating_mul(self.config.anchor_reserve_sats),
            held_sats,
        })
    }

    /// What closes left on its way back to the wallet, in satoshis: outputs the sweeper
    /// tracks whose sweep is not confirmed yet (not yet spendable, not yet broadcast, or
    /// broadcast and unconfirmed). Once the sweep confirms, the wallet holds it (LDK keeps
    /// tracking swept outputs for thousands of blocks; those are not counted). Funds still
    /// under a force close's delay are counted only once LDK hands them to the sweeper.
    pub fn sweeping_sats(&self) -> u64 {
        self.sweeper
            .tracked_spendable_outputs()
            .iter()
            .filter(|o| {
                !matches!(
                    o.status,
                    OutputSpendStatus::PendingThresholdConfirmations { .. }
                )
            })
            .map(|o| match &o.descriptor {
                SpendableOutputDescriptor::StaticOutput { output, .. } => output.value.to_sat(),
                SpendableOutputDescriptor::DelayedPaymentOutput(d) => d.output.value.to_sat(),
                SpendableOutputDescriptor::StaticPaymentOutput(d) => d.output.value.to_sat(),
            })
            .sum()
    }

    /// Whether the node has `txid` in its mempool or its chain (`getrawtransaction`; a
    /// confirmed transaction needs the node's transaction index, or is found in its
    /// wallet).
    pub async fn knows_transaction(&self, txid: &Txid) -> bool {
        if self.rpc.get_raw_transaction(txid, None).await.is_ok() {
            return true;
        }
        self.rpc
            .wallet_call::<serde_json::Value>("gettransaction", vec![serde_json::json!(txid)])
            .await
            .is_ok()
    }

    /// Whether `outpoint` is spent, in the node's mempool or chain (`gettxout` with the
    /// mempool: no output left). A close waits on its funding output this way, so that a
    /// one-shot process does not end before the node has the closing transaction.
    pub async fn output_spent(&self, outpoint: &bitcoin::OutPoint) -> Result<bool, LnError> {
        let out: serde_json::Value = self
            .rpc
            .call(
                "gettxout",
                vec![
                    serde_json::json!(outpoint.txid),
                    serde_json::json!(outpoint.vout),
                    serde_json::json!(true),
                ],
            )
            .await?;
        Ok(out.is_null())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ltc() -> ChainId {
        ChainId::new(ChainFamily::Litecoin, Network::Regtest)
    }

    #[test]
    fn line_round_trips_and_is_bound_to_its_chain() {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let key = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key");
        let target = PaymentTarget {
            payee: PublicKey::from_secret_key(&secp, &key),
            hashlock: Hashlock([9; 32]),
            payment_secret: [4; 32],
            amount_msat: 12_345_000,
            final_cltv_delta: 147,
            route_hints: vec![],
        };
        let line = target.to_line(ltc());
        assert!(line.starts_with("xswapln:ltc-regtest:"), "{line}");
        assert!(line.ends_with(":147"), "no hints, the old form: {line}");
        assert_eq!(
            PaymentTarget::from_line(&line, ltc()).ok(),
            Some(target.clone())
        );
        // With route hints (two peers of the payee's that forward to it).
        let hint = |k: u8, scid: u64| RouteHintHop {
            src_node_id: PublicKeyBytes(
                PublicKey::from_secret_key(
                    &secp,
                    &bitcoin::secp256k1::SecretKey::from_slice(&[k; 32]).expect("key"),
                )
                .serialize(),
            ),
            short_channel_id: scid,
            fee_base_msat: 1_000,
            fee_proportional_millionths: 5 + u32::from(k),
            cltv_expiry_delta: 72 + u16::from(k),
        };
        let hinted = PaymentTarget {
            route_hints: vec![hint(5, 1 << 40), hint(6, 77)],
            ..target.clone()
        };
        let hinted_line = hinted.to_line(ltc());
        assert_eq!(
            PaymentTarget::from_line(&hinted_line, ltc()).ok(),
            Some(hinted)
        );
        for broken in [
            format!("{line}:"),
            format!("{line}:02ab/1/2/3/4"),
            format!("{line}:{}", &hinted_line[hinted_line.len() - 3..]),
            format!("{hinted_line}:x"),
        ] {
            assert!(
                PaymentTarget::from_line(&broken, ltc()).is_err(),
                "{broken}"
            );
        }
        let btc = ChainId::new(ChainFamily::Bitcoin, Network::Regtest);
        assert!(PaymentTarget::from_line(&line, btc).is_err());
        assert!(PaymentTarget::from_line(&line.replace(":147", ":x"), ltc()).is_err());
        assert!(PaymentTarget::from_line("lnbcrt1...", ltc()).is_err());
        assert!(!has_bolt11(ltc()));
        assert!(has_bolt11(btc));
    }

    /// A BOLT11 invoice signed by `key`, `age_secs` old, expiring after `expiry_secs`.
    fn bolt11(
        currency: Currency,
        key: &bitcoin::secp256k1::SecretKey,
        amount_msat: Option<u64>,
        age_secs: u64,
        expiry_secs: u64,
    ) -> String {
        use bitcoin::hashes::{sha256, Hash};
        use std::time::{Duration, SystemTime, UNIX_EPOCH};
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        let builder = lightning::bolt11_invoice::InvoiceBuilder::new(currency)
            .description("test".into())
            .payment_hash(sha256::Hash::from_byte_array([9; 32]))
            .payment_secret(lightning::types::payment::PaymentSecret([4; 32]))
            .duration_since_epoch(now - Duration::from_secs(age_secs))
            .expiry_time(Duration::from_secs(expiry_secs))
            .min_final_cltv_expiry_delta(147);
        let builder = match amount_msat {
            Some(a) => builder.amount_milli_satoshis(a),
            None => builder,
        };
        builder
            .build_signed(|m| secp.sign_ecdsa_recoverable(m, key))
            .expect("invoice")
            .to_string()
    }

    /// A regtest BOLT11 invoice signed by `key` with these route hints.
    fn bolt11_with(
        key: &bitcoin::secp256k1::SecretKey,
        hints: Vec<lightning::routing::router::RouteHint>,
    ) -> String {
        use bitcoin::hashes::{sha256, Hash};
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock");
        let mut builder = lightning::bolt11_invoice::InvoiceBuilder::new(Currency::Regtest)
            .description("test".into())
            .payment_hash(sha256::Hash::from_byte_array([9; 32]))
            .payment_secret(lightning::types::payment::PaymentSecret([4; 32]))
            .duration_since_epoch(now)
            .min_final_cltv_expiry_delta(147)
            .amount_milli_satoshis(1_000);
        for hint in hints {
            builder = builder.private_route(hint);
        }
        builder
            .build_signed(|m| secp.sign_ecdsa_recoverable(m, key))
            .expect("invoice")
            .to_string()
    }

    #[test]
    fn bolt11_read_back_for_its_chain_only() {
        let btc = ChainId::new(ChainFamily::Bitcoin, Network::Regtest);
        let key = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).expect("key");
        let payee = PublicKey::from_secret_key(&bitcoin::secp256k1::Secp256k1::new(), &key);
        let text = bolt11(Currency::Regtest, &key, Some(12_345_000), 0, 3600);
        assert!(text.starts_with("lnbcrt"), "{text}");
        let target = PaymentTarget::from_bolt11(&text, btc).expect("parses");
        assert_eq!(
            target,
            PaymentTarget {
                payee,
                hashlock: Hashlock([9; 32]),
                payment_secret: [4; 32],
                amount_msat: 12_345_000,
                final_cltv_delta: 147,
                route_hints: vec![],
            }
        );
        // Its one-hop route hints are read (a hint of two hops is not: one intermediary).
        let hop = |k: u8, scid: u64| lightning::routing::router::RouteHintHop {
            src_node_id: PublicKey::from_secret_key(
                &bitcoin::secp256k1::Secp256k1::new(),
                &bitcoin::secp256k1::SecretKey::from_slice(&[k; 32]).expect("key"),
            ),
            short_channel_id: scid,
            fees: lightning::routing::gossip::RoutingFees {
                base_msat: 1_000,
                proportional_millionths: 10,
            },
            cltv_expiry_delta: 72,
            htlc_minimum_msat: None,
            htlc_maximum_msat: None,
        };
        let hinted = bolt11_with(
            &key,
            vec![
                lightning::routing::router::RouteHint(vec![hop(5, 42)]),
                lightning::routing::router::RouteHint(vec![hop(6, 43), hop(7, 44)]),
            ],
        );
        let read = PaymentTarget::from_bolt11(&hinted, btc).expect("parses");
        assert_eq!(
            read.route_hints,
            vec![RouteHintHop {
                src_node_id: PublicKeyBytes(hop(5, 42).src_node_id.serialize()),
                short_channel_id: 42,
                fee_base_msat: 1_000,
                fee_proportional_millionths: 10,
                cltv_expiry_delta: 72,
            }]
        );
        // Another chain's invoice, an expired one, one without an amount: refused.
        let mainnet = ChainId::new(ChainFamily::Bitcoin, Network::Mainnet);
        assert!(PaymentTarget::from_bolt11(&text, mainnet).is_err());
        assert!(PaymentTarget::from_bolt11(&text, ltc()).is_err());
        let expired = bolt11(Currency::Regtest, &key, Some(1_000), 120, 60);
        let err = PaymentTarget::from_bolt11(&expired, btc).expect_err("expired");
        assert!(err.to_string().contains("expired"), "{err}");
        let open = bolt11(Currency::Regtest, &key, None, 0, 3600);
        assert!(PaymentTarget::from_bolt11(&open, btc).is_err());
        assert!(PaymentTarget::from_bolt11("lnbcrt1garbage", btc).is_err());
    }
}
