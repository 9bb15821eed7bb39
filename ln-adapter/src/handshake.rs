//! The node's chain bound in the Lightning handshake.
//!
//! LDK compares the peers' chain hashes (the `networks` of their `init` messages), which it
//! takes from `bitcoin::Network`: a Litecoin node is told the Bitcoin network of the same kind
//! and presents Bitcoin's hash. On regtest, where Litecoin runs here, the two chains would then
//! look alike, and a Litecoin node could open a channel with a Bitcoin node whose funding
//! transaction never appears on its chain.
//!
//! So a Litecoin node sets [`LITECOIN_BIT`], an optional feature bit from the custom range
//! (bLIP 2), in its `init` and node features, and every node refuses a peer whose bit differs
//! from its own: a Litecoin node refuses peers without it (every Bitcoin node, xswap or not), a
//! Bitcoin node refuses peers with it. The refusal is remembered per peer, so that
//! [`LnNode::connect`](crate::LnNode::connect) can say why instead of timing out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;

use bitcoin::secp256k1::PublicKey;
use lightning::ln::msgs::{DecodeError, Init, LightningError};
use lightning::ln::peer_handler::CustomMessageHandler;
use lightning::ln::wire::CustomMessageReader;
use lightning::types::features::{InitFeatures, NodeFeatures};
use lightning::util::ser::LengthLimitedRead;
use swap_core::{ChainFamily, ChainId};

/// The optional feature bit a Litecoin node sets (odd: a peer that does not know it may ignore
/// it). The even bit below it, the same feature required, counts too.
pub const LITECOIN_BIT: usize = 419;

/// Binds the node to its chain in the handshake (see the module's documentation). It has no
/// messages of its own.
pub struct ChainBinding {
    litecoin: bool,
    chain: ChainId,
    /// Peers refused, and why.
    refused: Mutex<HashMap<PublicKey, String>>,
}

impl ChainBinding {
    /// The binding of a node on `chain`.
    pub fn new(chain: ChainId) -> Self {
        Self {
            litecoin: chain.family == ChainFamily::Litecoin,
            chain,
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// Why `peer` was refused at its last handshake, if it was.
    pub fn refused(&self, peer: &PublicKey) -> Option<String> {
        self.lock().get(peer).cloned()
    }

    /// Forgets a refusal of `peer` (before a new attempt, which decides again).
    pub fn forget(&self, peer: &PublicKey) {
        self.lock().remove(peer);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, String>> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn init_features(&self) -> InitFeatures {
        let mut f = InitFeatures::empty();
        if self.litecoin {
            // Only fails for a bit outside the custom range, which this is not.
            let _ = f.set_optional_custom_bit(LITECOIN_BIT);
        }
        f
    }
}

/// Whether `flags` (little-endian feature bits) set [`LITECOIN_BIT`] or the even bit below it.
pub fn says_litecoin(flags: &[u8]) -> bool {
    let set = |bit: usize| {
        flags
            .get(bit / 8)
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
    };
    set(LITECOIN_BIT) || set(LITECOIN_BIT - 1)
}

impl CustomMessageReader for ChainBinding {
    type CustomMessage = Infallible;

    fn read<R: LengthLimitedRead>(
        &self,
        _message_type: u16,
        _buffer: &mut R,
    ) -> Result<Option<Infallible>, DecodeError> {
        Ok(None)
    }
}

impl CustomMessageHandler for ChainBinding {
    fn handle_custom_message(
        &self,
        msg: Infallible,
        _sender_node_id: PublicKey,
    ) -> Result<(), LightningError> {
        match msg {}
    }

    fn get_and_clear_pending_msg(&self) -> Vec<(PublicKey, Infallible)> {
        Vec::new()
    }

    fn peer_disconnected(&self, _their_node_id: PublicKey) {}

    fn peer_connected(
        &self,
        their_node_id: PublicKey,
        msg: &Init,
        inbound: bool,
    ) -> Result<(), ()> {
        let theirs = says_litecoin(msg.features.le_flags());
        if theirs == self.litecoin {
            self.lock().remove(&their_node_id);
            return Ok(());
        }
        let why = format!(
            "peer {their_node_id} is a {} node and this node is on {}: a channel between them \
             could not be funded",
            if theirs { "Litecoin" } else { "Bitcoin" },
            self.chain
        );
        tracing::warn!(peer = %their_node_id, inbound, "refused: {why}");
        // Remembered for the peers we connect to (read by `connect` and the reconnections);
        // not for those connecting to us, which anyone can do with new keys at will.
        if !inbound {
            self.lock().insert(their_node_id, why);
        }
        Err(())
    }

    fn provided_node_features(&self) -> NodeFeatures {
        let mut f = NodeFeatures::empty();
        if self.litecoin {
            let _ = f.set_optional_custom_bit(LITECOIN_BIT);
        }
        f
    }

    fn provided_init_features(&self, _their_node_id: PublicKey) -> InitFeatures {
        self.init_features()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use swap_core::Network;

    #[test]
    fn only_a_litecoin_node_sets_the_bit_and_either_bit_of_the_pair_counts() {
        let ltc = ChainBinding::new(ChainId::new(ChainFamily::Litecoin, Network::Regtest));
        let btc = ChainBinding::new(ChainId::new(ChainFamily::Bitcoin, Network::Regtest));
        assert!(says_litecoin(ltc.init_features().le_flags()));
        assert!(!says_litecoin(btc.init_features().le_flags()));
        assert!(says_litecoin(ltc.provided_node_features().le_flags()));
        assert!(!says_litecoin(btc.provided_node_features().le_flags()));
        let mut required = InitFeatures::empty();
        required.set_required_custom_bit(LITECOIN_BIT).unwrap();
        assert!(says_litecoin(required.le_flags()));
        assert!(!says_litecoin(&[]));
        assert!(!says_litecoin(&[0xff; 52]));
    }
}
