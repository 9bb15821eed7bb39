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
    /// Run two engines that swap BTC for ETH and an ERC-20 for BTC over the encrypted
    /// transport, on regtest nodes started for the occasion (litecoind or bitcoind, anvil).
    Demo,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,swap_core::driver=info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .compact()
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Demo => rt.block_on(xswap_cli::demo::run()),
    }
}
