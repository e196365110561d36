//! The broker's side of the HTTP bridge: [`BridgePort`] implements the bridge's
//! [`BrokerPort`] (pings into the router, MQTT over WebSocket onto ordinary connections,
//! location posts through the ingest [`Gate`], metrics, readiness), and [`HubSink`] feeds
//! processed state into the bridge's hub.

use std::net::SocketAddr;
use std::sync::Arc;

use fleetmq_bridge::history::{EventsQuery, HistoryQuery};
use fleetmq_bridge::{
    Access, AuthError, BrokerPort, ClusterNode, Hub, IngestError, Ingested, MqttIo, OpenAccess,
    PortError, Readiness,
};
use fleetmq_codec::{Bytes, Properties, QoS};
use futures_util::future::BoxFuture;
use geo_engine::{Event, VehicleState};

use crate::auth::{Acl, Identity, Role};
use crate::cluster::{Cluster, LocalNode};
use crate::connection;
use crate::context::Context;
use crate::gtfsrt::FeedKind;
use crate::ingest::{Gate, Source, StateSink, topics};
use crate::message::{Message, Origin};
use crate::router::RouterMsg;
use std::fmt::Write as _;

/// What `GET /api/v1/cluster` lists and `/readyz` watches.
pub enum NodeView {
    /// Outside a cluster: this node alone.
    Single(LocalNode),
    /// `--cluster`.
    Cluster(Arc<Cluster>),
}

impl NodeView {
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            NodeView::Cluster(c) => Some(c),
            NodeView::Single(_) => None,
        }
    }
}

pub struct BridgePort {
    pub ctx: Arc<Context>,
    /// `--max-connections`, applied to MQTT over WebSocket as to TCP.
    pub max_connections: usize,
    /// Location posts into the pipeline.
    pub gate: Arc<Gate>,
    /// This node, alone or in its cluster.
    pub node: NodeView,
}

impl BrokerPort for BridgePort {
    fn admit_request(&self, client: u64) -> Result<(), std::time::Duration> {
        self.ctx
            .guard
            .admit_request(client, std::time::Instant::now())
    }

    fn authenticate(&self, token: Option<&str>) -> Result<Arc<dyn Access>, AuthError> {
        let auth = &self.ctx.auth;
        if !auth.is_configured() {
            return Ok(Arc::new(OpenBroker(self.ctx.acl.clone())));
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
        Ok(Arc::new(IdentityAccess(identity, self.ctx.acl.clone())))
    }

    fn ingest_location(
        &self,
        vehicle: &str,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Ingested, IngestError>> {
        let (gate, vehicle) = (self.gate.clone(), vehicle.to_owned());
        Box::pin(async move {
            let t = gate.payload(&vehicle, body, Source::Http).await?;
            Ok(Ingested {
                accepted: t.accepted,
                rejected: t.rejected,
            })
        })
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

    fn upcoming_stops(
        &self,
        vehicle: &str,
        max: usize,
    ) -> BoxFuture<'static, Option<fleetmq_bridge::UpcomingStops>> {
        let ingest = self.ctx.ingest.clone();
        // Processed here (always, outside a cluster): this node's tracker.
        if let Some(stops) = ingest.upcoming_stops(vehicle, max) {
            return Box::pin(async move { Some(stops) });
        }
        // In a cluster another node processes it and writes its tracker to Redis with its
        // states: the answer is that node's as of its last write round (usually 100 ms
        // behind; more while its writes lag or fail). Nothing stored yet: `None`.
        let Some(store) = self
            .ctx
            .leases
            .get()
            .and(self.ctx.persist.get())
            .filter(|s| s.is_up())
        else {
            return Box::pin(async { None });
        };
        let read = store.tracker(vehicle, ingest.now_ms());
        Box::pin(async move {
            match read.await {
                Ok(tracker) => {
                    tracker.map(|t| crate::ingest::upcoming_stops(&t, ingest.network(), max))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "redis tracker read failed; listing the next stop only");
                    None
                }
            }
        })
    }

    fn gtfs_rt(&self, feed: &str, json: bool) -> Option<Bytes> {
        let kind = FeedKind::from_path(feed)?;
        let ingest = &self.ctx.ingest;
        Some(ingest.feeds().get(kind, json, ingest.now_ms()))
    }

    fn write_metrics(&self, out: &mut String) {
        self.ctx.metrics.render(out);
        let feeds = self.ctx.ingest.feeds();
        out.push_str(
            "# HELP fleetmq_gtfsrt_encodes_total GTFS-Realtime feed encodings (at most one per feed per second).\n\
             # TYPE fleetmq_gtfsrt_encodes_total counter\n",
        );
        for kind in [
            FeedKind::VehiclePositions,
            FeedKind::TripUpdates,
            FeedKind::Alerts,
        ] {
            let _ = writeln!(
                out,
                "fleetmq_gtfsrt_encodes_total{{feed=\"{}\"}} {}",
                kind.as_str(),
                feeds.encodes(kind)
            );
        }
        if let Some(log) = self.ctx.sos_log.get() {
            log.render_metrics(out);
        }
        if let Some(store) = self.ctx.persist.get() {
            store.render_metrics(out);
        }
        if let Some(leases) = self.ctx.leases.get() {
            leases.render_metrics(out);
        }
        if let Some(history) = self.ctx.history.get() {
            history.render_metrics(out);
        }
        if let Some(cluster) = self.node.cluster() {
            cluster.render_metrics(out);
        }
    }

    fn cluster(&self) -> Vec<ClusterNode> {
        match &self.node {
            NodeView::Single(me) => vec![me.describe(crate::ingest::now_ms())],
            NodeView::Cluster(c) => c.membership.nodes(),
        }
    }

    fn readiness(&self) -> Readiness {
        if self.ctx.shutdown.is_cancelled() {
            Readiness::NotReady("shutting down".into())
        } else if self.ctx.history.get().is_some_and(|h| !h.is_up()) {
            Readiness::Degraded(
                "postgres is down: history rows wait in a bounded backlog and are written when it returns"
                    .into(),
            )
        } else if self.node.cluster().is_some_and(|c| !c.is_up()) {
            Readiness::Degraded(
                "the cluster bus (redis) is down: serving this node's clients; other nodes' updates resume when it returns"
                    .into(),
            )
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

    fn history(
        &self,
        q: &HistoryQuery,
    ) -> BoxFuture<'static, Option<Result<Vec<serde_json::Value>, PortError>>> {
        let Some(history) = self.ctx.history.get().cloned() else {
            return Box::pin(async { None });
        };
        let q = q.clone();
        Box::pin(async move {
            Some(
                history
                    .positions(&q.vehicle, q.from_ms, q.to_ms, q.limit)
                    .await
                    .map_err(history_unavailable),
            )
        })
    }

    fn events(
        &self,
        q: &EventsQuery,
    ) -> BoxFuture<'static, Option<Result<Vec<serde_json::Value>, PortError>>> {
        let Some(history) = self.ctx.history.get().cloned() else {
            return Box::pin(async { None });
        };
        let q = q.clone();
        Box::pin(async move {
            Some(
                history
                    .events(
                        q.vehicle.as_deref(),
                        q.kind.as_deref(),
                        q.from_ms,
                        q.to_ms,
                        q.limit,
                    )
                    .await
                    .map_err(history_unavailable),
            )
        })
    }
}

/// A failed history read: logged, a 503 for the client.
fn history_unavailable(e: crate::history::HistoryError) -> PortError {
    tracing::warn!(error = %e, "history read failed");
    PortError::Unavailable("history store (PostgreSQL) unavailable; retry".into())
}

/// Processed state into the bridge's hub (which coalesces per client and never blocks).
pub struct HubSink(pub Hub);

impl StateSink for HubSink {
    fn state(&self, state: &Arc<VehicleState>) {
        self.0.push_state(state.clone());
    }

    fn state_json(&self, state: &Arc<VehicleState>, json: &Arc<str>) {
        self.0.push_state_json(state.clone(), json.clone());
    }

    fn event(&self, event: &Arc<Event>) {
        self.0.push_event(event.clone());
    }
}

/// A broker without authentication: everyone reads and pings everything, and posts locations
/// unless an `--acl` rule denies the publish.
struct OpenBroker(Arc<Acl>);

impl Access for OpenBroker {
    fn may_read_vehicle(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        OpenAccess.may_read_vehicle(vehicle, route, trip)
    }

    fn may_ping(&self, vehicle: &str) -> bool {
        OpenAccess.may_ping(vehicle)
    }

    fn reads_everything(&self) -> bool {
        true
    }

    fn may_post_location(&self, vehicle: &str) -> bool {
        let topic = format!("fleet/{vehicle}/location");
        self.0.can_publish(&Identity::open("", None), &topic)
    }
}

/// What an authenticated HTTP client may read and ping (docs/security.md#roles: riders see the
/// vehicles, routes and trips of their token; integrators and operators see everything), and where
/// it may post locations (the ACL's verdict on publishing to `fleet/{id}/location`).
struct IdentityAccess(Identity, Arc<Acl>);

impl Access for IdentityAccess {
    fn may_post_location(&self, vehicle: &str) -> bool {
        let topic = format!("fleet/{vehicle}/location");
        self.1.can_publish(&self.0, &topic)
    }

    fn may_read_vehicle(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        self.0.may_read_vehicle(vehicle, route, trip)
    }

    /// A rider's trip claim reads a fix of that trip while it runs and `--trip-ttl` after it
    /// ended; its vehicle and route claims read by vehicle and route as live.
    fn may_read_fix(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        let id = &self.0;
        if id.role != Some(Role::Rider) {
            return id.may_read_vehicle(vehicle, route, trip);
        }
        let listed = |l: &[String], x: Option<&str>| x.is_some_and(|x| l.iter().any(|i| i == x));
        listed(&id.vehicles, Some(vehicle))
            || listed(&id.routes, route)
            || (listed(&id.trips, trip)
                && trip.is_some_and(|t| {
                    self.1
                        .trips()
                        .is_some_and(|b| b.readable(t, std::time::Instant::now()))
                }))
    }

    fn expires_at(&self) -> Option<std::time::SystemTime> {
        self.0
            .expires_at
            .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
    }

    /// Operators ping any vehicle; riders ping the vehicles they may follow: those of their
    /// token, and those running one of their routes or trips now.
    fn may_ping(&self, vehicle: &str) -> bool {
        let id = &self.0;
        match id.role {
            Some(Role::Operator) => true,
            Some(Role::Rider) => {
                id.vehicles.iter().any(|v| v == vehicle)
                    || self
                        .1
                        .trips()
                        .is_some_and(|b| b.runs_any(vehicle, &id.routes, &id.trips))
            }
            _ => false,
        }
    }

    fn reads_everything(&self) -> bool {
        self.0.may_read_all_vehicles()
    }
}
