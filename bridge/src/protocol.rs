//! The `/ws` client → server protocol of docs/http-api.md#websocket-protocol: parsing `subscribe` /
//! `unsubscribe` requests and the `error` replies for whatever cannot be parsed.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::client::Outgoing;
use crate::filter::Criteria;
use crate::grid::Bbox;
use crate::session::SubSpec;

/// Longest accepted subscription id, vehicle, route or trip name, in bytes.
const MAX_NAME: usize = 256;

/// A parsed client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `{"op":"subscribe","id":..., criteria..., "events":bool, "max_hz":n, "batch":bool}`
    Subscribe {
        /// The client's name for the subscription, echoed as `sub`.
        id: String,
        /// What it asks for.
        spec: SubSpec,
    },
    /// `{"op":"unsubscribe","id":...}`
    Unsubscribe {
        /// The subscription to end.
        id: String,
    },
}

/// A request the server refuses; sent back as `{"type":"error","code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtoError {
    /// `BAD_JSON`, `UNKNOWN_OP`, `BAD_BBOX`, `BAD_REQUEST`, `NOT_SUBSCRIBED`, `TOO_MANY_SUBSCRIPTIONS`
    /// or `RATE_LIMITED`.
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl ProtoError {
    /// An error with a code and a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> ProtoError {
        ProtoError {
            code,
            message: message.into(),
        }
    }

    /// The error message frame.
    pub fn to_outgoing(&self) -> Outgoing {
        Outgoing {
            kind: "error",
            text: json!({"type": "error", "code": self.code, "message": self.message}).to_string(),
        }
    }
}

fn bad(message: impl Into<String>) -> ProtoError {
    ProtoError::new("BAD_REQUEST", message)
}

/// Parses one text frame.
///
/// # Errors
/// [`ProtoError`] naming what is wrong; the connection stays open.
pub fn parse(text: &str) -> Result<Op, ProtoError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ProtoError::new("BAD_JSON", format!("invalid JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(bad("a request is a JSON object"));
    };
    let op = match obj.get("op") {
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err(bad("\"op\" must be a string")),
        None => return Err(bad("missing \"op\"")),
    };
    match op {
        "subscribe" => parse_subscribe(&obj),
        "unsubscribe" => Ok(Op::Unsubscribe {
            id: name(&obj, "id")?.ok_or_else(|| bad("missing \"id\""))?,
        }),
        other => Err(ProtoError::new(
            "UNKNOWN_OP",
            format!(
                "unknown op {:?}: expected \"subscribe\" or \"unsubscribe\"",
                truncate(other)
            ),
        )),
    }
}

fn parse_subscribe(obj: &Map<String, Value>) -> Result<Op, ProtoError> {
    let id = name(obj, "id")?.ok_or_else(|| bad("missing \"id\""))?;
    let arc = |s: Option<String>| s.map(Arc::<str>::from);
    let criteria = Criteria {
        vehicle: arc(name(obj, "vehicle")?),
        route: arc(name(obj, "route")?),
        trip: arc(name(obj, "trip")?),
        bbox: match obj.get("bbox") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_bbox(v)?),
        },
    };
    let events = flag(obj, "events")?;
    let batch = flag(obj, "batch")?;
    let max_hz = match obj.get("max_hz") {
        None | Some(Value::Null) => 1.0,
        Some(v) => match v.as_f64() {
            Some(hz) if hz.is_finite() && hz > 0.0 => hz.min(crate::session::MAX_HZ),
            _ => return Err(bad("\"max_hz\" must be a number > 0 (at most 10 is used)")),
        },
    };
    let states = !criteria.is_empty();
    if !states && !events {
        return Err(bad(
            "subscribe needs \"vehicle\", \"route\", \"trip\", \"bbox\" or \"events\":true",
        ));
    }
    Ok(Op::Subscribe {
        id,
        spec: SubSpec {
            criteria,
            states,
            events,
            max_hz,
            batch,
        },
    })
}

/// An optional boolean field (default false).
fn flag(obj: &Map<String, Value>, key: &str) -> Result<bool, ProtoError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("\"{key}\" must be true or false"))),
    }
}

fn parse_bbox(v: &Value) -> Result<Bbox, ProtoError> {
    let shape = || ProtoError::new("BAD_BBOX", "bbox must be [minLon,minLat,maxLon,maxLat]");
    let Value::Array(a) = v else {
        return Err(shape());
    };
    if a.len() != 4 {
        return Err(shape());
    }
    let mut n = [0.0; 4];
    for (slot, x) in n.iter_mut().zip(a) {
        *slot = x.as_f64().ok_or_else(shape)?;
    }
    Bbox::new(n).map_err(|e| ProtoError::new("BAD_BBOX", e.to_string()))
}

/// An optional non-empty string field of bounded length.
fn name(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ProtoError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_NAME => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(bad(format!("\"{key}\" must be 1 to {MAX_NAME} bytes"))),
        Some(_) => Err(bad(format!("\"{key}\" must be a string"))),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_variants() {
        let Ok(Op::Subscribe { id, spec }) =
            parse(r#"{"op":"subscribe","id":"s1","route":"M10","max_hz":50}"#)
        else {
            panic!("expected subscribe")
        };
        assert_eq!(id, "s1");
        assert_eq!(spec.criteria.route.as_deref(), Some("M10"));
        assert!(spec.states && !spec.events);
        assert_eq!(spec.max_hz, 10.0);
        let Ok(Op::Subscribe { spec, .. }) = parse(r#"{"op":"subscribe","id":"e","events":true}"#)
        else {
            panic!("expected subscribe")
        };
        assert!(!spec.states && spec.events);
    }

    #[test]
    fn errors_have_codes() {
        assert_eq!(parse("{nope").map_err(|e| e.code), Err("BAD_JSON"));
        assert_eq!(
            parse(r#"{"op":"dance"}"#).map_err(|e| e.code),
            Err("UNKNOWN_OP")
        );
        assert_eq!(
            parse(r#"{"op":"subscribe","id":"b","bbox":[1,2,3]}"#).map_err(|e| e.code),
            Err("BAD_BBOX")
        );
        assert_eq!(
            parse(r#"{"op":"subscribe","id":"b","bbox":[3,2,1,4]}"#).map_err(|e| e.code),
            Err("BAD_BBOX")
        );
        assert_eq!(
            parse(r#"{"op":"subscribe","id":"b"}"#).map_err(|e| e.code),
            Err("BAD_REQUEST")
        );
        assert_eq!(
            parse(r#"{"op":"subscribe","id":"b","route":"r","max_hz":0}"#).map_err(|e| e.code),
            Err("BAD_REQUEST")
        );
        assert_eq!(parse("[1]").map_err(|e| e.code), Err("BAD_REQUEST"));
    }
}
