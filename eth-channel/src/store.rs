//! Where a party keeps its channels: what it signed before anything is sent.

use alloy::primitives::B256;

use eth_adapter::channel::{ChannelRef, Lock, Side, Sig, State};

use crate::msg::{Proposal, UpdateKind};

/// A state and its locks with both signatures (none for the implicit version 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoSigned {
    /// The state.
    pub state: State,
    /// Its pending locks.
    pub locks: Vec<Lock>,
    /// A's signature.
    pub sig_a: Option<Sig>,
    /// B's signature.
    pub sig_b: Option<Sig>,
}

impl CoSigned {
    /// Both signatures (A's, B's), if the state is signed.
    pub fn sigs(&self) -> Option<(Sig, Sig)> {
        Some((self.sig_a.clone()?, self.sig_b.clone()?))
    }
}

/// A channel as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The channel.
    pub chan: ChannelRef,
    /// Our side.
    pub me: Side,
    /// The latest co-signed state (or the implicit version 0).
    pub latest: CoSigned,
    /// Our proposal above it, signed by us and not yet countersigned.
    pub pending: Option<Proposal>,
    /// The highest version above `latest` at which we abandoned our own proposal (crossing
    /// proposals): no state of that version is ever co-signed by us, the next one is above.
    pub abandoned: Option<u64>,
}

/// A store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("store backend: {0}")]
    Backend(String),
    /// No such channel.
    #[error("unknown channel {0}")]
    UnknownChannel(B256),
    /// The channel is already recorded.
    #[error("channel {0} already exists")]
    Exists(B256),
    /// A second, different state (or proposal) at a version where one is recorded: we sign
    /// one state per version. The same one again is no error (a no-op).
    #[error("channel {channel}: a different state is already recorded at version {version}")]
    Duplicate {
        /// The channel.
        channel: B256,
        /// The version.
        version: u64,
    },
    /// A version not above the latest co-signed one, or an abandoned one.
    #[error("channel {channel}: {detail}")]
    Conflict {
        /// The channel.
        channel: B256,
        /// What.
        detail: String,
    },
    /// The store's secrets are sealed and it was opened without a key (or, opened without
    /// one, it was about to write a secret into a store another process sealed meanwhile):
    /// nothing was read or written. Open it with the installation's key.
    #[error(
        "the channel store's secrets are encrypted: it must be opened with the installation's \
         key (from its keystore)"
    )]
    KeyRequired,
    /// The key given does not open the store's secrets (sealed with another installation's
    /// seed): nothing was read or written.
    #[error(
        "the key given does not open the channel store's secrets (they were encrypted with \
         another installation's seed)"
    )]
    WrongKey,
    /// Stored data that does not decode.
    #[error("corrupt record of channel {channel}: {detail}")]
    Corrupt {
        /// The channel.
        channel: B256,
        /// What.
        detail: String,
    },
}

/// Durable channel records. Every write is durable when it returns.
pub trait ChannelStore: Send + Sync {
    /// Records a new channel with its implicit version-0 state.
    fn create_channel(
        &self,
        chan: &ChannelRef,
        me: Side,
        initial: &State,
    ) -> Result<(), StoreError>;

    /// Records our signed proposal. Refuses a version at or below the latest co-signed one
    /// ([`StoreError::Conflict`]), and a different proposal at a version we already proposed
    /// ([`StoreError::Duplicate`]; the same one again is a no-op).
    fn save_proposal(&self, channel: B256, p: &Proposal) -> Result<(), StoreError>;

    /// Records a co-signed state (appended to the history). Refuses a different state at a
    /// version already co-signed or proposed by us ([`StoreError::Duplicate`]; the same state
    /// again is a no-op), and any other version at or below the latest co-signed one, or
    /// abandoned ([`StoreError::Conflict`]).
    fn save_cosigned(&self, channel: B256, s: &CoSigned) -> Result<(), StoreError>;

    /// [`ChannelStore::save_cosigned`], keeping the change that made the state (`kind`, as
    /// stated by its proposer and checked by both): a peer's claim carries the preimage, which
    /// the lock's sender needs for its own claim elsewhere and must not lose in a crash.
    fn save_cosigned_kind(
        &self,
        channel: B256,
        s: &CoSigned,
        kind: &UpdateKind,
    ) -> Result<(), StoreError>;

    /// Every co-signed state of the channel, oldest first, with the change that made it when
    /// it was recorded (by [`ChannelStore::save_cosigned_kind`], or as our own proposal of
    /// that version).
    fn updates(&self, channel: B256) -> Result<Vec<(CoSigned, Option<UpdateKind>)>, StoreError> {
        self.updates_from(channel, 0)
    }

    /// [`ChannelStore::updates`] from version `from` on (the states a reader has not seen).
    fn updates_from(
        &self,
        channel: B256,
        from: u64,
    ) -> Result<Vec<(CoSigned, Option<UpdateKind>)>, StoreError>;

    /// Records that our proposal of `version` (above the latest co-signed state) is
    /// abandoned: it stops being pending, and we never sign another state of that version.
    /// Refuses a version without a proposal of ours, or at or below the latest co-signed one;
    /// abandoning again is a no-op.
    fn abandon_proposal(&self, channel: B256, version: u64) -> Result<(), StoreError>;

    /// [`ChannelStore::abandon_proposal`] of `version` and [`ChannelStore::save_proposal`] of
    /// `p` (the same change above it) as one write: both or neither. A final proposal is
    /// abandoned only so (the peer holds our signature on it: with it abandoned and nothing
    /// pending after a crash, we could countersign a change the peer then closes without).
    fn abandon_and_propose(
        &self,
        channel: B256,
        version: u64,
        p: &Proposal,
    ) -> Result<(), StoreError>;

    /// Our abandoned proposals above the latest co-signed version, oldest first, with their
    /// changes. Each is signed by us, so the peer may still countersign it until a state of a
    /// higher version is co-signed: a lock in one may still come into force.
    fn abandoned_proposals(&self, channel: B256) -> Result<Vec<(u64, UpdateKind)>, StoreError>;

    /// The channel's latest co-signed state and pending proposal.
    fn load(&self, channel: B256) -> Result<Option<Saved>, StoreError>;

    /// Every co-signed state of the channel, oldest first.
    fn history(&self, channel: B256) -> Result<Vec<CoSigned>, StoreError>;

    /// Records that the channel's events start at or after `block` (where its watcher
    /// starts; the lowest recorded is kept). A store keeping no such record ignores it.
    fn record_open_block(&self, channel: B256, block: u64) -> Result<(), StoreError> {
        let _ = (channel, block);
        Ok(())
    }

    /// Records (or replaces) who the channel's peer is on the encrypted transport: its
    /// static key and, if we dial it, its address. A store keeping no peers refuses.
    fn record_peer(
        &self,
        channel: B256,
        key: [u8; 32],
        addr: Option<&str>,
    ) -> Result<(), StoreError> {
        let _ = (key, addr);
        Err(StoreError::Backend(format!(
            "this store keeps no peers (channel {channel})"
        )))
    }
}
