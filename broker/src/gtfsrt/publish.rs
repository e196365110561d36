//! GTFS-Realtime over MQTT (docs/gtfs-realtime.md): for each processed fix, the vehicle's
//! VehiclePosition on `gtfsrt/vehicle-positions/{vehicle_id}`, and its TripUpdate on
//! `gtfsrt/trip-updates/{route_id}/{trip_id}` when the trip, delay or next stop changed; each a
//! one-entity `FeedMessage` (incrementality DIFFERENTIAL: it updates one entity, it does not
//! replace the dataset), QoS 1, retained. When a vehicle's trip changes, the old trip's retained
//! message is cleared. Ids are put in topic levels with `/`, `+`, `#` and `%` percent-encoded.

use std::sync::{Arc, LazyLock};

use fleetmq_codec::{Bytes, Properties, QoS};
use geo_engine::Network;
use gtfs_realtime::{FeedEntity, FeedMessage, feed_header};
use prost::Message as _;

use super::entity::{trip_update, vehicle_position};
use super::feed::header;
use super::live::Live;
use crate::message::{Message, Origin};

static PROTOBUF: LazyLock<Arc<Properties>> = LazyLock::new(|| {
    Arc::new(Properties {
        content_type: Some("application/x-protobuf".into()),
        ..Properties::default()
    })
});

/// An id as one topic level.
fn level(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

fn message(topic: String, payload: Bytes) -> Arc<Message> {
    Arc::new(Message {
        topic: topic.into(),
        payload,
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Some(PROTOBUF.clone()),
        expires_at: None,
        origin: Origin::Broker,
    })
}

fn one_entity(entity: FeedEntity, ts_ms: i64) -> Bytes {
    let msg = FeedMessage {
        header: header(
            (ts_ms / 1000).max(0) as u64,
            feed_header::Incrementality::Differential,
        ),
        entity: vec![entity],
    };
    Bytes::from(msg.encode_to_vec())
}

/// The TripUpdate topic of a live vehicle's trip.
fn trip_topic(net: &Network, live: &Live) -> Option<String> {
    let fit = live.fit.as_ref()?;
    let sched = net.schedule()?;
    let trip = sched.trips.get(fit.trip as usize)?;
    let route = net.routes().get(trip.route as usize)?;
    Some(format!(
        "gtfsrt/trip-updates/{}/{}",
        level(&route.id),
        level(&trip.id)
    ))
}

/// The messages for `live`, whose previous record was `prev`.
pub fn changed_messages(net: &Network, live: &Live, prev: Option<&Live>) -> Vec<Arc<Message>> {
    let ts = live.state.ts;
    let mut out = vec![message(
        format!("gtfsrt/vehicle-positions/{}", level(&live.state.vehicle)),
        one_entity(vehicle_position(net, live), ts),
    )];
    let key = |l: &Live| l.fit.as_ref().map(|f| (f.trip, f.delay_s, f.next));
    if prev.and_then(key) == key(live) {
        return out;
    }
    let old_topic = prev.and_then(|p| trip_topic(net, p));
    let new_topic = trip_topic(net, live);
    if let Some(old) = old_topic.filter(|o| Some(o) != new_topic.as_ref()) {
        // An empty retained message removes the retained TripUpdate of the trip it left.
        out.push(message(old, Bytes::new()));
    }
    if let (Some(topic), Some(entity)) = (new_topic, trip_update(net, live)) {
        out.push(message(topic, one_entity(entity, ts)));
    }
    out
}
