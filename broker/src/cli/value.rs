//! Parsers for setting values, shared by flags, `FLEETMQ_*` variables and the config file so all
//! three accept the same spellings, and the inverse formatting used by `--print-config`. Each
//! error says what a valid value looks like.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::config::LogFormat;

/// `IP:PORT` (`0.0.0.0:1883`, `[::]:1883`), or `localhost:PORT` for 127.0.0.1.
pub fn addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Some(port) = s.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    s.parse().map_err(|_| {
        format!("invalid address {s:?}: expected IP:PORT, e.g. 0.0.0.0:1883 or [::1]:1883")
    })
}

/// A whole number of type `T`, with its range in the error.
pub fn number<T>(s: &str) -> Result<T, String>
where
    T: FromStr + Bounded,
{
    s.trim().replace('_', "").parse().map_err(|_| {
        format!(
            "invalid number {s:?}: expected a whole number from {} to {}",
            T::MIN_TEXT,
            T::MAX_TEXT
        )
    })
}

/// Integer types `number` can parse, with their range for error messages.
pub trait Bounded {
    const MIN_TEXT: &'static str;
    const MAX_TEXT: &'static str;
}

impl Bounded for i64 {
    const MIN_TEXT: &'static str = "-9223372036854775808";
    const MAX_TEXT: &'static str = "9223372036854775807";
}

impl Bounded for u16 {
    const MIN_TEXT: &'static str = "0";
    const MAX_TEXT: &'static str = "65535";
}

impl Bounded for u32 {
    const MIN_TEXT: &'static str = "0";
    const MAX_TEXT: &'static str = "4294967295";
}

impl Bounded for usize {
    const MIN_TEXT: &'static str = "0";
    const MAX_TEXT: &'static str = "18446744073709551615";
}

/// A duration: a number with a unit `ms`, `s`, `m`, `h` or `d`; a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("invalid duration {s:?}: expected e.g. 3600, 90s, 15m, 1h or 7d");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// A size in bytes: a number with an optional unit `B`, `KiB`/`K`, `MiB`/`M`, `KB`, `MB`.
pub fn size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        format!("invalid size {s:?}: expected bytes up to 4294967295, e.g. 1048576, 256KiB or 1MiB")
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "KB" => 1_000,
        "MB" => 1_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(factor)
        .and_then(|b| u32::try_from(b).ok())
        .ok_or_else(bad)
}

/// A finite, non-negative number (metres, m/s).
pub fn float(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| {
            format!("invalid number {s:?}: expected a non-negative number, e.g. 30 or 0.5")
        })
}

/// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}: expected true or false")),
    }
}

/// `pretty` or `json`.
pub fn log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim() {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("invalid log format {s:?}: expected pretty or json")),
    }
}

/// A non-empty path.
pub fn path(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        Err("empty path: give a file name".to_string())
    } else {
        Ok(PathBuf::from(s))
    }
}

/// A non-empty string (Redis URL, JWT secret).
pub fn text(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("empty value: give a value or leave the setting out".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// Formats a duration the way [`duration`] reads it, in the largest exact unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms.checked_rem(per) == Some(0) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// Formats a log format the way [`log_format`] reads it.
pub fn format_log(log: LogFormat) -> &'static str {
    match log {
        LogFormat::Pretty => "pretty",
        LogFormat::Json => "json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            addr("0.0.0.0:1883"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 1883)))
        );
        assert_eq!(
            addr("localhost:80"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        assert_eq!(addr("[::1]:0").map(|a| a.is_ipv6()), Ok(true));
        for bad in ["1883", "localhost", "example.org:1883", "1.2.3.4:70000", ""] {
            let err = addr(bad).expect_err(bad);
            assert!(err.contains("IP:PORT"), "{err}");
        }
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(duration("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1y", "-1s", "1.5h", "99999999999999999999"] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
        for ms in [
            0u64, 1, 999, 1000, 60_000, 3_600_000, 90_061_000, 86_400_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(duration(&format_duration(d)), Ok(d), "{ms}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert_eq!(size("1 MiB"), Ok(1 << 20));
        assert_eq!(size("256K"), Ok(256 << 10));
        assert_eq!(size("2MB"), Ok(2_000_000));
        assert!(size("4096MiB").is_err(), "overflows u32");
        assert!(size("1GiB").is_err());
        assert!(size("-5").is_err());
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(number::<u16>("65535"), Ok(65535));
        assert_eq!(number::<usize>("1_000_000"), Ok(1_000_000));
        let err = number::<u16>("65536").expect_err("overflow");
        assert!(err.contains("0 to 65535"), "{err}");
        assert!(number::<u32>("ten").is_err());
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("off"), Ok(false));
        assert!(boolean("maybe").is_err());
        assert_eq!(log_format("json"), Ok(LogFormat::Json));
        assert!(log_format("xml").is_err());
    }
}
