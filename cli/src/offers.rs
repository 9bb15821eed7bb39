//! The maker's saved offers (`offers.json` in the data directory): published by `xswap offer`,
//! listed and removed by `xswap offer list|remove`, and read again by a running `xswap maker`
//! whenever the file changes, so no restart is needed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;
use swap_net::Offer;
use tracing::warn;

use crate::engine::OfferBook;

/// The offers file of a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("offers.json")
}

/// The saved offers (none when there is no file).
pub fn load(data_dir: &Path) -> anyhow::Result<Vec<Offer>> {
    read(&path(data_dir))
}

fn read(file: &Path) -> anyhow::Result<Vec<Offer>> {
    match std::fs::read_to_string(file) {
        Ok(t) => serde_json::from_str(&t).with_context(|| {
            format!(
                "{} is damaged: fix it, or delete it and publish the offers again",
                file.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Replaces the saved offers (written to a temporary file, then renamed: a reader never sees
/// half a file).
pub fn save(data_dir: &Path, offers: &[Offer]) -> anyhow::Result<()> {
    crate::guard::write_atomic(&path(data_dir), &serde_json::to_vec_pretty(offers)?)?;
    Ok(())
}

/// The offers file as a maker's [`OfferBook`]: read again when its modification time
/// changes; a file that cannot be read keeps the offers last read (and says so once).
#[derive(Debug)]
pub struct FileOffers {
    file: PathBuf,
    cached: Mutex<(Option<SystemTime>, Vec<Offer>)>,
}

impl FileOffers {
    /// The offers of `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            file: path(data_dir),
            cached: Mutex::new((None, Vec::new())),
        }
    }
}

impl OfferBook for FileOffers {
    fn offers(&self) -> Vec<Offer> {
        let modified = std::fs::metadata(&self.file)
            .and_then(|m| m.modified())
            .ok();
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if modified.is_some() && cached.0 != modified {
            match read(&self.file) {
                Ok(offers) => *cached = (modified, offers),
                Err(e) => {
                    warn!(error = %e, "keeping the offers last read");
                    cached.0 = modified;
                }
            }
        }
        cached.1.clone()
    }
}

/// One offer as JSON, for `offer list|show`.
pub fn to_json(o: &Offer) -> serde_json::Value {
    serde_json::json!({
        "maker": o.maker.to_string(),
        "address": o.addr,
        "sells": format!("{} on {}", crate::status::asset_text(&o.sell.asset), o.sell.chain),
        "buys": format!("{} on {}", crate::status::asset_text(&o.buy.asset), o.buy.chain),
        "sell_rail": crate::hosted::rail_name(o.sell.rail),
        "buy_rail": crate::hosted::rail_name(o.buy.rail),
        "rate": format!("{}/{}", o.rate_num, o.rate_den),
        "buy_min": o.buy.min.to_string(),
        "buy_max": o.buy.max.to_string(),
        "sell_min": o.sell.min.to_string(),
        "sell_max": o.sell.max.to_string(),
        "expires": crate::status::utc_text(o.expires.0),
        "expired": o.expires.0 < now_secs(),
        "offer": o.encode(),
    })
}

/// Prints what an offer says, numbered when `k` is given.
pub fn print(k: Option<usize>, o: &Offer) {
    let v = to_json(o);
    let f = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    if let Some(k) = k {
        crate::say!(
            "#{k}{}",
            if o.expires.0 < now_secs() {
                " (expired)"
            } else {
                ""
            }
        );
    }
    crate::say!(
        "  sells    {} {} (per swap {} to {})",
        f("sells"),
        rail_text(o.sell.rail),
        f("sell_min"),
        f("sell_max")
    );
    crate::say!(
        "  buys     {} {} (per swap {} to {})",
        f("buys"),
        rail_text(o.buy.rail),
        f("buy_min"),
        f("buy_max")
    );
    crate::say!(
        "  rate     {} base units sold per base unit bought",
        f("rate")
    );
    crate::say!("  maker    {} at {}", f("maker"), f("address"));
    crate::say!("  expires  {}", f("expires"));
}

/// A rail as `offer show` prints it beside a leg.
fn rail_text(kind: swap_core::RailKind) -> &'static str {
    match kind {
        swap_core::RailKind::Lightning => "over Lightning",
        swap_core::RailKind::EvmChannel => "in an Ethereum channel",
        _ => "on chain",
    }
}

/// Now, in unix seconds.
fn now_secs() -> u64 {
    swap_core::Timestamp::now().0
}

/// `xswap offer list`: the saved offers, numbered, or as JSON.
pub fn list(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let offers = load(data_dir)?;
    if json {
        let rows: Vec<_> = offers.iter().map(to_json).collect();
        crate::say!("{}", serde_json::to_string_pretty(&rows)?);
    } else if offers.is_empty() {
        crate::say!("no saved offers: publish one with `xswap offer --sell ...`");
    } else {
        for (k, o) in offers.iter().enumerate() {
            print(Some(k + 1), o);
        }
    }
    Ok(())
}

/// `xswap offer remove N|expired|all`.
pub fn remove(data_dir: &Path, which: &str) -> anyhow::Result<()> {
    let mut offers = load(data_dir)?;
    let before = offers.len();
    match which {
        "all" => offers.clear(),
        "expired" => offers.retain(|o| o.expires.0 >= now_secs()),
        n => {
            let k: usize = n
                .parse()
                .ok()
                .filter(|k| (1..=offers.len()).contains(k))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{n:?}: give a number from 1 to {} (see `xswap offer list`), `expired` or \
                         `all`",
                        offers.len()
                    )
                })?;
            offers.remove(k - 1);
        }
    }
    save(data_dir, &offers)?;
    crate::say!(
        "removed {} offer(s), {} left (a running maker stops serving them now)",
        before - offers.len(),
        offers.len()
    );
    Ok(())
}
