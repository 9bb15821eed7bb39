//! Amounts as people write them: `0.5eth`, `0.01 btc`, `250000sat`, `12.5` (whole units of
//! the asset), or a whole number of base units (satoshis, wei, token units) as before.

use anyhow::{anyhow, bail};
use swap_core::Asset;

/// The decimals of an asset's whole unit.
pub fn decimals(asset: &Asset) -> u8 {
    match asset {
        Asset::Btc | Asset::Ltc => 8,
        Asset::Eth => 18,
        Asset::Erc20 { decimals, .. } => *decimals,
    }
}

fn ticker(asset: &Asset) -> &'static str {
    match asset {
        Asset::Btc => "btc",
        Asset::Ltc => "ltc",
        Asset::Eth => "eth",
        Asset::Erc20 { .. } => "token",
    }
}

/// `digits` (a decimal number) times 10^`decimals`, exactly; more fraction digits than
/// `decimals` is an error, never a silent rounding.
fn scaled(digits: &str, decimals: u8) -> anyhow::Result<u128> {
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        bail!("{digits:?} is not a number");
    }
    if frac.len() > usize::from(decimals) {
        bail!("{digits:?} has more than {decimals} decimals");
    }
    let padded = format!("{int}{frac:0<width$}", width = usize::from(decimals));
    let v: u128 = if padded.is_empty() {
        0
    } else {
        padded
            .parse()
            .map_err(|_| anyhow!("{digits:?} is too large"))?
    };
    Ok(v)
}

/// Parses an amount of `asset` into base units. A whole number without a unit is base units;
/// a decimal point or the asset's name (`btc`, `ltc`, `eth`, `token`) means whole units;
/// `sat`/`sats`, `gwei` and `wei` name smaller units of their chains.
pub fn parse_amount(text: &str, asset: &Asset) -> anyhow::Result<u128> {
    let s = text.trim().to_ascii_lowercase().replace('_', "");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (s[..split].trim(), s[split..].trim());
    let d = decimals(asset);
    let bitcoin = matches!(asset, Asset::Btc | Asset::Ltc);
    let v = match unit {
        "" if number.contains('.') => scaled(number, d)?,
        "" => scaled(number, 0)?,
        u if u == ticker(asset) => scaled(number, d)?,
        "sat" | "sats" if bitcoin => scaled(number, 0)?,
        "gwei" if *asset == Asset::Eth => scaled(number, 9)?,
        "wei" if *asset == Asset::Eth => scaled(number, 0)?,
        u => bail!(
            "{text:?}: unit {u:?} does not fit {} (write e.g. 0.5{} or a whole number of base units)",
            ticker(asset).to_uppercase(),
            ticker(asset)
        ),
    };
    if v == 0 {
        bail!("{text:?} is zero");
    }
    Ok(v)
}

/// Base units of `asset` as whole units with its name: `0.015 LTC`, `2.5 ETH`.
pub fn format_amount(units: u128, asset: &Asset) -> String {
    let d = usize::from(decimals(asset));
    let digits = format!("{units:0>width$}", width = d + 1);
    let (int, frac) = digits.split_at(digits.len() - d);
    let frac = frac.trim_end_matches('0');
    let name = match asset {
        Asset::Erc20 { token, .. } => format!("of token {token}"),
        other => ticker(other).to_uppercase(),
    };
    if frac.is_empty() {
        format!("{int} {name}")
    } else {
        format!("{int}.{frac} {name}")
    }
}

/// A price in whole units of `sell` per whole unit of `buy` (`25`, `0.04`) as the offer's
/// rate in base units, reduced.
pub fn rate_from_price(price: &str, sell: &Asset, buy: &Asset) -> anyhow::Result<(u128, u128)> {
    let p = price.trim();
    let scale = p.split_once('.').map_or(0, |(_, f)| f.len());
    let scale = u8::try_from(scale).map_err(|_| anyhow!("--price has too many decimals"))?;
    let mantissa = scaled(p, scale)?;
    if mantissa == 0 {
        bail!("--price must be above zero");
    }
    let pow = |e: u32| {
        10u128
            .checked_pow(e)
            .ok_or_else(|| anyhow!("--price out of range"))
    };
    let num = mantissa
        .checked_mul(pow(u32::from(decimals(sell)))?)
        .ok_or_else(|| anyhow!("--price out of range"))?;
    let den = pow(u32::from(scale))?
        .checked_mul(pow(u32::from(decimals(buy)))?)
        .ok_or_else(|| anyhow!("--price out of range"))?;
    let g = gcd(num, den);
    Ok((num / g, den / g))
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn amounts_in_whole_and_base_units() {
        assert_eq!(
            parse_amount("0.5eth", &Asset::Eth).unwrap(),
            5 * 10u128.pow(17)
        );
        assert_eq!(parse_amount("0.01 LTC", &Asset::Ltc).unwrap(), 1_000_000);
        assert_eq!(parse_amount("250000sat", &Asset::Btc).unwrap(), 250_000);
        assert_eq!(parse_amount("1000000", &Asset::Btc).unwrap(), 1_000_000);
        assert_eq!(parse_amount("1.5", &Asset::Btc).unwrap(), 150_000_000);
        assert_eq!(parse_amount("2gwei", &Asset::Eth).unwrap(), 2_000_000_000);
        let usd = Asset::Erc20 {
            token: swap_core::EvmAddress([1; 20]),
            decimals: 6,
        };
        assert_eq!(parse_amount("12.5", &usd).unwrap(), 12_500_000);
        assert!(parse_amount("0.5eth", &Asset::Btc).is_err());
        assert!(parse_amount("0.000000001btc", &Asset::Btc).is_err());
        assert!(parse_amount("0", &Asset::Btc).is_err());
        assert!(parse_amount("abc", &Asset::Btc).is_err());
        assert!(parse_amount("1e9", &Asset::Btc).is_err());
    }

    #[test]
    fn formatting_and_prices() {
        assert_eq!(format_amount(1_500_000, &Asset::Ltc), "0.015 LTC");
        assert_eq!(format_amount(2 * 10u128.pow(18), &Asset::Eth), "2 ETH");
        assert_eq!(format_amount(1, &Asset::Btc), "0.00000001 BTC");
        // 25 ETH per BTC: 25e18 wei per 1e8 sat = 250,000,000,000 wei per sat.
        assert_eq!(
            rate_from_price("25", &Asset::Eth, &Asset::Btc).unwrap(),
            (250_000_000_000, 1)
        );
        // 0.04 BTC per ETH: 4e6 sat per 1e18 wei.
        assert_eq!(
            rate_from_price("0.04", &Asset::Btc, &Asset::Eth).unwrap(),
            (1, 250_000_000_000)
        );
        assert!(rate_from_price("0", &Asset::Btc, &Asset::Eth).is_err());
    }
}
