// SPDX-License-Identifier: MIT
pragma solidity 0.8.33;

/// @notice A token whose transfers "fail" by returning false without reverting, for tests.
contract FalseToken {
    mapping(address => uint256) public balanceOf;

    function mint(address to, uint256 value) external {
        balanceOf[to] += value;
    }

    function approve(address, uint256) external pure returns (bool) {
        return true;
    }

    function transfer(address, uint256) external pure returns (bool) {
        return false;
    }

    function transferFrom(address, address, uint256) external pure returns (bool) {
        return false;
    }
}
