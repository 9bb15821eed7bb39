//! Per-rail parameters: one table, no scattered literals.
//!
//! A *rail* is a place an HTLC can live: on chain (a script or a contract), in a Lightning
//! channel, or in an Ethereum payment channel ([`RailId`]). Every rail sits on a chain, whose
//! blocks and clock its expiries are measured in.
//!
//! See `docs/protocol.md`, "Expiries" and "Rails". All durations are seconds; pace factors are
//! percentages of `block_interval` (50 = blocks arrive twice as fast as expected).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{Expiry, Height, Timestamp};

/// A chain family: the engine speaks to each through its own adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainFamily {
    /// Bitcoin.
    Bitcoin,
    /// Litecoin (same script and transaction format as Bitcoin).
    Litecoin,
    /// Ethereum (and EVM chains with the same HTLC contract).
    Ethereum,
}

impl ChainFamily {
    /// The asset the family's chains move natively (and pay their fees in).
    pub fn native_asset(self) -> crate::types::Asset {
        use crate::types::Asset;
        match self {
            ChainFamily::Bitcoin => Asset::Btc,
            ChainFamily::Litecoin => Asset::Ltc,
            ChainFamily::Ethereum => Asset::Eth,
        }
    }
}

/// Which network of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The real network.
    Mainnet,
    /// Bitcoin/Litecoin testnet.
    Testnet,
    /// Bitcoin signet.
    Signet,
    /// Ethereum Sepolia.
    Sepolia,
    /// A local chain whose blocks are made on demand (regtest, anvil).
    Regtest,
}

/// A chain and network, e.g. `btc-regtest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChainId {
    /// The family.
    pub family: ChainFamily,
    /// The network.
    pub network: Network,
}

impl ChainId {
    /// Builds a chain id.
    pub const fn new(family: ChainFamily, network: Network) -> Self {
        Self { family, network }
    }

    /// Whether this chain's expiries are block heights (Bitcoin family) or timestamps.
    pub fn expiry_kind(&self) -> ExpiryKind {
        match self.family {
            ChainFamily::Bitcoin | ChainFamily::Litecoin => ExpiryKind::Height,
            ChainFamily::Ethereum => ExpiryKind::Time,
        }
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = match self.family {
            ChainFamily::Bitcoin => "btc",
            ChainFamily::Litecoin => "ltc",
            ChainFamily::Ethereum => "eth",
        };
        let net = match self.network {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Sepolia => "sepolia",
            Network::Regtest => "regtest",
        };
        write!(f, "{fam}-{net}")
    }
}

impl std::str::FromStr for ChainId {
    type Err = String;

    /// Parses `btc-mainnet`, `ltc-regtest`, `eth-sepolia`, ... (what `Display` prints).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (fam, net) = s
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("chain {s:?}: expected FAMILY-NETWORK, e.g. btc-mainnet"))?;
        let family = match fam {
            "btc" => ChainFamily::Bitcoin,
            "ltc" => ChainFamily::Litecoin,
            "eth" => ChainFamily::Ethereum,
            other => return Err(format!("unknown chain family {other:?} (btc, ltc, eth)")),
        };
        let network = match net {
            "mainnet" => Network::Mainnet,
            "testnet" => Network::Testnet,
            "signet" => Network::Signet,
            "sepolia" => Network::Sepolia,
            "regtest" => Network::Regtest,
            other => {
                return Err(format!(
                    "unknown network {other:?} (mainnet, testnet, signet, sepolia, regtest)"
                ))
            }
        };
        Ok(Self { family, network })
    }
}

/// Where on a chain an HTLC lives.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum RailKind {
    /// An HTLC on chain: a P2WSH script (Bitcoin family) or the HTLC contract (Ethereum).
    #[default]
    OnChain,
    /// An HTLC in a Lightning channel (Bitcoin family).
    Lightning,
    /// A hashlocked transfer in a two-party Ethereum payment channel.
    EvmChannel,
}

impl RailKind {
    /// Whether this is an HTLC on chain (the default, left out of messages and offers).
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
    pub fn is_on_chain(&self) -> bool {
        *self == RailKind::OnChain
    }
}

/// How a lock that was never claimed goes back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundMode {
    /// The sender must send a refund after the expiry (an on-chain HTLC, a channel lock that
    /// the sender removes).
    Explicit,
    /// The rail fails the lock back by itself at its deadline (a Lightning HTLC): the engine
    /// waits for it and never sends a refund.
    Automatic,
}

impl RailKind {
    /// How an unclaimed lock on this rail returns to its sender.
    pub fn refunds(self) -> RefundMode {
        match self {
            RailKind::Lightning => RefundMode::Automatic,
            RailKind::OnChain | RailKind::EvmChannel => RefundMode::Explicit,
        }
    }

    /// True for payment-channel rails (locks are co-signed channel states, not transactions).
    pub fn is_channel(self) -> bool {
        !matches!(self, RailKind::OnChain)
    }

    /// Whether this kind of rail exists on `family`.
    pub fn fits(self, family: ChainFamily) -> bool {
        match self {
            RailKind::OnChain => true,
            RailKind::Lightning => family != ChainFamily::Ethereum,
            RailKind::EvmChannel => family == ChainFamily::Ethereum,
        }
    }

    fn suffix(self) -> Option<&'static str> {
        match self {
            RailKind::OnChain => None,
            RailKind::Lightning => Some("ln"),
            RailKind::EvmChannel => Some("channel"),
        }
    }
}

/// A rail: a chain and the kind of place on it an HTLC lives. Bitcoin on chain and Lightning on
/// Bitcoin are different rails with different adapters. Printed `btc-mainnet` (on chain),
/// `btc-mainnet/ln`, `eth-mainnet/channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RailId {
    /// The chain under the rail (whose blocks and clock measure its expiries).
    pub chain: ChainId,
    /// Where on it.
    pub kind: RailKind,
}

impl RailId {
    /// Builds a rail id.
    pub const fn new(chain: ChainId, kind: RailKind) -> Self {
        Self { chain, kind }
    }

    /// The on-chain rail of a chain.
    pub const fn on_chain(chain: ChainId) -> Self {
        Self::new(chain, RailKind::OnChain)
    }
}

impl fmt::Display for RailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.suffix() {
            None => write!(f, "{}", self.chain),
            Some(k) => write!(f, "{}/{k}", self.chain),
        }
    }
}

impl std::str::FromStr for RailId {
    type Err = String;

    /// Parses what `Display` prints.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (chain, kind) = match s.trim().split_once('/') {
            None => (s, RailKind::OnChain),
            Some((c, "ln")) => (c, RailKind::Lightning),
            Some((c, "channel")) => (c, RailKind::EvmChannel),
            Some((_, k)) => return Err(format!("unknown rail kind {k:?} (ln, channel)")),
        };
        let chain: ChainId = chain.parse()?;
        if !kind.fits(chain.family) {
            return Err(format!("there is no {kind:?} rail on {chain}"));
        }
        Ok(Self { chain, kind })
    }
}

/// How a chain expresses an expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryKind {
    /// Absolute block height (CLTV).
    Height,
    /// Block timestamp.
    Time,
}

/// Whether to convert blocks to time as early (fast blocks) or as late (slow blocks) as the
/// chain's pace bounds allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Blocks arrive as fast as `fast_factor_pct` allows: heights are reached early.
    Fast,
    /// Blocks arrive as slowly as `slow_factor_pct` allows: heights are reached late.
    Slow,
}

/// The tip of a chain as seen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct ChainTip {
    /// Height of the best block.
    pub height: Height,
    /// Timestamp of the best block.
    pub time: Timestamp,
}

/// The parameters the expiry rules are computed from, for one rail. See `docs/protocol.md` for their
/// meaning. (Named for the chain whose blocks they describe; the rail kind and its enforcement
/// delay are part of them, so both parties agree on them in the terms.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainParams {
    /// Which chain.
    pub chain: ChainId,
    /// Where on the chain the HTLC lives (absent in records written before rails: on chain).
    #[serde(default)]
    pub kind: RailKind,
    /// The enforcement delay, in blocks of the chain: what a channel rail needs to turn an
    /// off-chain claim into an on-chain one when the peer vanishes (force-close, then the
    /// claim, before the lock's expiry). Zero on chain. Claims must be made this much earlier
    /// (rule 1 and the claim cutoff).
    #[serde(default)]
    pub enforcement_blocks: u32,
    /// Lightning: the most blocks a payment's route may add to the final CLTV (the
    /// intermediaries' deltas). The payer learns the secret from the first hop, which may
    /// settle that much later than the payee claims, so the leg's secret is visible until
    /// `expiry + route_blocks + claim_blocks`. Zero: direct channels only. Zero elsewhere.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub route_blocks: u32,
    /// Expected seconds per block.
    pub block_interval: u64,
    /// Fastest real block pace over a window, in percent of `block_interval`.
    pub fast_factor_pct: u32,
    /// Slowest real block pace over a window, in percent of `block_interval`.
    pub slow_factor_pct: u32,
    /// Depth before the other party acts on a lock (also the depth at which a claim or refund
    /// counts as final).
    pub lock_confirmations: u32,
    /// Blocks budgeted to get a claim or refund mined, fee bumps included.
    pub claim_blocks: u32,
    /// Seconds to notice a spend on this chain (one slow block plus the poll interval).
    pub observe_lag: u64,
    /// How far a block timestamp may run ahead of or behind real time (time-expiry chains).
    pub clock_drift: u64,
}

const POLL_SECS: u64 = 30;

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Seconds budgeted for a channel update (a lock or a claim co-signed by both peers, retries
/// included): what a confirmation is on chain.
pub const CHANNEL_UPDATE_SECS: u64 = 60;

/// Blocks a Lightning node needs to enforce an HTLC on chain when its peer vanishes: LDK fails
/// a held HTLC back about 39 blocks before its CLTV, and the force-close and the claim must be
/// mined before it. See channels.md.
pub const LIGHTNING_ENFORCEMENT_BLOCKS: u32 = 40;

/// The furthest from the tip, in blocks, that a Lightning HTLC may expire: forwarding nodes
/// refuse an HTLC expiring later (LDK's `CLTV_FAR_FAR_AWAY`, two weeks of Bitcoin blocks; LND
/// and Core Lightning refuse beyond the same 2016). A Lightning leg's expiry plus its
/// `route_blocks` must stay within it when the terms are agreed.
pub const LIGHTNING_MAX_CLTV_BLOCKS: u32 = 2016;

/// Required depth, or irrevocability, of a lock before the other party acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "finality", content = "depth", rename_all = "snake_case")]
pub enum Finality {
    /// Seen (in a mempool, or a channel update in flight), not yet committed.
    Mempool,
    /// In a block this many deep (1 = in the tip block). Never 0.
    Depth(u32),
    /// Cannot be undone: a co-signed channel state, an irrevocably committed channel HTLC.
    Irrevocable,
}

impl Finality {
    /// The finality of a transaction `confirmations` deep (0 = in the mempool).
    pub fn confirmations(confirmations: u32) -> Self {
        match confirmations {
            0 => Finality::Mempool,
            n => Finality::Depth(n),
        }
    }

    /// True when this is at least as final as `required`.
    pub fn reaches(self, required: Finality) -> bool {
        self >= required
    }

    /// True while only seen, not committed (a spend still to be mined: its fee may need a bump).
    pub fn is_pending(self) -> bool {
        self == Finality::Mempool
    }

    /// The depth in blocks, for on-chain statuses.
    pub fn depth(self) -> Option<u32> {
        match self {
            Finality::Depth(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for Finality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finality::Mempool => f.write_str("in the mempool"),
            Finality::Depth(n) => write!(f, "{n} deep"),
            Finality::Irrevocable => f.write_str("irrevocable"),
        }
    }
}

impl ChainParams {
    /// The built-in parameters for a rail: the chain's, with the rail's enforcement delay.
    pub fn for_rail(rail: RailId) -> Self {
        let mut params = Self::for_chain(rail.chain);
        params.kind = rail.kind;
        params.enforcement_blocks = match rail.kind {
            RailKind::OnChain => 0,
            RailKind::Lightning => LIGHTNING_ENFORCEMENT_BLOCKS,
            // Our channel contract settles each lock on its own secret registry: a claim on
            // chain is one `reveal` transaction, budgeted by `claim_blocks` like any claim.
            RailKind::EvmChannel => 0,
        };
        params
    }

    /// This rail.
    pub fn rail(&self) -> RailId {
        RailId::new(self.chain, self.kind)
    }

    /// How an unclaimed lock on this rail goes back to its sender.
    pub fn refunds(&self) -> RefundMode {
        self.kind.refunds()
    }

    /// How final a lock must be before the other party acts on it: `lock_confirmations` deep
    /// on chain; irrevocable in a channel.
    pub fn required_finality(&self) -> Finality {
        if self.kind.is_channel() {
            Finality::Irrevocable
        } else {
            Finality::confirmations(self.lock_confirmations)
        }
    }

    /// The built-in parameters for a chain's on-chain rail.
    pub fn for_chain(chain: ChainId) -> Self {
        use ChainFamily::*;
        use Network::*;
        let (block_interval, fast, slow, confs, claim_blocks, drift) =
            match (chain.family, chain.network) {
                (Bitcoin, Mainnet | Signet) => (600, 50, 250, 3, 6, 0),
                // testnet3/4 block times swing wildly (20-minute difficulty rule).
                (Bitcoin, Testnet | Sepolia) => (600, 25, 400, 3, 6, 0),
                (Bitcoin, Regtest) => (600, 50, 250, 1, 6, 0),
                (Litecoin, Mainnet | Signet | Sepolia) => (150, 50, 250, 6, 12, 0),
                (Litecoin, Testnet) => (150, 25, 400, 6, 12, 0),
                (Litecoin, Regtest) => (150, 50, 250, 1, 12, 0),
                // Post-merge slots are 12 s: blocks never come faster, missed slots slow them.
                (Ethereum, Mainnet) => (12, 100, 150, 12, 20, 15),
                (Ethereum, Testnet | Sepolia | Signet) => (12, 100, 200, 12, 20, 15),
                (Ethereum, Regtest) => (12, 100, 150, 1, 5, 15),
            };
        let mut params = Self {
            chain,
            kind: RailKind::OnChain,
            enforcement_blocks: 0,
            route_blocks: 0,
            block_interval,
            fast_factor_pct: fast,
            slow_factor_pct: slow,
            lock_confirmations: confs,
            claim_blocks,
            observe_lag: 0,
            clock_drift: drift,
        };
        params.observe_lag = params.blocks_secs(1, Pace::Slow) as u64 + POLL_SECS;
        params
    }

    /// Whether expiries on this chain are heights or times.
    pub fn expiry_kind(&self) -> ExpiryKind {
        self.chain.expiry_kind()
    }

    /// Seconds that `blocks` blocks take at the given pace (rounded toward the pessimistic side:
    /// down for `Fast`, up for `Slow`).
    pub fn blocks_secs(&self, blocks: i128, pace: Pace) -> i128 {
        let pct = match pace {
            Pace::Fast => self.fast_factor_pct,
            Pace::Slow => self.slow_factor_pct,
        } as i128;
        let num = blocks * self.block_interval as i128 * pct;
        match pace {
            Pace::Fast => num.div_euclid(100),
            Pace::Slow => -((-num).div_euclid(100)),
        }
    }

    /// Seconds from the moment `tip` was seen until `target` is reached, at the given pace.
    /// Negative when already passed. For time expiries the clock drift is applied against us:
    /// `Fast` reaches the time early, `Slow` late.
    pub fn secs_until(&self, target: Expiry, tip: ChainTip, pace: Pace) -> i128 {
        match target {
            Expiry::Height(h) => self.blocks_secs(h.0 as i128 - tip.height.0 as i128, pace),
            Expiry::Time(t) => {
                let raw = t.0 as i128 - tip.time.0 as i128;
                match pace {
                    Pace::Fast => raw - self.clock_drift as i128,
                    Pace::Slow => raw + self.clock_drift as i128,
                }
            }
        }
    }

    /// Seconds (at slow pace) for a transaction broadcast now to reach `confs` confirmations.
    pub fn confirm_secs(&self, confs: u32) -> i128 {
        self.blocks_secs(confs.max(1) as i128, Pace::Slow)
    }

    /// Seconds (slow pace) until a lock made now is final enough for the other party to act
    /// on it: on chain, mined (within the same budget as a claim: `claim_blocks`) and then
    /// `lock_confirmations` deep; in a channel, one co-signed update.
    pub fn lock_secs(&self) -> i128 {
        if self.kind.is_channel() {
            CHANNEL_UPDATE_SECS as i128
        } else {
            self.confirm_secs(self.claim_blocks + self.lock_confirmations - 1)
        }
    }

    /// Seconds (slow pace) from sending a lock until it is final enough to act on, when it
    /// is sent without delay: `lock_confirmations` blocks on chain, one update in a channel.
    pub fn finality_secs(&self) -> i128 {
        if self.kind.is_channel() {
            CHANNEL_UPDATE_SECS as i128
        } else {
            self.confirm_secs(self.lock_confirmations)
        }
    }

    /// Blocks budgeted from the claim cutoff to the expiry: getting the claim mined, plus the
    /// rail's enforcement delay.
    pub fn cutoff_blocks(&self) -> u32 {
        self.claim_blocks.saturating_add(self.enforcement_blocks)
    }

    /// The budget, in this rail's expiry units, between the claim cutoff and the expiry.
    fn claim_budget(&self) -> u64 {
        let blocks = self.cutoff_blocks();
        match self.expiry_kind() {
            ExpiryKind::Height => blocks as u64,
            // A claim must be mined in a block whose timestamp is strictly before the expiry,
            // and a block's timestamp may run `clock_drift` ahead of real time.
            ExpiryKind::Time => {
                self.blocks_secs(blocks as i128, Pace::Slow) as u64 + self.clock_drift + 1
            }
        }
    }

    /// The claim cutoff C: the last point at which a claim of an HTLC expiring at `expiry` may
    /// be started so that it lands before the sender can take the value back, whatever the
    /// peer does (rule 1). On chain `E - claim_blocks`; on a channel rail the enforcement delay
    /// comes off too (`E - claim_blocks - enforcement_blocks`).
    pub fn claim_cutoff(&self, expiry: Expiry) -> Expiry {
        self.claim_deadline(expiry)
    }

    /// The same point as [`ChainParams::claim_cutoff`] (its name before rails).
    pub fn claim_deadline(&self, expiry: Expiry) -> Expiry {
        let budget = self.claim_budget();
        match expiry {
            Expiry::Height(h) => Expiry::Height(Height(h.0.saturating_sub(budget))),
            Expiry::Time(t) => Expiry::Time(Timestamp(t.0.saturating_sub(budget))),
        }
    }

    /// The point after which no claim of an HTLC expiring at `expiry` can land any more: with
    /// the time to notice a claim (`observe_lag`), this is the visibility bound V, the latest
    /// moment the other side can learn the secret from this leg.
    ///
    /// On a time-expiry chain the contract (or the channel's secret registry) refuses claims
    /// from `expiry` on. On a Bitcoin-family chain a claim stays valid after the expiry until
    /// the refund (or, in a Lightning channel, the HTLC-timeout) is mined, and that is budgeted
    /// `claim_blocks` to get mined: a late claim can land until `expiry + claim_blocks`. A
    /// routed Lightning payer learns the secret from its first hop, whose HTLC may expire
    /// `route_blocks` later: until `expiry + route_blocks + claim_blocks`.
    pub fn claims_final_after(&self, expiry: Expiry) -> Expiry {
        match expiry {
            Expiry::Height(h) => Expiry::Height(Height(
                h.0.saturating_add(self.claim_blocks as u64)
                    .saturating_add(self.route_blocks as u64),
            )),
            Expiry::Time(t) => Expiry::Time(t),
        }
    }

    /// True when `tip` has passed `point` (for heights: the tip is at or above it, so the next
    /// block is past it; for times: the tip's timestamp is at or past it).
    pub fn reached(&self, point: Expiry, tip: ChainTip) -> bool {
        match point {
            Expiry::Height(h) => tip.height >= h,
            Expiry::Time(t) => tip.time >= t,
        }
    }

    /// True when an HTLC expiring at `expiry` can be refunded in the next block.
    pub fn refundable(&self, expiry: Expiry, tip: ChainTip) -> bool {
        self.reached(expiry, tip)
    }

    /// An expiry about `secs` seconds (at the expected pace) after `tip`.
    pub fn expiry_after(&self, tip: ChainTip, secs: u64) -> Expiry {
        match self.expiry_kind() {
            ExpiryKind::Height => {
                Expiry::Height(Height(tip.height.0 + secs.div_ceil(self.block_interval)))
            }
            ExpiryKind::Time => Expiry::Time(Timestamp(tip.time.0 + secs)),
        }
    }

    /// True when `expiry` is expressed the way this chain expresses expiries.
    pub fn expiry_fits(&self, expiry: Expiry) -> bool {
        matches!(
            (self.expiry_kind(), expiry),
            (ExpiryKind::Height, Expiry::Height(_)) | (ExpiryKind::Time, Expiry::Time(_))
        )
    }

    /// Checks that the parameters make sense (positive interval, fast <= 100 <= slow, ...).
    pub fn validate(&self) -> Result<(), String> {
        if self.block_interval == 0 {
            return Err("block_interval must be positive".into());
        }
        if self.fast_factor_pct == 0 || self.fast_factor_pct > 100 {
            return Err("fast_factor_pct must be in 1..=100".into());
        }
        if self.slow_factor_pct < 100 {
            return Err("slow_factor_pct must be at least 100".into());
        }
        if self.lock_confirmations == 0 {
            return Err("lock_confirmations must be at least 1".into());
        }
        if !self.kind.fits(self.chain.family) {
            return Err(format!(
                "there is no {:?} rail on {}",
                self.kind, self.chain
            ));
        }
        if self.kind == RailKind::OnChain && self.enforcement_blocks != 0 {
            return Err("an on-chain rail has no enforcement delay".into());
        }
        if self.kind == RailKind::Lightning
            && self.enforcement_blocks < LIGHTNING_ENFORCEMENT_BLOCKS
        {
            return Err(format!(
                "a Lightning rail needs an enforcement delay of at least \
                 {LIGHTNING_ENFORCEMENT_BLOCKS} blocks"
            ));
        }
        if self.claim_blocks == 0 {
            return Err("claim_blocks must be at least 1".into());
        }
        if self.kind != RailKind::Lightning && self.route_blocks != 0 {
            return Err("only a Lightning leg is routed".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
