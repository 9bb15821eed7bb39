//! xswap eth-adapter (skeleton; filled by its own issue).
