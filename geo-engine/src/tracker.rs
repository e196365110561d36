//! Per-vehicle pipeline state tying the stages together: validate → dedup → jitter → smooth →
//! match → events (docs/pipeline.md), plus offline/online. A tracker is plain data (`Serialize` +
//! `Deserialize`) so the broker can snapshot it to Redis and restore it.

use std::sync::Arc;

use geo::Point;
use serde::{Deserialize, Serialize};

use crate::config::PipelineConfig;
use crate::corridor::{MIN_LOOKAHEAD_M, Previous};
use crate::dedup::Dedup;
use crate::deviation::{Deviation, Transition};
use crate::fix::Fix;
use crate::geofence::{Crossing, Geofences};
use crate::jitter::Jitter;
use crate::kalman::Kalman;
use crate::local::{LocalFrame, haversine_m};
use crate::network::Network;
use crate::schedule::{FixOnRoute, TripFit, TripTracking};

use crate::state::{Event, EventKind, VehicleState, VehicleStatus};
use crate::stops::{StopChange, Stops};
use crate::validate::{LastFix, Rejection, validate};

mod snapshot;

pub use snapshot::{SNAPSHOT_MAGIC, SnapshotError};

/// The look-ahead along the route never exceeds this, metres.
const LOOKAHEAD_CAP_M: f64 = 5_000.0;

/// The least measurement standard deviation the filter is given, metres: a device claiming
/// better is not believed.
const MIN_SIGMA_M: f64 = 1.0;

/// A fix farther than this from the tracker's frame origin re-anchors the frame, metres.
const FRAME_REANCHOR_M: f64 = 50_000.0;

/// The look-ahead assumes at least this speed, m/s, so a vehicle that was stopped may still
/// pull away between two fixes.
const LOOKAHEAD_MIN_SPEED: f64 = 3.0;

/// The look-ahead covers this multiple of the distance the vehicle can have driven since.
const LOOKAHEAD_MARGIN: f64 = 1.5;

/// Published positions keep 7 decimals of a degree (~1 cm).
const POSITION_SCALE: f64 = 1e7;

/// Published speeds keep 2 decimals of m/s.
const SPEED_SCALE: f64 = 100.0;

/// Published headings and distances keep 1 decimal (degrees, metres).
const TENTHS: f64 = 10.0;

/// Rounds `x` to `1 / scale`.
fn round(x: f64, scale: f64) -> f64 {
    (x * scale).round() / scale
}

/// One smoothed fix, as matching and the events see it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Smoothed position.
    at: Point<f64>,
    /// Device time, Unix ms.
    ts: i64,
    /// Speed now (reported, else the filter's), m/s.
    speed: f64,
}

/// What happened to one fix that passed validation.
// Returned once per fix and matched at once: boxing the state would cost an allocation per fix.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Processed: publish the state (retained) and the events.
    Forwarded {
        /// The new processed state.
        state: VehicleState,
        /// Events raised by this fix, in order.
        events: Vec<Event>,
    },
    /// Not newer than what was accepted: dropped.
    Duplicate,
    /// A stationary wobble: not forwarded; last-seen was refreshed.
    Jitter,
}

/// The corridor a vehicle is following and how far along it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RouteMatch {
    /// Index into the network's corridors.
    corridor: usize,
    /// The corridor's id, to notice a different network after a restore.
    corridor_id: String,
    /// Progress, metres; never decreases within a pass.
    progress_m: f64,
    /// Device time of the fix that last matched inside the corridor, Unix ms.
    #[serde(default)]
    ts: i64,
}

/// One vehicle's pipeline state. Serialized through [`snapshot`]'s field list (the same JSON a
/// derive would make), so a snapshot can also take its state's JSON ready-made.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Tracker {
    /// Shared with every state of the vehicle (as the route, trip and stop names are: a state
    /// per update takes them without allocating).
    vehicle: Arc<str>,
    /// Last declared route and trip (a fix without them keeps the previous ones).
    route: Option<Arc<str>>,
    trip: Option<Arc<str>>,
    /// Last accepted fix, for the teleport check.
    last: Option<LastFix>,
    dedup: Dedup,
    jitter: Jitter,
    /// Frame of the Kalman filter, anchored near the vehicle.
    frame: Option<LocalFrame>,
    kalman: Option<Kalman>,
    matched: Option<RouteMatch>,
    deviation: Deviation,
    stops: Stops,
    geofences: Geofences,
    state: Option<VehicleState>,
    /// Broker clock of the last accepted fix, Unix ms.
    last_seen_ms: Option<i64>,
    offline: bool,
    /// The scheduled trip and its adherence (GTFS networks only).
    #[serde(default)]
    schedule: TripTracking,
}

impl Tracker {
    /// A tracker for a vehicle not seen before.
    pub fn new(vehicle: &str) -> Tracker {
        Tracker {
            vehicle: vehicle.into(),
            route: None,
            trip: None,
            last: None,
            dedup: Dedup::default(),
            jitter: Jitter::default(),
            frame: None,
            kalman: None,
            matched: None,
            deviation: Deviation::default(),
            stops: Stops::default(),
            geofences: Geofences::default(),
            state: None,
            last_seen_ms: None,
            offline: false,
            schedule: TripTracking::default(),
        }
    }

    /// The vehicle id.
    pub fn vehicle(&self) -> &str {
        &self.vehicle
    }

    /// The latest processed state, if any fix was forwarded.
    pub fn state(&self) -> Option<&VehicleState> {
        self.state.as_ref()
    }

    /// Broker clock of the last accepted fix, Unix ms.
    pub fn last_seen_ms(&self) -> Option<i64> {
        self.last_seen_ms
    }

    /// The scheduled trip the vehicle runs and how late it is, on a GTFS network.
    pub fn trip_fit(&self) -> Option<&TripFit> {
        self.schedule.fit()
    }

    /// The next `max` stops ahead with their ETAs (`GET /api/v1/vehicles/{id}/stops`): on a trip
    /// with a timetable its remaining stops as the GTFS-Realtime TripUpdate predicts them (with
    /// `scheduled` and `delay_s`); otherwise the stops ahead on the matched corridor, ETA by the
    /// recent average speed as for `next_stop`. Empty when the vehicle matches no route.
    pub fn upcoming_stops(&self, net: &Network, max: usize) -> Vec<crate::state::NextStop> {
        if let (Some(sched), Some(fit)) = (net.schedule(), self.schedule.fit())
            && !fit.finished
        {
            let trip = fit.upcoming(sched, net, max);
            if !trip.is_empty() {
                return trip;
            }
        }
        match (&self.matched, &self.state) {
            (Some(m), Some(s)) => self.stops.upcoming(
                net,
                m.corridor,
                m.progress_m,
                s.ts,
                s.speed.unwrap_or(0.0),
                max,
            ),
            _ => Vec::new(),
        }
    }

    /// Whether a deviation is in progress.
    pub fn is_deviated(&self) -> bool {
        self.deviation.is_deviated()
    }

    /// One fix through validate → dedup → jitter → smooth → match → events. `now_ms` is the
    /// broker clock when the fix arrived.
    ///
    /// The first forwarded fix of a vehicle, and the first after it went offline, raises
    /// `online`; a jitter fix then is forwarded (the vehicle must come back). Events come in
    /// this order: online, stop departure on leaving the route, deviation / back on route,
    /// stop departure / arrival, geofence exit / enter.
    ///
    /// # Errors
    /// The validation [`Rejection`]; the tracker is unchanged then.
    pub fn process(
        &mut self,
        net: &Network,
        cfg: &PipelineConfig,
        fix: Fix,
        now_ms: i64,
    ) -> Result<Outcome, Rejection> {
        let route = fix.route.as_deref().or(self.route.as_deref());
        let cfg = &*net.route_config(route, cfg);
        validate(&fix, self.last.as_ref(), cfg, now_ms)?;
        if self.dedup.is_duplicate(&fix) {
            return Ok(Outcome::Duplicate);
        }
        self.dedup.accept(&fix);
        self.last = Some(LastFix::of(&fix));
        self.last_seen_ms = Some(now_ms);
        let resuming = self.offline || self.state.is_none();
        if !resuming && self.jitter.is_jitter(&fix, cfg) {
            return Ok(Outcome::Jitter);
        }
        self.jitter.forwarded(&fix);
        let mut events = Vec::new();
        self.declare(net, &fix, &mut events);
        if resuming {
            // After `declare`, so the event carries the route and trip of this fix.
            self.offline = false;
            events.insert(0, self.event(EventKind::Online, fix.ts, fix.position()));
        }

        // Smooth.
        let (at, vel) = self.smooth(&fix, cfg);
        let speed_now = fix.speed.unwrap_or_else(|| vel[0].hypot(vel[1]));
        let heading = fix.heading.map(|h| h.rem_euclid(360.0)).or_else(|| {
            (vel[0].hypot(vel[1]) >= cfg.min_speed)
                .then(|| vel[0].atan2(vel[1]).to_degrees().rem_euclid(360.0))
        });

        // Match and events.
        let sample = Sample {
            at,
            ts: fix.ts,
            speed: speed_now,
        };
        let mut m = self.match_route(net, cfg, sample, &mut events);
        let fit = self.fit_schedule(net, cfg, sample, &mut m);
        if self.route.is_none() {
            // A vehicle that declared no route: its events name the route it was matched to.
            for e in events.iter_mut().filter(|e| e.route.is_none()) {
                e.route = m.route.as_deref().map(str::to_owned);
            }
        }
        for c in self.geofences.update(net, at) {
            let (kind, id) = match c {
                Crossing::Enter(id) => (EventKind::GeofenceEnter, id),
                Crossing::Exit(id) => (EventKind::GeofenceExit, id),
            };
            let mut e = self.event(kind, fix.ts, at);
            e.geofence_id = Some(id);
            events.push(e);
        }

        let state = VehicleState {
            vehicle: self.vehicle.clone(),
            lat: round(at.y(), POSITION_SCALE),
            lon: round(at.x(), POSITION_SCALE),
            raw_lat: fix.lat,
            raw_lon: fix.lon,
            ts: fix.ts,
            speed: Some(round(speed_now, SPEED_SCALE)),
            heading: heading.map(|h| round(h, TENTHS)),
            route: self.route.clone().or(m.route),
            trip: self
                .trip
                .clone()
                .or_else(|| fit.as_ref().and_then(|f| f.trip_id.clone())),
            status: if speed_now < cfg.min_speed {
                VehicleStatus::Stopped
            } else {
                VehicleStatus::Moving
            },
            on_route: m.on_route,
            off_route_m: m.off_route_m.map(|d| round(d, TENTHS)),
            progress_m: m.progress_m.map(|p| round(p, TENTHS)),
            next_stop: m.next_stop,
            delay_s: fit.as_ref().and_then(|f| f.delay_s).map(i64::from),
            trip_inferred: fit.as_ref().and_then(|f| f.inferred.then_some(true)),
            accuracy: fix.accuracy,
            altitude: fix.altitude,
            battery: fix.battery,
            received_at: now_ms,
            processed_at: now_ms,
        };
        // A copy shares the strings: no allocation.
        self.state = Some(state.clone());
        Ok(Outcome::Forwarded { state, events })
    }

    /// Goes offline (called on disconnect): the offline state and event, once.
    pub fn mark_offline(&mut self, now_ms: i64) -> Option<(VehicleState, Event)> {
        if self.offline {
            return None;
        }
        let state = self.state.as_mut()?;
        self.offline = true;
        state.status = VehicleStatus::Offline;
        state.processed_at = now_ms;
        let at = state.position();
        let state = state.clone();
        Some((state, self.event(EventKind::Offline, now_ms, at)))
    }

    /// [`Tracker::check_stale`] with the `stale_after` of the vehicle's route when its route
    /// file sets one (`stale_after` property), else `cfg`'s.
    pub fn check_stale_on(
        &mut self,
        net: &Network,
        cfg: &PipelineConfig,
        now_ms: i64,
    ) -> Option<(VehicleState, Event)> {
        let cfg = net.route_config(self.route.as_deref(), cfg);
        self.check_stale(&cfg, now_ms)
    }

    /// Goes offline when no fix came for `stale_after`: the offline state and event, once.
    pub fn check_stale(
        &mut self,
        cfg: &PipelineConfig,
        now_ms: i64,
    ) -> Option<(VehicleState, Event)> {
        let seen = self.last_seen_ms?;
        if now_ms.saturating_sub(seen) < cfg.stale_after_ms {
            return None;
        }
        self.mark_offline(now_ms)
    }

    /// Takes the route and trip a fix declares; a change of either restarts matching.
    fn declare(&mut self, net: &Network, fix: &Fix, events: &mut Vec<Event>) {
        let route_changed = fix.route.is_some() && fix.route.as_deref() != self.route.as_deref();
        let trip_changed = fix.trip.is_some() && fix.trip.as_deref() != self.trip.as_deref();
        if route_changed || trip_changed {
            if let Some(StopChange::Departure(si)) = self.stops.leave(net) {
                events.push(self.stop_event(
                    net,
                    EventKind::StopDeparture,
                    si,
                    fix.ts,
                    fix.position(),
                ));
            }
            if route_changed {
                self.deviation.reset();
            }
            self.matched = None;
            self.stops = Stops::default();
        }
        // Shared with the states: replaced (allocated) only when the declaration changes.
        if route_changed {
            self.route = fix.route.as_deref().map(Arc::from);
        }
        if trip_changed {
            self.trip = fix.trip.as_deref().map(Arc::from);
        }
    }

    /// Runs the Kalman filter; returns the smoothed position and velocity (m/s east, north).
    fn smooth(&mut self, fix: &Fix, cfg: &PipelineConfig) -> (Point<f64>, [f64; 2]) {
        let sigma = fix
            .accuracy
            .unwrap_or(cfg.default_accuracy_m)
            .max(MIN_SIGMA_M);
        let raw = fix.position();
        let frame = match self.frame {
            Some(f) if haversine_m(f.origin(), raw) < FRAME_REANCHOR_M => f,
            _ => {
                self.kalman = None;
                *self.frame.insert(LocalFrame::new(raw))
            }
        };
        let z = frame.to_local(raw);
        let k = match self.kalman.as_mut() {
            Some(k) if fix.ts - k.ts() <= cfg.filter_reset_ms && k.is_finite() => {
                k.step(z, sigma, fix.ts, cfg.process_noise);
                *k
            }
            _ => *self.kalman.insert(Kalman::new(z, sigma, fix.ts)),
        };
        (frame.to_geo(k.position()), k.velocity())
    }

    /// Matches the smoothed position, updates deviation and stops, and pushes their events.
    fn match_route(
        &mut self,
        net: &Network,
        cfg: &PipelineConfig,
        sample: Sample,
        events: &mut Vec<Event>,
    ) -> MatchView {
        let Sample { at, ts, speed } = sample;
        let route_idx = self.route.as_deref().and_then(|r| net.route_index(r));
        // Forget a match that refers to another network (restored snapshot) or route.
        if let Some(m) = &self.matched {
            let valid = net
                .corridors()
                .get(m.corridor)
                .is_some_and(|c| c.id == m.corridor_id && route_idx.is_none_or(|ri| c.route == ri));
            if !valid {
                self.matched = None;
                self.stops = Stops::default();
            }
        }
        let p = net.frame().to_local(at);
        let prev = match (
            self.trip.as_deref().and_then(|t| net.trip_corridor(t)),
            &self.matched,
        ) {
            (_, Some(m)) => {
                // As far as the vehicle can have got since, generously.
                let dt_s = (ts.saturating_sub(m.ts)).max(0) as f64 / 1000.0;
                let lookahead_m = (MIN_LOOKAHEAD_M
                    + speed.max(LOOKAHEAD_MIN_SPEED) * dt_s * LOOKAHEAD_MARGIN)
                    .min(LOOKAHEAD_CAP_M);
                Some(Previous {
                    corridor: m.corridor,
                    progress_m: m.progress_m,
                    lookahead_m,
                })
            }
            (Some(ci), None) => Some(Previous {
                corridor: ci,
                progress_m: 0.0,
                lookahead_m: f64::INFINITY,
            }),
            (None, None) => None,
        };
        let Some(proj) = net.match_local(route_idx, p, cfg.corridor_m, prev) else {
            return MatchView::default();
        };
        let width = net.corridor_width(proj.corridor, cfg.corridor_m);
        let inside = proj.off_route_m <= width;
        match self.deviation.update(
            proj.off_route_m,
            width,
            cfg.corridor_hysteresis_m,
            cfg.off_route_fixes,
        ) {
            Some(Transition::Deviated) => {
                if let Some(StopChange::Departure(si)) = self.stops.leave(net) {
                    events.push(self.stop_event(net, EventKind::StopDeparture, si, ts, at));
                }
                let mut e = self.event(EventKind::Deviation, ts, at);
                e.off_route_m = Some(round(proj.off_route_m, TENTHS));
                events.push(e);
            }
            Some(Transition::BackOnRoute) => {
                events.push(self.event(EventKind::BackOnRoute, ts, at))
            }
            None => {}
        }
        if inside {
            let corridor_id = net
                .corridors()
                .get(proj.corridor)
                .map(|c| c.id.clone())
                .unwrap_or_default();
            match self.matched.as_mut() {
                Some(m) if m.corridor == proj.corridor => {
                    m.ts = ts;
                    if proj.progress_m < m.progress_m - cfg.progress_reset_m {
                        m.progress_m = proj.progress_m;
                        self.stops.new_pass();
                    } else {
                        m.progress_m = m.progress_m.max(proj.progress_m);
                    }
                }
                _ => {
                    self.matched = Some(RouteMatch {
                        corridor: proj.corridor,
                        corridor_id,
                        progress_m: proj.progress_m,
                        ts,
                    });
                }
            }
            if let Some(m) = &self.matched {
                let (ci, prog) = (m.corridor, m.progress_m);
                for change in self.stops.update(net, ci, p, prog, ts, cfg) {
                    let (kind, si) = match change {
                        StopChange::Arrival(si) => (EventKind::StopArrival, si),
                        StopChange::Departure(si) => (EventKind::StopDeparture, si),
                    };
                    events.push(self.stop_event(net, kind, si, ts, at));
                }
            }
        }
        let route = net
            .corridors()
            .get(proj.corridor)
            .and_then(|c| net.routes().get(c.route))
            .map(|r| r.id.clone());
        let (progress_m, next_stop) = match &self.matched {
            Some(m) => (
                Some(m.progress_m),
                self.stops
                    .next_stop(net, m.corridor, m.progress_m, ts, speed),
            ),
            None => (None, None),
        };
        MatchView {
            route,
            on_route: Some(!self.deviation.is_deviated()),
            off_route_m: Some(proj.off_route_m),
            progress_m,
            next_stop,
        }
    }

    /// Trip inference and schedule adherence (docs/gtfs-realtime.md) for a fix matched as `m`;
    /// fills `next_stop.scheduled`. Nothing on a network without timetables.
    fn fit_schedule(
        &mut self,
        net: &Network,
        cfg: &PipelineConfig,
        sample: Sample,
        m: &mut MatchView,
    ) -> Option<FitView> {
        let sched = net.schedule()?;
        let declared = self.trip.is_some();
        let route = self.route.as_deref().and_then(|r| net.route_index(r));
        let fix = FixOnRoute {
            route,
            trip: self.trip.as_deref(),
            point: net.frame().to_local(sample.at),
            width_m: route
                .and_then(|r| net.routes()[r].corridor_m)
                .unwrap_or(cfg.corridor_m),
            ts: sample.ts,
            stop_radius_m: cfg.stop_radius_m,
            progress_reset_m: cfg.progress_reset_m,
        };
        let fit = self.schedule.update(sched, net, &fix)?;
        if let Some(next) = m.next_stop.as_mut() {
            next.scheduled = fit.scheduled_arrival_ms(sched, net, &next.id);
        }
        Some(FitView {
            delay_s: fit.delay_s,
            inferred: fit.inferred,
            trip_id: (!declared).then(|| fit.trip_id.clone()),
        })
    }

    fn event(&self, kind: EventKind, ts: i64, at: Point<f64>) -> Event {
        Event {
            kind,
            vehicle: self.vehicle.to_string(),
            ts,
            lat: at.y(),
            lon: at.x(),
            route: self.route.as_deref().map(str::to_owned),
            trip: self.trip.as_deref().map(str::to_owned),
            stop_id: None,
            stop_name: None,
            geofence_id: None,
            off_route_m: None,
            message: None,
        }
    }

    fn stop_event(
        &self,
        net: &Network,
        kind: EventKind,
        stop: usize,
        ts: i64,
        at: Point<f64>,
    ) -> Event {
        let mut e = self.event(kind, ts, at);
        if let Some(s) = net.stops().get(stop) {
            e.stop_id = Some(s.id.to_string());
            e.stop_name = Some(s.name.to_string());
        }
        e
    }
}

/// What a state shows of the trip fit (the inferred trip's id only when no trip was declared).
struct FitView {
    delay_s: Option<i32>,
    inferred: bool,
    trip_id: Option<Arc<str>>,
}

/// The route-related fields of a state.
#[derive(Debug, Default)]
struct MatchView {
    route: Option<Arc<str>>,
    on_route: Option<bool>,
    off_route_m: Option<f64>,
    progress_m: Option<f64>,
    next_stop: Option<crate::state::NextStop>,
}
