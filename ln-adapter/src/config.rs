//! Settings of an embedded Lightning node, and its seed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use btc_adapter::rpc::RpcConfig;
use btc_adapter::FeeConfig;
use swap_core::store::StoreKey;
use swap_core::ChainId;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Everything [`crate::LnNode::start`] needs besides the seed.
#[derive(Debug, Clone)]
pub struct LnConfig {
    /// The chain (Bitcoin or Litecoin, any network). LDK itself is told the matching Bitcoin
    /// network: it only compares the peers' chain hashes (see `channels.md`).
    pub chain: ChainId,
    /// The node, bound to the wallet that funds channels and receives closes and sweeps.
    pub rpc: RpcConfig,
    /// Where LDK's state lives (channel manager, monitors, sweeper).
    pub data_dir: PathBuf,
    /// Where to accept Lightning peers (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Fee estimates (`estimatesmartfee`, else the fallback; never below the node's relay fee).
    pub fees: FeeConfig,
    /// Confirmations before a channel we accept is usable.
    pub min_confirmations: u32,
    /// How often the block follower and the fee cache poll the node.
    pub poll_interval: Duration,
    /// Largest number of HTLCs a peer may offer us at once (protocol maximum 483).
    pub max_accepted_htlcs: u16,
    /// Share of the channel that may be in flight towards us (LDK's default is 10 %; swaps
    /// want the whole channel).
    pub max_inbound_in_flight_percent: u8,
    /// Smallest HTLC we accept, in millisatoshis.
    pub htlc_minimum_msat: u64,
    /// What we charge to forward a payment: a base fee in millisatoshis...
    pub forwarding_fee_base_msat: u32,
    /// ...plus this many millionths of the amount.
    pub forwarding_fee_ppm: u32,
    /// How soon a received HTLC is processed (handed to us as claimable, or forwarded).
    /// `Some`: as soon as the node's background loop finds it ready (the loop wakes at every
    /// change of LDK's state), and checked this often besides, a backstop that costs a
    /// wake-up each time. `None` keeps LDK's own random batch delay (tens to hundreds of
    /// milliseconds, drawn to hide a payment's timing from observers of a routing node),
    /// which is most of a payment's latency between two swap nodes on a direct channel,
    /// where there is nobody to hide the timing from; a node that mainly forwards others'
    /// payments may prefer it. Default: every 25 ms (checked every 1 ms before the loop
    /// processed them: the same latency, ~3 % more swaps per second in the channel bench).
    pub htlc_processing_interval: Option<Duration>,
    /// The most a channel may hold in dust HTLCs (those too small to claim on chain at the
    /// commitment's fee rate, which a force close burns to fees), in millisatoshis, towards
    /// either side. `None` keeps LDK's default, 10,000 times the commitment's fee rate per
    /// kiloweight (50,000 sats at 20 sat/vB): with channels without anchors, a swap node
    /// running many micro-swaps at once (below the dust limit) finds LDK refusing new
    /// payments ("no route") once that much is in flight. A higher fixed limit lets more run
    /// at once, and is what a force close may burn.
    pub max_dust_htlc_exposure_msat: Option<u64>,
    /// The key that seals everything the node writes in `data_dir` (LDK's channel manager and
    /// monitors, which hold payment preimages, and our ledger of preimages): the
    /// installation's store key (`Keystore::store_key` in the CLI). `None` (the default of
    /// [`LnConfig::new`]) keeps the data in clear, as LDK writes it: for tests and library
    /// users who choose so. A directory sealed once is refused without its key
    /// ([`crate::LnError::KeyRequired`]) or with another ([`crate::LnError::WrongKey`]); a clear
    /// one is sealed in place at its first start with a key.
    pub store_key: Option<StoreKey>,
    /// Whether channels are opened and accepted with anchor outputs
    /// (`option_anchors_zero_fee_htlc_tx`), whose force-close fees the node wallet pays at the
    /// feerate of the moment (see `anchors.rs`). The default is on for Bitcoin, whose relay
    /// policy relays the 330-sat anchors, and off for Litecoin, whose nodes refuse outputs
    /// that small by default. Peers that do not offer anchors still get a channel without.
    pub anchors: bool,
    /// Confirmed native segwit coins the node wallet must keep per anchor channel, to pay
    /// the fees of a force close (the commitment's CPFP and the HTLC claims). An anchor
    /// channel is neither opened nor accepted when the wallet holds less.
    pub anchor_reserve_sats: u64,
    /// The period of LDK's timer tick (`ChannelManager::timer_tick_occurred`), which the node
    /// ticks itself (LDK's background processor ticks every minute) (see `node/ticker.rs`). LDK counts
    /// several timeouts in these ticks (each may fire one tick sooner than said):
    /// - a cooperative close still negotiating after 1-2 ticks becomes a FORCE close (its
    ///   fees, and our funds locked for the channel's delay);
    /// - a peer that leaves a commitment update or a `channel_reestablish` unanswered for
    ///   1-2 ticks is disconnected (and reconnected);
    /// - an inbound channel request must be accepted within 1-2 ticks (with anchors on, our
    ///   acceptance asks the node wallet first);
    /// - a multi-part payment's parts must all arrive within 2-3 ticks;
    /// - a completed payment this node sent is remembered for 7-8 ticks (LDK's idempotency:
    ///   the same payment id is refused meanwhile), in the channel manager written whole at
    ///   each persist (see [`LnConfig::forget_payments_above`]);
    /// - a channel's previous forwarding fees are honoured for 5 ticks after a change, and an
    ///   unfunded channel is dropped after 60.
    ///
    /// Taken as at least [`MIN_TIMER_TICK`]. `None` (the default): LDK's minute.
    pub timer_tick_interval: Option<Duration>,
    /// While LDK remembers more completed payments than this (see
    /// [`LnConfig::timer_tick_interval`]), the timer ticks as often as every
    /// [`LnConfig::forget_tick_gap`] instead of at its period, so that LDK forgets them within
    /// 8 such gaps instead of 7-8 minutes. Without it a payer's cost per payment grows with
    /// its rate of the last minutes (~90 bytes per payment in every write of the channel
    /// manager: at 100 payments a second, ~4 MB at each of ~150 writes a second). Each such
    /// tick waits until every channel is funded and not closing, no inbound channel request
    /// came in the last two minutes, and the peer of every channel the last tick may have
    /// marked as waiting on it has answered since (so that LDK disconnects no peer sooner
    /// than with its minute tick); under load that takes milliseconds. What still shortens
    /// meanwhile is listed in `node/ticker.rs` (a multi-part payment to this node must
    /// arrive within 2-3 gaps; the swap rail pays in one part). The swap rail keeps a swap's
    /// payment from being sent twice whatever LDK remembers (its ledger); a payment sent by
    /// hand (`LnNode::pay`, `xswap ln pay`) may be sent again with its id after 8 gaps on a
    /// node this busy. `None`: never tick sooner than the period. Default
    /// [`DEFAULT_FORGET_PAYMENTS_ABOVE`].
    pub forget_payments_above: Option<usize>,
    /// The shortest time between two of LDK's timer ticks taken to forget payments
    /// ([`LnConfig::forget_payments_above`]). Taken as at least [`MIN_FORGET_TICK_GAP`].
    /// Default [`MIN_TIMER_TICK`] (1 s). A shorter gap forgets sooner (the channel bench:
    /// 250 ms, ~15 % more swaps per second sustained) and shortens what the gap bounds alike.
    pub forget_tick_gap: Duration,
}

/// The shortest [`LnConfig::forget_tick_gap`] taken (a shorter one is raised to it).
pub const MIN_FORGET_TICK_GAP: Duration = Duration::from_millis(100);

/// The default [`LnConfig::forget_payments_above`]: ~90 KB of the channel manager.
pub const DEFAULT_FORGET_PAYMENTS_ABOVE: usize = 1_000;

/// The shortest [`LnConfig::timer_tick_interval`] taken (a shorter one is raised to it).
pub const MIN_TIMER_TICK: Duration = Duration::from_secs(1);

impl LnConfig {
    /// Defaults for `chain` on the node `rpc`, state in `data_dir`, on a free loopback port.
    pub fn new(chain: ChainId, rpc: RpcConfig, data_dir: PathBuf) -> Self {
        Self {
            chain,
            rpc,
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            fees: FeeConfig::default(),
            min_confirmations: 3,
            poll_interval: Duration::from_millis(500),
            max_accepted_htlcs: 483,
            max_inbound_in_flight_percent: 100,
            htlc_minimum_msat: 1_000,
            forwarding_fee_base_msat: 1_000,
            forwarding_fee_ppm: 100,
            htlc_processing_interval: Some(Duration::from_millis(25)),
            max_dust_htlc_exposure_msat: None,
            store_key: None,
            anchors: chain.family == swap_core::ChainFamily::Bitcoin,
            anchor_reserve_sats: 25_000,
            timer_tick_interval: None,
            forget_payments_above: Some(DEFAULT_FORGET_PAYMENTS_ABOVE),
            forget_tick_gap: MIN_TIMER_TICK,
        }
    }
}

/// The installation seed. The Lightning keys come from a hash of it under their own tag, so
/// that they never coincide with the on-chain keys derived from the same seed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; 32]);

impl Seed {
    /// Wraps the installation seed.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes LDK's `KeysManager` is built from: SHA-256 of a tag and the seed.
    pub(crate) fn lightning_seed(&self) -> [u8; 32] {
        let mut engine = sha256::Hash::engine();
        engine.input(b"xswap/ln-adapter/keys/v1");
        engine.input(&self.0);
        sha256::Hash::from_engine(engine).to_byte_array()
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_redacted_and_tagged() {
        let seed = Seed::new([7; 32]);
        assert_eq!(format!("{seed:?}"), "Seed(<redacted>)");
        assert_ne!(seed.lightning_seed(), [7; 32]);
        assert_eq!(seed.lightning_seed(), Seed::new([7; 32]).lightning_seed());
        assert_ne!(seed.lightning_seed(), Seed::new([8; 32]).lightning_seed());
    }
}
