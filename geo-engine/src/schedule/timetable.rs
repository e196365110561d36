//! The timetable of every trip (GTFS `stop_times.txt`), kept compactly: trips that stop at the
//! same stops of the same corridor share one [`Pattern`] (stops, `stop_sequence`s, timepoint
//! flags and each stop's progress along the corridor); a trip itself is a few numbers and a
//! slice of one shared array of `(arrival, departure)` pairs (8 bytes per stop time).
//!
//! Trips defined by `frequencies.txt` are left out: their stop times are only a template, and a
//! realtime feed has to name each run by its start time, which a fix cannot tell.

use std::collections::HashMap;

use gtfs_structures::{Gtfs, TimepointType};
use jiff::tz::{TimeZone, TimeZoneDatabase};

use super::calendar::Calendar;
use crate::error::LoadError;
use crate::network::Network;

/// Stops of a group of trips along one corridor.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// The corridor (index into [`Network::corridors`]) the trips follow.
    pub corridor: u32,
    /// Network stop indices, in trip order.
    pub stops: Vec<u32>,
    /// GTFS `stop_sequence` of each stop.
    pub sequences: Vec<u32>,
    /// `timepoint`: the times of this stop are held to (an early vehicle waits there).
    pub timepoints: Vec<bool>,
    /// Progress of each stop along the corridor, metres; never decreasing.
    pub progress_m: Vec<f32>,
}

/// Scheduled arrival and departure at one stop, seconds after the service day's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopTime {
    pub arrival: u32,
    pub departure: u32,
}

/// One scheduled trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// GTFS `trip_id`.
    pub id: String,
    /// Network route index.
    pub route: u32,
    /// Calendar service index.
    pub service: u32,
    /// Index into [`Schedule::patterns`].
    pub pattern: u32,
    /// GTFS `direction_id`, when given.
    pub direction: Option<u8>,
    /// First index of this trip's stop times in the shared array.
    first: u32,
}

/// One trip of a timetable made without a feed ([`Schedule::from_trips`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MadeTrip {
    /// Its `trip_id`.
    pub id: String,
    /// The corridor (index into [`Network::corridors`]) it runs over, every stop of it.
    pub corridor: usize,
    /// The service date its times count from.
    pub date: jiff::civil::Date,
    /// One per stop of the corridor, in order, seconds after the date's start; never decreasing.
    pub times: Vec<StopTime>,
}

/// Every trip's timetable and the service calendar of a GTFS feed.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Time zone of the agency (`agency.txt`), in which service days count.
    pub tz: TimeZone,
    pub calendar: Calendar,
    pub patterns: Vec<Pattern>,
    pub trips: Vec<Trip>,
    times: Vec<StopTime>,
    trip_index: HashMap<String, u32>,
    /// Per network route, its trips ordered by first departure.
    route_trips: Vec<Vec<u32>>,
}

impl Schedule {
    /// Builds the timetable of `gtfs`, placing every stop on the corridors of `net` (the network
    /// built from the same feed). `None` when the feed has no usable timed trip.
    ///
    /// # Errors
    /// [`LoadError::Gtfs`] when `agency_timezone` is not a known IANA time zone.
    pub(crate) fn from_gtfs(gtfs: &Gtfs, net: &Network) -> Result<Option<Schedule>, LoadError> {
        let Some(agency) = gtfs.agencies.first() else {
            return Ok(None);
        };
        let tz = TimeZoneDatabase::bundled()
            .get(&agency.timezone)
            .map_err(|e| {
                LoadError::Gtfs(format!(
                    "agency_timezone {:?} is not a known time zone: {e}",
                    agency.timezone
                ))
            })?;
        let calendar = Calendar::from_gtfs(gtfs);
        let stop_index: HashMap<&str, u32> = net
            .stops()
            .iter()
            .enumerate()
            .map(|(i, s)| (&*s.id, i as u32))
            .collect();
        let mut sched = Schedule::empty(tz, calendar, net);
        let mut pattern_index: HashMap<PatternKey, u32> = HashMap::new();
        let mut ids: Vec<&String> = gtfs.trips.keys().collect();
        ids.sort();
        for id in ids {
            let t = &gtfs.trips[id];
            if !t.frequencies.is_empty() {
                continue;
            }
            let (Some(ci), Some(route), Some(service)) = (
                net.trip_corridor(&t.id),
                net.route_index(&t.route_id),
                sched.calendar.service(&t.service_id),
            ) else {
                continue;
            };
            let mut st: Vec<_> = t.stop_times.iter().collect();
            st.sort_by_key(|s| s.stop_sequence);
            let st: Vec<_> = st
                .into_iter()
                .filter(|s| stop_index.contains_key(s.stop.id.as_str()))
                .collect();
            let Some(times) = interpolate(&st) else {
                continue;
            };
            if times.len() < 2 {
                continue;
            }
            let stops: Vec<u32> = st.iter().map(|s| stop_index[s.stop.id.as_str()]).collect();
            let seqs: Vec<u32> = st.iter().map(|s| s.stop_sequence).collect();
            let tps: Vec<bool> = st
                .iter()
                .map(|s| s.timepoint == TimepointType::Exact)
                .collect();
            let key = (ci as u32, stops, seqs, tps);
            let pattern = match pattern_index.get(&key) {
                Some(&p) => p,
                None => {
                    let p = sched.patterns.len() as u32;
                    sched.patterns.push(place(net, &key));
                    pattern_index.insert(key, p);
                    p
                }
            };
            let idx = sched.trips.len() as u32;
            sched.trip_index.insert(t.id.clone(), idx);
            sched.route_trips[route].push(idx);
            sched.trips.push(Trip {
                id: t.id.clone(),
                route: route as u32,
                service,
                pattern,
                direction: t.direction_id.map(|d| d as u8),
                first: sched.times.len() as u32,
            });
            sched.times.extend(times);
        }
        if sched.trips.is_empty() {
            return Ok(None);
        }
        let mut route_trips = std::mem::take(&mut sched.route_trips);
        for trips in &mut route_trips {
            trips.sort_by_key(|&t| sched.times(t).first().map(|s| s.departure));
        }
        sched.route_trips = route_trips;
        Ok(Some(sched))
    }

    /// A timetable made without a GTFS feed (the demo's): each trip runs once, on its `date`, over
    /// every stop of its corridor of `net`, with times in seconds after that date's start in
    /// `tz`. No stop is a timepoint. `None` without a usable trip (unknown corridor, a time per
    /// stop missing).
    pub fn from_trips(net: &Network, tz: TimeZone, trips: Vec<MadeTrip>) -> Option<Schedule> {
        let mut dates: Vec<jiff::civil::Date> = trips.iter().map(|t| t.date).collect();
        dates.sort();
        dates.dedup();
        let calendar = Calendar::for_dates(&dates);
        let mut sched = Schedule::empty(tz, calendar, net);
        // One pattern per corridor, made on its first trip.
        let mut pattern_of: HashMap<usize, u32> = HashMap::new();
        for t in trips {
            let Some(c) = net.corridors().get(t.corridor) else {
                continue;
            };
            if t.times.len() != c.stops.len() || c.stops.len() < 2 {
                continue;
            }
            let pattern = *pattern_of.entry(t.corridor).or_insert_with(|| {
                sched.patterns.push(Pattern {
                    corridor: t.corridor as u32,
                    stops: c.stops.iter().map(|s| s.stop as u32).collect(),
                    sequences: (1..=c.stops.len() as u32).collect(),
                    timepoints: vec![false; c.stops.len()],
                    progress_m: c.stops.iter().map(|s| s.progress_m as f32).collect(),
                });
                sched.patterns.len() as u32 - 1
            });
            let Some(service) = sched
                .calendar
                .service(&super::calendar::yyyymmdd(t.date).to_string())
            else {
                continue;
            };
            let idx = sched.trips.len() as u32;
            sched.trip_index.insert(t.id.clone(), idx);
            sched.route_trips[c.route].push(idx);
            sched.trips.push(Trip {
                id: t.id,
                route: c.route as u32,
                service,
                pattern,
                direction: None,
                first: sched.times.len() as u32,
            });
            sched.times.extend(t.times);
        }
        if sched.trips.is_empty() {
            return None;
        }
        let mut route_trips = std::mem::take(&mut sched.route_trips);
        for trips in &mut route_trips {
            trips.sort_by_key(|&t| sched.times(t).first().map(|s| s.departure));
        }
        sched.route_trips = route_trips;
        Some(sched)
    }

    /// A timetable with no trips yet.
    fn empty(tz: TimeZone, calendar: Calendar, net: &Network) -> Schedule {
        Schedule {
            tz,
            calendar,
            patterns: Vec::new(),
            trips: Vec::new(),
            times: Vec::new(),
            trip_index: HashMap::new(),
            route_trips: vec![Vec::new(); net.routes().len()],
        }
    }

    /// Index of `trip_id`.
    pub fn trip_index(&self, id: &str) -> Option<u32> {
        self.trip_index.get(id).copied()
    }

    /// The stop times of trip `t`, one per stop of its pattern.
    pub fn times(&self, t: u32) -> &[StopTime] {
        let Some(trip) = self.trips.get(t as usize) else {
            return &[];
        };
        let n = self.patterns[trip.pattern as usize].stops.len();
        let first = trip.first as usize;
        self.times.get(first..first + n).unwrap_or(&[])
    }

    /// The pattern of trip `t`.
    pub fn pattern(&self, t: u32) -> Option<&Pattern> {
        let trip = self.trips.get(t as usize)?;
        self.patterns.get(trip.pattern as usize)
    }

    /// Trips of network route `route`, by first departure.
    pub fn route_trips(&self, route: usize) -> &[u32] {
        self.route_trips.get(route).map_or(&[], Vec::as_slice)
    }

    /// Stop times held: the size of the timetable.
    pub fn stop_time_count(&self) -> usize {
        self.times.len()
    }
}

/// Arrival and departure of each stop time; stops without times (allowed between timepoints)
/// get times interpolated linearly by position in the list. `None` when the first or last
/// stop has no time.
fn interpolate(st: &[&gtfs_structures::StopTime]) -> Option<Vec<StopTime>> {
    let known: Vec<Option<(u32, u32)>> = st
        .iter()
        .map(|s| match (s.arrival_time, s.departure_time) {
            (Some(a), Some(d)) => Some((a, d.max(a))),
            (Some(a), None) => Some((a, a)),
            (None, Some(d)) => Some((d, d)),
            (None, None) => None,
        })
        .collect();
    known.first()?.as_ref()?;
    known.last()?.as_ref()?;
    let mut out = Vec::with_capacity(st.len());
    let mut prev = 0usize;
    for i in 0..known.len() {
        if let Some((a, d)) = known[i] {
            out.push(StopTime {
                arrival: a,
                departure: d,
            });
            prev = i;
            continue;
        }
        let next = (i + 1..known.len()).find(|&j| known[j].is_some())?;
        let (from, to) = (known[prev]?.1 as f64, known[next]?.0 as f64);
        let t = from + (to - from) * (i - prev) as f64 / (next - prev) as f64;
        let t = t.round() as u32;
        out.push(StopTime {
            arrival: t,
            departure: t,
        });
    }
    // Times never go backwards along a trip, whatever the feed says.
    let mut floor = 0;
    for s in &mut out {
        s.arrival = s.arrival.max(floor);
        s.departure = s.departure.max(s.arrival);
        floor = s.departure;
    }
    Some(out)
}

/// What makes two trips share a pattern: corridor, stops, `stop_sequence`s, timepoints.
type PatternKey = (u32, Vec<u32>, Vec<u32>, Vec<bool>);

/// A pattern with each stop placed along its corridor, in order.
fn place(net: &Network, key: &PatternKey) -> Pattern {
    let (ci, stops, seqs, tps) = key;
    let mut progress = Vec::with_capacity(stops.len());
    let mut from = 0.0;
    if let Some(c) = net.corridors().get(*ci as usize) {
        for &s in stops {
            let local = net.stops()[s as usize].local;
            let (_, p) = c.place_after(local, from);
            from = p;
            progress.push(p as f32);
        }
    }
    Pattern {
        corridor: *ci,
        stops: stops.clone(),
        sequences: seqs.clone(),
        timepoints: tps.clone(),
        progress_m: progress,
    }
}
