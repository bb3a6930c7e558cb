//! Command-line parsing helpers shared by the subcommands.

use std::{net::SocketAddr, time::Duration};

/// Parses a duration with units (`500ms`, `30s`, `15m`, `24h`, `7d`, combined as `1h30m`); a bare
/// number means seconds.
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {text:?}: expected a number at {rest:?}"));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_mins(1),
            "h" => Duration::from_hours(1),
            "d" => Duration::from_hours(24),
            other => return Err(format!("invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h, d)")),
        };
        let part = unit
            .checked_mul(u32::try_from(value).map_err(|_| format!("invalid duration {text:?}: number too large"))?)
            .ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
        total = total.checked_add(part).ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parses `ADDR:PORT`, IPv6 in brackets (`[::1]:6443`).
///
/// # Errors
/// A message with the expected form.
pub fn parse_endpoint(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| format!("invalid endpoint {text:?}: expected ADDR:PORT, IPv6 as [::1]:6443"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_hours(24));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_mins(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_hours(168));
        for bad in ["", "s", "10x", "1.5h", "h1", "-3", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("127.0.0.1:6443").unwrap().port(), 6443);
        assert!(parse_endpoint("[::1]:6443").unwrap().is_ipv6());
        for bad in ["::1:6443", "localhost:6443", "10.0.0.1", "[::1]"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
