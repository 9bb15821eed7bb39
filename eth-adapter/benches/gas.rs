//! Gas benchmark: deploys the HTLC on a fresh anvil and prints the gas used (from receipts) by
//! each operation, beside Boltz EtherSwap/ERC20Swap v6 on anvil 1.7.1.
//!
//! Run: `cargo bench -p eth-adapter --bench gas`
//!
//! Conditions (see `devnet::gas::GasReport`): the ETH claim is sent by the recipient and
//! the refund by the sender; the ERC-20 is `contracts/test/TestToken.sol` (plain mappings,
//! finite allowance that is decremented); each ERC-20 lock starts with the HTLC holding none of
//! the token, the claim pays a recipient holding none and empties the HTLC, the refund empties
//! it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use devnet::anvil::Devnet;
use devnet::gas::{measure, BOLTZ_V6};

async fn run() {
    let net = Devnet::start().await;
    let r = measure(&net).await;
    println!();
    println!(
        "xswap HTLC gas (anvil 1.7.1, receipts' gasUsed; solc 0.8.33, see contracts/out/HTLC.json)"
    );
    println!(
        "{:<34} {:>10} {:>12} {:>9}",
        "operation", "xswap", "Boltz v6", "delta"
    );
    let rows = [
        ("ETH lock", r.eth_lock),
        ("ETH claim (by recipient)", r.eth_claim),
        ("ETH refund (by sender)", r.eth_refund),
        ("ERC-20 lock", r.erc20_lock),
        ("ERC-20 claim (by recipient)", r.erc20_claim),
        ("ERC-20 refund (by sender)", r.erc20_refund),
    ];
    for ((name, ours), boltz) in rows.iter().zip(BOLTZ_V6) {
        println!(
            "{:<34} {:>10} {:>12} {:>+9}",
            name,
            ours,
            boltz,
            *ours as i64 - boltz as i64
        );
    }
    println!("{:<34} {:>10}", "batch claim, 1 swap", r.batch_1);
    println!("{:<34} {:>10}", "batch claim, 20 swaps", r.batch_20);
    println!(
        "{:<34} {:>10} {:>12}",
        "batch claim, per additional swap",
        r.batch_per_extra(),
        "< 15,000"
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}
