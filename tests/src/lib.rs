//! Shared harness for xswap integration tests (real nodes).
