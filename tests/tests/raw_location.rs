//! A driver's raw `fleet/{id}/location` publish is routed only while some subscription can match
//! it (the broker skips it otherwise, docs/topics-and-payloads.md#location-updates): a subscriber
//! that arrives after unrouted updates gets the next one at once, one whose session ended stops
//! counting, and the processed `vehicles/{id}` state flows either way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetmq_tests::packets::{self, Version, kind};
use fleetmq_tests::{HarnessError, RawClient, RawPacket, Server};

type TestResult = Result<(), HarnessError>;

const WAIT: Duration = Duration::from_secs(10);

/// The topic of a PUBLISH.
fn topic(p: &RawPacket) -> String {
    let len = usize::from(u16::from_be_bytes([
        p.body.first().copied().unwrap_or(0),
        p.body.get(1).copied().unwrap_or(0),
    ]));
    String::from_utf8_lossy(p.body.get(2..2 + len).unwrap_or_default()).into_owned()
}

/// The next PUBLISH on `topic` (others are skipped), within [`WAIT`].
fn next_on(client: &mut RawClient, want: &str) -> Result<RawPacket, HarnessError> {
    loop {
        let p = client.expect(kind::PUBLISH, WAIT)?;
        if topic(&p) == want {
            return Ok(p);
        }
    }
}

/// Fix `k` of a bus moving north at about 11 m/s: every fix is forwarded.
fn fix(k: i64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let ts = now - 3_600_000 + k * 10_000;
    let lat = -16.92 + 0.001 * k as f64;
    format!(r#"{{"lat":{lat},"lon":145.77,"ts":{ts}}}"#).into_bytes()
}

#[test]
fn raw_locations_reach_matching_subscribers_only() -> TestResult {
    let server = Server::start(&[])?;
    let addr = server.mqtt_addr();
    let mut states = RawClient::connect(addr, Version::V5, "states")?;
    assert_eq!(states.subscribe(1, "vehicles/+", 0)?, vec![0]);
    // Not a location filter: it does not make the broker route raw locations.
    let mut pings = RawClient::connect(addr, Version::V5, "pings")?;
    assert_eq!(pings.subscribe(1, "fleet/+/ping", 0)?, vec![0]);
    let mut driver = RawClient::connect(addr, Version::V5, "raw-bus")?;
    let send = |driver: &mut RawClient, k: i64| {
        let payload = fix(k);
        driver.send(&packets::publish(
            Version::V5,
            b"fleet/raw-bus/location",
            0,
            0,
            &payload,
        ))?;
        Ok::<_, HarnessError>(payload)
    };

    // Nobody can receive the raw update: its state still arrives.
    send(&mut driver, 0)?;
    next_on(&mut states, "vehicles/raw-bus")?;

    // A raw subscriber gets the very next update, payload unchanged.
    let mut raw = RawClient::connect(addr, Version::V5, "raw")?;
    assert_eq!(raw.subscribe(1, "fleet/+/location", 0)?, vec![0]);
    let sent = send(&mut driver, 1)?;
    let got = next_on(&mut raw, "fleet/raw-bus/location")?;
    assert_eq!(got.publish_payload(Version::V5), Some(&sent[..]));
    next_on(&mut states, "vehicles/raw-bus")?;

    // Its session ends; a shared `#` subscriber takes over and gets the next one.
    raw.send(&packets::disconnect())?;
    raw.wait_closed(WAIT)?;
    let mut all = RawClient::connect(addr, Version::V5, "all")?;
    assert_eq!(all.subscribe(1, "$share/g/#", 0)?, vec![0]);
    let sent = send(&mut driver, 2)?;
    let got = next_on(&mut all, "fleet/raw-bus/location")?;
    assert_eq!(got.publish_payload(Version::V5), Some(&sent[..]));
    next_on(&mut states, "vehicles/raw-bus")?;

    // The ping subscriber never saw a location.
    let quiet = pings.read_packet(Duration::from_millis(200));
    assert!(
        matches!(quiet, Err(HarnessError::Timeout(..))),
        "a fleet/+/ping subscriber got {quiet:?}"
    );
    driver.ping()
}
