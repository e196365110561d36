//! The bus's frame and record format, version 3 (docs/redis.md#keys): how one node's
//! processed outputs are written for the others and read back, without JSON around them.
//!
//! A frame starts with a line naming the format and the sending node, then holds records back
//! to back, each delimiting itself with lengths (integers big-endian):
//!
//! ```text
//! frame  = "fleetmq-bus/3 " node "\n" record*
//! record = kind:u8 ('S' state | 'E' event)  epoch:u64 ts:i64 seq:u64  vehicle:str16  flags:u8
//!          [route:str16] [trip:str16] [fit:bytes32] [event kind:str8]  json:bytes32
//! flags  = 1 deviated | 2 route | 4 trip | 8 fit   (a field is there when its flag is)
//! ```
//!
//! A state's `json` is the state's JSON as its node made it for `vehicles/{id}`; an event's is
//! its `events/{id}/{kind}` payload, so neither is serialized again by a receiver. `fit` is the
//! state's trip fit in postcard, `TripFit`'s fields in their order (present only with a
//! schedule); version 2 carried it as JSON, which cost a receiver ~1,000 instructions a state
//! to parse. The header fields are what a
//! receiver needs before deciding whether to parse anything: the ordering key, the vehicle, its
//! route and trip.
//!
//! Frames of other versions (version 1: a first line of the node's name alone, then lines of
//! JSON; version 2: `fleetmq-bus/2 …`) are not read: a node whose first line is not
//! `fleetmq-bus/3 …` runs another version of fleetmq, and every
//! node of a cluster must run the same bus format ([`Origin::Foreign`]).
//!
//! Redis is reachable by others than fleetmq nodes: a record that does not parse ends the
//! reading of its frame with an error (lengths after it cannot be trusted), never a panic.

use bytes::BufMut;
use geo_engine::EventKind;
use geo_engine::schedule::TripFit;

use super::outputs::Order;

/// The start of a version 3 frame's first line.
const MAGIC: &[u8] = b"fleetmq-bus/3 ";

const STATE: u8 = b'S';
const EVENT: u8 = b'E';

const DEVIATED: u8 = 1;
const ROUTE: u8 = 2;
const TRIP: u8 = 4;
const FIT: u8 = 8;

/// Why a record was not read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("cluster record: truncated at its {0}")]
    Truncated(&'static str),
    #[error("cluster record: its {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("cluster record: unknown kind {0:#04x}")]
    Kind(u8),
    #[error("cluster record: unknown event kind {0:?}")]
    EventKind(String),
}

/// A state's trip fit as its record carries it (module doc).
///
/// # Errors
/// Only those of postcard, which `TripFit`'s plain fields do not raise.
pub fn fit_bytes(fit: &TripFit) -> postcard::Result<Vec<u8>> {
    postcard::to_extend(fit, Vec::new())
}

/// A record's trip fit, back from [`fit_bytes`].
///
/// # Errors
/// `bytes` are not a trip fit of this format (cut, or not made by [`fit_bytes`]).
pub fn read_fit(bytes: &[u8]) -> postcard::Result<TripFit> {
    postcard::from_bytes(bytes)
}

/// The first line of every frame `node` sends, newline included.
pub fn prefix(node: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(MAGIC.len() + node.len() + 1);
    line.extend_from_slice(MAGIC);
    line.extend_from_slice(node.as_bytes());
    line.push(b'\n');
    line
}

/// Who sent a frame, from its first line.
#[derive(Debug, PartialEq, Eq)]
pub enum Origin<'f> {
    /// This node: its own outputs, skipped unread.
    Me,
    /// Another node of this format; its records follow.
    Other(&'f [u8]),
    /// Not a version 3 frame: the first line as sent (a node of another fleetmq version names
    /// itself there), or empty when there is no line.
    Foreign(&'f [u8]),
}

/// Reads the first line of `frame` against this node's name `me`.
pub fn origin<'f>(frame: &'f [u8], me: &str) -> Origin<'f> {
    let Some(cut) = frame.iter().position(|&b| b == b'\n') else {
        return Origin::Foreign(&[]);
    };
    let (line, records) = (&frame[..cut], &frame[cut + 1..]);
    match line.strip_prefix(MAGIC) {
        Some(node) if node == me.as_bytes() => Origin::Me,
        Some(_) => Origin::Other(records),
        None => Origin::Foreign(line),
    }
}

/// What an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    State,
    Event(EventKind),
}

/// One record, borrowed from its frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'f> {
    pub kind: Kind,
    pub order: Order,
    pub vehicle: &'f str,
    pub route: Option<&'f str>,
    pub trip: Option<&'f str>,
    pub deviated: bool,
    /// A state's trip fit, in postcard.
    pub fit: Option<&'f [u8]>,
    /// The state's JSON or the event's payload.
    pub json: &'f [u8],
}

/// Appends `r` to `out`; `false` (and nothing written) for a vehicle id longer than a u16
/// length, which no topic or request fleetmq accepts can carry. A route or trip that long is
/// left out; so is a fit over 4 GiB.
#[must_use]
pub fn put(out: &mut Vec<u8>, r: &Record<'_>) -> bool {
    if u16::try_from(r.vehicle.len()).is_err() {
        return false;
    }
    fn fits16(s: Option<&str>) -> Option<&str> {
        s.filter(|s| u16::try_from(s.len()).is_ok())
    }
    let (route, trip) = (fits16(r.route), fits16(r.trip));
    let fit = r.fit.filter(|f| u32::try_from(f.len()).is_ok());
    let vehicle = r.vehicle;
    out.reserve(64 + vehicle.len() + r.json.len() + fit.map_or(0, <[u8]>::len));
    out.put_u8(match r.kind {
        Kind::State => STATE,
        Kind::Event(_) => EVENT,
    });
    out.put_u64(r.order.epoch);
    out.put_i64(r.order.ts);
    out.put_u64(r.order.seq);
    put_str16(out, vehicle);
    let mut flags = 0;
    if r.deviated {
        flags |= DEVIATED;
    }
    if route.is_some() {
        flags |= ROUTE;
    }
    if trip.is_some() {
        flags |= TRIP;
    }
    if fit.is_some() {
        flags |= FIT;
    }
    out.put_u8(flags);
    if let Some(route) = route {
        put_str16(out, route);
    }
    if let Some(trip) = trip {
        put_str16(out, trip);
    }
    if let Some(fit) = fit {
        out.put_u32(fit.len() as u32);
        out.extend_from_slice(fit);
    }
    if let Kind::Event(kind) = r.kind {
        let name = kind.as_str();
        out.put_u8(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    // A state or an event is far below 4 GiB; one that is not is cut (and will not parse).
    let json = &r.json[..r.json.len().min(u32::MAX as usize)];
    out.put_u32(json.len() as u32);
    out.extend_from_slice(json);
    true
}

/// The records of a frame (after its first line), in order; after an error, nothing more.
pub struct Records<'f> {
    rest: &'f [u8],
}

impl<'f> Records<'f> {
    pub fn new(records: &'f [u8]) -> Records<'f> {
        Records { rest: records }
    }
}

impl<'f> Iterator for Records<'f> {
    type Item = Result<Record<'f>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let read = read(&mut self.rest);
        if read.is_err() {
            self.rest = &[];
        }
        Some(read)
    }
}

fn read<'f>(b: &mut &'f [u8]) -> Result<Record<'f>, RecordError> {
    let tag = take_u8(b, "kind")?;
    if tag != STATE && tag != EVENT {
        return Err(RecordError::Kind(tag));
    }
    let order = Order {
        epoch: u64::from_be_bytes(take_array(b, "epoch")?),
        ts: i64::from_be_bytes(take_array(b, "ts")?),
        seq: u64::from_be_bytes(take_array(b, "seq")?),
    };
    let vehicle = take_str16(b, "vehicle")?;
    let flags = take_u8(b, "flags")?;
    let route = (flags & ROUTE != 0)
        .then(|| take_str16(b, "route"))
        .transpose()?;
    let trip = (flags & TRIP != 0)
        .then(|| take_str16(b, "trip"))
        .transpose()?;
    let fit = (flags & FIT != 0)
        .then(|| take_bytes32(b, "fit"))
        .transpose()?;
    let kind = if tag == EVENT {
        let len = take_u8(b, "event kind")?;
        let name = utf8(take(b, usize::from(len), "event kind")?, "event kind")?;
        let kind = EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| RecordError::EventKind(name.to_owned()))?;
        Kind::Event(kind)
    } else {
        Kind::State
    };
    let json = take_bytes32(b, "json")?;
    Ok(Record {
        kind,
        order,
        vehicle,
        route,
        trip,
        deviated: flags & DEVIATED != 0,
        fit,
        json,
    })
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.put_u16(s.len() as u16);
    out.extend_from_slice(s.as_bytes());
}

fn take<'f>(b: &mut &'f [u8], n: usize, what: &'static str) -> Result<&'f [u8], RecordError> {
    if b.len() < n {
        return Err(RecordError::Truncated(what));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn take_array<const N: usize>(b: &mut &[u8], what: &'static str) -> Result<[u8; N], RecordError> {
    let head = take(b, N, what)?;
    // `take` gave exactly N bytes.
    Ok(head.try_into().unwrap_or([0; N]))
}

fn take_u8(b: &mut &[u8], what: &'static str) -> Result<u8, RecordError> {
    Ok(take_array::<1>(b, what)?[0])
}

fn utf8<'f>(b: &'f [u8], what: &'static str) -> Result<&'f str, RecordError> {
    std::str::from_utf8(b).map_err(|_| RecordError::NotUtf8(what))
}

fn take_str16<'f>(b: &mut &'f [u8], what: &'static str) -> Result<&'f str, RecordError> {
    let len = u16::from_be_bytes(take_array(b, what)?);
    utf8(take(b, usize::from(len), what)?, what)
}

fn take_bytes32<'f>(b: &mut &'f [u8], what: &'static str) -> Result<&'f [u8], RecordError> {
    let len = u32::from_be_bytes(take_array(b, what)?);
    take(b, len as usize, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Record<'static> {
        Record {
            kind: Kind::State,
            order: Order {
                epoch: 3,
                ts: -5,
                seq: u64::MAX,
            },
            vehicle: "bus-\n1",
            route: Some("R1"),
            trip: None,
            deviated: true,
            fit: Some(br#"{"trip":7}"#),
            json: b"{\"vehicle\":\"bus-\\n1\"}\n",
        }
    }

    fn event() -> Record<'static> {
        Record {
            kind: Kind::Event(EventKind::BackOnRoute),
            order: Order {
                epoch: 0,
                ts: 9,
                seq: 1,
            },
            vehicle: "bus-2",
            route: None,
            trip: Some("T"),
            deviated: false,
            fit: None,
            json: br#"{"kind":"back_on_route"}"#,
        }
    }

    #[test]
    fn records_read_back_as_written_in_order() {
        let mut frame = prefix("node-a");
        assert!(put(&mut frame, &state()));
        assert!(put(&mut frame, &event()));
        let Origin::Other(records) = origin(&frame, "node-b") else {
            panic!("another node's frame");
        };
        let read: Vec<_> = Records::new(records).collect();
        assert_eq!(read, vec![Ok(state()), Ok(event())]);
        assert_eq!(origin(&frame, "node-a"), Origin::Me);
    }

    #[test]
    fn a_version_1_frame_is_foreign() {
        let v1 = b"node-a\n{\"order\":{}}\n";
        assert_eq!(origin(v1, "node-b"), Origin::Foreign(b"node-a"));
        assert_eq!(origin(v1, "node-a"), Origin::Foreign(b"node-a"));
        assert_eq!(origin(b"no line", "node-a"), Origin::Foreign(b""));
    }

    #[test]
    fn a_vehicle_id_past_a_u16_length_is_not_written() {
        let long = "é".repeat(40_000);
        let mut out = Vec::new();
        let r = Record {
            vehicle: &long,
            ..state()
        };
        assert!(!put(&mut out, &r));
        assert!(out.is_empty());
    }

    #[test]
    fn every_cut_of_a_record_is_an_error_and_ends_the_frame() {
        let mut whole = Vec::new();
        assert!(put(&mut whole, &state()));
        for cut in 1..whole.len() {
            let mut records = Records::new(&whole[..cut]);
            assert!(
                matches!(records.next(), Some(Err(RecordError::Truncated(_)))),
                "cut at {cut}"
            );
            assert_eq!(records.next(), None, "cut at {cut}");
        }
    }

    /// Redis is reachable by others: any bytes, and any corruption of a valid frame, read as
    /// records or errors, never a panic (a small xorshift generator keeps the run repeatable).
    #[test]
    fn garbage_and_corrupted_frames_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut valid = prefix("a");
        assert!(put(&mut valid, &state()));
        assert!(put(&mut valid, &event()));
        for round in 0..20_000 {
            let frame: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 200) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut f = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % f.len();
                    f[at] = next() as u8;
                }
                f.truncate(1 + (next() as usize) % f.len());
                f
            };
            if let Origin::Other(records) = origin(&frame, "b") {
                for r in Records::new(records) {
                    let _ = r;
                }
            }
        }
    }

    #[test]
    fn unknown_kinds_and_bad_utf8_are_errors() {
        let mut bad = Vec::new();
        assert!(put(&mut bad, &event()));
        let mut unknown = bad.clone();
        unknown[0] = b'X';
        assert_eq!(
            Records::new(&unknown).next(),
            Some(Err(RecordError::Kind(b'X')))
        );
        // The event kind's name: 'back_on_route' becomes 'back_on_routX'.
        let at = bad.len() - 4 - event().json.len() - 1;
        bad[at] = b'X';
        assert_eq!(
            Records::new(&bad).next(),
            Some(Err(RecordError::EventKind("back_on_routX".into())))
        );
        let mut not_utf8 = Vec::new();
        assert!(put(&mut not_utf8, &event()));
        // The vehicle's first byte, after kind, order and its length.
        not_utf8[1 + 24 + 2] = 0xff;
        assert_eq!(
            Records::new(&not_utf8).next(),
            Some(Err(RecordError::NotUtf8("vehicle")))
        );
    }
}
