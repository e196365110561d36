//! Test helpers shared by the bridge's integration tests: a fake broker behind `BrokerPort`, state
//! and event builders, a server on an ephemeral port, and a WebSocket client that waits with a
//! deadline.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fleetmq_bridge::{
    Access, AuthError, BridgeConfig, BrokerPort, Hub, HubConfig, MqttIo, OpenAccess, PortError,
    Readiness,
};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use geo_engine::{Event, EventKind, VehicleState, VehicleStatus};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A test double of the broker: records pings, echoes MQTT bytes, reports a fixed metric.
#[derive(Default)]
pub struct FakePort {
    pub pings: Mutex<Vec<(String, Bytes)>>,
    pub readiness: Mutex<Option<Readiness>>,
    /// What `track` answers; `None` = no durable store.
    pub track: Mutex<Option<Vec<Value>>>,
    /// When set, requests need a token: `operator` reads everything, `rider-{route}` reads the
    /// vehicles on that route and may not ping, anything else is refused.
    pub auth: std::sync::atomic::AtomicBool,
    /// When set, `track` never answers (to exercise the request timeout).
    pub track_hangs: std::sync::atomic::AtomicBool,
    /// What `upcoming_stops` answers.
    pub upcoming: Mutex<Option<fleetmq_bridge::UpcomingStops>>,
}

/// A rider's access: the vehicles of one route.
struct RiderAccess(String);

impl Access for RiderAccess {
    fn may_read_vehicle(&self, _vehicle: &str, route: Option<&str>, _trip: Option<&str>) -> bool {
        route == Some(self.0.as_str())
    }

    fn may_ping(&self, _vehicle: &str) -> bool {
        false
    }
}

impl BrokerPort for FakePort {
    fn ping(&self, vehicle: &str, payload: Bytes) -> Result<(), PortError> {
        self.pings
            .lock()
            .expect("lock")
            .push((vehicle.to_owned(), payload));
        Ok(())
    }

    fn serve_mqtt(&self, io: MqttIo, _peer: SocketAddr) {
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }

    fn write_metrics(&self, out: &mut String) {
        out.push_str("# TYPE fleetmq_fake_connections gauge\nfleetmq_fake_connections 7\n");
    }

    fn readiness(&self) -> Readiness {
        self.readiness
            .lock()
            .expect("lock")
            .clone()
            .unwrap_or(Readiness::Ready)
    }

    fn authenticate(&self, token: Option<&str>) -> Result<Arc<dyn Access>, AuthError> {
        if !self.auth.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(Arc::new(OpenAccess));
        }
        match token {
            None => Err(AuthError::Missing),
            Some("operator") => Ok(Arc::new(OpenAccess)),
            Some(t) => match t.strip_prefix("rider-") {
                Some(route) => Ok(Arc::new(RiderAccess(route.to_owned()))),
                None => Err(AuthError::Invalid("unknown token".into())),
            },
        }
    }

    fn upcoming_stops(
        &self,
        _vehicle: &str,
        max: usize,
    ) -> BoxFuture<'static, Option<fleetmq_bridge::UpcomingStops>> {
        let mut upcoming = self.upcoming.lock().expect("lock").clone();
        if let Some(u) = &mut upcoming {
            u.stops.truncate(max);
        }
        Box::pin(async move { upcoming })
    }

    fn track(
        &self,
        _vehicle: &str,
        from: i64,
        to: i64,
    ) -> BoxFuture<'static, Option<Result<Vec<Value>, PortError>>> {
        if self.track_hangs.load(std::sync::atomic::Ordering::Relaxed) {
            return Box::pin(std::future::pending());
        }
        let fixes = self.track.lock().expect("lock").clone();
        Box::pin(async move {
            fixes.map(|v| {
                Ok(v.into_iter()
                    .filter(|f| f["ts"].as_i64().is_some_and(|ts| ts >= from && ts <= to))
                    .collect())
            })
        })
    }
}

/// A processed state.
pub fn state(
    id: &str,
    lat: f64,
    lon: f64,
    route: Option<&str>,
    trip: Option<&str>,
    ts: i64,
) -> Arc<VehicleState> {
    Arc::new(VehicleState {
        vehicle: id.into(),
        lat,
        lon,
        raw_lat: lat,
        raw_lon: lon,
        ts,
        speed: Some(8.0),
        heading: Some(90.0),
        route: route.map(Into::into),
        trip: trip.map(Into::into),
        status: VehicleStatus::Moving,
        on_route: Some(true),
        off_route_m: Some(3.0),
        progress_m: Some(100.0),
        next_stop: None,
        delay_s: None,
        trip_inferred: None,
        accuracy: None,
        altitude: None,
        battery: None,
        received_at: ts,
        processed_at: ts,
    })
}

/// An event of `kind` for a vehicle.
pub fn event(
    id: &str,
    kind: EventKind,
    lat: f64,
    lon: f64,
    route: Option<&str>,
    ts: i64,
) -> Arc<Event> {
    Arc::new(Event {
        kind,
        vehicle: id.to_owned(),
        ts,
        lat,
        lon,
        route: route.map(str::to_owned),
        trip: None,
        stop_id: None,
        stop_name: None,
        geofence_id: None,
        off_route_m: None,
        message: None,
    })
}

/// Sample routes: R1 and R2 as lines, one stop on both.
pub fn routes() -> Value {
    json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "R1", "geometry": {"type": "LineString", "coordinates": [[145.75, -16.93], [145.78, -16.90]]}, "properties": {"name": "Route 1"}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[146.4, -17.6], [146.6, -17.4]]}, "properties": {"id": "R2"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [145.76, -16.92]}, "properties": {"id": "S1", "name": "Central", "routes": ["R1", "R2"]}},
    ]})
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub port: Arc<FakePort>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts the app on 127.0.0.1:0.
pub async fn start(hub_config: HubConfig) -> Server {
    start_with(hub_config, BridgeConfig::default()).await
}

/// Starts the app on 127.0.0.1:0 with this bridge configuration (routes replaced by `routes()`).
pub async fn start_with(hub_config: HubConfig, config: BridgeConfig) -> Server {
    let hub = Hub::new(hub_config);
    let port = Arc::new(FakePort::default());
    let config = BridgeConfig {
        routes_geojson: routes(),
        ..config
    };
    let app = fleetmq_bridge::app(hub.clone(), port.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(fleetmq_bridge::serve(
        listener,
        app,
        async move {
            let _ = rx.await;
        },
        1_000_000,
    ));
    Server {
        addr,
        hub,
        port,
        stop: Some(tx),
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/ws`.
pub async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connect /ws");
    ws
}

/// Sends a JSON text frame.
pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON text frame, failing the test after `secs`.
pub async fn recv(ws: &mut Ws, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("timed out waiting for a message")
            .expect("stream ended")
            .expect("websocket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("server sent JSON"),
            Message::Close(f) => panic!("closed by server: {f:?}"),
            _ => {}
        }
    }
}

/// Waits until `cond` holds, polling, failing the test after `secs`.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Ids of the vehicles in a snapshot message.
pub fn snapshot_ids(msg: &Value) -> Vec<String> {
    let mut ids: Vec<String> = msg["vehicles"]
        .as_array()
        .expect("vehicles array")
        .iter()
        .map(|v| v["vehicle"].as_str().expect("vehicle id").to_owned())
        .collect();
    ids.sort();
    ids
}
