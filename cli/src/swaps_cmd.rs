//! `xswap list|show|refund`: the swaps in this installation's store, one swap in full, and
//! the refund of our own lock asked for by hand (the binary's own module, declared in
//! `main.rs`).

use std::path::Path;

use anyhow::{anyhow, bail};
use swap_core::*;
use xswap_cli::config;
use xswap_cli::status;

use crate::driver_config;

/// The installation's store, opened with its key (the store's secrets are sealed with it, so
/// even reading asks for the keystore's password).
async fn open_store(
    data_dir: &Path,
) -> anyhow::Result<std::sync::Arc<xswap_cli::guard::GuardedStore>> {
    let ks = config::open_keystore(data_dir)?;
    xswap_cli::guard::open(data_dir, ks.store_key()?, false).await
}

/// A swap id, or a unique prefix of one (as progress lines print them).
async fn find_id(store: &dyn SwapStore, s: &str) -> anyhow::Result<SwapId> {
    if let Ok(id) = SwapId::from_hex(s) {
        return Ok(id);
    }
    let prefix = s.trim().to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{s:?} is not a swap id (give the whole id or at least its first 4 hex digits)");
    }
    let found: Vec<SwapId> = store
        .list()
        .await?
        .into_iter()
        .filter(|id| id.to_string().starts_with(&prefix))
        .collect();
    match found.as_slice() {
        [id] => Ok(*id),
        [] => bail!("no swap id starts with {prefix:?} (see `xswap list`)"),
        _ => bail!(
            "{} swaps start with {prefix:?}: give more of the id",
            found.len()
        ),
    }
}

/// `xswap list`: every swap in the store, one line each (or JSON).
pub(crate) async fn list(dir: &Path, json: bool) -> anyhow::Result<()> {
    let store = open_store(dir).await?;
    let mut rows = Vec::new();
    for id in store.list().await? {
        rows.push(match store.load(&id).await {
            Ok((record, state)) => status::summary(&record, &state),
            Err(e) => serde_json::json!({ "id": id.to_string(), "error": e.to_string() }),
        });
    }
    if json {
        xswap_cli::say!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in rows {
            let rails =
                if r["gives_rail"]["rail"] == "onchain" && r["gets_rail"]["rail"] == "onchain" {
                    String::new()
                } else {
                    format!(
                        "  [{} -> {}]",
                        status::rail_text(&r["gives_rail"]),
                        status::rail_text(&r["gets_rail"])
                    )
                };
            xswap_cli::say!(
                "{}  {:<9} {:<20} {} -> {}{rails}",
                r["id"].as_str().unwrap_or("?"),
                r["role"].as_str().unwrap_or("?"),
                r["state"]
                    .as_str()
                    .unwrap_or(r["error"].as_str().unwrap_or("?")),
                r["gives"].as_str().unwrap_or(""),
                r["gets"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// `xswap show`: one swap (by id or a unique prefix of one): state, transactions, expiries,
/// and what happens next.
pub(crate) async fn show(dir: &Path, id: String, json: bool) -> anyhow::Result<()> {
    let store = open_store(dir).await?;
    let id = find_id(store.as_ref(), &id).await?;
    let (record, state) = store.load(&id).await?;
    let history = store.history(&id).await?;
    let txs = store.txs(&id).await?;
    let mut v = status::summary(&record, &state);
    v["next"] = status::next_step(&record, &state).into();
    v["history"] = history
        .iter()
        .map(|e| {
            serde_json::json!({
                "seq": e.seq,
                "at": e.entered_at.0,
                "state": swap_core::driver::state_name(&e.state),
                "detail": status::detail(&e.state),
            })
        })
        .collect();
    v["transactions"] = txs
        .iter()
        .map(|t| {
            serde_json::json!({
                "kind": t.kind.as_str(),
                "chain": record.terms.leg(t.leg).params.chain.to_string(),
                "txref": t.txref.0,
                "at": status::utc_text(t.at.0),
            })
        })
        .collect();
    if json {
        xswap_cli::say!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let f = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        xswap_cli::say!(
            "swap     {id}\nrole     {}\nstate    {}",
            f("role"),
            f("state")
        );
        xswap_cli::say!("gives    {}\ngets     {}", f("gives"), f("gets"));
        xswap_cli::say!(
            "rails    gives {}; gets {}",
            status::rail_text(&v["gives_rail"]),
            status::rail_text(&v["gets_rail"])
        );
        xswap_cli::say!(
            "expiries ours {}, theirs {}",
            f("our_expiry_text"),
            f("their_expiry_text")
        );
        if let Some(o) = v["outcome_text"].as_str() {
            xswap_cli::say!("outcome  {o}");
        }
        for t in &txs {
            xswap_cli::say!(
                "sent     {:<6} on {}: {}",
                t.kind.as_str(),
                record.terms.leg(t.leg).params.chain,
                t.txref
            );
        }
        xswap_cli::say!("next     {}", f("next"));
        for h in v["history"].as_array().into_iter().flatten() {
            xswap_cli::say!(
                "  #{:<3} {:<20} {}",
                h["seq"],
                h["state"].as_str().unwrap_or(""),
                h["detail"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// `xswap refund`: refunds our own lock of a swap now, when its expiry allows it.
pub(crate) async fn refund(dir: &Path, id: String) -> anyhow::Result<()> {
    let engine = config::engine(dir, driver_config()).await?;
    let id = find_id(engine.driver.store().as_ref(), &id).await?;
    let (record, _) = engine.driver.store().load(&id).await?;
    let leg = match record.role {
        Role::Initiator => Leg::X,
        Role::Responder => Leg::Y,
    };
    let htlc = Driver::htlc(&record, leg);
    let params = record.terms.leg(leg).params;
    let chain = engine
        .driver
        .rail(params.rail())
        .ok_or_else(|| anyhow!("no adapter for {}", params.rail()))?;
    let tip = chain.tip().await?;
    if !params.refundable(htlc.expiry, tip) {
        bail!(
            "not refundable yet: our lock expires at {}, the chain is at {}/{}; \
             the engine refunds by itself then (`xswap resume`)",
            htlc.expiry,
            tip.height,
            tip.time
        );
    }
    match chain.htlc_status(&htlc).await? {
        HtlcStatus::Funded { .. } => {
            let tx = chain.refund(&htlc).await?;
            xswap_cli::say!("refund sent: {tx}");
            Ok(())
        }
        other => bail!("nothing to refund: our lock is {other:?}"),
    }
}
