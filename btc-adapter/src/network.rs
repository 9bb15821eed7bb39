//! Per-network constants: bech32 prefixes and BIP-32 coin types for Bitcoin and Litecoin.
//!
//! rust-bitcoin's `Network` knows only Bitcoin's networks, so segwit addresses are encoded here
//! with the `bech32` crate from the witness program, for any of the supported chains.

use bitcoin::bech32::{self, primitives::hrp::Hrp, Fe32};
use bitcoin::{Script, ScriptBuf, WitnessProgram, WitnessVersion};
use swap_core::{ChainFamily, ChainId, Network};

/// Errors about networks and addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The chain is not a Bitcoin-family chain this adapter serves.
    #[error("unsupported chain {0}")]
    Unsupported(ChainId),
    /// The script is not a segwit output script.
    #[error("not a segwit output script")]
    NotSegwit,
    /// The address does not parse, or belongs to another network.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
}

/// The bech32 human-readable part of segwit addresses on `chain`.
pub fn bech32_hrp(chain: ChainId) -> Result<&'static str, NetworkError> {
    match (chain.family, chain.network) {
        (ChainFamily::Bitcoin, Network::Mainnet) => Ok("bc"),
        (ChainFamily::Bitcoin, Network::Testnet | Network::Signet) => Ok("tb"),
        (ChainFamily::Bitcoin, Network::Regtest) => Ok("bcrt"),
        (ChainFamily::Litecoin, Network::Mainnet) => Ok("ltc"),
        (ChainFamily::Litecoin, Network::Testnet) => Ok("tltc"),
        (ChainFamily::Litecoin, Network::Regtest) => Ok("rltc"),
        _ => Err(NetworkError::Unsupported(chain)),
    }
}

/// The BIP-44 coin type used in this adapter's key paths (0 Bitcoin, 2 Litecoin, 1 test networks).
pub fn coin_type(chain: ChainId) -> Result<u32, NetworkError> {
    bech32_hrp(chain)?;
    Ok(match (chain.family, chain.network) {
        (ChainFamily::Bitcoin, Network::Mainnet) => 0,
        (ChainFamily::Litecoin, Network::Mainnet) => 2,
        _ => 1,
    })
}

fn hrp(chain: ChainId) -> Result<Hrp, NetworkError> {
    Hrp::parse(bech32_hrp(chain)?).map_err(|e| NetworkError::InvalidAddress(e.to_string()))
}

/// Encodes a segwit output script (`OP_n <program>`) as an address of `chain`.
pub fn segwit_address(chain: ChainId, script_pubkey: &Script) -> Result<String, NetworkError> {
    let version = script_pubkey
        .witness_version()
        .ok_or(NetworkError::NotSegwit)?;
    let bytes = script_pubkey.as_bytes();
    // OP_n, push opcode, program
    let program = bytes.get(2..).ok_or(NetworkError::NotSegwit)?;
    if bytes.len() < 4 || bytes[1] as usize != program.len() {
        return Err(NetworkError::NotSegwit);
    }
    let fe = Fe32::try_from(version.to_num()).map_err(|_| NetworkError::NotSegwit)?;
    bech32::segwit::encode(hrp(chain)?, fe, program)
        .map_err(|e| NetworkError::InvalidAddress(e.to_string()))
}

/// Decodes a segwit address of `chain` into its output script. Addresses of another network
/// (another prefix) are refused.
pub fn address_script(chain: ChainId, address: &str) -> Result<ScriptBuf, NetworkError> {
    let (got_hrp, version, program) =
        bech32::segwit::decode(address).map_err(|e| NetworkError::InvalidAddress(e.to_string()))?;
    if got_hrp != hrp(chain)? {
        return Err(NetworkError::InvalidAddress(format!(
            "{address} is not an address of {chain}"
        )));
    }
    let version = WitnessVersion::try_from(version)
        .map_err(|e| NetworkError::InvalidAddress(e.to_string()))?;
    let program = WitnessProgram::new(version, &program)
        .map_err(|e| NetworkError::InvalidAddress(e.to_string()))?;
    Ok(ScriptBuf::new_witness_program(&program))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn id(f: ChainFamily, n: Network) -> ChainId {
        ChainId::new(f, n)
    }

    #[test]
    fn bitcoin_addresses_match_rust_bitcoin() {
        let wsh = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([7; 32]));
        for (net, bnet) in [
            (Network::Mainnet, bitcoin::Network::Bitcoin),
            (Network::Testnet, bitcoin::Network::Testnet),
            (Network::Signet, bitcoin::Network::Signet),
            (Network::Regtest, bitcoin::Network::Regtest),
        ] {
            let ours = segwit_address(id(ChainFamily::Bitcoin, net), &wsh).unwrap();
            let theirs = bitcoin::Address::from_script(&wsh, bnet)
                .unwrap()
                .to_string();
            assert_eq!(ours, theirs);
            assert_eq!(
                address_script(id(ChainFamily::Bitcoin, net), &ours).unwrap(),
                wsh
            );
        }
    }

    #[test]
    fn litecoin_prefixes() {
        let wpkh = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([1; 20]));
        for (net, prefix) in [
            (Network::Mainnet, "ltc1q"),
            (Network::Testnet, "tltc1q"),
            (Network::Regtest, "rltc1q"),
        ] {
            let chain = id(ChainFamily::Litecoin, net);
            let a = segwit_address(chain, &wpkh).unwrap();
            assert!(a.starts_with(prefix), "{a}");
            assert_eq!(address_script(chain, &a).unwrap(), wpkh);
        }
        // Wrong network is refused.
        let a = segwit_address(id(ChainFamily::Litecoin, Network::Regtest), &wpkh).unwrap();
        assert!(address_script(id(ChainFamily::Bitcoin, Network::Regtest), &a).is_err());
        assert!(bech32_hrp(id(ChainFamily::Litecoin, Network::Signet)).is_err());
        assert!(bech32_hrp(id(ChainFamily::Ethereum, Network::Mainnet)).is_err());
        // Not segwit.
        assert!(segwit_address(chain_btc(), &ScriptBuf::new()).is_err());
    }

    fn chain_btc() -> ChainId {
        id(ChainFamily::Bitcoin, Network::Mainnet)
    }
}
