//! Standard output that survives a closed pipe: `xswap list | head -1` must not panic, and a
//! `take` whose reader went away keeps running its swap to the end (its exit code still says how
//! it ended). Logs go to standard error, never here.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to standard output; once the reader has gone, output is dropped silently.
pub fn line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .is_err()
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` that never panics on a closed pipe (see [`line()`]).
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {
        $crate::out::line(format_args!($($t)*))
    };
}

/// `text` as a QR code drawn with terminal block characters (two rows of modules a line), with
/// its quiet zone. Give upper-case text where it reads the same (a BOLT11 invoice, an offer):
/// the code then holds it in alphanumeric mode and is smaller.
pub fn qr(text: &str) -> Result<String, qrcode::types::QrError> {
    Ok(qrcode::QrCode::new(text.as_bytes())?
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn upper_case_text_makes_a_smaller_qr_code() {
        // As long as a realistic compact offer.
        let text = format!("xso1{}", "qpzry9x8gf2tvdw0s3jn54khce6mua7l".repeat(7));
        let lower = super::qr(&text).unwrap().lines().count();
        let upper = super::qr(&text.to_ascii_uppercase())
            .unwrap()
            .lines()
            .count();
        println!(
            "{} characters: {lower} lines in byte mode, {upper} upper case",
            text.len()
        );
        assert!(upper < lower, "{upper} lines, {lower} in lower case");
    }
}
