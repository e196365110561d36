//! The kinds of setting value: how each is read from text and written back as TOML.
//!
//! A kind is a module with three functions, named by one field of [`Config`](super::Config):
//! `parse` is its clap `value_parser` (flags and `FLEETMQ_*` variables), and `deserialize` /
//! `serialize` are its serde `with` (the config file and `--print-config`). A file value is turned
//! into the text a flag would carry (`max_queued = 500` reads as `"500"`) and goes through the same
//! `parse`, so all three sources accept the same spellings and give the same errors, each saying
//! what a valid value looks like. The serde functions work for a field of the kind's type or an
//! `Option` of it (a setting that is off by default), through [`Slot`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserializer, Error as _, Visitor};
use serde::{Serialize, Serializer};

use super::LogFormat;

/// A field holding one setting value: the value itself, or an `Option` of it.
pub trait Slot: Sized {
    type Value;
    fn fill(value: Self::Value) -> Self;
    fn get(&self) -> Option<&Self::Value>;
}

/// [`Slot`] for each value type and its `Option`; a setting of a new type adds it here.
macro_rules! slots {
    ($($t:ty),* $(,)?) => {$(
        impl Slot for $t {
            type Value = $t;
            fn fill(value: $t) -> $t {
                value
            }
            fn get(&self) -> Option<&$t> {
                Some(self)
            }
        }
        impl Slot for Option<$t> {
            type Value = $t;
            fn fill(value: $t) -> Option<$t> {
                Some(value)
            }
            fn get(&self) -> Option<&$t> {
                self.as_ref()
            }
        }
    )*};
}

slots!(
    std::net::SocketAddr,
    PathBuf,
    String,
    Duration,
    u16,
    u32,
    u64,
    usize,
    i64,
    f64,
    bool,
    LogFormat,
);

/// A TOML scalar as the text a flag would carry.
struct Text;

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// The `deserialize` of every kind: the value as text, through the kind's `parse`.
fn read<'de, D, S>(
    d: D,
    parse: impl FnOnce(&str) -> Result<S::Value, String>,
) -> Result<S, D::Error>
where
    D: Deserializer<'de>,
    S: Slot,
{
    let text = d.deserialize_any(Text)?;
    parse(&text).map(S::fill).map_err(D::Error::custom)
}

/// The `serialize` of every kind: `show` gives the TOML form `parse` reads back; an unset
/// `Option` is left out of the table.
fn write<S, Z, V>(slot: &S, z: Z, show: impl FnOnce(&S::Value) -> V) -> Result<Z::Ok, Z::Error>
where
    S: Slot,
    Z: Serializer,
    V: Serialize,
{
    match slot.get() {
        Some(v) => show(v).serialize(z),
        None => z.serialize_none(),
    }
}

/// `deserialize` and `serialize` for a kind module whose `parse` returns `$t`.
macro_rules! serde_with {
    ($t:ty, $show:expr) => {
        /// serde `with`: reads the text through [`parse`].
        ///
        /// # Errors
        /// What [`parse`] says about a bad value.
        pub fn deserialize<'de, D, S>(d: D) -> Result<S, D::Error>
        where
            D: serde::Deserializer<'de>,
            S: super::Slot<Value = $t>,
        {
            super::read(d, parse)
        }

        /// serde `with`: the form [`parse`] reads back.
        ///
        /// # Errors
        /// Only the serializer's own.
        pub fn serialize<S, Z>(slot: &S, z: Z) -> Result<Z::Ok, Z::Error>
        where
            S: super::Slot<Value = $t>,
            Z: serde::Serializer,
        {
            super::write(slot, z, $show)
        }
    };
}

/// `IP:PORT` (`0.0.0.0:1883`, `[::]:1883`), or `localhost:PORT` for 127.0.0.1.
pub mod addr {
    use std::net::{Ipv4Addr, SocketAddr};

    /// # Errors
    /// Anything but `IP:PORT` or `localhost:PORT`.
    pub fn parse(s: &str) -> Result<SocketAddr, String> {
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

    serde_with!(SocketAddr, SocketAddr::to_string);
}

/// A whole number of the field's type, with its range in the error; `_` separators allowed.
pub mod number {
    use std::str::FromStr;

    use super::Bounded;

    /// # Errors
    /// Not a whole number, or out of `T`'s range.
    pub fn parse<T: FromStr + Bounded>(s: &str) -> Result<T, String> {
        s.trim().replace('_', "").parse().map_err(|_| {
            format!(
                "invalid number {s:?}: expected a whole number from {} to {}",
                T::MIN,
                T::MAX
            )
        })
    }

    /// serde `with`: reads the text through [`parse`].
    ///
    /// # Errors
    /// What [`parse`] says about a bad value.
    pub fn deserialize<'de, D, S>(d: D) -> Result<S, D::Error>
    where
        D: serde::Deserializer<'de>,
        S: super::Slot<Value: FromStr + Bounded>,
    {
        super::read(d, parse::<S::Value>)
    }

    /// serde `with`: a TOML integer.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S, Z>(slot: &S, z: Z) -> Result<Z::Ok, Z::Error>
    where
        S: super::Slot<Value: serde::Serialize + Copy>,
        Z: serde::Serializer,
    {
        super::write(slot, z, |v| *v)
    }
}

/// Integer types [`number`] can parse, with their range for error messages.
pub trait Bounded: fmt::Display + Sized {
    const MIN: Self;
    const MAX: Self;
}

macro_rules! bounded {
    ($($t:ty),*) => {$(
        impl Bounded for $t {
            const MIN: $t = <$t>::MIN;
            const MAX: $t = <$t>::MAX;
        }
    )*};
}

bounded!(u16, u32, u64, usize, i64);

/// A finite decimal number (a threshold in metres, a factor): `2`, `0.5`, `1e3`.
/// Written back as a TOML float.
pub mod decimal {
    /// # Errors
    /// Not a number, or infinite or NaN.
    pub fn parse(s: &str) -> Result<f64, String> {
        s.trim()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("invalid number {s:?}: expected a decimal number, e.g. 2.5"))
    }

    serde_with!(f64, |v: &f64| *v);
}

/// A duration: a number with a unit `ms`, `s`, `m`, `h` or `d`; a bare number is seconds.
/// Written back in the largest exact unit (`"1h"`).
pub mod duration {
    use std::time::Duration;

    /// # Errors
    /// Not a whole number with one of the units, or too long.
    pub fn parse(s: &str) -> Result<Duration, String> {
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

    /// Formats a duration the way [`parse`] reads it, in the largest exact unit.
    pub fn format(d: &Duration) -> String {
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

    serde_with!(Duration, format);
}

/// A size in bytes: a number with an optional unit `B`, `KiB`/`K`, `MiB`/`M`, `KB`, `MB`.
/// Written back as a TOML integer of bytes.
pub mod size {
    /// # Errors
    /// Not a number with one of the units, or more than `u32::MAX` bytes.
    pub fn parse(s: &str) -> Result<u32, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad = || {
            format!(
                "invalid size {s:?}: expected bytes up to 4294967295, e.g. 1048576, 256KiB or 1MiB"
            )
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

    serde_with!(u32, |b: &u32| *b);
}

/// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
pub mod boolean {
    /// # Errors
    /// Anything else.
    pub fn parse(s: &str) -> Result<bool, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("invalid boolean {s:?}: expected true or false")),
        }
    }

    serde_with!(bool, |b: &bool| *b);
}

/// `pretty` or `json`.
pub mod log_format {
    use super::LogFormat;

    /// # Errors
    /// Anything else.
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s.trim() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("invalid log format {s:?}: expected pretty or json")),
        }
    }

    serde_with!(LogFormat, |f: &LogFormat| match f {
        LogFormat::Pretty => "pretty",
        LogFormat::Json => "json",
    });
}

/// A non-empty path.
pub mod path {
    use std::path::PathBuf;

    /// # Errors
    /// An empty path.
    pub fn parse(s: &str) -> Result<PathBuf, String> {
        if s.trim().is_empty() {
            Err("empty path: give a file name".to_string())
        } else {
            Ok(PathBuf::from(s))
        }
    }

    serde_with!(PathBuf, |p: &PathBuf| p.to_string_lossy().into_owned());
}

/// A non-empty string (Redis URL, JWT secret).
pub mod text {
    /// # Errors
    /// An empty string.
    pub fn parse(s: &str) -> Result<String, String> {
        if s.is_empty() {
            Err("empty value: give a value or leave the setting out".to_string())
        } else {
            Ok(s.to_string())
        }
    }

    serde_with!(String, String::clone);
}

/// A cluster node name: 1 to 64 of `A-Z a-z 0-9 _ -` (it appears in Redis keys' values and in
/// channel names, so nothing that needs quoting).
pub mod node_id {
    /// Longest node name.
    pub const MAX_LEN: usize = 64;

    /// # Errors
    /// Empty, too long, or another character.
    pub fn parse(s: &str) -> Result<String, String> {
        let ok = (1..=MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(s.to_string())
        } else {
            Err(format!(
                "invalid node id {s:?}: use 1 to {MAX_LEN} of A-Z a-z 0-9 _ -"
            ))
        }
    }

    serde_with!(String, String::clone);
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            addr::parse("0.0.0.0:1883"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 1883)))
        );
        assert_eq!(
            addr::parse("localhost:80"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        assert_eq!(addr::parse("[::1]:0").map(|a| a.is_ipv6()), Ok(true));
        for bad in ["1883", "localhost", "example.org:1883", "1.2.3.4:70000", ""] {
            let err = addr::parse(bad).expect_err(bad);
            assert!(err.contains("IP:PORT"), "{err}");
        }
    }

    #[test]
    fn durations_round_trip() {
        let parse = duration::parse;
        assert_eq!(parse("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1y", "-1s", "1.5h", "99999999999999999999"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        for ms in [
            0u64, 1, 999, 1000, 60_000, 3_600_000, 90_061_000, 86_400_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&duration::format(&d)), Ok(d), "{ms}");
        }
    }

    #[test]
    fn sizes() {
        let parse = size::parse;
        assert_eq!(parse("1048576"), Ok(1 << 20));
        assert_eq!(parse("1MiB"), Ok(1 << 20));
        assert_eq!(parse("1 MiB"), Ok(1 << 20));
        assert_eq!(parse("256K"), Ok(256 << 10));
        assert_eq!(parse("2MB"), Ok(2_000_000));
        assert!(parse("4096MiB").is_err(), "overflows u32");
        assert!(parse("1GiB").is_err());
        assert!(parse("-5").is_err());
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(number::parse::<u16>("65535"), Ok(65535));
        assert_eq!(number::parse::<usize>("1_000_000"), Ok(1_000_000));
        let err = number::parse::<u16>("65536").expect_err("overflow");
        assert!(err.contains("0 to 65535"), "{err}");
        assert!(number::parse::<u32>("ten").is_err());
        assert_eq!(decimal::parse("2.5"), Ok(2.5));
        assert_eq!(decimal::parse("1e3"), Ok(1000.0));
        assert!(decimal::parse("inf").is_err() && decimal::parse("NaN").is_err());
        assert_eq!(boolean::parse("TRUE"), Ok(true));
        assert_eq!(boolean::parse("off"), Ok(false));
        assert!(boolean::parse("maybe").is_err());
        assert_eq!(log_format::parse("json"), Ok(LogFormat::Json));
        assert!(log_format::parse("xml").is_err());
    }

    #[test]
    fn node_ids() {
        assert_eq!(node_id::parse("node-a_1"), Ok("node-a_1".to_owned()));
        assert!(node_id::parse(&"n".repeat(64)).is_ok());
        for bad in ["", "node a", "n:1", "nöde", "a{b}", &"n".repeat(65)] {
            let err = node_id::parse(bad).expect_err(bad);
            assert!(err.contains("A-Z a-z 0-9 _ -"), "{err}");
        }
    }
}
