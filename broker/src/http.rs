//! The broker's side of the HTTP bridge: [`BridgePort`] implements the bridge's
//! [`BrokerPort`] (pings into the router, MQTT over WebSocket onto ordinary connections,
//! metrics, readiness), and [`HubSink`] feeds processed state into the bridge's hub.

use std::net::SocketAddr;
use std::sync::Arc;

use fleetmq_bridge::{BrokerPort, Hub, MqttIo, PortError, Readiness};
use fleetmq_codec::{Bytes, Properties, QoS};
use futures_util::future::BoxFuture;
use geo_engine::{Event, VehicleState};

use crate::connection;
use crate::context::Context;
use crate::ingest::{StateSink, topics};
use crate::message::{Message, Origin};
use crate::router::RouterMsg;

pub struct BridgePort {
    pub ctx: Arc<Context>,
}

impl BrokerPort for BridgePort {
    fn ping(&self, vehicle: &str, payload: Bytes) -> Result<(), PortError> {
        if vehicle.is_empty() || vehicle.contains(['/', '+', '#']) {
            return Err(PortError::Rejected("vehicle id must not contain '/', '+' or '#'".into()));
        }
        let message = Arc::new(Message {
            topic: topics::ping_topic(vehicle).into(),
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties {
                payload_format_indicator: Some(1),
                content_type: Some("application/json".into()),
                ..Properties::default()
            },
            expires_at: None,
            origin: Origin::Broker,
        });
        // Never wait on the router from an HTTP handler: a full router queue is a 503.
        self.ctx
            .router
            .try_send(RouterMsg::Publish { message, qos2_pkid: None })
            .map_err(|_| PortError::Unavailable("broker is busy; retry".into()))
    }

    fn serve_mqtt(&self, io: MqttIo, peer: SocketAddr) {
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
            Readiness::Degraded("redis is down: latest states are kept in memory and written when it returns".into())
        } else {
            Readiness::Ready
        }
    }

    fn track(&self, vehicle: &str, from_ms: i64, to_ms: i64) -> BoxFuture<'static, Option<Result<Vec<serde_json::Value>, PortError>>> {
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
