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
    let file = path(data_dir);
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(offers)?)?;
    std::fs::rename(&tmp, &file)?;
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
