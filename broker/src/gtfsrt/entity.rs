//! One vehicle as GTFS-Realtime entities: its VehiclePosition, the TripUpdate of its trip (the
//! remaining stops with predicted times), and an Alert (effect DETOUR) while it deviates.

use geo_engine::Network;
use geo_engine::schedule::TripFit;
use gtfs_realtime::trip_update::{StopTimeEvent, StopTimeUpdate};
use gtfs_realtime::{
    Alert, EntitySelector, FeedEntity, Position, TranslatedString, TripDescriptor, TripUpdate,
    VehicleDescriptor, VehiclePosition, alert, translated_string, trip_descriptor, trip_update,
    vehicle_position,
};

use super::live::Live;

/// The trip descriptor of a fit: trip, route, service date, scheduled.
fn trip_descriptor(net: &Network, fit: &TripFit) -> Option<TripDescriptor> {
    let sched = net.schedule()?;
    let trip = sched.trips.get(fit.trip as usize)?;
    Some(TripDescriptor {
        trip_id: Some(trip.id.clone()),
        route_id: net
            .routes()
            .get(trip.route as usize)
            .map(|r| r.id.to_string()),
        direction_id: trip.direction.map(u32::from),
        start_date: Some(fit.start_date.to_string()),
        schedule_relationship: Some(trip_descriptor::ScheduleRelationship::Scheduled as i32),
        ..TripDescriptor::default()
    })
}

fn vehicle_descriptor(live: &Live) -> VehicleDescriptor {
    VehicleDescriptor {
        id: Some(live.state.vehicle.to_string()),
        label: Some(live.state.vehicle.to_string()),
        ..VehicleDescriptor::default()
    }
}

/// The VehiclePosition entity (id = vehicle id).
pub fn vehicle_position(net: &Network, live: &Live) -> FeedEntity {
    let s = &live.state;
    let fit = live.fit.as_ref();
    let pattern = fit.and_then(|f| Some((f, net.schedule()?.pattern(f.trip)?)));
    let stop = pattern.and_then(|(f, p)| {
        let k = f.next as usize;
        let stop_id = net.stops().get(*p.stops.get(k)? as usize)?.id.to_string();
        Some((p.sequences[k], stop_id, f.at_stop.is_some()))
    });
    let status = |at: bool| {
        if at {
            vehicle_position::VehicleStopStatus::StoppedAt
        } else {
            vehicle_position::VehicleStopStatus::InTransitTo
        }
    };
    FeedEntity {
        id: s.vehicle.to_string(),
        vehicle: Some(VehiclePosition {
            trip: fit.and_then(|f| trip_descriptor(net, f)),
            vehicle: Some(vehicle_descriptor(live)),
            position: Some(Position {
                latitude: s.lat as f32,
                longitude: s.lon as f32,
                bearing: s.heading.map(|h| h as f32),
                speed: s.speed.map(|v| v as f32),
                ..Position::default()
            }),
            current_stop_sequence: stop.as_ref().map(|s| s.0),
            stop_id: stop.as_ref().map(|s| s.1.clone()),
            current_status: stop.as_ref().map(|s| status(s.2) as i32),
            timestamp: Some((s.ts / 1000).max(0) as u64),
            ..VehiclePosition::default()
        }),
        ..FeedEntity::default()
    }
}

/// The TripUpdate entity of the vehicle's trip (id = trip id): every remaining stop in
/// `stop_sequence` order with predicted arrival and departure; `None` without a trip or when
/// no stop remains.
pub fn trip_update(net: &Network, live: &Live) -> Option<FeedEntity> {
    let fit = live.fit.as_ref()?;
    let sched = net.schedule()?;
    let pattern = sched.pattern(fit.trip)?;
    let updates: Vec<StopTimeUpdate> = fit
        .predictions(sched)
        .into_iter()
        .filter_map(|p| {
            let stop_id = net
                .stops()
                .get(pattern.stops[p.index] as usize)?
                .id
                .to_string();
            Some(StopTimeUpdate {
                stop_sequence: Some(pattern.sequences[p.index]),
                stop_id: Some(stop_id),
                arrival: Some(StopTimeEvent {
                    time: Some(p.arrival_ms / 1000),
                    ..StopTimeEvent::default()
                }),
                departure: Some(StopTimeEvent {
                    time: Some(p.departure_ms / 1000),
                    ..StopTimeEvent::default()
                }),
                schedule_relationship: Some(
                    trip_update::stop_time_update::ScheduleRelationship::Scheduled as i32,
                ),
                ..StopTimeUpdate::default()
            })
        })
        .collect();
    if updates.is_empty() {
        return None;
    }
    let trip = trip_descriptor(net, fit)?;
    Some(FeedEntity {
        id: trip.trip_id.clone().unwrap_or_default(),
        trip_update: Some(TripUpdate {
            trip,
            vehicle: Some(vehicle_descriptor(live)),
            stop_time_update: updates,
            timestamp: Some((live.state.ts / 1000).max(0) as u64),
            delay: fit.delay_s,
            ..TripUpdate::default()
        }),
        ..FeedEntity::default()
    })
}

fn text(s: String) -> TranslatedString {
    TranslatedString {
        translation: vec![translated_string::Translation {
            text: s,
            language: Some("en".into()),
        }],
    }
}

/// The DETOUR Alert of a deviating vehicle on a known route (id = `detour-{vehicle}`).
pub fn detour_alert(net: &Network, live: &Live) -> Option<FeedEntity> {
    live.deviated_since?;
    let s = &live.state;
    let route = s
        .route
        .as_deref()
        .filter(|r| net.route_index(r).is_some())?;
    let trip = live.fit.as_ref().and_then(|f| trip_descriptor(net, f));
    let what = match &trip {
        Some(t) => format!(
            "trip {} of route {route}",
            t.trip_id.as_deref().unwrap_or_default()
        ),
        None => format!("route {route}"),
    };
    Some(FeedEntity {
        id: format!("detour-{}", s.vehicle),
        // No active_period (deprecated for this use): an alert is active while it is in the feed.
        alert: Some(Alert {
            informed_entity: vec![EntitySelector {
                route_id: Some(route.to_owned()),
                trip,
                ..EntitySelector::default()
            }],
            cause: Some(alert::Cause::UnknownCause as i32),
            effect: Some(alert::Effect::Detour as i32),
            header_text: Some(text(format!("Detour on {what}"))),
            description_text: Some(text(format!(
                "Vehicle {} is {} m off its route.",
                s.vehicle,
                s.off_route_m.unwrap_or_default().round()
            ))),
            ..Alert::default()
        }),
        ..FeedEntity::default()
    })
}
