// SPDX-License-Identifier: MIT
pragma solidity 0.8.33;

/// @title xswap HTLC: hash time-locked swaps of ETH and ERC-20 tokens.
/// @notice One contract holds every swap. A swap is a single storage slot whose key is the swap id
///         `keccak256(abi.encode(hashlock, amount, token, sender, recipient, expiry))`; the slot
///         holds 1 while the swap is locked and 0 otherwise (never locked, claimed or refunded).
///         The contract declares no state variables, so swap ids are the only slots it writes.
/// @dev    - `token == address(0)` means ETH (`lock`, `claim`, `refund`); ERC-20 swaps use
///           `lockToken`, `claimToken`, `refundToken`. Batches take the token per swap.
///         - Whether a swap is locked: `eth_getStorageAt(htlc, id)` is 1.
///         - `hashlock == sha256(preimage)` (precompile 0x02); the preimage is exactly 32 bytes.
///         - Claim only while `block.timestamp < expiry`, refund only when `block.timestamp >= expiry`.
///         - Anyone may send a claim or a refund; a claim always pays `recipient`, a refund always
///           pays `sender`.
///         - State is cleared before any transfer (checks-effects-interactions).
///         - ERC-20s that return no bool (USDT) are supported; tokens that deliver less than
///           `amount` on `transferFrom` (fee-on-transfer) are rejected by a balance check.
///         - A claimed or refunded swap's slot is cleared, so identical parameters could be locked
///           again later: clients must never re-lock parameters whose preimage may be public.
contract HTLC {
    /// @notice The amount is zero.
    error ZeroAmount();
    /// @notice The recipient is the zero address.
    error ZeroRecipient();
    /// @notice `lockToken` was called with `token == address(0)`; use `lock` for ETH.
    error ZeroToken();
    /// @notice A swap with exactly these parameters is already locked.
    error AlreadyLocked();
    /// @notice No swap with these parameters is locked (never locked, wrong preimage, already
    ///         claimed or already refunded).
    error NotLocked();
    /// @notice The swap has expired: it can no longer be claimed.
    error Expired();
    /// @notice The swap has not expired yet: it cannot be refunded.
    error NotExpired();
    /// @notice An ETH or token transfer failed.
    error TransferFailed();
    /// @notice The token balance did not grow by exactly `amount` (fee-on-transfer or broken token).
    error BalanceMismatch();
    /// @notice Batch argument arrays differ in length.
    error LengthMismatch();

    /// @notice A swap was locked.
    event Locked(
        bytes32 indexed id,
        bytes32 indexed hashlock,
        address sender,
        address recipient,
        address token,
        uint256 amount,
        uint256 expiry
    );
    /// @notice A swap was claimed; `preimage` is the secret.
    event Claimed(bytes32 indexed id, bytes32 preimage);
    /// @notice A swap was refunded to its sender.
    event Refunded(bytes32 indexed id);

    /// @notice The parameters of one swap in a batch (the hashlock or preimage is passed apart).
    struct Swap {
        uint256 amount;
        address token;
        address sender;
        address recipient;
        uint256 expiry;
    }

    // ---------------------------------------------------------------- lock

    /// @notice Locks `msg.value` wei for `recipient`, claimable with the preimage of `hashlock`
    ///         before `expiry`, refundable to `msg.sender` from `expiry` on.
    function lock(bytes32 hashlock, address recipient, uint256 expiry) external payable {
        _lock(hashlock, msg.value, address(0), recipient, expiry);
    }

    /// @notice Locks `amount` of `token` (pulled from `msg.sender` with `transferFrom`; approve first).
    function lockToken(bytes32 hashlock, address token, uint256 amount, address recipient, uint256 expiry)
        external
    {
        if (token == address(0)) revert ZeroToken();
        _lock(hashlock, amount, token, recipient, expiry);
        _pull(token, amount);
    }

    /// @notice Like `lockToken`, approving through the token's EIP-2612 `permit` first. If the
    ///         permit fails (for example because someone already submitted it), the lock goes on
    ///         as long as the allowance suffices.
    function lockTokenWithPermit(
        bytes32 hashlock,
        address token,
        uint256 amount,
        address recipient,
        uint256 expiry,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        if (token == address(0)) revert ZeroToken();
        assembly ("memory-safe") {
            let p := mload(0x40)
            // permit(address,address,uint256,uint256,uint8,bytes32,bytes32)
            mstore(p, 0xd505accf00000000000000000000000000000000000000000000000000000000)
            mstore(add(p, 0x04), caller())
            mstore(add(p, 0x24), address())
            mstore(add(p, 0x44), amount)
            mstore(add(p, 0x64), deadline)
            mstore(add(p, 0x84), v)
            mstore(add(p, 0xa4), r)
            mstore(add(p, 0xc4), s)
            pop(call(gas(), token, 0, p, 0xe4, 0, 0))
        }
        _lock(hashlock, amount, token, recipient, expiry);
        _pull(token, amount);
    }

    // ---------------------------------------------------------------- claim

    /// @notice Claims an ETH swap with its preimage, paying `recipient`. Anyone may send it.
    function claim(bytes32 preimage, uint256 amount, address sender, address recipient, uint256 expiry) external {
        _settleClaim(preimage, amount, address(0), sender, recipient, expiry);
        _send(address(0), recipient, amount);
    }

    /// @notice Claims an ERC-20 swap with its preimage, paying `recipient`. Anyone may send it.
    function claimToken(
        bytes32 preimage,
        address token,
        uint256 amount,
        address sender,
        address recipient,
        uint256 expiry
    ) external {
        if (token == address(0)) revert ZeroToken();
        _settleClaim(preimage, amount, token, sender, recipient, expiry);
        _send(token, recipient, amount);
    }

    /// @notice Claims several swaps at once (all or nothing). Consecutive swaps with the same
    ///         token and recipient are paid with a single transfer.
    function claimBatch(bytes32[] calldata preimages, Swap[] calldata swaps) external {
        uint256 n = swaps.length;
        if (preimages.length != n) revert LengthMismatch();
        address curToken;
        address curTo;
        uint256 sum;
        for (uint256 i; i < n; ++i) {
            Swap calldata sw = swaps[i];
            address token = sw.token;
            address to = sw.recipient;
            uint256 amount = sw.amount;
            _settleClaim(preimages[i], amount, token, sw.sender, to, sw.expiry);
            if (sum != 0 && (token != curToken || to != curTo)) {
                _send(curToken, curTo, sum);
                sum = 0;
            }
            curToken = token;
            curTo = to;
            sum += amount;
        }
        if (sum != 0) _send(curToken, curTo, sum);
    }

    // ---------------------------------------------------------------- refund

    /// @notice Refunds an expired ETH swap to its `sender`. Anyone may send it.
    function refund(bytes32 hashlock, uint256 amount, address sender, address recipient, uint256 expiry) external {
        _settleRefund(hashlock, amount, address(0), sender, recipient, expiry);
        _send(address(0), sender, amount);
    }

    /// @notice Refunds an expired ERC-20 swap to its `sender`. Anyone may send it.
    function refundToken(
        bytes32 hashlock,
        address token,
        uint256 amount,
        address sender,
        address recipient,
        uint256 expiry
    ) external {
        if (token == address(0)) revert ZeroToken();
        _settleRefund(hashlock, amount, token, sender, recipient, expiry);
        _send(token, sender, amount);
    }

    /// @notice Refunds several expired swaps at once (all or nothing). Consecutive swaps with the
    ///         same token and sender are paid with a single transfer.
    function refundBatch(bytes32[] calldata hashlocks, Swap[] calldata swaps) external {
        uint256 n = swaps.length;
        if (hashlocks.length != n) revert LengthMismatch();
        address curToken;
        address curTo;
        uint256 sum;
        for (uint256 i; i < n; ++i) {
            Swap calldata sw = swaps[i];
            address token = sw.token;
            address to = sw.sender;
            uint256 amount = sw.amount;
            _settleRefund(hashlocks[i], amount, token, to, sw.recipient, sw.expiry);
            if (sum != 0 && (token != curToken || to != curTo)) {
                _send(curToken, curTo, sum);
                sum = 0;
            }
            curToken = token;
            curTo = to;
            sum += amount;
        }
        if (sum != 0) _send(curToken, curTo, sum);
    }

    // ---------------------------------------------------------------- internals

    function _id(
        bytes32 hashlock,
        uint256 amount,
        address token,
        address sender,
        address recipient,
        uint256 expiry
    ) private pure returns (bytes32 id) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, hashlock)
            mstore(add(p, 0x20), amount)
            mstore(add(p, 0x40), token)
            mstore(add(p, 0x60), sender)
            mstore(add(p, 0x80), recipient)
            mstore(add(p, 0xa0), expiry)
            id := keccak256(p, 0xc0)
        }
    }

    function _lock(bytes32 hashlock, uint256 amount, address token, address recipient, uint256 expiry)
        private
        returns (bytes32 id)
    {
        if (amount == 0) revert ZeroAmount();
        if (recipient == address(0)) revert ZeroRecipient();
        id = _id(hashlock, amount, token, msg.sender, recipient, expiry);
        bool locked;
        assembly ("memory-safe") {
            locked := sload(id)
        }
        if (locked) revert AlreadyLocked();
        assembly ("memory-safe") {
            sstore(id, 1)
        }
        emit Locked(id, hashlock, msg.sender, recipient, token, amount, expiry);
    }

    /// Marks a locked swap as spent; reverts unless it is locked.
    function _spend(bytes32 id) private {
        bool locked;
        assembly ("memory-safe") {
            locked := sload(id)
        }
        if (!locked) revert NotLocked();
        assembly ("memory-safe") {
            sstore(id, 0)
        }
    }

    function _settleClaim(
        bytes32 preimage,
        uint256 amount,
        address token,
        address sender,
        address recipient,
        uint256 expiry
    ) private {
        if (block.timestamp >= expiry) revert Expired();
        bytes32 hashlock;
        bool ok;
        assembly ("memory-safe") {
            mstore(0, preimage)
            ok := staticcall(gas(), 0x02, 0, 0x20, 0, 0x20)
            hashlock := mload(0)
        }
        if (!ok) revert TransferFailed();
        bytes32 id = _id(hashlock, amount, token, sender, recipient, expiry);
        _spend(id);
        emit Claimed(id, preimage);
    }

    function _settleRefund(
        bytes32 hashlock,
        uint256 amount,
        address token,
        address sender,
        address recipient,
        uint256 expiry
    ) private {
        if (block.timestamp < expiry) revert NotExpired();
        bytes32 id = _id(hashlock, amount, token, sender, recipient, expiry);
        _spend(id);
        emit Refunded(id);
    }

    /// Pays `amount` of `token` (ETH when zero) to `to`, forwarding all gas.
    function _send(address token, address to, uint256 amount) private {
        bool ok;
        assembly ("memory-safe") {
            switch token
            case 0 { ok := call(gas(), to, amount, 0, 0, 0, 0) }
            default {
                let p := mload(0x40)
                // transfer(address,uint256)
                mstore(p, 0xa9059cbb00000000000000000000000000000000000000000000000000000000)
                mstore(add(p, 0x04), to)
                mstore(add(p, 0x24), amount)
                ok := call(gas(), token, 0, p, 0x44, 0, 0x20)
                // Success: no return data from a contract (USDT style), or a returned `true`.
                ok := and(
                    ok,
                    or(
                        and(iszero(returndatasize()), gt(extcodesize(token), 0)),
                        and(gt(returndatasize(), 31), eq(mload(0), 1))
                    )
                )
            }
        }
        if (!ok) revert TransferFailed();
    }

    /// Pulls exactly `amount` of `token` from `msg.sender`, checking the balance delta.
    function _pull(address token, uint256 amount) private {
        uint256 before = _balance(token);
        bool ok;
        assembly ("memory-safe") {
            let p := mload(0x40)
            // transferFrom(address,address,uint256)
            mstore(p, 0x23b872dd00000000000000000000000000000000000000000000000000000000)
            mstore(add(p, 0x04), caller())
            mstore(add(p, 0x24), address())
            mstore(add(p, 0x44), amount)
            ok := call(gas(), token, 0, p, 0x64, 0, 0x20)
            ok := and(ok, or(iszero(returndatasize()), and(gt(returndatasize(), 31), eq(mload(0), 1))))
        }
        if (!ok) revert TransferFailed();
        uint256 afterBal = _balance(token);
        if (afterBal < before || afterBal - before != amount) revert BalanceMismatch();
    }

    /// This contract's balance of `token`; reverts if `token` does not answer like an ERC-20.
    function _balance(address token) private view returns (uint256 bal) {
        bool ok;
        assembly ("memory-safe") {
            // balanceOf(address)
            mstore(0, 0x70a0823100000000000000000000000000000000000000000000000000000000)
            mstore(0x04, address())
            ok := staticcall(gas(), token, 0, 0x24, 0, 0x20)
            ok := and(ok, gt(returndatasize(), 31))
            bal := mload(0)
        }
        if (!ok) revert TransferFailed();
    }
}
