//! The Lightning rail: a [`swap_core::Rail`] whose HTLCs are payments to hold invoices in the
//! embedded node's channels.
//!
//! A Lightning leg's recipient registers the swap's hashlock as a hold invoice
//! ([`LnRail::receive`]) and puts what the payer needs in the terms ([`RailBody::Lightning`]:
//! node id, payment secret, minimum final CLTV delta). The leg's expiry is the final hop's
//! absolute CLTV.
//!
//! - `lock` (payer): pays the invoice once, at exactly the agreed CLTV whatever the height
//!   when it is sent (the final delta is computed from the expiry), no retries, with a payment
//!   id derived from the swap id. What was sent is recorded before LDK is given it (a
//!   `SentPayment`): LDK forgets a payment id minutes after the payment ends, the record
//!   and the outcome markers do not, so calling `lock` again never pays twice.
//! - status, payer's side: `Claimed` once the payment succeeded (the preimage, recorded before
//!   LDK counts the event handled, also when the payee claimed on chain); `Refunded` once it
//!   failed (every HTLC back); `Funded` while its HTLCs are in a channel (irrevocable once
//!   committed) or LDK still has it pending (a channel closing with the HTLC on chain).
//! - status, payee's side: `Funded` once the whole amount is held (LDK's `PaymentClaimable`,
//!   recorded), with the HTLC's CLTV as its expiry; `Claimed` once we started claiming
//!   (irrevocable once LDK reports the preimage in its monitors); `Refunded` once it failed back
//!   (by us, or by LDK at the claim deadline) or the claim deadline passed unclaimed.
//! - refunds are automatic ([`swap_core::RefundMode::Automatic`]): the payee's node fails a
//!   held payment back at its deadline, and the payer's node times the HTLC out on chain if the
//!   payee vanished.
//!
//! A Lightning HTLC does not name its payer (onion routing): the payee reports the terms'
//! sender as the lock's. Who paid does not matter to the payee; the payment secret ties the
//! payment to this swap's invoice.
//!
//! HTLCs below the chain's dust limit are trimmed from the commitment transactions: they are
//! as final as any inside the channel but not enforceable on chain (their value goes to fees
//! in a force close). Micro-swaps accept that risk by design.

use std::sync::Arc;

use async_trait::async_trait;
use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::PublicKey;
use bitcoin::BlockHash;
use lightning::ln::channelmanager::MIN_FINAL_CLTV_EXPIRY_DELTA;
use swap_core::params::{ChainFamily, ChainParams, ChainTip, RailId, RailKind};
use swap_core::rail::{
    Cause, ChainError, Funds, HtlcParams, HtlcStatus, Observation, Rail, RailBody, RailData,
    RouteHintHop,
};
use swap_core::types::{
    Account, Amount, Asset, Expiry, Hashlock, Height, Preimage, PublicKeyBytes, Sats, SwapId,
    Timestamp, TxRef,
};

use crate::error::LnError;
use crate::ledger::{self, SentPayment, SentState};
use crate::node::LnNode;

mod pay;
mod status;

use pay::Paying;

/// How long a hold invoice accepts its payment, at most (the leg's expiry bounds it anyway).
const INVOICE_SECS: u32 = 7 * 24 * 3600;
/// How long a tip read is answered again without asking the node (see [`LnRail`]'s `tip`).
const TIP_FRESH: std::time::Duration = std::time::Duration::from_millis(250);

/// The Lightning rail of one embedded node. Cheap to clone.
#[derive(Clone)]
pub struct LnRail {
    node: Arc<LnNode>,
    params: ChainParams,
    /// The last tip read, by block hash, and when it was asked: a tip read whose best block
    /// is unchanged needs no second call for its header.
    last_tip: Arc<std::sync::Mutex<Option<(BlockHash, ChainTip, std::time::Instant)>>>,
}

impl std::fmt::Debug for LnRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LnRail({}, {})", self.params.rail(), self.node.node_id())
    }
}

/// What a leg's rail data says about paying it: the payee's hold invoice.
struct Invoice<'a> {
    payee: PublicKey,
    payment_secret: &'a [u8; 32],
    min_final_cltv_delta: &'a u16,
    route_hints: &'a [RouteHintHop],
}

/// The invoice in a Lightning leg's rail data, which must name the leg's recipient.
fn invoice_of(htlc: &HtlcParams) -> Result<Invoice<'_>, ChainError> {
    let Some(RailBody::Lightning {
        node_id,
        payment_secret,
        min_final_cltv_delta,
        route_hints,
    }) = htlc.rail_data.as_ref().map(|d| &d.body)
    else {
        return Err(invalid("a Lightning leg without its invoice data"));
    };
    if Account::PublicKey(*node_id) != htlc.recipient {
        return Err(invalid("the invoice's node is not the leg's recipient"));
    }
    Ok(Invoice {
        payee: PublicKey::from_slice(&node_id.0).map_err(invalid)?,
        payment_secret,
        min_final_cltv_delta,
        route_hints,
    })
}

/// The payment id a swap pays its Lightning leg with (a tagged hash of the swap id).
pub fn payment_id(swap_id: &SwapId) -> [u8; 32] {
    tagged_id(b"xswap/ln-payment-id/", &swap_id.0)
}

/// How many of a leg's payments may fail for want of a route (each then sent again, see
/// [`ledger::record_unrouted`]); the last such failure is for good.
pub(crate) const MOST_UNROUTED: u8 = 16;

/// The payment id of hand-over `attempt` of a swap's leg to LDK (see
/// [`SentPayment::attempt`]): the first is [`payment_id`].
pub(crate) fn attempt_id(swap_id: &SwapId, attempt: u32) -> [u8; 32] {
    if attempt == 0 {
        return payment_id(swap_id);
    }
    let mut data = swap_id.0.to_vec();
    data.extend_from_slice(&attempt.to_be_bytes());
    tagged_id(b"xswap/ln-payment-id/again/", &data)
}

/// The payment id an invoice paid by hand (`xswap ln pay`) is sent with: a tagged hash of its
/// payment hash, so paying the same invoice again is refused by LDK as a duplicate. Never
/// the payment hash itself: a counterparty who knows a swap's id could hand over an invoice
/// whose hash is that swap's [`payment_id`], and LDK would then refuse the swap's own payment
/// as a duplicate of it (recorded sent, never paid).
pub fn invoice_payment_id(hashlock: &Hashlock) -> [u8; 32] {
    tagged_id(b"xswap/ln-invoice-payment-id/", &hashlock.0)
}

/// SHA-256 of `tag` then `data`: payment ids of different kinds never meet.
fn tagged_id(tag: &[u8], data: &[u8]) -> [u8; 32] {
    let mut engine = sha256::Hash::engine();
    engine.input(tag);
    engine.input(data);
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// The absolute CLTV expiry a Lightning leg is paid at (it expires at a height).
fn cltv_of(htlc: &HtlcParams) -> Result<u32, ChainError> {
    let Expiry::Height(Height(expiry)) = htlc.expiry else {
        return Err(invalid("a Lightning leg expires at a height"));
    };
    u32::try_from(expiry).map_err(invalid)
}

fn txref(hashlock: &Hashlock) -> TxRef {
    TxRef(format!("ln:{}", hex::encode(hashlock.0)))
}

fn invalid(message: impl std::fmt::Display) -> ChainError {
    ChainError::new(Cause::Invalid, message)
}

/// An [`LnError`] as a rail error: a node that is down, stopped or not ready, or a store that
/// failed to read or write, is transient.
/// A payment LDK took that the node's store does not have yet (it is tried again).
fn not_stored(e: lightning::io::Error) -> ChainError {
    ChainError::new(
        Cause::Unavailable,
        format!("the payment is not in the node's store yet: {e}"),
    )
}

fn ln_err(e: LnError) -> ChainError {
    if e.is_transient() || matches!(e, LnError::Stopped(_) | LnError::Store(_)) {
        ChainError::new(Cause::Unavailable, e)
    } else {
        ChainError::permanent(e)
    }
}

fn account_of(node_id: &PublicKey) -> Account {
    Account::PublicKey(PublicKeyBytes(node_id.serialize()))
}

impl LnRail {
    /// The Lightning rail of `node`, with the built-in parameters of its chain.
    pub fn new(node: Arc<LnNode>) -> Self {
        let params = ChainParams::for_rail(RailId::new(node.config.chain, RailKind::Lightning));
        Self {
            node,
            params,
            last_tip: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// With other parameters (a devnet's, say); they must be a Lightning rail's on the node's
    /// chain.
    pub fn with_params(mut self, params: ChainParams) -> Result<Self, ChainError> {
        params.validate().map_err(invalid)?;
        if params.kind != RailKind::Lightning || params.chain != self.node.config.chain {
            return Err(invalid("not a Lightning rail on the node's chain"));
        }
        self.params = params;
        Ok(self)
    }

    /// The node.
    pub fn node(&self) -> &Arc<LnNode> {
        &self.node
    }

    /// Our account on this rail: the node id.
    pub fn me(&self) -> Account {
        account_of(&self.node.node_id())
    }

    /// The recipient's part of a Lightning leg: registers `hashlock` as a hold invoice for
    /// `amount` and answers the rail data the payer needs (it goes into the terms).
    pub fn receive(&self, hashlock: Hashlock, amount: Sats) -> Result<RailData, ChainError> {
        let amount_msat = amount
            .0
            .checked_mul(1_000)
            .ok_or_else(|| invalid("amount too large for millisatoshis"))?;
        let payment_secret = self
            .node
            .hold_invoice(
                hashlock,
                amount_msat,
                INVOICE_SECS,
                MIN_FINAL_CLTV_EXPIRY_DELTA,
            )
            .map_err(ln_err)?;
        Ok(RailData::new(RailBody::Lightning {
            node_id: PublicKeyBytes(self.node.node_id().serialize()),
            payment_secret,
            min_final_cltv_delta: MIN_FINAL_CLTV_EXPIRY_DELTA,
            route_hints: self.route_hints(),
        }))
    }

    /// The last hops into this node over its usable channels whose peer told us its
    /// forwarding terms (see [`LnNode::route_hints`]).
    pub fn route_hints(&self) -> Vec<RouteHintHop> {
        self.node.route_hints()
    }

    /// Whether `asset` is this rail's (the chain's coin).
    fn carries(&self, asset: &Asset) -> bool {
        matches!(
            (self.params.chain.family, asset),
            (ChainFamily::Bitcoin, Asset::Btc) | (ChainFamily::Litecoin, Asset::Ltc)
        )
    }

    fn check_asset(&self, htlc: &HtlcParams) -> Result<u64, ChainError> {
        match (self.carries(&htlc.asset), htlc.amount) {
            (true, Amount::Sats(s)) => {
                s.0.checked_mul(1_000)
                    .ok_or_else(|| invalid("amount too large for millisatoshis"))
            }
            _ => Err(invalid(format!(
                "{:?} is not this Lightning rail's asset",
                htlc.asset
            ))),
        }
    }
}

#[async_trait]
impl Rail for LnRail {
    fn params(&self) -> &ChainParams {
        &self.params
    }

    /// Every Lightning event the node tells (a payment held, claimed, sent or failed back,
    /// recorded first): the engine steps the legs at once.
    fn changes(&self) -> Option<swap_core::ChangeSubscription> {
        Some(self.node.changes())
    }

    async fn account(&self, _key_index: u32) -> Result<Account, ChainError> {
        Ok(self.me())
    }

    /// The largest payment one usable channel can carry now (a swap's leg is one payment).
    async fn funds(&self, asset: &Asset) -> Result<Funds, ChainError> {
        if !self.carries(asset) {
            return Err(invalid(format!(
                "{asset:?} is not this Lightning rail's asset"
            )));
        }
        self.node.alive().map_err(ln_err)?;
        let sendable_msat = self
            .node
            .channel_manager
            .list_usable_channels()
            .iter()
            .map(|c| c.next_outbound_htlc_limit_msat)
            .max()
            .unwrap_or(0);
        let sats = u128::from(sendable_msat / 1_000);
        Ok(Funds {
            balance: sats,
            fee_balance: sats,
            fee_allowance: 0,
            fees_from_asset: true,
        })
    }

    /// A hold invoice for the swap's hashlock: the rail data of a leg we receive.
    async fn prepare_receive(
        &self,
        hashlock: &Hashlock,
        asset: &Asset,
        amount: &Amount,
        _payer: &Account,
    ) -> Result<Option<RailData>, ChainError> {
        let (true, Amount::Sats(sats)) = (self.carries(asset), amount) else {
            return Err(invalid(format!(
                "{asset:?} is not this Lightning rail's asset"
            )));
        };
        self.receive(*hashlock, *sats).map(Some)
    }

    /// Before a swap is agreed. A leg we pay: its invoice names the leg's recipient, and one
    /// of our usable channels can carry the amount now, to the payee itself or (when the
    /// rail budgets route blocks) to a node the invoice says forwards to it; otherwise the
    /// error says what channel to open. A leg we receive: its invoice is our node's.
    async fn check_leg(&self, htlc: &HtlcParams) -> Result<(), ChainError> {
        let amount_msat = self.check_asset(htlc)?;
        let me = self.me();
        let Invoice {
            payee, route_hints, ..
        } = invoice_of(htlc)?;
        if htlc.recipient == me {
            return Ok(());
        }
        if htlc.sender != me {
            return Err(invalid("a Lightning leg between two other nodes"));
        }
        self.node.alive().map_err(ln_err)?;
        let mut first_hops = vec![payee];
        if self.params.route_blocks > 0 {
            for hop in route_hints {
                first_hops.push(PublicKey::from_slice(&hop.src_node_id.0).map_err(invalid)?);
            }
        }
        let usable = self.node.channel_manager.list_usable_channels();
        if usable.iter().any(|c| {
            first_hops.contains(&c.counterparty.node_id)
                && c.next_outbound_htlc_limit_msat >= amount_msat
        }) {
            return Ok(());
        }
        let best = usable
            .iter()
            .filter(|c| first_hops.contains(&c.counterparty.node_id))
            .map(|c| c.next_outbound_htlc_limit_msat)
            .max();
        Err(ChainError::new(
            Cause::Invalid,
            match best {
                Some(msat) => format!(
                    "our Lightning channels toward {payee} can send {} sat now, the leg needs {}: \
                     open a larger channel to it (`xswap ln open`) or wait for capacity to free",
                    msat / 1_000,
                    amount_msat / 1_000
                ),
                None => format!(
                    "no usable Lightning channel to {payee}{}: open one with at least {} sat \
                     on our side (`xswap ln open`) and wait until it is usable",
                    if first_hops.len() > 1 {
                        " or to a node forwarding to it"
                    } else {
                        ""
                    },
                    amount_msat / 1_000
                ),
            },
        ))
    }

    async fn verify(&self) -> Result<(), ChainError> {
        self.node.alive().map_err(ln_err)?;
        self.tip().await.map(|_| ())
    }

    /// The node's tip (not LDK's last block, which may lag a poll behind): expiry decisions
    /// must not think it is earlier than it is.
    ///
    /// A tip read less than `TIP_FRESH` ago is answered again without asking the node: a
    /// channel swap steps on every Lightning event and channel message, and asking at every
    /// step cost the node more CPU than the swaps did. A read is as old as its answer's trip
    /// anyway; the expiry rules' margins are blocks.
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        let last = *self
            .last_tip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, tip, _)) = last.filter(|(_, _, at)| at.elapsed() < TIP_FRESH) {
            return Ok(tip);
        }
        let rpc = &self.node.rpc;
        let asked = std::time::Instant::now();
        let hash: BlockHash = rpc
            .call("getbestblockhash", vec![])
            .await
            .map_err(|e| ln_err(e.into()))?;
        if let Some((_, tip, _)) = last.filter(|(known, _, _)| *known == hash) {
            *self
                .last_tip
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((hash, tip, asked));
            return Ok(tip);
        }
        let header = rpc
            .get_block_header(&hash)
            .await
            .map_err(|e| ln_err(e.into()))?;
        let field = |name: &str| {
            header
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    ChainError::new(Cause::Inconsistent, format!("header {hash} without {name}"))
                })
        };
        let tip = ChainTip {
            height: Height(field("height")?),
            time: Timestamp(field("time")?),
        };
        *self
            .last_tip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((hash, tip, asked));
        Ok(tip)
    }

    async fn htlc_status(&self, htlc: &HtlcParams) -> Result<HtlcStatus, ChainError> {
        let tip = self.tip().await?;
        let snap = self.snapshot(u32::try_from(tip.height.0).unwrap_or(u32::MAX));
        self.status_in(htlc, &snap)
    }

    async fn observe(&self, htlcs: &[HtlcParams]) -> Result<Observation, ChainError> {
        let tip = self.tip().await?;
        let snap = self.snapshot(u32::try_from(tip.height.0).unwrap_or(u32::MAX));
        let statuses = htlcs.iter().map(|h| self.status_in(h, &snap)).collect();
        Ok(Observation { tip, statuses })
    }

    async fn lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        self.pay(htlc).await
    }

    async fn claim(&self, htlc: &HtlcParams, preimage: &Preimage) -> Result<TxRef, ChainError> {
        self.check_asset(htlc)?;
        if htlc.recipient != self.me() {
            return Err(invalid("we do not receive this leg"));
        }
        if preimage.hashlock() != htlc.hashlock {
            return Err(invalid("the preimage does not match the leg's hashlock"));
        }
        let store = &self.node.store;
        if ledger::claiming(store, &htlc.hashlock)
            .map_err(ln_err)?
            .is_some()
            && ledger::marked(store, ledger::CLAIMED, &htlc.hashlock).map_err(ln_err)?
        {
            return Ok(txref(&htlc.hashlock));
        }
        match self.node.claim(preimage).await {
            Ok(()) => Ok(txref(&htlc.hashlock)),
            Err(e @ LnError::Api(_)) => Err(ChainError::new(Cause::AlreadySpent, e)),
            Err(e) => Err(ln_err(e)),
        }
    }

    async fn refund(&self, _htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        Err(invalid(
            "a Lightning HTLC fails back by itself at its deadline: there is no refund to send",
        ))
    }

    /// Makes sure a leg we never paid is never paid: the sent record is marked cancelled.
    /// A payment LDK has (pending or done) cannot be cancelled: `AlreadySpent`.
    async fn cancel_lock(&self, htlc: &HtlcParams) -> Result<TxRef, ChainError> {
        let amount_msat = self.check_asset(htlc)?;
        let store = &self.node.store;
        let h = &htlc.hashlock;
        // Not while the payment is being handed over.
        let _paying = Paying::start(&self.node, h)?;
        let records = ledger::records(store, h).map_err(ln_err)?;
        let sent = records.sent().map_err(ln_err)?;
        // A payment failed for want of a route has nothing out: the leg can be cancelled.
        let again = records.sent_unrouted().map_err(ln_err)?;
        let (id, attempt) = sent.map_or_else(
            || (payment_id(&htlc.swap_id), 0),
            |s| (s.payment_id, s.attempt),
        );
        if (!again && self.ldk_knows(id))
            || records.preimage().map_err(ln_err)?.is_some()
            || records.pay_failed().map_err(ln_err)?
        {
            return Err(ChainError::new(
                Cause::AlreadySpent,
                "the payment was sent: it ends by itself",
            ));
        }
        let cltv_expiry = match htlc.expiry {
            Expiry::Height(Height(e)) => u32::try_from(e).unwrap_or(u32::MAX),
            Expiry::Time(_) => 0,
        };
        if sent.is_some_and(|s| s.state == SentState::Sent) && !again {
            return Err(ChainError::new(
                Cause::AlreadySpent,
                "the payment was sent: it ends by itself",
            ));
        }
        let record = SentPayment {
            payment_id: id,
            amount_msat,
            cltv_expiry,
            state: SentState::Cancelled,
            attempt,
        };
        if sent.map(|s| s.state) != Some(SentState::Cancelled) {
            ledger::record_sent(store, h, &record).map_err(ln_err)?;
        }
        Ok(TxRef(String::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invoices_payment_id_is_never_a_swaps() {
        let swap = SwapId([7; 16]);
        // An invoice whose payment hash is the swap's payment id gets another id.
        let crafted = Hashlock(payment_id(&swap));
        assert_ne!(invoice_payment_id(&crafted), payment_id(&swap));
        assert_ne!(invoice_payment_id(&crafted), crafted.0);
        // Stable per invoice, different between invoices.
        assert_eq!(invoice_payment_id(&crafted), invoice_payment_id(&crafted));
        assert_ne!(
            invoice_payment_id(&crafted),
            invoice_payment_id(&Hashlock([1; 32]))
        );
    }

    #[test]
    fn payment_ids_differ_per_swap_and_are_stable() {
        let a = payment_id(&SwapId([1; 16]));
        assert_eq!(a, payment_id(&SwapId([1; 16])));
        assert_ne!(a, payment_id(&SwapId([2; 16])));
        assert_ne!(a, [0; 32]);
    }
}
