//! The broker's side of the HTTP bridge: [`BridgePort`] implements the bridge's
//! [`BrokerPort`] (pings into the router, MQTT over WebSocket onto ordinary connections,
//! metrics, readiness), and [`HubSink`] feeds processed state into the bridge's hub.

use std::net::SocketAddr;
use std::sync::Arc;

use fleetmq_bridge::{
    Access, AuthError, BrokerPort, Hub, MqttIo, OpenAccess, PortError, Readiness,
};
use fleetmq_codec::{Bytes, Properties, QoS};
use futures_util::future::BoxFuture;
use geo_engine::{Event, VehicleState};

use crate::auth::{Identity, Role};
use crate::connection;
use crate::context::Context;
use crate::ingest::{StateSink, topics};
use crate::message::{Message, Origin};
use crate::router::RouterMsg;

pub struct BridgePort {
    pub ctx: Arc<Context>,
    /// `--max-connections`, applied to MQTT over WebSocket as to TCP.
    pub max_connections: usize,
}

impl BrokerPort for BridgePort {
    fn authenticate(&self, token: Option<&str>) -> Result<Arc<dyn Access>, AuthError> {
        let auth = &self.ctx.auth;
        if !auth.is_configured() {
            return Ok(Arc::new(OpenAccess));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let identity = match token {
            Some(t) => auth
                .authenticate_token(t, now)
                .map_err(|e| AuthError::Invalid(e.to_string()))?,
            None if auth.allows_anonymous() => Identity::anonymous(""),
            None => return Err(AuthError::Missing),
        };
        Ok(Arc::new(IdentityAccess(identity)))
    }

    fn ping(&self, vehicle: &str, payload: Bytes) -> Result<(), PortError> {
        if vehicle.is_empty() || vehicle.contains(['/', '+', '#']) {
            return Err(PortError::Rejected(
                "vehicle id must not contain '/', '+' or '#'".into(),
            ));
        }
        let message = Arc::new(Message {
            topic: topics::ping_topic(vehicle).into(),
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Some(Arc::new(Properties {
                payload_format_indicator: Some(1),
                content_type: Some("application/json".into()),
                ..Properties::default()
            })),
            expires_at: None,
            origin: Origin::Broker,
        });
        // Never wait on the router from an HTTP handler: a full router queue is a 503.
        self.ctx
            .router
            .try_send(RouterMsg::Publish {
                message,
                qos2_pkid: None,
            })
            .map_err(|_| PortError::Unavailable("broker is busy; retry".into()))
    }

    fn serve_mqtt(&self, io: MqttIo, peer: SocketAddr) {
        // The same admission rules as the TCP listener.
        let open = self
            .ctx
            .metrics
            .connections
            .load(std::sync::atomic::Ordering::Relaxed);
        if open >= self.max_connections as i64
            || !self
                .ctx
                .guard
                .allow_connect(peer.ip(), std::time::Instant::now())
        {
            self.ctx
                .metrics
                .connections_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        tokio::spawn(connection::serve(self.ctx.clone(), io, peer));
    }

    fn write_metrics(&self, out: &mut String) {
        self.ctx.metrics.render(out);
        if let Some(store) = self.ctx.persist.get() {
            store.render_metrics(out);
        }
    }

    fn readiness(&self) -> Readiness {
        if self.ctx.shutdown.is_cancelled() {
            Readiness::NotReady("shutting down".into())
        } else if self.ctx.persist.get().is_some_and(|s| !s.is_up()) {
            Readiness::Degraded(
                "redis is down: latest states are kept in memory and written when it returns"
                    .into(),
            )
        } else {
            Readiness::Ready
        }
    }

    fn track(
        &self,
        vehicle: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> BoxFuture<'static, Option<Result<Vec<serde_json::Value>, PortError>>> {
        // Redis down: the bridge serves its in-memory ring instead of an error.
        let Some(store) = self.ctx.persist.get().filter(|s| s.is_up()) else {
            return Box::pin(async { None });
        };
        let read = store.track(vehicle, from_ms, to_ms);
        Box::pin(async move {
            match read.await {
                Ok(fixes) => Some(Ok(fixes)),
                Err(e) => {
                    tracing::warn!(error = %e, "redis track read failed; serving the in-memory ring");
                    None
                }
            }
        })
    }
}

/// Processed state into the bridge's hub (which coalesces per client and never blocks).
pub struct HubSink(pub Hub);

impl StateSink for HubSink {
    fn state(&self, state: &Arc<VehicleState>) {
        self.0.push_state(state.clone());
    }

    fn event(&self, event: &Arc<Event>) {
        self.0.push_event(event.clone());
    }
}

/// What an authenticated HTTP client may read and ping (docs/security.md#roles: riders see the
/// vehicles, routes and trips of their token; integrators and operators see everything).
struct IdentityAccess(Identity);

impl Access for IdentityAccess {
    fn may_read_vehicle(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        self.0.may_read_vehicle(vehicle, route, trip)
    }

    /// Operators ping any vehicle; riders ping the vehicles they may follow.
    fn may_ping(&self, vehicle: &str) -> bool {
        match self.0.role {
            Some(Role::Operator) => true,
            Some(Role::Rider) => self.0.vehicles.iter().any(|v| v == vehicle),
            _ => false,
        }
    }

    fn reads_everything(&self) -> bool {
        self.0.may_read_all_vehicles()
    }
}
