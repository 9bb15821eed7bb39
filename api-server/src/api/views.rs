//! What the API answers: swaps, pages, quotes, health, events.

use super::*;

// ---------------------------------------------------------------- views

/// An amount of an asset on a chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LegAmount {
    /// The chain, e.g. `ltc-regtest`, `eth-mainnet`.
    pub chain: String,
    /// The asset: `btc`, `ltc`, `eth`, or `erc20:0x<token>:<decimals>`.
    pub asset: String,
    /// Base units (satoshis, wei, token units), as a decimal string.
    #[schema(example = "1000000")]
    pub amount: String,
}

/// A swap.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwapView {
    /// The swap id (32 hex digits).
    #[schema(example = "0f1e2d3c4b5a69788796a5b4c3d2e1f0")]
    pub id: String,
    /// The state: the engine's state name while it runs (`negotiated`, `locking`, `locked`,
    /// ...), its outcome once finished (`swapped`, `refunded`, `aborted`, `cancelled`,
    /// `lost`).
    pub state: String,
    /// Whether the swap has finished.
    #[serde(rename = "final")]
    pub finished: bool,
    /// Our role: `initiator` (we made the secret and lock first) or `responder`.
    pub role: String,
    /// What we lock.
    pub give: LegAmount,
    /// What we receive.
    pub get: LegAmount,
    /// The hashlock (SHA-256 of the secret, hex). The secret itself is never shown.
    pub hashlock: String,
    /// Number of the latest state in the swap's history (1 is the first).
    pub seq: u64,
    /// When the swap was stored (Unix seconds).
    pub created_at: u64,
    /// When its latest state was entered (Unix seconds).
    pub updated_at: u64,
}

/// One page of swaps, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwapPage {
    /// The swaps.
    pub swaps: Vec<SwapView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What taking an offer for an amount gives and gets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuoteView {
    /// What we would lock (the offer's `buy` side).
    pub give: LegAmount,
    /// What we would receive (the offer's `sell` side, at its rate, rounded down).
    pub get: LegAmount,
    /// The offer's rate: base units of `get` per base unit of `give`, as `num/den`.
    pub rate: String,
    /// The maker's identity key.
    pub maker: String,
    /// When the offer lapses (Unix seconds).
    pub expires_at: u64,
}

/// Create a swap: take `offer` (a maker's offer string, `xso1...`), giving `give` base
/// units of what it buys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSwap {
    /// The maker's offer string (`xso1...`; the older `xswap1...` too); the server's
    /// configured offer when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// Base units of the offer's `buy` asset we give, as a decimal string.
    #[schema(example = "1000000")]
    pub give: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /ready` when ready.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// `ok`.
    pub status: String,
    /// The chains whose nodes answered.
    pub nodes: Vec<String>,
}

/// One event of `GET /v1/events` (the `data` of an SSE event named `swap_state`, whose `id`
/// is `event_id`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwapEvent {
    /// The event id: increasing; send the last one seen as `Last-Event-ID` to resume.
    pub event_id: i64,
    /// The swap.
    pub swap_id: String,
    /// The state's number in the swap's history.
    pub seq: u64,
    /// The state entered (as a swap's `state`).
    pub state: String,
    /// Whether it is the swap's last.
    #[serde(rename = "final")]
    pub finished: bool,
    /// When it was entered (Unix seconds).
    pub entered_at: u64,
}

pub(super) fn asset_text(a: &Asset) -> String {
    match a {
        Asset::Btc => "btc".into(),
        Asset::Ltc => "ltc".into(),
        Asset::Eth => "eth".into(),
        Asset::Erc20 { token, decimals } => format!("erc20:{token}:{decimals}"),
    }
}

pub(super) fn leg(chain: ChainId, asset: &Asset, units: u128) -> LegAmount {
    LegAmount {
        chain: chain.to_string(),
        asset: asset_text(asset),
        amount: units.to_string(),
    }
}

pub(super) fn view(row: &SwapRow) -> SwapView {
    let r = &row.record;
    let t = &r.terms;
    let (ours, theirs) = match r.role {
        swap_core::Role::Initiator => (&t.x, &t.y),
        swap_core::Role::Responder => (&t.y, &t.x),
    };
    SwapView {
        id: r.id().to_string(),
        state: api_state(&row.state).into(),
        finished: row.state.is_final(),
        role: match r.role {
            swap_core::Role::Initiator => "initiator".into(),
            swap_core::Role::Responder => "responder".into(),
        },
        give: leg(ours.params.chain, &ours.asset, ours.amount.base_units()),
        get: leg(
            theirs.params.chain,
            &theirs.asset,
            theirs.amount.base_units(),
        ),
        hashlock: t.hashlock.to_string(),
        seq: row.seq,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}
