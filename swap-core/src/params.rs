//! Per-network chain parameters: one table, no scattered literals.
//!
//! See `docs/protocol.md`, "Expiries". All durations are seconds; pace factors are
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

/// The parameters the expiry rules are computed from. See protocol.md for their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainParams {
    /// Which chain.
    pub chain: ChainId,
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

impl ChainParams {
    /// The built-in parameters for a chain.
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

    /// Seconds (slow pace) for a lock broadcast now to get mined (within the same budget as a
    /// claim: `claim_blocks`) and then reach `lock_confirmations`.
    pub fn lock_secs(&self) -> i128 {
        self.confirm_secs(self.claim_blocks + self.lock_confirmations - 1)
    }

    /// The budget, in this chain's expiry units, for getting a claim or refund mined.
    fn claim_budget(&self) -> u64 {
        match self.expiry_kind() {
            ExpiryKind::Height => self.claim_blocks as u64,
            // A claim must be mined in a block whose timestamp is strictly before the expiry,
            // and a block's timestamp may run `clock_drift` ahead of real time.
            ExpiryKind::Time => {
                self.blocks_secs(self.claim_blocks as i128, Pace::Slow) as u64
                    + self.clock_drift
                    + 1
            }
        }
    }

    /// The last point at which a claim of an HTLC expiring at `expiry` may be broadcast so that
    /// it is mined before the sender can refund (rule 1: `E - claim_blocks`).
    pub fn claim_deadline(&self, expiry: Expiry) -> Expiry {
        let budget = self.claim_budget();
        match expiry {
            Expiry::Height(h) => Expiry::Height(Height(h.0.saturating_sub(budget))),
            Expiry::Time(t) => Expiry::Time(Timestamp(t.0.saturating_sub(budget))),
        }
    }

    /// The point after which no claim of an HTLC expiring at `expiry` can land any more.
    ///
    /// On a time-expiry chain the contract refuses claims from `expiry` on. On a Bitcoin-family
    /// chain a claim stays valid after the expiry until the refund is mined, and the refund is
    /// budgeted `claim_blocks` to get mined: a late claim can land until `expiry + claim_blocks`.
    pub fn claims_final_after(&self, expiry: Expiry) -> Expiry {
        match expiry {
            Expiry::Height(h) => {
                Expiry::Height(Height(h.0.saturating_add(self.claim_blocks as u64)))
            }
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
        if self.claim_blocks == 0 {
            return Err("claim_blocks must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_valid_for_every_chain() {
        for family in [
            ChainFamily::Bitcoin,
            ChainFamily::Litecoin,
            ChainFamily::Ethereum,
        ] {
            for network in [
                Network::Mainnet,
                Network::Testnet,
                Network::Signet,
                Network::Sepolia,
                Network::Regtest,
            ] {
                let p = ChainParams::for_chain(ChainId::new(family, network));
                p.validate().unwrap_or_else(|e| panic!("{}: {e}", p.chain));
                assert!(p.observe_lag > p.block_interval);
            }
        }
    }

    #[test]
    fn chain_ids_roundtrip_through_text() {
        for s in [
            "btc-mainnet",
            "ltc-regtest",
            "eth-sepolia",
            "btc-signet",
            "ltc-testnet",
        ] {
            let id: ChainId = s.parse().expect(s);
            assert_eq!(id.to_string(), s);
        }
        assert!("doge-mainnet".parse::<ChainId>().is_err());
        assert!("btc".parse::<ChainId>().is_err());
    }

    #[test]
    fn btc_mainnet_matches_protocol_table() {
        let p = ChainParams::for_chain(ChainId::new(ChainFamily::Bitcoin, Network::Mainnet));
        assert_eq!(
            (
                p.block_interval,
                p.fast_factor_pct,
                p.slow_factor_pct,
                p.lock_confirmations,
                p.claim_blocks
            ),
            (600, 50, 250, 3, 6)
        );
        assert_eq!(p.blocks_secs(10, Pace::Fast), 3000);
        assert_eq!(p.blocks_secs(10, Pace::Slow), 15000);
        let tip = ChainTip {
            height: Height(100),
            time: Timestamp(0),
        };
        assert_eq!(
            p.secs_until(Expiry::Height(Height(90)), tip, Pace::Fast),
            -3000
        );
        assert_eq!(
            p.claim_deadline(Expiry::Height(Height(200))),
            Expiry::Height(Height(194))
        );
        assert!(p.refundable(Expiry::Height(Height(100)), tip));
        assert!(!p.refundable(Expiry::Height(Height(101)), tip));
    }

    #[test]
    fn eth_time_conversions_apply_drift_against_us() {
        let p = ChainParams::for_chain(ChainId::new(ChainFamily::Ethereum, Network::Mainnet));
        let tip = ChainTip {
            height: Height(1),
            time: Timestamp(1_000),
        };
        let e = Expiry::Time(Timestamp(2_000));
        assert_eq!(p.secs_until(e, tip, Pace::Fast), 1_000 - 15);
        assert_eq!(p.secs_until(e, tip, Pace::Slow), 1_000 + 15);
        // 20 blocks * 12 s * 1.5 + 15 s drift
        assert_eq!(
            p.claim_deadline(e),
            Expiry::Time(Timestamp(2_000 - 360 - 15 - 1))
        );
        assert_eq!(p.claims_final_after(e), e);
    }
}
