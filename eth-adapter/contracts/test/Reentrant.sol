// SPDX-License-Identifier: MIT
pragma solidity 0.8.33;

interface IHTLC {
    function lock(bytes32 hashlock, address recipient, uint256 expiry) external payable;
    function claim(bytes32 preimage, uint256 amount, address sender, address recipient, uint256 expiry) external;
    function refund(bytes32 hashlock, uint256 amount, address sender, address recipient, uint256 expiry) external;
}

/// @notice Test attacker: when paid by the HTLC it calls back into it to claim or refund the same
///         swap again. It records whether the re-entrant call succeeded instead of reverting, so
///         the outer payment goes through and the test can check that nothing was paid twice.
contract Reentrant {
    IHTLC public immutable htlc;
    bytes32 public secret;
    uint256 public amount;
    address public sender;
    address public recipient;
    uint256 public expiry;
    bool public refundMode;
    uint256 public received;
    uint256 public attempts;
    uint256 public reentrySucceeded;

    constructor(IHTLC htlc_) {
        htlc = htlc_;
    }

    /// Locks `msg.value` from this contract (so refunds pay this contract).
    function lockFromHere(bytes32 hashlock, address recipient_, uint256 expiry_) external payable {
        htlc.lock{value: msg.value}(hashlock, recipient_, expiry_);
    }

    /// Arms the attack: on the next payment, call claim (with `secret` as preimage) or refund
    /// (with `secret` as hashlock) with these parameters.
    function arm(bytes32 secret_, uint256 amount_, address sender_, address recipient_, uint256 expiry_, bool refund_)
        external
    {
        secret = secret_;
        amount = amount_;
        sender = sender_;
        recipient = recipient_;
        expiry = expiry_;
        refundMode = refund_;
    }

    receive() external payable {
        received += msg.value;
        if (attempts == 0) {
            attempts = 1;
            if (refundMode) {
                try htlc.refund(secret, amount, sender, recipient, expiry) {
                    reentrySucceeded += 1;
                } catch {}
            } else {
                try htlc.claim(secret, amount, sender, recipient, expiry) {
                    reentrySucceeded += 1;
                } catch {}
            }
        }
    }
}
