//! The `vehicles/{id}` payload written by hand: the same bytes as `serde_json::to_writer` of the
//! derived `Serialize` (field order, omitted `None`s, number and string forms), without its cost.
//!
//! Why: the state is serialized once per location update, and the derived path was ~9,000
//! instructions of the ~54,000 per update (callgrind, issue 15): most of it escaping the field
//! names byte by byte. Here the names are literals, numbers go through serde_json's own
//! formatter (so they print exactly as before) and a string is escaped only when it needs it.
//! The test below compares both serializers on generated states.

use serde_json::ser::{CompactFormatter, Formatter};

use super::{NextStop, VehicleState, VehicleStatus};

/// Appends `state`'s JSON to `out`.
pub(super) fn write_state(state: &VehicleState, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"vehicle\":");
    string(out, &state.vehicle);
    key_f64(out, b",\"lat\":", state.lat);
    key_f64(out, b",\"lon\":", state.lon);
    key_f64(out, b",\"raw_lat\":", state.raw_lat);
    key_f64(out, b",\"raw_lon\":", state.raw_lon);
    key_i64(out, b",\"ts\":", state.ts);
    opt_f64(out, b",\"speed\":", state.speed);
    opt_f64(out, b",\"heading\":", state.heading);
    opt_str(out, b",\"route\":", state.route.as_deref());
    opt_str(out, b",\"trip\":", state.trip.as_deref());
    out.extend_from_slice(match state.status {
        VehicleStatus::Moving => b",\"status\":\"moving\"",
        VehicleStatus::Stopped => b",\"status\":\"stopped\"",
        VehicleStatus::Offline => b",\"status\":\"offline\"",
    });
    opt_bool(out, b",\"on_route\":", state.on_route);
    opt_f64(out, b",\"off_route_m\":", state.off_route_m);
    opt_f64(out, b",\"progress_m\":", state.progress_m);
    if let Some(stop) = &state.next_stop {
        out.extend_from_slice(b",\"next_stop\":");
        next_stop(out, stop);
    }
    opt_i64(out, b",\"delay_s\":", state.delay_s);
    opt_bool(out, b",\"trip_inferred\":", state.trip_inferred);
    opt_f64(out, b",\"accuracy\":", state.accuracy);
    opt_f64(out, b",\"altitude\":", state.altitude);
    opt_f64(out, b",\"battery\":", state.battery);
    key_i64(out, b",\"received_at\":", state.received_at);
    key_i64(out, b",\"processed_at\":", state.processed_at);
    out.push(b'}');
}

fn next_stop(out: &mut Vec<u8>, stop: &NextStop) {
    out.extend_from_slice(b"{\"id\":");
    string(out, &stop.id);
    out.extend_from_slice(b",\"name\":");
    string(out, &stop.name);
    key_f64(out, b",\"distance_m\":", stop.distance_m);
    opt_i64(out, b",\"eta\":", stop.eta);
    opt_i64(out, b",\"scheduled\":", stop.scheduled);
    opt_i64(out, b",\"delay_s\":", stop.delay_s);
    out.push(b'}');
}

fn key_f64(out: &mut Vec<u8>, key: &[u8], v: f64) {
    out.extend_from_slice(key);
    // As serde_json: a non-finite float is `null`. Writing into a `Vec` cannot fail.
    let _ = if v.is_finite() {
        CompactFormatter.write_f64(out, v)
    } else {
        CompactFormatter.write_null(out)
    };
}

fn key_i64(out: &mut Vec<u8>, key: &[u8], v: i64) {
    out.extend_from_slice(key);
    let _ = CompactFormatter.write_i64(out, v);
}

fn opt_f64(out: &mut Vec<u8>, key: &[u8], v: Option<f64>) {
    if let Some(v) = v {
        key_f64(out, key, v);
    }
}

fn opt_i64(out: &mut Vec<u8>, key: &[u8], v: Option<i64>) {
    if let Some(v) = v {
        key_i64(out, key, v);
    }
}

fn opt_bool(out: &mut Vec<u8>, key: &[u8], v: Option<bool>) {
    if let Some(v) = v {
        out.extend_from_slice(key);
        out.extend_from_slice(if v { b"true" } else { b"false" });
    }
}

fn opt_str(out: &mut Vec<u8>, key: &[u8], v: Option<&str>) {
    if let Some(v) = v {
        out.extend_from_slice(key);
        string(out, v);
    }
}

/// A JSON string: copied as is when nothing in it needs escaping (the usual id or name),
/// otherwise through serde_json (same escapes as the derived serializer).
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serializing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 _-]{0,12}",
            any::<String>(),
            Just("a\"b\\c\n\u{1}\u{7f}\u{e9}".to_owned()),
        ]
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            -180.0..180.0f64,
            Just(0.0),
            Just(-0.0),
            Just(1e21),
            Just(f64::NAN),
            Just(f64::INFINITY),
        ]
    }

    fn next_stop() -> impl Strategy<Value = NextStop> {
        (
            text(),
            text(),
            float(),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(id, name, distance_m, eta, scheduled, delay_s)| NextStop {
                id: id.into(),
                name: name.into(),
                distance_m,
                eta,
                scheduled,
                delay_s,
            })
    }

    fn state() -> impl Strategy<Value = VehicleState> {
        let head = (
            text(),
            [float(), float(), float(), float()],
            any::<i64>(),
            proptest::option::of(float()),
            proptest::option::of(float()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            prop_oneof![
                Just(VehicleStatus::Moving),
                Just(VehicleStatus::Stopped),
                Just(VehicleStatus::Offline)
            ],
        );
        let tail = (
            proptest::option::of(any::<bool>()),
            [
                proptest::option::of(float()),
                proptest::option::of(float()),
                proptest::option::of(float()),
                proptest::option::of(float()),
                proptest::option::of(float()),
            ],
            proptest::option::of(next_stop()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<bool>()),
            [any::<i64>(), any::<i64>()],
        );
        (head, tail).prop_map(
            |(
                (vehicle, [lat, lon, raw_lat, raw_lon], ts, speed, heading, route, trip, status),
                (on_route, [off, progress, accuracy, altitude, battery], stop, delay, inferred, at),
            )| VehicleState {
                vehicle: vehicle.into(),
                lat,
                lon,
                raw_lat,
                raw_lon,
                ts,
                speed,
                heading,
                route: route.map(Into::into),
                trip: trip.map(Into::into),
                status,
                on_route,
                off_route_m: off,
                progress_m: progress,
                next_stop: stop,
                delay_s: delay,
                trip_inferred: inferred,
                accuracy,
                altitude,
                battery,
                received_at: at[0],
                processed_at: at[1],
            },
        )
    }

    fn empty() -> VehicleState {
        VehicleState {
            vehicle: "".into(),
            lat: 0.0,
            lon: 0.0,
            raw_lat: 0.0,
            raw_lon: 0.0,
            ts: 0,
            speed: None,
            heading: None,
            route: None,
            trip: None,
            status: VehicleStatus::Offline,
            on_route: None,
            off_route_m: None,
            progress_m: None,
            next_stop: None,
            delay_s: None,
            trip_inferred: None,
            accuracy: None,
            altitude: None,
            battery: None,
            received_at: 0,
            processed_at: 0,
        }
    }

    fn full() -> VehicleState {
        VehicleState {
            vehicle: "a long vehicle id".repeat(4).into(),
            speed: Some(1.0),
            heading: Some(2.0),
            route: Some("route".into()),
            trip: Some("trip".into()),
            on_route: Some(true),
            off_route_m: Some(3.0),
            progress_m: Some(4.0),
            next_stop: Some(NextStop {
                id: "stop".into(),
                name: "a long stop name".repeat(4).into(),
                distance_m: 5.0,
                eta: Some(6),
                scheduled: Some(7),
                delay_s: Some(8),
            }),
            delay_s: Some(9),
            trip_inferred: Some(true),
            accuracy: Some(10.0),
            altitude: Some(11.0),
            battery: Some(12.0),
            ..empty()
        }
    }

    proptest! {
        #[test]
        fn same_bytes_as_the_derived_serializer(state in state()) {
            let mut ours = Vec::new();
            write_state(&state, &mut ours);
            let derived = serde_json::to_vec(&state).unwrap_or_default();
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&derived));
        }

        #[test]
        fn clone_from_copies_every_field(b in state()) {
            // Over a state with every field set and over one with none; compared as JSON (a
            // NaN field is not equal to itself).
            let mut y = Vec::new();
            write_state(&b.clone(), &mut y);
            for mut copy in [full(), empty()] {
                copy.clone_from(&b);
                let mut x = Vec::new();
                write_state(&copy, &mut x);
                prop_assert_eq!(&x, &y);
            }
        }
    }
}
