//! What the owner of an [`LnNode`] does with it: peers, channels, hold invoices, payments.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::PublicKey;
use bitcoin::OutPoint;
use lightning::ln::channelmanager::{PaymentId, RecipientOnionFields, Retry};
use lightning::ln::types::ChannelId;
use lightning::routing::gossip::RoutingFees;
use lightning::routing::router::{
    PaymentParameters, RouteHint, RouteHintHop as LdkHintHop, RouteParameters,
};
use lightning::types::payment::{PaymentHash, PaymentPreimage, PaymentSecret};
use swap_core::{Hashlock, Preimage, PublicKeyBytes, RouteHintHop};

use crate::error::{api, LnError};
use crate::node::{write_peers, LnNode};

/// One channel, as the owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// The channel.
    pub channel_id: ChannelId,
    /// The peer.
    pub counterparty: PublicKey,
    /// The funding output, once known.
    pub funding: Option<OutPoint>,
    /// Capacity.
    pub capacity_sats: u64,
    /// What we can send now.
    pub outbound_msat: u64,
    /// The largest HTLC we can send now (reserve, fees and pending updates accounted for).
    pub sendable_msat: u64,
    /// What we can receive now.
    pub inbound_msat: u64,
    /// Both sides are connected and the channel is ready.
    pub usable: bool,
    /// Whether we opened it.
    pub outbound: bool,
    /// HTLCs the peer offered us that are not resolved yet.
    pub inbound_htlcs: Vec<InboundHtlc>,
    /// How many HTLCs we offered that are not resolved yet.
    pub outbound_htlcs: usize,
    /// Whether it has anchor outputs (`option_anchors_zero_fee_htlc_tx`): its force-close
    /// fees are paid from the node wallet ([`crate::LnConfig::anchors`]).
    pub anchors: bool,
}

/// An HTLC offered to us in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundHtlc {
    /// Its payment hash.
    pub hashlock: Hashlock,
    /// Its amount.
    pub amount_msat: u64,
    /// Its absolute CLTV expiry (height).
    pub cltv_expiry: u32,
}

/// The payer's side of a payment to a hold invoice (for Litecoin, what the swap messages carry
/// instead of a BOLT11 invoice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTarget {
    /// The payee.
    pub payee: PublicKey,
    /// The swap's hashlock (the payment hash).
    pub hashlock: Hashlock,
    /// The payee's payment secret for this hash.
    pub payment_secret: [u8; 32],
    /// Amount.
    pub amount_msat: u64,
    /// The CLTV delta of the final hop, agreed in the swap.
    pub final_cltv_delta: u32,
    /// The last hops into the payee over its unannounced channels (BOLT 11's `r`, one hop
    /// each): a payer with no channel to the payee pays through one of their source nodes.
    pub route_hints: Vec<RouteHintHop>,
}

/// The most blocks a payment of ours may lock our coins for (its final CLTV delta plus an
/// intermediary's): LDK's own default cap.
pub const MAX_PAY_CLTV_BLOCKS: u32 = 1008;

/// What LDK's router keeps of a CLTV budget of at least this much for its random offset.
const SHADOW_RESERVE: u32 = 80;

/// LDK's `max_total_cltv_expiry_delta` for a payment whose final hop has `final_delta` and
/// whose intermediaries may add at most `hop_blocks`, exactly. LDK wants the total above the
/// final delta (hence at least one block), and its router keeps 80 blocks of a budget of 80
/// or more for its random offset (which `router` removes again): a budget of 80 or more gets
/// those 80 on top, or an intermediary of 80 blocks or more (LND's default) is never found,
/// and one of LDK's default 72 would need a budget of 152.
pub(crate) fn max_total_cltv(final_delta: u32, hop_blocks: u32) -> u32 {
    let budget = if hop_blocks >= SHADOW_RESERVE {
        hop_blocks.saturating_add(SHADOW_RESERVE)
    } else {
        hop_blocks.max(1)
    };
    final_delta.saturating_add(budget)
}

/// A one-hop route hint as LDK's router takes it.
pub(crate) fn ldk_hint(hop: &RouteHintHop) -> Result<RouteHint, bitcoin::secp256k1::Error> {
    Ok(RouteHint(vec![LdkHintHop {
        src_node_id: PublicKey::from_slice(&hop.src_node_id.0)?,
        short_channel_id: hop.short_channel_id,
        fees: RoutingFees {
            base_msat: hop.fee_base_msat,
            proportional_millionths: hop.fee_proportional_millionths,
        },
        cltv_expiry_delta: hop.cltv_expiry_delta,
        htlc_minimum_msat: None,
        htlc_maximum_msat: None,
    }]))
}

impl LnNode {
    /// Connects to a peer (and keeps reconnecting it when the connection drops, also after a
    /// restart: the peer is stored); returns once the handshake is done.
    pub async fn connect(&self, node_id: PublicKey, addr: SocketAddr) -> Result<(), LnError> {
        self.alive()?;
        {
            let mut peers = self
                .peers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if peers.insert(node_id, addr) != Some(addr) {
                write_peers(&self.store, &peers)?;
            }
        }
        if self.peer_manager.peer_by_node_id(&node_id).is_some() {
            return Ok(());
        }
        self.binding.forget(&node_id);
        let conn =
            crate::node::connect_outbound(std::sync::Arc::clone(&self.peer_manager), node_id, addr)
                .await
                .ok_or_else(|| LnError::NotReady(format!("cannot connect to {node_id}@{addr}")))?;
        let conn = tokio::spawn(conn);
        let started = Instant::now();
        let mut hung_up: Option<Instant> = None;
        while self.peer_manager.peer_by_node_id(&node_id).is_none() {
            // Refused by us: we read their init and they are on another chain.
            if let Some(why) = self.binding.refused(&node_id) {
                // Not kept among the peers to reconnect: it would be refused again.
                let mut peers = self
                    .peers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if peers.remove(&node_id).is_some() {
                    write_peers(&self.store, &peers)?;
                }
                return Err(LnError::OtherChain(why));
            }
            // Or they hung up first (a node on another chain hangs up as soon as it reads our
            // init; so does one given a wrong node id, or one going down): kept among the
            // peers, since what happened is not known for sure. Told after a second, since
            // another connection to the same node (ours from the reconnections, or theirs)
            // may have been the one kept.
            if conn.is_finished() {
                let since = *hung_up.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    return Err(LnError::NotReady(format!(
                        "{node_id}@{addr} hung up during the handshake (a wrong node id, a \
                         node on another chain, or one going down)"
                    )));
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(LnError::NotReady(format!(
                    "handshake with {node_id}@{addr}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Whether `node_id` is connected now.
    pub fn is_connected(&self, node_id: &PublicKey) -> bool {
        self.peer_manager.peer_by_node_id(node_id).is_some()
    }

    /// Opens a channel of `capacity_sats` to a connected peer, funded from the node wallet
    /// (the funding transaction is built when LDK asks for it). Returns the temporary channel id.
    ///
    /// When both nodes offer anchors the channel will be an anchor channel, whose force-close
    /// fees the wallet pays: it is refused here, before the peer hears of it, when the wallet
    /// could not fund it and keep the reserve of every anchor channel ([`LnError::AnchorReserve`]).
    pub async fn open_channel(
        &self,
        counterparty: PublicKey,
        capacity_sats: u64,
        push_msat: u64,
    ) -> Result<ChannelId, LnError> {
        self.alive()?;
        // The peer's features decide the channel type (LDK reads the same ones); a peer not
        // connected (or whose init is not read yet) is not opened to.
        let peer_anchors = self
            .peer_manager
            .peer_by_node_id(&counterparty)
            .ok_or_else(|| LnError::NotReady(format!("not connected to {counterparty}")))?
            .init_features
            .supports_anchors_zero_fee_htlc_tx();
        if self.config.anchors && peer_anchors {
            let (existing, _) = crate::anchors::anchor_channels(
                &self.channel_manager,
                &self.chain_monitor,
                &ChannelId([0; 32]),
            );
            let spending = capacity_sats
                .saturating_add(crate::wallet::funding_fee_bound(self.fees.normal_sat_vb()));
            if let Some(short) = crate::anchors::check_reserve(
                &self.rpc,
                spending,
                existing.saturating_add(1),
                self.config.anchor_reserve_sats,
            )
            .await?
            {
                return Err(LnError::AnchorReserve(short));
            }
        }
        let user_channel_id = u128::from_be_bytes(
            lightning::sign::EntropySource::get_secure_random_bytes(&RandomSource)[..16]
                .try_into()
                .map_err(api)?,
        );
        self.channel_manager
            .create_channel(
                counterparty,
                capacity_sats,
                push_msat,
                user_channel_id,
                None,
                None,
            )
            .map_err(api)
    }

    /// Every channel.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        self.channel_manager
            .list_channels()
            .into_iter()
            .map(|c| ChannelInfo {
                channel_id: c.channel_id,
                counterparty: c.counterparty.node_id,
                funding: c.funding_txo.map(|o| o.into_bitcoin_outpoint()),
                capacity_sats: c.channel_value_satoshis,
                outbound_msat: c.outbound_capacity_msat,
                sendable_msat: c.next_outbound_htlc_limit_msat,
                inbound_msat: c.inbound_capacity_msat,
                usable: c.is_usable,
                outbound: c.is_outbound,
                anchors: c
                    .channel_type
                    .as_ref()
                    .is_some_and(|t| t.supports_anchors_zero_fee_htlc_tx()),
                inbound_htlcs: c
                    .pending_inbound_htlcs
                    .iter()
                    .map(|h| InboundHtlc {
                        hashlock: Hashlock(h.payment_hash.0),
                        amount_msat: h.amount_msat,
                        cltv_expiry: h.cltv_expiry,
                    })
                    .collect(),
                outbound_htlcs: c.pending_outbound_htlcs.len(),
            })
            .collect()
    }

    /// Starts a cooperative close (the closing transaction pays our side to a wallet address).
    /// Refused as not ready (retry) while HTLCs are pending in the channel: LDK starts a
    /// shutdown only from a settled state.
    pub fn close_channel(
        &self,
        channel_id: &ChannelId,
        counterparty: &PublicKey,
    ) -> Result<(), LnError> {
        self.alive()?;
        let pending = self
            .channel_manager
            .list_channels_with_counterparty(counterparty)
            .into_iter()
            .find(|c| c.channel_id == *channel_id)
            .map(|c| c.pending_inbound_htlcs.len() + c.pending_outbound_htlcs.len())
            .ok_or_else(|| LnError::Api(format!("no channel {channel_id} with {counterparty}")))?;
        if pending > 0 {
            return Err(LnError::NotReady(format!(
                "{pending} HTLCs pending in channel {channel_id}"
            )));
        }
        self.channel_manager
            .close_channel(channel_id, counterparty)
            .map_err(api)
    }

    /// Closes a channel unilaterally: our latest commitment transaction is broadcast; our
    /// balance comes back after the peer's `to_self_delay`, swept to the wallet.
    pub fn force_close(
        &self,
        channel_id: &ChannelId,
        counterparty: &PublicKey,
    ) -> Result<(), LnError> {
        self.channel_manager
            .force_close_broadcasting_latest_txn(channel_id, counterparty, "closed by owner".into())
            .map_err(api)
    }

    /// Outputs after closes still waiting to be swept to the wallet (spent or not).
    pub fn pending_sweeps(&self) -> usize {
        self.sweeper.tracked_spendable_outputs().len()
    }

    /// Builds and broadcasts the sweep of spendable outputs now (the node's background loop
    /// also does, every 30 s).
    pub async fn sweep_now(&self) -> Result<(), LnError> {
        self.sweeper
            .regenerate_and_broadcast_spend_if_necessary()
            .await
            .map_err(|()| LnError::Wallet("sweep not built".into()))
    }

    /// Registers a hold invoice for `hashlock`: a payment of at least `amount_msat` to it is
    /// held (`LnEvent::PaymentClaimable`) until [`LnNode::claim`] or [`LnNode::fail_back`].
    /// Returns the payment secret the payer needs.
    pub fn hold_invoice(
        &self,
        hashlock: Hashlock,
        amount_msat: u64,
        expiry_secs: u32,
        min_final_cltv_delta: u16,
    ) -> Result<[u8; 32], LnError> {
        self.alive()?;
        self.channel_manager
            .create_inbound_payment_for_hash(
                PaymentHash(hashlock.0),
                Some(amount_msat),
                expiry_secs,
                Some(min_final_cltv_delta),
            )
            .map(|s| s.0)
            .map_err(|()| LnError::Api("hold invoice refused (expiry or CLTV delta)".into()))
    }

    /// Claims held payments to `preimage`'s hash (reveals the preimage to the payer).
    pub async fn claim(&self, preimage: &Preimage) -> Result<(), LnError> {
        self.alive()?;
        let hashlock = preimage.hashlock();
        let held = self.held_payment(&hashlock)?.ok_or_else(|| {
            LnError::NotReady(format!("no payment held for {}", hex::encode(hashlock.0)))
        })?;
        // LDK does not check the deadline itself; past it the HTLC may be failed back or
        // claimed on chain by the payer, so a claim then proves nothing.
        let height = self.follower.best().await.height;
        if let Some(deadline) = held.claim_deadline {
            if height >= deadline {
                return Err(LnError::Api(format!(
                    "the claim deadline {deadline} has passed (height {height})"
                )));
            }
        }
        // Failed back (by the owner, or by LDK at the deadline; HTLCs that were never held
        // do not set this): nothing is left to claim.
        if crate::ledger::marked(&self.store, crate::ledger::RECEIVE_FAILED, &hashlock)? {
            return Err(LnError::Api(format!(
                "the payment held for {} was failed back",
                hex::encode(hashlock.0)
            )));
        }
        // Recorded first: a status read after a crash here still knows the claim started.
        crate::ledger::record_claiming(&self.store, preimage)?;
        self.channel_manager
            .claim_funds(PaymentPreimage(*preimage.as_bytes()));
        Ok(())
    }

    /// Fails held payments to `hashlock` back to the payer. Refused once a claim started
    /// (the preimage is out). Recorded before LDK is told, so the leg reads refunded.
    pub fn fail_back(&self, hashlock: &Hashlock) -> Result<(), LnError> {
        if crate::ledger::claiming(&self.store, hashlock)?.is_some() {
            return Err(LnError::Api(format!(
                "a claim of {} started: it cannot be failed back",
                hex::encode(hashlock.0)
            )));
        }
        crate::ledger::mark(&self.store, crate::ledger::RECEIVE_FAILED, hashlock)?;
        let _change = self.store.gate().manager_change();
        self.channel_manager
            .fail_htlc_backwards(&PaymentHash(hashlock.0));
        Ok(())
    }

    /// The last hops into this node over its usable channels whose peer told us its
    /// forwarding terms: a payer with no channel to us routes through one of those peers.
    pub fn route_hints(&self) -> Vec<RouteHintHop> {
        self.channel_manager
            .list_usable_channels()
            .iter()
            .filter_map(|c| {
                let info = c.counterparty.forwarding_info.as_ref()?;
                Some(RouteHintHop {
                    src_node_id: PublicKeyBytes(c.counterparty.node_id.serialize()),
                    short_channel_id: c.get_inbound_payment_scid()?,
                    fee_base_msat: info.fee_base_msat,
                    fee_proportional_millionths: info.fee_proportional_millionths,
                    cltv_expiry_delta: info.cltv_expiry_delta,
                })
            })
            .collect()
    }

    /// Pays `target` once, over a direct channel or through the source node of one of its
    /// route hints (one intermediary), with no retries and no random extra CLTV (LDK wants
    /// the total cap above the final delta, so it is at least one more block, and the
    /// router's random offset is removed again, see `router`): the payment's CLTV is the
    /// final delta from the next block, plus the intermediary's delta when it goes through
    /// one. `payment_id` should come from the swap or the invoice, so that sending again is
    /// refused as a duplicate rather than paying twice. (A swap's leg is paid by the rail,
    /// at the swap's exact CLTV, and recorded only once the node's store has the payment;
    /// this returns once LDK took it, and the store has it at LDK's next manager write: a
    /// crash before that forgets it, and paying again with the same id is then safe.)
    pub fn pay(&self, target: &PaymentTarget, payment_id: [u8; 32]) -> Result<(), LnError> {
        self.alive()?;
        let me = self.node_id().serialize();
        let payee = target.payee.serialize();
        // A hint from our own node is our direct channel: the router has it already; LDK
        // refuses a hint from the payee itself (and it leads nowhere).
        let hints = target
            .route_hints
            .iter()
            .filter(|h| h.src_node_id.0 != me && h.src_node_id.0 != payee)
            .map(ldk_hint)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LnError::Config(format!("route hint: {e}")))?;
        let via = hints
            .iter()
            .flat_map(|h| h.0.iter().map(|hop| u32::from(hop.cltv_expiry_delta)))
            .max()
            .unwrap_or(0);
        // The payer's coins are locked for up to this many blocks if the payment gets stuck:
        // an invoice (or an intermediary it names) asking for more is refused, as LDK's
        // router refuses by default.
        let total = target.final_cltv_delta.saturating_add(via);
        if total > MAX_PAY_CLTV_BLOCKS {
            return Err(LnError::Config(format!(
                "the payment would lock our coins for up to {total} blocks (final delta {}, \
                 intermediary {via}): at most {MAX_PAY_CLTV_BLOCKS}",
                target.final_cltv_delta
            )));
        }
        let mut params = PaymentParameters::from_node_id(target.payee, target.final_cltv_delta)
            .with_route_hints(hints)
            .map_err(|()| LnError::Config("route hints refused".into()))?;
        params.max_total_cltv_expiry_delta = max_total_cltv(target.final_cltv_delta, via);
        let route = RouteParameters::from_payment_params_and_value(params, target.amount_msat);
        let _change = self.store.gate().manager_change();
        self.channel_manager
            .send_payment(
                PaymentHash(target.hashlock.0),
                RecipientOnionFields::secret_only(PaymentSecret(target.payment_secret)),
                PaymentId(payment_id),
                route,
                Retry::Attempts(0),
            )
            .map_err(api)
    }
}

/// Randomness for ids that are not secrets (user channel ids), from the OS.
pub(crate) struct RandomSource;

impl lightning::sign::EntropySource for RandomSource {
    fn get_secure_random_bytes(&self) -> [u8; 32] {
        Preimage::random()
            .map(|p| *p.as_bytes())
            .unwrap_or_default()
    }
}
