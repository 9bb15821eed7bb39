//! `GET /v1/quote`: what an offer gives for an amount.

use super::*;

// ---------------------------------------------------------------- quote

/// `GET /v1/quote` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct QuoteQuery {
    /// The maker's offer string (`xso1...`; the older `xswap1...` too); the server's
    /// configured offer when absent.
    pub offer: Option<String>,
    /// Base units of the offer's `buy` asset we would give, as a decimal string.
    pub give: String,
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Answer<T> {
    q.map(|Query(t)| t).map_err(|_| {
        Failure::bad_request(
            "the query parameters are missing or malformed (see the OpenAPI document)",
        )
    })
}

pub(super) fn parse_units(s: &str, what: &str) -> Answer<u128> {
    let s = s.trim();
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::bad_request(format!(
            "`{what}` must be a whole number of base units, as a decimal string"
        )));
    }
    s.parse::<u128>()
        .map_err(|_| Failure::bad_request(format!("`{what}` is too large")))
}

/// An offer checked for taking `give` of it by this engine: what we give and get.
pub(super) fn priced(
    state: &AppState,
    offer_text: Option<&str>,
    give: &str,
) -> Answer<(Offer, u128, u128)> {
    let offer_text = offer_text
        .or(state.config.default_offer.as_deref())
        .ok_or_else(|| Failure::bad_request("give `offer`: this server has no configured offer"))?;
    if offer_text.len() > 8192 {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_offer",
            "offer string too long",
        ));
    }
    let offer = Offer::decode(offer_text).map_err(|e| {
        // The offer's own error names what is wrong with the string the client sent.
        Failure::new(StatusCode::BAD_REQUEST, "invalid_offer", e.to_string())
    })?;
    let give = parse_units(give, "give")?;
    if offer.expires.0 <= Timestamp::now().0 {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "offer_expired",
            "the offer has expired",
        ));
    }
    let get = offer.quote(give).ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "amount_out_of_range",
            "the amount is too large",
        )
    })?;
    let (bmin, bmax) = (offer.buy.min.base_units(), offer.buy.max.base_units());
    let (smin, smax) = (offer.sell.min.base_units(), offer.sell.max.base_units());
    if give < bmin || give > bmax || get < smin || get > smax {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "amount_out_of_range",
            format!("the offer takes between {bmin} and {bmax} base units (and gives between {smin} and {smax})"),
        ));
    }
    for chain in [offer.buy.chain, offer.sell.chain] {
        if state
            .engine
            .driver
            .rail(ChainParams::for_chain(chain).rail())
            .is_none()
        {
            return Err(Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "offer_not_takeable",
                format!("this server has no node for {chain}"),
            ));
        }
    }
    Ok((offer, give, get))
}

/// Prices an amount against a maker's offer (the one given, or the server's configured offer):
/// what we would lock and receive if we took it.
#[utoipa::path(
    get, path = "/v1/quote", tag = "swaps",
    params(QuoteQuery),
    responses(
        (status = 200, description = "The quote", body = QuoteView),
        (status = 400, description = "Invalid offer, amount, or an expired offer", body = ApiError),
        (status = 422, description = "This server has no node for one of the offer's chains", body = ApiError),
    )
)]
pub(super) async fn quote(
    State(state): State<Arc<AppState>>,
    q: Result<Query<QuoteQuery>, QueryRejection>,
) -> Answer<Json<QuoteView>> {
    let q = query(q)?;
    let (offer, give, get) = priced(&state, q.offer.as_deref(), &q.give)?;
    Ok(Json(QuoteView {
        give: leg(offer.buy.chain, &offer.buy.asset, give),
        get: leg(offer.sell.chain, &offer.sell.asset, get),
        rate: format!("{}/{}", offer.rate_num, offer.rate_den),
        maker: offer.maker.to_string(),
        expires_at: offer.expires.0,
    }))
}
