//! Value parsers shared by the flag sections of [`crate::config`] and
//! [`crate::runtime::settings`]: durations in humantime's form (`500ms`, `2s`, `1m`).

use std::time::Duration;

/// A duration greater than zero.
pub(crate) fn parse_positive(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 2s, 1m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Any duration, zero included.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 0s, 500ms, 2s, 1m)"))
}
