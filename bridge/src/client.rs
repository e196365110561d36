//! One connected stream client (WebSocket or SSE): its bounded outgoing queue, where states are
//! coalesced per subscription and vehicle at the subscription's `max_hz`, events and control
//! messages wait in bounded FIFOs, and the writer takes what is due in batches.
//!
//! A batched subscription (`"batch":true`) keeps, instead of one slot per vehicle, the latest
//! unsent state of each vehicle that changed and one timer: every `1/max_hz` its changed vehicles
//! go out as one `updates` frame. Either way a client's queue holds at most one state per
//! (subscription, vehicle), however long its writer is stuck. Frames are assembled in
//! [`frames`] from each state's shared JSON.
//!
//! The hub's push path calls `offer_*` (a short mutex section, never an await); the connection's
//! writer task awaits [`Client::next_batch`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::fleet::Prepared;
use crate::frames;
use crate::metrics::{Metrics, inc};
use crate::slots::{Slots, TimerSeq, VehicleIdx};

/// Identifies a client within a hub.
pub type ClientId = u64;
/// Identifies a subscription within a client.
pub type SubKey = u32;

/// Why a client is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// It could not keep up (WebSocket 1013).
    Slow,
    /// The server is shutting down (WebSocket 1001).
    Shutdown,
    /// The client's token expired (WebSocket 1008, policy violation).
    Expired,
}

/// What a client's queue limits are.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Events waiting to be sent; more are dropped and counted.
    pub events: usize,
    /// Snapshots and error replies waiting; a client that lets this fill is closed as slow.
    pub control: usize,
    /// Messages per batch handed to the writer.
    pub batch: usize,
}

/// One message for the client: the docs/http-api.md#messages JSON and its `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `snapshot`, `update`, `event` or `error` (the SSE event name).
    pub kind: &'static str,
    /// The whole JSON text.
    pub text: String,
}

/// What the writer gets from [`Client::next_batch`].
#[derive(Debug)]
pub enum Batch {
    /// Messages to send now; `oldest` is when the longest-waiting of them became due; `full`:
    /// the batch reached the batch limit, so more may be due already.
    Messages {
        msgs: Vec<Outgoing>,
        oldest: Instant,
        full: bool,
    },
    /// Stop and close the connection.
    Close(CloseReason),
}

/// Per-subscription settings, as the client's queue needs them.
#[derive(Debug, Clone)]
pub struct SubMeta {
    /// The client's subscription id, already JSON-encoded (with quotes).
    pub sub_json: Arc<str>,
    /// Minimum time between two updates of one vehicle (1 / `max_hz`).
    pub interval: Duration,
    /// False until the snapshot is queued, so no update overtakes it.
    pub ready: bool,
    /// One `updates` frame per interval with every changed vehicle, instead of one `update` each.
    pub batch: bool,
}

/// A map keyed by vehicle on the push path: foldhash, randomly seeded per map, instead of
/// SipHash, which was a tenth of the broker's CPU with 1,000 watchers. Vehicles come only from
/// accepted updates (bounded by `--max-vehicles`).
type VehicleMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The pending states of one batched subscription.
#[derive(Default)]
struct Batched {
    /// The latest unsent state of each vehicle that changed since the last frame.
    pending: VehicleMap<VehicleIdx, Arc<Prepared>>,
    last_sent: Option<Instant>,
    /// The `seq` of this subscription's entry in the timer heap, if scheduled.
    timer: Option<TimerSeq>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    due: Instant,
    seq: TimerSeq,
    sub: SubKey,
    /// The vehicle of a per-vehicle slot; `None` for a batched subscription's tick.
    vehicle: Option<VehicleIdx>,
}

#[derive(Default)]
struct Queue {
    subs: HashMap<SubKey, SubMeta>,
    /// Per-vehicle subscriptions' slots.
    slots: HashMap<SubKey, Slots>,
    batches: HashMap<SubKey, Batched>,
    /// Earliest-due first; at most one entry per slot.
    timers: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    events: VecDeque<(Instant, Outgoing)>,
    control: VecDeque<(Instant, Outgoing)>,
    closing: Option<CloseReason>,
    /// When idle slots were last dropped.
    swept: Option<Instant>,
}

/// The next timer's sequence number from a queue's counter.
fn next_seq(counter: &mut u64) -> TimerSeq {
    *counter += 1;
    // Counting from 1, a u64 does not come back to 0.
    TimerSeq::new(*counter).unwrap_or(TimerSeq::MAX)
}

/// How often a queue drops the slots of vehicles it has not heard of for a whole interval.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

impl Queue {
    /// Drops slots with nothing pending or scheduled whose interval has passed: they no longer
    /// hold back the next update, so forgetting them keeps the map to recently active vehicles.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        for (sub, slots) in &mut self.slots {
            let interval = self.subs.get(sub).map_or(Duration::ZERO, |m| m.interval);
            slots.sweep(now, interval);
        }
    }

    /// Schedules the slot of `(sub, vehicle)`, or with no vehicle the batched subscription `sub`.
    fn schedule(&mut self, sub: SubKey, vehicle: Option<VehicleIdx>, due: Instant) {
        let seq = next_seq(&mut self.seq);
        let timer = match &vehicle {
            Some(v) => self
                .slots
                .get_mut(&sub)
                .and_then(|s| s.get_mut(*v))
                .map(|s| &mut s.timer),
            None => self.batches.get_mut(&sub).map(|b| &mut b.timer),
        };
        if let Some(timer) = timer {
            *timer = Some(seq);
            self.timers.push(Reverse(Timer {
                due,
                seq,
                sub,
                vehicle,
            }));
        }
    }

    /// The `updates` frame of batched subscription `sub` if it has changed vehicles; marks it sent.
    fn take_batch(&mut self, sub: SubKey, sub_json: &str, now: Instant) -> Option<(Outgoing, u64)> {
        let b = self.batches.get_mut(&sub)?;
        if b.pending.is_empty() {
            return None;
        }
        b.last_sent = Some(now);
        // Taking the map frees it: an idle subscription holds no capacity for a past burst.
        let pending = std::mem::take(&mut b.pending);
        let text = frames::states("updates", sub_json, pending.values());
        let n = pending.len() as u64;
        Some((
            Outgoing {
                kind: "updates",
                text,
            },
            n,
        ))
    }
}

/// A connected client's outgoing side.
pub struct Client {
    /// Unique within the hub.
    pub id: ClientId,
    queue: Mutex<Queue>,
    notify: Notify,
    limits: QueueLimits,
    metrics: Arc<Metrics>,
}

impl Client {
    /// A client with an empty queue.
    pub fn new(id: ClientId, limits: QueueLimits, metrics: Arc<Metrics>) -> Client {
        Client {
            id,
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            limits,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while the lock is held; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscription (not ready: its updates wait until [`Client::activate`]).
    pub fn add_sub(&self, sub: SubKey, meta: SubMeta) {
        self.lock().subs.insert(sub, meta);
    }

    /// Queues the subscription's snapshot and lets its updates flow.
    pub fn activate(&self, sub: SubKey, snapshot: Outgoing) {
        let now = Instant::now();
        let mut q = self.lock();
        if q.control.len() >= self.limits.control {
            q.closing.get_or_insert(CloseReason::Slow);
            drop(q);
            self.notify.notify_one();
            return;
        }
        q.control.push_back((now, snapshot));
        let batch = match q.subs.get_mut(&sub) {
            Some(m) => {
                m.ready = true;
                m.batch
            }
            None => false,
        };
        if batch {
            // The snapshot is this subscription's first frame: the first `updates` follows it by
            // one interval, holding whatever changed meanwhile.
            q.batches.entry(sub).or_default().last_sent = Some(now);
        }
        // Updates that arrived while the snapshot was being made were parked unscheduled.
        let parked = q.slots.get(&sub).map(Slots::parked).unwrap_or_default();
        for vehicle in parked {
            q.schedule(sub, Some(vehicle), now);
        }
        if q.batches
            .get(&sub)
            .is_some_and(|b| !b.pending.is_empty() && b.timer.is_none())
        {
            q.schedule(sub, None, now);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Removes a subscription and everything it had pending.
    pub fn remove_sub(&self, sub: SubKey) {
        let mut q = self.lock();
        q.subs.remove(&sub);
        q.slots.remove(&sub);
        q.batches.remove(&sub);
        q.timers.retain(|t| t.0.sub != sub);
    }

    /// Offers a new state of `vehicle` to subscription `sub`: it replaces any pending one and is sent
    /// when the subscription's interval since the last send has passed. `vehicle` is the hub's
    /// index of the state's vehicle.
    pub fn offer_state(&self, sub: SubKey, p: &Arc<Prepared>, vehicle: VehicleIdx, now: Instant) {
        let mut q = self.lock();
        if q.closing.is_some() {
            return;
        }
        let Some((interval, batch)) = q.subs.get(&sub).map(|m| (m.interval, m.batch)) else {
            return;
        };
        if batch {
            let b = q.batches.entry(sub).or_default();
            if b.pending.insert(vehicle, p.clone()).is_some() {
                inc(&self.metrics.deliveries_coalesced);
            }
            if b.timer.is_none() {
                let due = b.last_sent.map_or(now, |t| (t + interval).max(now));
                q.schedule(sub, None, due);
                drop(q);
                self.notify.notify_one();
            }
            return;
        }
        // One hash lookup per offer (this is the hottest line of a push): the slot's timer is
        // set here rather than through `schedule`, which would look the slot up again.
        let queue = &mut *q;
        let slot = queue.slots.entry(sub).or_default().entry(vehicle);
        if slot.pending.replace(p.clone()).is_some() {
            inc(&self.metrics.deliveries_coalesced);
        }
        if slot.timer.is_none() {
            let due = slot.last_sent.map_or(now, |t| (t + interval).max(now));
            let seq = next_seq(&mut queue.seq);
            slot.timer = Some(seq);
            queue.timers.push(Reverse(Timer {
                due,
                seq,
                sub,
                vehicle: Some(vehicle),
            }));
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Offers an event (its JSON) to subscription `sub`; dropped and counted when the client's event
    /// queue is full.
    pub fn offer_event(&self, sub: SubKey, event_json: &str, now: Instant) {
        let mut q = self.lock();
        if q.closing.is_some() {
            return;
        }
        let Some(sub_json) = q.subs.get(&sub).map(|m| m.sub_json.clone()) else {
            return;
        };
        if q.events.len() >= self.limits.events {
            inc(&self.metrics.deliveries_dropped);
            return;
        }
        let text = frames::event(&sub_json, event_json);
        q.events.push_back((
            now,
            Outgoing {
                kind: "event",
                text,
            },
        ));
        drop(q);
        self.notify.notify_one();
    }

    /// Queues a control message (an error reply); dropped and counted when the control queue is full.
    pub fn send_control(&self, msg: Outgoing) {
        let mut q = self.lock();
        if q.control.len() >= self.limits.control {
            inc(&self.metrics.deliveries_dropped);
            return;
        }
        q.control.push_back((Instant::now(), msg));
        drop(q);
        self.notify.notify_one();
    }

    /// States, events and control messages waiting to be sent: at most one state per
    /// (subscription, vehicle), however long the writer is stuck.
    pub fn queued(&self) -> usize {
        let q = self.lock();
        let states = q.slots.values().map(Slots::pending).sum::<usize>()
            + q.batches.values().map(|b| b.pending.len()).sum::<usize>();
        states + q.events.len() + q.control.len()
    }

    /// Asks the writer to close the connection.
    pub fn close(&self, reason: CloseReason) {
        self.lock().closing.get_or_insert(reason);
        self.notify.notify_one();
    }

    /// Waits until something is due and takes it: control messages first, then events, then due
    /// states, at most `limits.batch` messages.
    pub async fn next_batch(&self) -> Batch {
        loop {
            let next_due = match self.take_due() {
                Ok(batch) => return batch,
                Err(next_due) => next_due,
            };
            let notified = self.notify.notified();
            match next_due {
                Some(due) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// A batch if anything is due, else the time the next state becomes due.
    fn take_due(&self) -> Result<Batch, Option<Instant>> {
        let now = Instant::now();
        let mut q = self.lock();
        if let Some(r) = q.closing {
            return Ok(Batch::Close(r));
        }
        let cap = self.limits.batch.max(1);
        let mut msgs = Vec::new();
        let mut oldest = now;
        while msgs.len() < cap {
            let Some((at, m)) = q.control.pop_front().or_else(|| q.events.pop_front()) else {
                break;
            };
            if m.kind == "event" {
                inc(&self.metrics.events_sent);
            }
            oldest = oldest.min(at);
            msgs.push(m);
        }
        while msgs.len() < cap {
            let Some(Reverse(t)) = q.timers.peek() else {
                break;
            };
            if t.due > now {
                break;
            }
            let Some(Reverse(t)) = q.timers.pop() else {
                break;
            };
            let (ready, sub_json) = match q.subs.get(&t.sub) {
                Some(m) => (m.ready, m.sub_json.clone()),
                None => continue,
            };
            let Some(vehicle) = t.vehicle else {
                let Some(b) = q.batches.get_mut(&t.sub) else {
                    continue;
                };
                if b.timer != Some(t.seq) {
                    continue;
                }
                b.timer = None;
                if !ready {
                    continue; // parked: `activate` reschedules it
                }
                if let Some((frame, n)) = q.take_batch(t.sub, &sub_json, now) {
                    msgs.push(frame);
                    self.metrics.updates_sent.fetch_add(n, Ordering::Relaxed);
                    oldest = oldest.min(t.due);
                }
                continue;
            };
            let Some(slot) = q.slots.get_mut(&t.sub).and_then(|s| s.get_mut(vehicle)) else {
                continue;
            };
            if slot.timer != Some(t.seq) {
                continue;
            }
            slot.timer = None;
            if !ready {
                continue; // parked: `activate` reschedules it
            }
            if let Some(p) = slot.pending.take() {
                slot.last_sent = Some(now);
                let text = frames::update(&sub_json, p.json());
                msgs.push(Outgoing {
                    kind: "update",
                    text,
                });
                inc(&self.metrics.updates_sent);
                oldest = oldest.min(t.due);
            }
        }
        q.sweep(now);
        if msgs.is_empty() {
            Err(q.timers.peek().map(|t| t.0.due))
        } else {
            let full = msgs.len() >= cap;
            Ok(Batch::Messages { msgs, oldest, full })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fleet::Prepared;

    fn client(events: usize) -> Client {
        Client::new(
            1,
            QueueLimits {
                events,
                control: 4,
                batch: 100,
            },
            Arc::new(Metrics::default()),
        )
    }

    /// A state of `vehicle` at `ts`, prepared as the hub pushes it.
    pub(crate) fn prepared(vehicle: &str, ts: i64) -> Arc<Prepared> {
        let s = geo_engine::VehicleState {
            vehicle: vehicle.into(),
            lat: 1.0,
            lon: 2.0,
            raw_lat: 1.0,
            raw_lon: 2.0,
            ts,
            speed: None,
            heading: None,
            route: None,
            trip: None,
            status: geo_engine::VehicleStatus::Moving,
            on_route: None,
            off_route_m: None,
            progress_m: None,
            next_stop: None,
            delay_s: None,
            trip_inferred: None,
            accuracy: None,
            altitude: None,
            battery: None,
            received_at: ts,
            processed_at: ts,
        };
        Arc::new(Prepared::new(Arc::new(s)))
    }

    fn meta(ready: bool) -> SubMeta {
        SubMeta {
            sub_json: Arc::from("\"s\""),
            interval: Duration::from_secs(1),
            ready,
            batch: false,
        }
    }

    fn texts(b: Result<Batch, Option<Instant>>) -> Vec<String> {
        match b {
            Ok(Batch::Messages { msgs, .. }) => msgs.into_iter().map(|m| m.text).collect(),
            _ => Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn latest_state_wins_and_interval_holds_back_the_next() {
        let c = client(8);
        c.add_sub(0, meta(true));
        c.offer_state(0, &prepared("bus", 1), 0, Instant::now());
        c.offer_state(0, &prepared("bus", 2), 0, Instant::now());
        let sent = texts(c.take_due());
        assert_eq!(sent.len(), 1);
        assert!(sent[0].contains(r#""ts":2"#), "{sent:?}");
        assert_eq!(
            c.metrics
                .deliveries_coalesced
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // The next state waits for the interval.
        c.offer_state(0, &prepared("bus", 3), 0, Instant::now());
        assert!(matches!(c.take_due(), Err(Some(_))));
        tokio::time::advance(Duration::from_millis(1001)).await;
        let sent = texts(c.take_due());
        assert!(sent.len() == 1 && sent[0].contains(r#""ts":3"#), "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn updates_wait_for_the_snapshot() {
        let c = client(8);
        c.add_sub(0, meta(false));
        c.offer_state(0, &prepared("bus", 1), 0, Instant::now());
        assert!(
            texts(c.take_due()).is_empty(),
            "no update before the snapshot"
        );
        c.activate(
            0,
            Outgoing {
                kind: "snapshot",
                text: "SNAP".into(),
            },
        );
        let sent = texts(c.take_due());
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], "SNAP");
        assert!(sent[1].contains(r#""type":"update""#));
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_bounded_and_counted() {
        let c = client(2);
        c.add_sub(0, meta(true));
        for i in 0..5 {
            c.offer_event(0, &format!("{{\"n\":{i}}}"), Instant::now());
        }
        assert_eq!(texts(c.take_due()).len(), 2);
        assert_eq!(
            c.metrics
                .deliveries_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batched_sub_holds_one_state_per_vehicle_and_sends_them_in_one_frame() {
        let c = client(2);
        c.add_sub(
            0,
            SubMeta {
                batch: true,
                ..meta(false)
            },
        );
        c.activate(
            0,
            Outgoing {
                kind: "snapshot",
                text: "SNAP".into(),
            },
        );
        assert_eq!(texts(c.take_due()), vec!["SNAP".to_string()]);
        for ts in 0..100 {
            for v in 0..10 {
                c.offer_state(0, &prepared(&format!("bus-{v}"), ts), v, Instant::now());
            }
        }
        assert_eq!(c.queued(), 10, "one pending state per vehicle");
        assert!(matches!(c.take_due(), Err(Some(_))), "not before the tick");
        tokio::time::advance(Duration::from_millis(1001)).await;
        let sent = texts(c.take_due());
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].starts_with(r#"{"type":"updates","sub":"s","vehicles":["#));
        assert_eq!(sent[0].matches(r#""ts":99"#).count(), 10, "{}", sent[0]);
        assert_eq!(c.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_slots_are_swept() {
        let c = client(2);
        c.add_sub(0, meta(true));
        for v in 0..10 {
            c.offer_state(0, &prepared(&format!("bus-{v}"), 1), v, Instant::now());
        }
        assert_eq!(texts(c.take_due()).len(), 10);
        let held = |c: &Client| c.lock().slots.values().map(Slots::len).sum::<usize>();
        assert_eq!(held(&c), 10);
        tokio::time::advance(SWEEP_EVERY + Duration::from_secs(1)).await;
        let _ = c.take_due();
        assert_eq!(held(&c), 0);
    }
}
