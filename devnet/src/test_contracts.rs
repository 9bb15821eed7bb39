//! Contracts used only by tests, the demo and the gas benchmark (`eth-adapter/contracts/test/`),
//! bound by `sol!` from their committed artifacts.

#![allow(missing_docs, unreachable_pub, clippy::too_many_arguments)]

use alloy::sol;

sol!(
    /// Minimal ERC-20 with EIP-2612 permit; anyone may mint.
    #[sol(rpc)]
    TestToken,
    "../eth-adapter/contracts/out/test/TestToken.json"
);
sol!(
    /// USDT-style token whose transfers return nothing.
    #[sol(rpc)]
    NoBoolToken,
    "../eth-adapter/contracts/out/test/NoBoolToken.json"
);
sol!(
    /// Token that burns 1% of every transfer.
    #[sol(rpc)]
    FeeToken,
    "../eth-adapter/contracts/out/test/FeeToken.json"
);
sol!(
    /// Token whose transfers return false.
    #[sol(rpc)]
    FalseToken,
    "../eth-adapter/contracts/out/test/FalseToken.json"
);
sol!(
    /// DAI-style token: `nonces()` and `DOMAIN_SEPARATOR()`, but not EIP-2612's `permit`.
    #[sol(rpc)]
    DaiStyleToken,
    "../eth-adapter/contracts/out/test/DaiStyleToken.json"
);
sol!(
    /// Code for a channel party's address (installed with `anvil_setCode`): refuses ETH or
    /// re-enters the channel contract when paid.
    #[sol(rpc)]
    ChannelParty,
    "../eth-adapter/contracts/out/test/ChannelParty.json"
);
sol!(
    /// Re-entrancy attacker.
    #[sol(rpc)]
    Reentrant,
    "../eth-adapter/contracts/out/test/Reentrant.json"
);
