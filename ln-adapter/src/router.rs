//! LDK's router with the CLTV pinned: a swap agrees on the final CLTV exactly, and LDK's
//! router adds a random "shadow" offset (up to `max_total_cltv_expiry_delta`) to the last hop.
//! LDK refuses a `max_total_cltv_expiry_delta` equal to the final delta (it must be larger),
//! so the payer allows one block more and this wrapper removes the offset again.

use bitcoin::secp256k1::{self, PublicKey, Secp256k1};
use lightning::blinded_path::payment::{BlindedPaymentPath, ReceiveTlvs};
use lightning::ln::channel_state::ChannelDetails;
use lightning::routing::router::{InFlightHtlcs, Payee, Route, RouteParameters, Router};

use crate::types::DefaultRouter;

/// [`DefaultRouter`] whose unblinded paths end at exactly the payee's final CLTV delta.
pub(crate) struct PinnedCltvRouter(pub(crate) DefaultRouter);

/// Removes the shadow offset: the last hop of every unblinded path gets the payee's delta.
fn pin_final_cltv(route: &mut Route, final_cltv_delta: Option<u32>) {
    let Some(delta) = final_cltv_delta else {
        return;
    };
    for path in &mut route.paths {
        if path.blinded_tail.is_none() {
            if let Some(last) = path.hops.last_mut() {
                last.cltv_expiry_delta = delta;
            }
        }
    }
}

impl Router for PinnedCltvRouter {
    fn find_route(
        &self,
        payer: &PublicKey,
        route_params: &RouteParameters,
        first_hops: Option<&[&ChannelDetails]>,
        inflight_htlcs: InFlightHtlcs,
    ) -> Result<Route, &'static str> {
        let mut route = self
            .0
            .find_route(payer, route_params, first_hops, inflight_htlcs)?;
        let final_delta = match &route_params.payment_params.payee {
            Payee::Clear {
                final_cltv_expiry_delta,
                ..
            } => Some(*final_cltv_expiry_delta),
            Payee::Blinded { .. } => None,
        };
        pin_final_cltv(&mut route, final_delta);
        Ok(route)
    }

    fn create_blinded_payment_paths<T: secp256k1::Signing + secp256k1::Verification>(
        &self,
        recipient: PublicKey,
        first_hops: Vec<ChannelDetails>,
        tlvs: ReceiveTlvs,
        amount_msats: Option<u64>,
        secp_ctx: &Secp256k1<T>,
    ) -> Result<Vec<BlindedPaymentPath>, ()> {
        self.0
            .create_blinded_payment_paths(recipient, first_hops, tlvs, amount_msats, secp_ctx)
    }
}
