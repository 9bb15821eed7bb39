// SPDX-License-Identifier: MIT
pragma solidity 0.8.33;

/// @notice Test-only code for a channel party's address (installed with `anvil_setCode` on a
///         dev account, so the account's key still signs channel states). It can refuse ETH,
///         or call back into a target once when paid (re-entrancy attempt), and it can make
///         calls as the party (`exec`, e.g. `withdrawCredit`). It keeps its counters in one
///         slot so that a payout's gas (`Channel.PAYOUT_GAS`) covers the re-entry attempt.
contract ChannelParty {
    struct Flags {
        bool rejecting;
        bool fired;
        uint64 attempts;
        uint64 reentrySucceeded;
        /// First 4 bytes of the re-entered call's revert data.
        bytes4 reentryError;
    }

    Flags public flags;
    uint256 public received;
    address public target;
    bytes public data;

    /// Refuse (revert on) every ETH payment from now on, or accept them again.
    function setRejecting(bool r) external {
        flags.rejecting = r;
    }

    /// On the next ETH payment, call `target_` with `data_` once (the outcome is recorded and
    /// the payment is accepted either way).
    function arm(address target_, bytes calldata data_) external {
        target = target_;
        data = data_;
        flags.fired = false;
        received = 1; // non-zero so the first payment's write is cheap
    }

    /// Calls `to` as this account, bubbling up a revert.
    function exec(address to, bytes calldata callData) external payable returns (bytes memory ret) {
        bool ok;
        (ok, ret) = to.call{value: msg.value}(callData);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    receive() external payable {
        Flags memory f = flags;
        if (f.rejecting) revert("ChannelParty: no ETH");
        received += msg.value;
        if (!f.fired && target != address(0)) {
            f.fired = true;
            f.attempts += 1;
            (bool ok, bytes memory ret) = target.call(data);
            if (ok) f.reentrySucceeded += 1;
            else if (ret.length >= 4) f.reentryError = bytes4(ret);
            flags = f;
        }
    }
}
