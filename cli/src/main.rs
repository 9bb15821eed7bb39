//! The `xswap` command-line tool.

use clap::{Parser, Subcommand};

/// Atomic swaps between Bitcoin and Ethereum, peer to peer, no custodian.
#[derive(Parser)]
#[command(name = "xswap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a real swap between two local engines on regtest nodes (not yet available).
    Demo,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            println!(
                "xswap demo: not yet available. The protocol engine (swap-core) and the chain \
                 adapters are being built first; see README.md for what works today and \
                 `scripts/test` to run it against real nodes."
            );
            Ok(())
        }
    }
}
