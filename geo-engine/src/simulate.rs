//! A deterministic trace simulator: a vehicle driving a route's corridors at a set speed with
//! Gaussian GPS noise, dwelling at stops, optionally detouring sideways over a stretch, with
//! duplicates, stationary jitter and invalid fixes mixed in. The demo, the bench and the tests
//! all drive the pipeline with it. Randomness is a seeded xorshift64* with Box–Muller normals,
//! so a seed always gives the same trace.

use std::collections::VecDeque;

use crate::corridor::Corridor;
use crate::fix::Fix;
use geo::Point;

use crate::local::{Local, dist};
use crate::network::Network;
use crate::validate::RejectReason;

/// Reported speed of the fix at a stop, as the vehicle rolls in, m/s.
const ARRIVAL_SPEED: f64 = 1.0;

/// Shortest distance divided by, metres: keeps a direction finite where the route folds back.
const MIN_SPAN_M: f64 = 1e-9;

/// A sideways excursion from the route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detour {
    /// Where it starts, metres along the first corridor.
    pub start_m: f64,
    /// How long it lasts at full offset, metres along the corridor.
    pub length_m: f64,
    /// How far to the left of the route (negative: right), metres. The vehicle ramps out and
    /// back over `|offset_m|` of progress, i.e. at 45°.
    pub offset_m: f64,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Route id to drive.
    pub route: String,
    /// Only this corridor (shape id) of the route; all of them, in order, when `None`.
    pub corridor: Option<String>,
    /// Times over the corridors; `None` drives forever (the iterator never ends).
    pub laps: Option<u32>,
    /// Device time of the first fix, Unix ms.
    pub start_ms: i64,
    /// Time between fixes, ms.
    pub interval_ms: i64,
    /// Cruising speed, m/s.
    pub speed_mps: f64,
    /// GPS noise standard deviation while moving, metres (also the reported `accuracy`).
    pub noise_m: f64,
    /// Time spent at each stop, ms (0: no stops).
    pub dwell_ms: i64,
    /// GPS noise while standing at a stop, metres.
    pub dwell_noise_m: f64,
    /// Optional sideways detour on the first corridor.
    pub detour: Option<Detour>,
    /// Take the detour on every lap, not only the first (the demo's "now and then").
    pub detour_every_lap: bool,
    /// Probability that a fix is sent twice.
    pub duplicate_prob: f64,
    /// Probability that an invalid fix is slipped in before a fix.
    pub invalid_prob: f64,
    /// Whether fixes carry `route` (and `trip`).
    pub send_route: bool,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            route: String::new(),
            corridor: None,
            laps: Some(1),
            start_ms: 1_763_700_000_000,
            interval_ms: 1000,
            speed_mps: 10.0,
            noise_m: 5.0,
            dwell_ms: 15_000,
            dwell_noise_m: 0.5,
            detour: None,
            detour_every_lap: false,
            duplicate_prob: 0.0,
            invalid_prob: 0.0,
            send_route: true,
            seed: 1,
        }
    }
}

/// What a simulated fix is meant to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimKind {
    /// An ordinary fix.
    Normal,
    /// A second copy of the previous fix.
    Duplicate,
    /// Standing at a stop after the arrival fix: the jitter filter must drop it.
    Jitter,
    /// A fix that validation must reject, for this reason.
    Invalid(RejectReason),
}

/// One simulated fix with the truth behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimFix {
    /// What the device sends.
    pub fix: Fix,
    /// What it is meant to exercise.
    pub kind: SimKind,
    /// True position (x = lon, y = lat, degrees).
    pub truth: Point<f64>,
    /// True distance along the current corridor, metres.
    pub progress_m: f64,
    /// True sideways offset from the route (the detour), metres.
    pub offset_m: f64,
    /// Index (in the network) of the corridor being driven.
    pub corridor: usize,
    /// Device clock when this fix was sent, Unix ms (an invalid fix's `ts` may lie).
    pub sent_ms: i64,
    /// Driving between legs (from one corridor's end to the next one's start), off the route.
    pub deadhead: bool,
}

/// Runs `cfg` to the end and collects the trace. Empty when the route is unknown; with
/// `laps: None` the trace is cut at 100 000 fixes.
pub fn simulate(net: &Network, cfg: &SimConfig) -> Vec<SimFix> {
    Simulator::new(net, cfg.clone())
        .map(|s| s.take(100_000).collect())
        .unwrap_or_default()
}

/// A detour of `offset_m` sideways over `length_m` on corridor `corridor` (a shape id) of `route`
/// that reads as one clean deviation: at full offset it stays at least `offset_m / 2` from every
/// part of the corridor, and all along (ramps included) at least 150 m from the parts of the
/// corridor more than `2 × offset_m` away along it, and at least 100 m from the route's other
/// corridors where they do not share the street. The first such start after 500 m, in 100 m
/// steps.
pub fn find_detour(
    net: &Network,
    route: &str,
    corridor: &str,
    offset_m: f64,
    length_m: f64,
) -> Option<Detour> {
    let cfg = SimConfig {
        route: route.into(),
        corridor: Some(corridor.into()),
        ..SimConfig::default()
    };
    let sim = Simulator::new(net, cfg)?;
    let all = Simulator::new(
        net,
        SimConfig {
            route: route.into(),
            ..SimConfig::default()
        },
    )?;
    let c = sim.corridor();
    let off = offset_m.abs();
    let total = length_m + 2.0 * off;
    let mut start = 500.0;
    while start + total + 200.0 < c.length_m() {
        let detour = Detour {
            start_m: start,
            length_m,
            offset_m,
        };
        let probe = Simulator {
            cfg: SimConfig {
                detour: Some(detour),
                ..sim.cfg.clone()
            },
            ..sim.clone()
        };
        let clear = (0..=(total / 20.0) as usize).all(|k| {
            let progress = start + 20.0 * k as f64;
            let (p, _, offset) = probe.true_position(progress);
            let own = (0..c.segments()).all(|s| {
                let (d, prog) = c.project_on(s, p);
                let far_along = (prog - progress).abs() > 2.0 * off;
                (offset.abs() < off - 1e-6 || d >= off / 2.0) && (!far_along || d >= 150.0)
            });
            // Another corridor of the route may share the street here (the other direction);
            // elsewhere it must stay clear of the detour.
            let centre = c.point_at(progress).0;
            let others = all
                .plan
                .iter()
                .map(|&ci| &net.corridors()[ci])
                .filter(|o| o.id != c.id)
                .all(|o| {
                    (0..o.segments())
                        .all(|s| o.project_on(s, centre).0 < 30.0 || o.project_on(s, p).0 >= 100.0)
                });
            own && others
        });
        if clear {
            return Some(detour);
        }
        start += 100.0;
    }
    None
}

/// A seeded xorshift64* generator with Box–Muller normals.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator; seed 0 is replaced (xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The trace as an iterator (endless with `laps: None`).
#[derive(Debug, Clone)]
pub struct Simulator<'a> {
    net: &'a Network,
    cfg: SimConfig,
    rng: Rng,
    /// Corridors driven, in order, each lap.
    plan: Vec<usize>,
    leg: usize,
    lap: u32,
    progress: f64,
    ts: i64,
    seq: u64,
    next_stop: usize,
    dwell_until: Option<i64>,
    /// No fix was made on the current leg yet.
    fresh_leg: bool,
    /// Driving off-route from `.0` to the next leg's start `.1`, local metres.
    deadhead: Option<(Local, Local)>,
    invalid_turn: usize,
    pending: VecDeque<SimFix>,
    done: bool,
}

impl<'a> Simulator<'a> {
    /// A simulator over `cfg.route`; `None` if the route (or corridor) is unknown.
    pub fn new(net: &'a Network, cfg: SimConfig) -> Option<Simulator<'a>> {
        let route = net.routes().get(net.route_index(&cfg.route)?)?;
        let plan: Vec<usize> = match &cfg.corridor {
            Some(id) => vec![
                *route
                    .corridors
                    .iter()
                    .find(|&&ci| net.corridors()[ci].id == *id)?,
            ],
            None => route.corridors.clone(),
        };
        if plan.is_empty() || cfg.speed_mps.is_nan() || cfg.speed_mps <= 0.0 || cfg.interval_ms <= 0
        {
            return None;
        }
        let rng = Rng::new(cfg.seed);
        let ts = cfg.start_ms;
        Some(Simulator {
            net,
            cfg,
            rng,
            plan,
            leg: 0,
            lap: 0,
            progress: 0.0,
            ts,
            seq: 0,
            next_stop: 0,
            dwell_until: None,
            fresh_leg: true,
            deadhead: None,
            invalid_turn: 0,
            pending: VecDeque::new(),
            done: false,
        })
    }

    fn corridor(&self) -> &'a Corridor {
        &self.net.corridors()[self.plan[self.leg]]
    }

    /// Sideways offset of the detour at `progress` (first leg of the first lap, or of every lap
    /// with `detour_every_lap`).
    fn offset_at(&self, progress: f64) -> f64 {
        let lap_ok = self.lap == 0 || self.cfg.detour_every_lap;
        let Some(d) = self.cfg.detour.filter(|_| self.leg == 0 && lap_ok) else {
            return 0.0;
        };
        let ramp = d.offset_m.abs().max(1.0);
        let x = progress - d.start_m;
        let f = if x <= 0.0 || x >= d.length_m + 2.0 * ramp {
            0.0
        } else if x < ramp {
            x / ramp
        } else if x <= ramp + d.length_m {
            1.0
        } else {
            (d.length_m + 2.0 * ramp - x) / ramp
        };
        f * d.offset_m
    }

    /// True position at `progress` with the detour applied, local metres, and the heading.
    fn true_position(&self, progress: f64) -> (Local, f64, f64) {
        let c = self.corridor();
        let (p, _) = c.point_at(progress);
        let offset = self.offset_at(progress);
        // Direction smoothed over a window, so an offset path turns gradually at corners.
        let w = 50.0 + offset.abs() / 2.0;
        let (a, _) = c.point_at(progress - w);
        let (b, _) = c.point_at(progress + w);
        let len = dist(a, b).max(MIN_SPAN_M);
        let dir = [(b.x() - a.x()) / len, (b.y() - a.y()) / len];
        let pos = Local::new(p.x() - dir[1] * offset, p.y() + dir[0] * offset);
        let heading = dir[0].atan2(dir[1]).to_degrees().rem_euclid(360.0);
        (pos, heading, offset)
    }

    fn make(
        &mut self,
        pos: Local,
        noise: f64,
        speed: f64,
        heading: f64,
        offset: f64,
        kind: SimKind,
    ) -> SimFix {
        let frame = self.net.frame();
        let truth = frame.to_geo(pos);
        // x before y: the order the seeded RNG is drawn in is part of the trace.
        let noise_x = noise * self.rng.normal();
        let noise_y = noise * self.rng.normal();
        let noisy = frame.to_geo(Local::new(pos.x() + noise_x, pos.y() + noise_y));
        let (lon, lat) = noisy.x_y();
        self.seq += 1;
        let c = self.corridor();
        let fix = Fix {
            lat,
            lon,
            ts: self.ts,
            speed: Some(speed),
            heading: Some((heading * 10.0).round() / 10.0),
            accuracy: Some(self.cfg.noise_m.max(1.0)),
            route: self.cfg.send_route.then(|| self.cfg.route.clone()),
            trip: self
                .cfg
                .send_route
                .then(|| format!("{}-{}", c.id, self.lap)),
            seq: Some(self.seq),
            altitude: None,
            battery: None,
        };
        SimFix {
            fix,
            kind,
            truth,
            progress_m: self.progress,
            offset_m: offset,
            corridor: self.plan[self.leg],
            sent_ms: self.ts,
            deadhead: false,
        }
    }

    /// An invalid variant of `good`, cycling through the reasons.
    fn invalid(&mut self, good: &SimFix) -> SimFix {
        let mut f = good.fix.clone();
        f.seq = None;
        f.ts -= self.cfg.interval_ms / 2;
        let reason = match self.invalid_turn % 7 {
            0 => {
                f.lat = 91.0;
                RejectReason::LatOutOfRange
            }
            1 => {
                f.lat = 0.0;
                f.lon = 0.0;
                RejectReason::NullIsland
            }
            2 => {
                f.ts = good.fix.ts + 3_600_000;
                RejectReason::FutureTs
            }
            3 => {
                f.ts = good.fix.ts - 2 * 86_400_000;
                RejectReason::StaleTs
            }
            4 => {
                f.accuracy = Some(500.0);
                RejectReason::Accuracy
            }
            5 => {
                f.speed = Some(150.0);
                RejectReason::Speed
            }
            _ => {
                f.lat += if f.lat > 0.0 { -0.05 } else { 0.05 };
                RejectReason::Teleport
            }
        };
        self.invalid_turn += 1;
        SimFix {
            fix: f,
            kind: SimKind::Invalid(reason),
            ..good.clone()
        }
    }

    /// Moves to the next corridor or lap; false when the trace is over.
    fn next_leg(&mut self) -> bool {
        let end = self.true_position(self.progress).0;
        self.leg += 1;
        if self.leg == self.plan.len() {
            self.leg = 0;
            self.lap += 1;
            if self.cfg.laps.is_some_and(|n| self.lap >= n) {
                return false;
            }
        }
        self.progress = 0.0;
        self.next_stop = 0;
        self.fresh_leg = true;
        // Deadhead in a straight line to the next leg's start, sending fixes on the way, so the
        // device clock stays in step with real time and validation sees no teleport.
        let start = self.true_position(0.0).0;
        if dist(end, start) > self.cfg.speed_mps * self.cfg.interval_ms as f64 / 1000.0 {
            self.deadhead = Some((end, start));
        }
        true
    }

    /// One tick: the fix at `self.ts`.
    fn tick(&mut self) -> Option<SimFix> {
        let dt = self.cfg.interval_ms as f64 / 1000.0;
        if let Some(until) = self.dwell_until {
            if self.ts < until {
                let (pos, heading, off) = self.true_position(self.progress);
                // Within a metre or two of the arrival fix, which was forwarded (it was
                // still rolling): certainly jitter.
                let kind = SimKind::Jitter;
                return Some(self.make(pos, self.cfg.dwell_noise_m, 0.0, heading, off, kind));
            }
            self.dwell_until = None;
        }
        if let Some((from, to)) = self.deadhead {
            let step = self.cfg.speed_mps * dt;
            let d = dist(from, to);
            if d > step {
                let pos = Local::new(
                    from.x() + (to.x() - from.x()) * step / d,
                    from.y() + (to.y() - from.y()) * step / d,
                );
                self.deadhead = Some((pos, to));
                let heading = (to.x() - from.x())
                    .atan2(to.y() - from.y())
                    .to_degrees()
                    .rem_euclid(360.0);
                let mut f = self.make(
                    pos,
                    self.cfg.noise_m,
                    self.cfg.speed_mps,
                    heading,
                    0.0,
                    SimKind::Normal,
                );
                f.deadhead = true;
                return Some(f);
            }
            self.deadhead = None;
        }
        if self.progress >= self.corridor().length_m() {
            if !self.next_leg() {
                return None;
            }
            if self.deadhead.is_some() {
                // Start the deadhead with this tick (it cannot start another one).
                return self.tick();
            }
        }
        let c = self.corridor();
        let mut target = (self.progress + self.cfg.speed_mps * dt).min(c.length_m());
        if std::mem::take(&mut self.fresh_leg) {
            // The first fix of a leg is at its start.
            target = 0.0;
        }
        // Stop at the next stop if we pass it (not while detouring).
        let mut speed = self.cfg.speed_mps;
        if self.cfg.dwell_ms > 0 {
            while let Some(cs) = c.stops.get(self.next_stop) {
                if cs.progress_m > target {
                    break;
                }
                self.next_stop += 1;
                if cs.progress_m >= self.progress && self.offset_at(cs.progress_m) == 0.0 {
                    target = cs.progress_m;
                    self.dwell_until = Some(self.ts + self.cfg.dwell_ms);
                    speed = ARRIVAL_SPEED;
                    break;
                }
            }
        }
        self.progress = target;
        let (pos, heading, off) = self.true_position(self.progress);
        // Standing at a stop the receiver is stationary: it wobbles by `dwell_noise_m` only.
        let noise = if self.dwell_until.is_some() {
            self.cfg.dwell_noise_m
        } else {
            self.cfg.noise_m
        };
        Some(self.make(pos, noise, speed, heading, off, SimKind::Normal))
    }
}

impl Iterator for Simulator<'_> {
    type Item = SimFix;

    fn next(&mut self) -> Option<SimFix> {
        if let Some(f) = self.pending.pop_front() {
            return Some(f);
        }
        if self.done {
            return None;
        }
        let Some(good) = self.tick() else {
            self.done = true;
            return None;
        };
        self.ts += self.cfg.interval_ms;
        if self.rng.uniform() < self.cfg.duplicate_prob {
            self.pending.push_back(SimFix {
                kind: SimKind::Duplicate,
                ..good.clone()
            });
        }
        if self.rng.uniform() < self.cfg.invalid_prob {
            let bad = self.invalid(&good);
            self.pending.push_front(good);
            return Some(bad);
        }
        Some(good)
    }
}
