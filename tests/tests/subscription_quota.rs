//! A client cannot grow its subscriptions without end (hostile input, issue 7's footprint):
//! past `MAX_FILTERS_PER_SESSION` distinct filters a new one is refused with SUBACK 0x97
//! (0x80 in 3.1.1) while the filters it holds keep working and can be re-subscribed.

use std::time::Duration;

use fleetmq_tests::packets::{self, Version, kind};
use fleetmq_tests::{HarnessError, RawClient, Server};

type TestResult = Result<(), HarnessError>;

/// The broker's limit (`fleetmq::router::MAX_FILTERS_PER_SESSION`).
const LIMIT: usize = 10_000;

fn fill(client: &mut RawClient) -> TestResult {
    for i in 0..LIMIT {
        let pkid = u16::try_from(i % 60_000 + 1).unwrap_or(1);
        let codes = client.subscribe(pkid, &format!("quota/{i}"), 0)?;
        assert_eq!(codes, vec![0], "filter {i} refused");
    }
    Ok(())
}

#[test]
fn filters_past_the_quota_are_refused_and_held_ones_still_work() -> TestResult {
    let server = Server::start(&[])?;
    let (mut v5, _) = RawClient::connect_with(
        server.mqtt_addr(),
        Version::V5,
        &packets::connect(Version::V5, "quota-v5", 60),
    )?;
    fill(&mut v5)?;
    assert_eq!(v5.subscribe(1, "quota/one-too-many", 0)?, vec![0x97]);
    // Re-subscribing a held filter is not a new one.
    assert_eq!(v5.subscribe(2, "quota/7", 1)?, vec![1]);
    // And the held filters still deliver.
    let (mut publisher, _) = RawClient::connect_with(
        server.mqtt_addr(),
        Version::V311,
        &packets::connect(Version::V311, "quota-pub", 60),
    )?;
    publisher.send(&packets::publish(Version::V311, b"quota/9999", 0, 0, b"hi"))?;
    let delivered = v5.expect(kind::PUBLISH, Duration::from_secs(10))?;
    assert_eq!(delivered.publish_payload(Version::V5), Some(&b"hi"[..]));

    let (mut v311, _) = RawClient::connect_with(
        server.mqtt_addr(),
        Version::V311,
        &packets::connect(Version::V311, "quota-311", 60),
    )?;
    fill(&mut v311)?;
    assert_eq!(v311.subscribe(3, "quota/one-too-many", 0)?, vec![0x80]);
    Ok(())
}
