//! Lost peers reconnected, at every poll of the follower task: a peer this node refused for
//! its chain ([`crate::handshake`]) is not tried again; one that cannot be reached (down, or
//! hanging up on us) is tried less and less often, at most every 20 polls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::PublicKey;

use crate::handshake::ChainBinding;
use crate::node::connect_outbound;
use crate::types::PeerManager;

/// The reconnections' state: per peer not reached, the attempts since its last success and
/// the next one's time.
pub(crate) struct Reconnect {
    interval: Duration,
    backoff: HashMap<PublicKey, (u32, Instant)>,
}

impl Reconnect {
    /// Reconnections for a follower polling every `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            backoff: HashMap::new(),
        }
    }

    /// One pass over the peers `wanted`: each one not connected is connected to, when due.
    pub(crate) async fn pass(
        &mut self,
        wanted: Vec<(PublicKey, SocketAddr)>,
        peer_manager: &Arc<PeerManager>,
        binding: &ChainBinding,
    ) {
        for (node_id, addr) in wanted {
            if peer_manager.peer_by_node_id(&node_id).is_some() {
                self.backoff.remove(&node_id);
                continue;
            }
            if binding.refused(&node_id).is_some() {
                continue;
            }
            let now = Instant::now();
            let tries = match self.backoff.get(&node_id) {
                Some((_, next)) if now < *next => continue,
                Some((tries, _)) => *tries,
                None => 0,
            };
            let wait = (self.interval * 2u32.pow(tries.min(5))).min(self.interval * 20);
            self.backoff.insert(node_id, (tries + 1, now + wait));
            if let Some(conn) = connect_outbound(Arc::clone(peer_manager), node_id, addr).await {
                tokio::spawn(conn);
            }
        }
    }
}
