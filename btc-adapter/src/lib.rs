//! xswap btc-adapter (skeleton; filled by its own issue).
