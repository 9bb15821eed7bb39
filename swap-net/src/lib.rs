//! The wire between two xswap engines: Noise XX (X25519, ChaCha20-Poly1305, SHA-256) over TCP,
//! length-prefixed frames (tokio-util's `LengthDelimitedCodec`, 2-byte lengths), one [`swap_core::Envelope`] per frame; and the shareable [`Offer`]
//! string a maker publishes.
//!
//! Both ends are authenticated by their static Noise keys: a taker knows the maker's key from
//! the offer and refuses any other peer. Every frame is size-limited before it is decrypted
//! and every message is checked by [`swap_core::Envelope::decode`]: hostile input ends one
//! connection with a typed error, never the engine.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use swap_core::{Envelope, Message, MessageError, SwapId};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{debug, warn};
use zeroize::Zeroizing;

mod offer;
pub use offer::{Offer, OfferError, OfferLeg};

/// The Noise protocol in use.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// Bound into the handshake: peers of another protocol or version fail it.
pub const PROLOGUE: &[u8] = b"xswap/1";
/// The largest frame (a Noise message) on the wire.
pub const MAX_FRAME: usize = 65_535;
const TAG: usize = 16;
/// How long a handshake or a read may take before the connection is dropped.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Transport errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The socket failed (connection refused, reset): usually worth retrying.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The Noise handshake failed (wrong protocol, tampering, bad key).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer is not the one we meant to talk to.
    #[error("unexpected peer {got} (expected {expected})")]
    UnexpectedPeer {
        /// The key we expected.
        expected: PeerKey,
        /// The key the peer proved.
        got: PeerKey,
    },
    /// A frame failed to decrypt (tampered or out of order).
    #[error("frame failed to decrypt")]
    Decrypt,
    /// A frame or message larger than allowed.
    #[error("frame of {0} bytes is too large")]
    TooLarge(usize),
    /// A decrypted frame that is not a valid message.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// The peer sent messages faster than the server's limit.
    #[error("peer sends messages too fast")]
    TooFast,
    /// The peer sent too many malformed messages.
    #[error("too many malformed messages")]
    TooManyBadMessages,
}

/// A peer's static public key (its identity).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerKey(#[serde(with = "hex::serde")] pub [u8; 32]);

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({self})")
    }
}

fn params() -> snow::params::NoiseParams {
    // A constant that always parses.
    NOISE_PARAMS
        .parse()
        .unwrap_or_else(|_| unreachable!("constant noise params"))
}

/// Our static keypair. `Debug` never shows the private key.
#[derive(Clone)]
pub struct Identity {
    private: Zeroizing<Vec<u8>>,
    public: PeerKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({}, <private key redacted>)", self.public)
    }
}

impl Identity {
    /// A fresh identity from the OS RNG.
    pub fn generate() -> Result<Self, NetError> {
        let kp = snow::Builder::new(params())
            .generate_keypair()
            .map_err(|e| NetError::Handshake(e.to_string()))?;
        Self::from_private(&kp.private)
    }

    /// The identity with this 32-byte private key (e.g. stored in the keystore).
    pub fn from_private(private: &[u8]) -> Result<Self, NetError> {
        let private: [u8; 32] = private
            .try_into()
            .map_err(|_| NetError::Handshake("private key must be 32 bytes".into()))?;
        // X25519 public key = scalar mult of the base point; snow derives it for us through a
        // one-message dummy handshake would be wasteful, so use its DH directly.
        let public = x25519_public(&private);
        Ok(Self {
            private: Zeroizing::new(private.to_vec()),
            public: PeerKey(public),
        })
    }

    /// The private key bytes, for the keystore. Never log them.
    pub fn private_bytes(&self) -> &[u8] {
        &self.private
    }

    /// Our public identity.
    pub fn public(&self) -> PeerKey {
        self.public
    }
}

fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    // The resolver's DH computes the public key from the private one.
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let resolver = DefaultResolver;
    match resolver.resolve_dh(&snow::params::DHChoice::Curve25519) {
        Some(mut dh) => {
            dh.set(private);
            let mut out = [0u8; 32];
            out.copy_from_slice(dh.pubkey());
            out
        }
        None => [0u8; 32],
    }
}

/// The socket as frames: a 2-byte big-endian length, then that many bytes (a Noise message).
type Wire = Framed<TcpStream, LengthDelimitedCodec>;

fn wire(stream: TcpStream) -> Wire {
    // Each frame is written whole and answered at once: without this, a second frame sent
    // before the first is acknowledged waits for the peer's delayed ACK (~40 ms on Linux).
    // A failure leaves Nagle's algorithm on: slower, still correct.
    let _ = stream.set_nodelay(true);
    LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(MAX_FRAME)
        .new_framed(stream)
}

async fn read_frame(wire: &mut Wire, buf: &mut Vec<u8>) -> Result<(), NetError> {
    match wire.next().await {
        None => Err(NetError::Closed),
        Some(Err(e)) => Err(e.into()),
        Some(Ok(frame)) => {
            buf.clear();
            buf.extend_from_slice(&frame);
            Ok(())
        }
    }
}

async fn write_frame(wire: &mut Wire, frame: &[u8]) -> Result<(), NetError> {
    if frame.len() > MAX_FRAME {
        return Err(NetError::TooLarge(frame.len()));
    }
    wire.send(bytes::Bytes::copy_from_slice(frame)).await?;
    Ok(())
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    tokio::time::timeout(IO_TIMEOUT, f)
        .await
        .map_err(|_| NetError::Timeout)?
}

/// An authenticated, encrypted connection carrying [`Envelope`]s.
pub struct Connection {
    wire: Wire,
    noise: snow::TransportState,
    remote: PeerKey,
    buf: Vec<u8>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection({})", self.remote)
    }
}

fn hs_err(e: snow::Error) -> NetError {
    NetError::Handshake(e.to_string())
}

fn remote_key(hs: &snow::HandshakeState) -> Result<PeerKey, NetError> {
    let rs = hs
        .get_remote_static()
        .ok_or_else(|| NetError::Handshake("no remote static key".into()))?;
    let key: [u8; 32] = rs
        .try_into()
        .map_err(|_| NetError::Handshake("bad remote key length".into()))?;
    Ok(PeerKey(key))
}

/// A Noise XX handshake in progress on one socket (both sides).
struct Handshake {
    wire: Wire,
    state: snow::HandshakeState,
    buf: Vec<u8>,
    payload: Vec<u8>,
    frame: Vec<u8>,
}

impl Handshake {
    fn new(stream: TcpStream, me: &Identity, initiator: bool) -> Result<Self, NetError> {
        let builder = snow::Builder::new(params())
            .local_private_key(&me.private)
            .and_then(|b| b.prologue(PROLOGUE));
        let state = if initiator {
            builder.and_then(|b| b.build_initiator())
        } else {
            builder.and_then(|b| b.build_responder())
        }
        .map_err(hs_err)?;
        Ok(Self {
            wire: wire(stream),
            state,
            buf: vec![0u8; MAX_FRAME],
            payload: vec![0u8; MAX_FRAME],
            frame: Vec::new(),
        })
    }

    /// Writes our next handshake message.
    async fn send(&mut self) -> Result<(), NetError> {
        let n = self
            .state
            .write_message(&[], &mut self.buf)
            .map_err(hs_err)?;
        timed(write_frame(&mut self.wire, &self.buf[..n])).await
    }

    /// Reads and checks the peer's next handshake message.
    async fn recv(&mut self) -> Result<(), NetError> {
        timed(read_frame(&mut self.wire, &mut self.frame)).await?;
        self.state
            .read_message(&self.frame, &mut self.payload)
            .map_err(hs_err)?;
        Ok(())
    }

    /// The encrypted connection, once the handshake is done.
    fn finish(self) -> Result<Connection, NetError> {
        let remote = remote_key(&self.state)?;
        let noise = self.state.into_transport_mode().map_err(hs_err)?;
        Ok(Connection {
            wire: self.wire,
            noise,
            remote,
            buf: self.buf,
        })
    }
}

impl Connection {
    /// Connects to a peer and runs the handshake; with `expected`, refuses any other peer.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        me: &Identity,
        expected: Option<PeerKey>,
    ) -> Result<Self, NetError> {
        let stream = timed(async { Ok(TcpStream::connect(addr).await?) }).await?;
        Self::initiate(stream, me, expected).await
    }

    /// Runs the initiator's side of the handshake on a connected socket (one made from a
    /// chosen local address, say); with `expected`, refuses any other peer.
    pub async fn initiate(
        stream: TcpStream,
        me: &Identity,
        expected: Option<PeerKey>,
    ) -> Result<Self, NetError> {
        let mut hs = Handshake::new(stream, me, true)?;
        // -> e
        hs.send().await?;
        // <- e, ee, s, es
        hs.recv().await?;
        let remote = remote_key(&hs.state)?;
        if let Some(expected) = expected {
            if expected != remote {
                return Err(NetError::UnexpectedPeer {
                    expected,
                    got: remote,
                });
            }
        }
        // -> s, se
        hs.send().await?;
        hs.finish()
    }

    /// Runs the responder's side of the handshake on an accepted socket.
    pub async fn accept(stream: TcpStream, me: &Identity) -> Result<Self, NetError> {
        let mut hs = Handshake::new(stream, me, false)?;
        hs.recv().await?;
        hs.send().await?;
        hs.recv().await?;
        hs.finish()
    }

    /// The peer's proven identity.
    pub fn remote(&self) -> PeerKey {
        self.remote
    }

    /// Sends raw bytes as one encrypted frame (used by tests to send garbage through a valid
    /// channel).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        if bytes.len() + TAG > MAX_FRAME {
            return Err(NetError::TooLarge(bytes.len()));
        }
        let n = self
            .noise
            .write_message(bytes, &mut self.buf)
            .map_err(|_| NetError::Decrypt)?;
        let frame = self.buf[..n].to_vec();
        timed(write_frame(&mut self.wire, &frame)).await
    }

    /// Sends a message.
    pub async fn send(&mut self, env: &Envelope) -> Result<(), NetError> {
        let bytes = env.encode()?;
        self.send_bytes(&bytes).await
    }

    /// Receives the next frame's plaintext (no message parsing).
    pub async fn recv_bytes(&mut self) -> Result<Vec<u8>, NetError> {
        let mut frame = Vec::new();
        timed(read_frame(&mut self.wire, &mut frame)).await?;
        let mut out = vec![0u8; frame.len()];
        let n = self
            .noise
            .read_message(&frame, &mut out)
            .map_err(|_| NetError::Decrypt)?;
        out.truncate(n);
        Ok(out)
    }

    /// Receives and checks the next message.
    pub async fn recv(&mut self) -> Result<Envelope, NetError> {
        let bytes = self.recv_bytes().await?;
        Ok(Envelope::decode(&bytes)?)
    }

    /// Sends a request and waits for the answer.
    pub async fn request(&mut self, env: &Envelope) -> Result<Envelope, NetError> {
        self.send(env).await?;
        self.recv().await
    }
}

/// Who sent a message: its proven key and the address it connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The peer's static key, proven in the handshake.
    pub key: PeerKey,
    /// The IP address of its connection (keys are free to make; addresses are not).
    pub ip: std::net::IpAddr,
}

/// What a server does with each valid message from an authenticated peer.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one message; returns the reply, if any.
    async fn handle(&self, peer: Peer, msg: Envelope) -> Option<Envelope>;
}

/// Bounds that keep one stranger from locking everyone else out of a server: connections
/// beyond them are closed at once, before any handshake work.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, all peers together (well below the process's file
    /// descriptor limit, so the engine's own node connections always have room).
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_per_ip: usize,
    /// A connection idle (no complete frame) this long is closed.
    pub idle_timeout: Duration,
    /// Malformed messages one connection may send before it is closed.
    pub max_bad_messages: u32,
    /// Messages one connection may send per second (averaged over a burst of as many).
    pub max_messages_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_per_ip: 16,
            idle_timeout: IO_TIMEOUT,
            max_bad_messages: 8,
            max_messages_per_sec: 50,
        }
    }
}

/// Lets a few warnings per period through and counts the rest, so a flood of bad input
/// cannot fill the log.
#[derive(Debug, Default)]
struct LogLimiter {
    state: std::sync::Mutex<(Option<std::time::Instant>, u32, u64)>,
}

impl LogLimiter {
    const PER_PERIOD: u32 = 10;
    const PERIOD: Duration = Duration::from_secs(10);

    /// Whether to log this event; when a period with suppressed events ends, how many were.
    fn allow(&self) -> (bool, u64) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        let mut suppressed = 0;
        if s.0.is_none_or(|t| now.duration_since(t) >= Self::PERIOD) {
            suppressed = s.2;
            *s = (Some(now), 0, 0);
        }
        if s.1 < Self::PER_PERIOD {
            s.1 += 1;
            (true, suppressed)
        } else {
            s.2 += 1;
            (false, suppressed)
        }
    }
}

/// Open connections, in total and per IP address.
#[derive(Debug, Default)]
struct Slots {
    by_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// A connection's place in [`Slots`], given back on drop.
struct Slot {
    slots: Arc<Slots>,
    ip: std::net::IpAddr,
}

impl Slots {
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, limits: &Limits) -> Option<Slot> {
        let mut m = self
            .by_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = m.values().sum();
        let here = m.get(&ip).copied().unwrap_or(0);
        if total >= limits.max_connections || here >= limits.max_per_ip {
            return None;
        }
        m.insert(ip, here + 1);
        Some(Slot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self
            .slots
            .by_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections with the default [`Limits`] (see [`serve_with`]).
pub async fn serve(listener: TcpListener, me: Identity, handler: Arc<dyn Handler>) {
    serve_with(listener, me, handler, Limits::default()).await
}

/// Accepts connections until the task is dropped; each connection runs in its own task, so a
/// hostile or broken peer only ever ends its own connection, and [`Limits`] bound what one
/// peer can take.
pub async fn serve_with(
    listener: TcpListener,
    me: Identity,
    handler: Arc<dyn Handler>,
    limits: Limits,
) {
    let slots = Arc::new(Slots::default());
    let log = Arc::new(LogLimiter::default());
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, most likely: wait for connections to close.
                if let (true, _) = log.allow() {
                    warn!(error = %e, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = slots.take(addr.ip(), &limits) else {
            if let (true, suppressed) = log.allow() {
                warn!(%addr, suppressed, "connection refused: too many open connections");
            }
            drop(stream);
            continue;
        };
        let me = me.clone();
        let handler = handler.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match serve_one(stream, addr.ip(), &me, handler, &limits, &log).await {
                Ok(()) | Err(NetError::Closed) => debug!(%addr, "peer disconnected"),
                Err(e) => debug!(%addr, error = %e, "connection dropped"),
            }
        });
    }
}

async fn serve_one(
    stream: TcpStream,
    ip: std::net::IpAddr,
    me: &Identity,
    handler: Arc<dyn Handler>,
    limits: &Limits,
    log: &LogLimiter,
) -> Result<(), NetError> {
    let mut conn = Connection::accept(stream, me).await?;
    let peer = Peer {
        key: conn.remote(),
        ip,
    };
    let mut bad = 0u32;
    // A token bucket: a burst of `max_messages_per_sec`, refilled at that rate.
    let rate = f64::from(limits.max_messages_per_sec.max(1));
    let (mut tokens, mut last) = (rate, std::time::Instant::now());
    loop {
        let bytes = tokio::time::timeout(limits.idle_timeout, conn.recv_bytes())
            .await
            .map_err(|_| NetError::Timeout)??;
        let now = std::time::Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(rate);
        last = now;
        if tokens < 1.0 {
            if let (true, suppressed) = log.allow() {
                warn!(peer = %peer.key, %ip, suppressed, "peer sends too fast: connection closed");
            }
            return Err(NetError::TooFast);
        }
        tokens -= 1.0;
        match Envelope::decode(&bytes) {
            Ok(env) => {
                if let Some(reply) = handler.handle(peer, env).await {
                    conn.send(&reply).await?;
                }
            }
            Err(e) => {
                // A valid channel with a bad message: say why, keep the connection (up to a
                // bound).
                bad += 1;
                if let (true, suppressed) = log.allow() {
                    warn!(peer = %peer.key, %ip, error = %e, suppressed, "malformed message");
                }
                let reply = Envelope::new(
                    SwapId([0; 16]),
                    Message::Reject {
                        reason: format!("malformed message: {e}"),
                    },
                );
                conn.send(&reply).await?;
                if bad >= limits.max_bad_messages {
                    return Err(NetError::TooManyBadMessages);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_flood_of_warnings_is_cut_to_a_few_per_period() {
        let log = LogLimiter::default();
        let allowed = (0..10_000).filter(|_| log.allow().0).count();
        assert_eq!(allowed, LogLimiter::PER_PERIOD as usize);
    }

    #[test]
    fn identity_debug_hides_the_private_key() {
        let id = Identity::generate().unwrap();
        let shown = format!("{id:?}");
        assert!(!shown.contains(&hex::encode(id.private_bytes())));
        assert!(shown.contains("redacted"));
        let again = Identity::from_private(id.private_bytes()).unwrap();
        assert_eq!(again.public(), id.public());
    }
}
