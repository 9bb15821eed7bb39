//! Gas benchmark: deploys the HTLC on a fresh anvil and prints the gas used (from receipts) by
//! each operation, beside Boltz EtherSwap/ERC20Swap v6 on anvil 1.7.1; then the same for the
//! payment channel contract, beside Raiden's TokenNetwork and our goals.
//!
//! Run: `cargo bench -p eth-adapter --bench gas`
//!
//! Conditions (see `devnet::gas::GasReport`): the ETH claim is sent by the recipient and
//! the refund by the sender; the ERC-20 is `contracts/test/TestToken.sol` (plain mappings,
//! finite allowance that is decremented); each ERC-20 lock starts with the HTLC holding none of
//! the token, the claim pays a recipient holding none and empties the HTLC, the refund empties
//! it.
//!
//! Channels (see `devnet::gas::ChannelGas`): parties are dev accounts A and B, each
//! deposits 1 unit; the open is A's first deposit, the top-up B's first; withdraw and
//! cooperative close are sent by A, close by A, update, reveal, settle and settle final
//! (a final state ending a channel A is closing) by B. The ERC-20 is
//! `TestToken` with both parties holding a balance. Raiden's figures are for ERC-20 channels.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use devnet::anvil::Devnet;
use devnet::gas::{measure, measure_channel, BOLTZ_V6, RAIDEN};

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

    let c = measure_channel(&net).await;
    let (e, t, r) = (c.eth, c.erc20, RAIDEN);
    println!();
    println!(
        "xswap Channel gas (anvil 1.7.1, receipts' gasUsed; solc 0.8.33, see contracts/out/Channel.json)"
    );
    println!(
        "{:<40} {:>9} {:>9} {:>9}  goal",
        "operation", "ETH", "ERC-20", "Raiden"
    );
    let rows: [(&str, u64, u64, String, &str); 12] = [
        (
            "open with deposit",
            e.open,
            t.open,
            r.open_with_deposit.to_string(),
            "< Raiden; ETH <= 70,000",
        ),
        (
            "deposit (top-up)",
            e.deposit,
            t.deposit,
            r.deposit.to_string(),
            "< Raiden",
        ),
        (
            "withdraw (co-signed)",
            e.withdraw,
            t.withdraw,
            "-".into(),
            "",
        ),
        (
            "cooperative close",
            e.cooperative_close,
            t.cooperative_close,
            r.cooperative_settle.to_string(),
            "< Raiden; ETH <= 70,000",
        ),
        (
            "settle final (closing, no lock)",
            e.settle_final,
            t.settle_final,
            r.cooperative_settle.to_string(),
            "< Raiden coop. settle",
        ),
        (
            "close (1 lock)",
            e.close,
            t.close,
            r.close.to_string(),
            "< Raiden",
        ),
        (
            "update (1 lock)",
            e.update,
            t.update,
            r.update.to_string(),
            "< Raiden",
        ),
        (
            "reveal (register secret)",
            e.reveal,
            t.reveal,
            r.register_secret.to_string(),
            "< Raiden",
        ),
        (
            "settle (no lock)",
            e.settle_no_lock,
            t.settle_no_lock,
            r.settle.to_string(),
            "< Raiden",
        ),
        (
            "settle (1 lock) vs settle + unlock",
            e.settle_one_lock,
            t.settle_one_lock,
            (r.settle + r.unlock).to_string(),
            "< Raiden",
        ),
        (
            "  per lock at settle vs unlock",
            e.per_lock(),
            t.per_lock(),
            r.unlock.to_string(),
            "< Raiden",
        ),
        (
            "unilateral path, 1 lock",
            e.unilateral_one_lock(),
            t.unilateral_one_lock(),
            r.unilateral_one_lock().to_string(),
            "< Raiden; <= 250,000",
        ),
    ];
    for (name, eth, erc20, raiden, goal) in rows {
        println!("{name:<40} {eth:>9} {erc20:>9} {raiden:>9}  {goal}");
    }
    println!("(unilateral path = close + update + reveal + settle with one lock)");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}
