//! One field of a location payload as read from JSON, before its type is checked: a number, a
//! string borrowed from the payload (owned only when it had escapes), or "something else".
//!
//! Why not `serde_json::Value`: a `Value` per field allocated its strings and, for every payload,
//! built a tree that was only looked at once. This keeps the same leniency (a wrong type is
//! reported by field name, not as a serde message, and a route sent as a number becomes its
//! decimal text) at the cost of a tagged scalar.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A field's JSON value; `Null` also stands for an absent field.
#[derive(Debug, Default)]
pub(super) enum Field<'a> {
    #[default]
    Null,
    /// A JSON integer that fits an `i64` (negative or small).
    Int(i64),
    /// A JSON integer above `i64::MAX`.
    Uint(u64),
    /// A JSON number with a fraction or exponent.
    Float(f64),
    Str(Cow<'a, str>),
    /// A boolean, array or object: never a valid fix field.
    Other,
}

impl Field<'_> {
    /// As `serde_json::Value::as_f64`: any number.
    pub(super) fn as_f64(&self) -> Option<f64> {
        match *self {
            Field::Int(i) => Some(i as f64),
            Field::Uint(u) => Some(u as f64),
            Field::Float(f) => Some(f),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_i64`: an integer within `i64`.
    pub(super) fn as_i64(&self) -> Option<i64> {
        match *self {
            Field::Int(i) => Some(i),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_u64`: a non-negative integer.
    pub(super) fn as_u64(&self) -> Option<u64> {
        match *self {
            Field::Int(i) => u64::try_from(i).ok(),
            Field::Uint(u) => Some(u),
            _ => None,
        }
    }

    /// A number as `serde_json` prints it (`Value::Number`'s `Display`).
    pub(super) fn number_text(&self) -> Option<String> {
        match *self {
            Field::Int(i) => Some(i.to_string()),
            Field::Uint(u) => Some(u.to_string()),
            Field::Float(f) => serde_json::Number::from_f64(f).map(|n| n.to_string()),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }

    fn visit_none<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
        Ok(Field::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
        // serde_json keeps a non-negative integer as u64; `Value` answers `as_i64` for it when
        // it fits, so store it the same way.
        Ok(i64::try_from(v).map_or(Field::Uint(v), Field::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
        Ok(Field::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
}
