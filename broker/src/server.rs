//! Binding the listeners and running the broker until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Acl, Authenticator, JwtVerifier, UsersFile};
use crate::cluster::{self, Cluster, LocalNode, LocalOutputs, Me};
use crate::context::{Context, Limits};
use crate::http::{BridgePort, HubSink, NodeView};
use crate::ingest::{Gate, Ingest};
use crate::limits::Guard;
use crate::metrics::Metrics;
use crate::osmand::{self, Devices, Osmand};
use crate::router::RouterMsg;
use crate::router::{Router, RouterConfig};
use crate::trips::{TripBook, TripSink};
use crate::{Config, Error, https, listener, routes, tls};
use fleetmq_bridge::{BridgeConfig, Hub, HubConfig};
use geo_engine::Network;

/// Bytes one session's queue may hold, beside `--max-queued` messages.
const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// A broker whose listeners are bound (so tests can bind port 0 and read the real address) but
/// that does not accept connections until [`Broker::run`].
pub struct Broker {
    config: Config,
    mqtt: TcpListener,
    http: TcpListener,
    /// `--mqtts` with its TLS configuration.
    mqtts: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    /// `--https` with its TLS configuration.
    https: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    /// `--osmand`, plain HTTP.
    osmand: Option<TcpListener>,
    /// `--osmands` with its TLS configuration.
    osmands: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    /// Which OsmAnd devices may report (loaded when either OsmAnd listener is on).
    devices: Devices,
    metrics: Arc<Metrics>,
    auth: Arc<Authenticator>,
    acl: Arc<Acl>,
    network: Arc<Network>,
    /// `--redis`: the store and the state it restored, replayed in `run`.
    persist: Option<crate::persist::Startup>,
    /// `--postgres`: the history store, started in `run`.
    history: Option<Arc<crate::history::History>>,
}

fn config_error(e: impl std::fmt::Display) -> Error {
    Error::Config(e.to_string())
}

/// Users file, JWT key and anonymous access, with the secure default: anonymous clients only
/// while no authentication is configured and every listener is on loopback.
fn load_auth(config: &Config) -> Result<Authenticator, Error> {
    let users = config
        .users
        .as_deref()
        .map(UsersFile::load)
        .transpose()
        .map_err(config_error)?;
    let jwt = match (&config.jwt_secret, &config.jwt_public_key) {
        (Some(secret), _) => Some(JwtVerifier::hs256(secret.as_bytes())),
        (None, Some(path)) => Some(JwtVerifier::load_public_key(path).map_err(config_error)?),
        (None, None) => None,
    };
    // A client CA authenticates too: its certificates' CNs are identities.
    let configured = users.is_some() || jwt.is_some() || config.tls_client_ca.is_some();
    let loopback = [
        Some(config.mqtt),
        config.mqtts,
        Some(config.http),
        config.https,
        config.osmand,
        config.osmands,
    ]
    .into_iter()
    .flatten()
    .all(|a| a.ip().is_loopback());
    let allow_anonymous = match config.allow_anonymous {
        Some(allow) => allow,
        None if !configured && !loopback => {
            return Err(Error::Config(
                "a listener is outside loopback and no authentication is configured: add --users or --jwt-secret, or pass --allow-anonymous".into(),
            ));
        }
        None => !configured,
    };
    Ok(Authenticator::new(users, jwt, allow_anonymous))
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { flag, addr, source })
}

impl Broker {
    /// Loads routes, restores state and binds every listener.
    ///
    /// # Errors
    /// A listener's port is in use, or a file named by the configuration is unreadable or invalid.
    pub async fn bind(config: Config) -> Result<Broker, Error> {
        Broker::bind_with(config, |network| network).await
    }

    /// [`Broker::bind`] with the loaded route network passed through `prepare` first (the demo
    /// adds its timetable).
    ///
    /// # Errors
    /// As [`Broker::bind`].
    pub async fn bind_with(
        config: Config,
        prepare: impl FnOnce(Network) -> Network,
    ) -> Result<Broker, Error> {
        let auth = Arc::new(load_auth(&config)?);
        let acl = Arc::new(match &config.acl {
            Some(path) => Acl::load(path).map_err(config_error)?,
            None => Acl::empty(),
        });
        let mut network = routes::load(config.routes.as_deref())?;
        if let Some(zones) = &config.zones {
            routes::add_zones(&mut network, zones)?;
        }
        let network = Arc::new(prepare(network));
        let mqtt = bind("mqtt", config.mqtt).await?;
        let http = bind("http", config.http).await?;
        let mqtts = match config.mqtts {
            Some(addr) => {
                let acceptor = tls::acceptor(
                    config.tls_cert.as_deref(),
                    config.tls_key.as_deref(),
                    config.tls_client_ca.as_deref(),
                )
                .map_err(config_error)?;
                Some((bind("mqtts", addr).await?, acceptor))
            }
            None => None,
        };
        let https = match config.https {
            Some(addr) => {
                let acceptor =
                    tls::https_acceptor(config.tls_cert.as_deref(), config.tls_key.as_deref())
                        .map_err(config_error)?;
                Some((bind("https", addr).await?, acceptor))
            }
            None => None,
        };
        let osmand = match config.osmand {
            Some(addr) => Some(bind("osmand", addr).await?),
            None => None,
        };
        let osmands = match config.osmands {
            Some(addr) => {
                let acceptor =
                    tls::https_acceptor(config.tls_cert.as_deref(), config.tls_key.as_deref())
                        .map_err(config_error)?;
                Some((bind("osmands", addr).await?, acceptor))
            }
            None => None,
        };
        let devices = if osmand.is_some() || osmands.is_some() {
            let secured = auth.is_configured() || config.tls_client_ca.is_some();
            Devices::load(config.devices.as_deref(), &auth, secured).map_err(Error::Config)?
        } else {
            Devices::Any
        };
        // After binding (a port in use fails fast), before accepting (restore comes first).
        let persist = crate::persist::Startup::open(&config).await?;
        let history = match &config.postgres {
            Some(url) => Some(Arc::new(
                crate::history::History::open(url, config.history_retention)
                    .map_err(config_error)?,
            )),
            None => None,
        };
        Ok(Broker {
            config,
            mqtt,
            http,
            mqtts,
            https,
            osmand,
            osmands,
            devices,
            metrics: Arc::new(Metrics::default()),
            auth,
            acl,
            network,
            persist,
            history,
        })
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt.local_addr().unwrap_or(self.config.mqtt)
    }

    /// The bound `--mqtts` address, if MQTT over TLS is on.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        let (listener, _) = self.mqtts.as_ref()?;
        listener.local_addr().ok().or(self.config.mqtts)
    }

    /// The bound `--https` address, if HTTPS is on.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        let (listener, _) = self.https.as_ref()?;
        listener.local_addr().ok().or(self.config.https)
    }

    /// The bound `--osmand` address, if the OsmAnd listener is on.
    pub fn osmand_addr(&self) -> Option<SocketAddr> {
        self.osmand
            .as_ref()?
            .local_addr()
            .ok()
            .or(self.config.osmand)
    }

    /// The bound `--osmands` address, if the OsmAnd listener over TLS is on.
    pub fn osmands_addr(&self) -> Option<SocketAddr> {
        let (listener, _) = self.osmands.as_ref()?;
        listener.local_addr().ok().or(self.config.osmands)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.config.http)
    }

    /// The route network in use.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// Serves until `shutdown` completes, then disconnects clients (v5: 0x8B) and flushes state.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let token = CancellationToken::new();
        let router_config = RouterConfig {
            max_queued: self.config.max_queued,
            max_queued_bytes: MAX_QUEUED_BYTES,
            max_sessions: self.config.max_sessions,
            max_retained: self.config.max_retained,
            max_retained_bytes: self.config.max_retained_bytes as usize,
        };
        let (mut router, router_tx) = Router::new(router_config, self.metrics.clone());
        let limits = Limits {
            max_keepalive: self.config.max_keepalive,
            receive_maximum: self.config.receive_maximum.max(1),
            max_packet_size: self.config.max_packet_size as usize,
            session_expiry_311: match self.config.session_expiry_311.as_secs() {
                0 => u32::MAX,
                s => u32::try_from(s).unwrap_or(u32::MAX - 1),
            },
            max_retained: self.config.max_retained,
            max_retained_bytes: self.config.max_retained_bytes as usize,
            ..Limits::default()
        };
        let hub = Hub::new(HubConfig::default());
        // The trip book learns each state first, so that everything routed after it (MQTT,
        // the hub) is judged by the vehicle's current trip. Only a rider's JWT claims read it:
        // without a JWT key it is not fed (a lookup per state, on every node of a cluster).
        let trips = Arc::new(TripBook::new(self.config.trip_ttl));
        let read_trips = self.auth.may_scope_by_trip();
        let acl = Arc::new((*self.acl).clone().with_trips(trips.clone()));
        // What serves this node's own clients; other nodes' outputs go into these too.
        let trip_sink = read_trips
            .then(|| Arc::new(TripSink(trips.clone())) as Arc<dyn crate::ingest::StateSink>);
        let local_sinks: Vec<Arc<dyn crate::ingest::StateSink>> = trip_sink
            .into_iter()
            .chain([Arc::new(HubSink(hub.clone())) as Arc<dyn crate::ingest::StateSink>])
            .collect();
        let local_node = LocalNode {
            me: Me {
                id: self
                    .config
                    .node_id
                    .clone()
                    .unwrap_or_else(|| cluster::LOCAL_NODE.into()),
                mqtt: self.mqtt_addr(),
                http: self.http_addr(),
            },
            started_at: crate::ingest::now_ms(),
            metrics: self.metrics.clone(),
        };
        let target = crate::persist::Target::from_config(&self.config);
        let node = match (&target, self.config.cluster) {
            (Some(target), true) => NodeView::Cluster(Arc::new(
                Cluster::start(target, local_node, token.clone()).map_err(config_error)?,
            )),
            _ => NodeView::Single(local_node),
        };
        let cluster = node.cluster().cloned();
        // MQTT across nodes: the router forwards and receives through the cluster's routing.
        if let (Some(c), Some(target)) = (&cluster, &target) {
            let remote = cluster::routing::ClusterRemote::start(
                target,
                c.node.clone(),
                c.membership.clone(),
                token.clone(),
            )
            .await
            .map_err(config_error)?;
            // Takes the cluster's retained messages into the store before any listener accepts.
            router.set_remote(Box::new(remote));
        }
        // Durable sessions across nodes: their records and queues in Redis.
        let durable = match (&cluster, &target) {
            (Some(c), Some(target)) => {
                let (link, table) = cluster::sessions::start(
                    target,
                    c.node.clone(),
                    c.membership.clone(),
                    self.config.max_queued,
                    c.sessions.clone(),
                    token.clone(),
                )
                .map_err(config_error)?;
                router.set_durable(link);
                Some(table)
            }
            _ => None,
        };
        let ingest = Arc::new(
            Ingest::new(
                self.network.clone(),
                self.config.pipeline(),
                local_sinks
                    .iter()
                    .cloned()
                    .chain(self.persist.as_ref().map(|p| p.store().sink()))
                    .chain(self.history.as_ref().map(|h| h.sink()))
                    .chain(cluster.as_ref().map(|c| c.sink()))
                    .collect(),
                self.metrics.clone(),
            )
            .with_clock_start(self.config.clock_start)
            .with_max_vehicles(self.config.max_vehicles)
            .with_leases(self.config.cluster),
        );
        let ctx = Arc::new(
            Context::new(
                router_tx.clone(),
                router.ready_sender(),
                self.metrics.clone(),
                limits,
                token.clone(),
                self.auth,
                acl,
                ingest.clone(),
            )
            .with_guard(
                Guard::new(self.config.max_connect_rate, self.config.max_publish_rate)
                    .with_request_rate(self.config.max_request_rate),
            ),
        );
        if let Some(history) = &self.history {
            let _ = ctx.history.set(history.clone());
            history.start();
        }
        if let Some(table) = durable {
            let _ = ctx.durable.set(table);
        }
        let router_task = tokio::spawn(router.run(token.clone().cancelled_owned()));
        // Restored state goes into ingest, the hub and the retained tree before any listener
        // accepts.
        let sos_log = Arc::new(crate::sos_log::SosLog::new(&self.config.data_dir));
        let _ = ctx.sos_log.set(sos_log.clone());
        let store = match self.persist {
            Some(p) => {
                let _ = ctx.persist.set(p.store().clone());
                replay_sos_log(&sos_log, p.store());
                Some(p.replay(&ingest, &router_tx).await)
            }
            None => None,
        };
        let leases = match (&store, self.config.cluster) {
            (Some(store), true) => Some(start_leases(&self.config, &ingest, store, &ctx)?),
            _ => None,
        };
        // Other nodes' states on their way into the hub and the GTFS-Realtime set.
        let deferred = cluster.as_ref().map(|cluster| {
            let hub_sink = Arc::new(HubSink(hub.clone())) as Arc<dyn crate::ingest::StateSink>;
            let deferred =
                cluster::deferred::Deferred::new(vec![hub_sink], ingest.clone(), Some(hub.clone()));
            cluster.set_deferred(deferred.clone());
            deferred
        });
        if let (Some(cluster), Some(leases), Some(target), Some(deferred)) =
            (&cluster, &leases, &target, &deferred)
        {
            cluster.set_leases(leases.clone());
            let silent: cluster::orphans::Silent = {
                let deferred = deferred.clone();
                Box::new(move |d: Duration| deferred.silent_for(d))
            };
            let conn = crate::persist::Conn::open(target).map_err(|e| {
                config_error(crate::persist::PersistError::Url {
                    target: target.describe(),
                    source: e,
                })
            })?;
            tokio::spawn(cluster::orphans::run(
                cluster.membership.clone(),
                leases.clone(),
                conn,
                silent,
                self.config.stale_after,
                token.clone(),
            ));
        }
        // Other nodes' outputs, after the restored state (theirs are newer).
        if let (Some(cluster), Some(deferred)) = (&cluster, deferred) {
            let inbox = cluster.bus.subscribe(cluster::bus::channels());
            let outputs = LocalOutputs {
                node: cluster.node.clone(),
                router: router_tx.clone(),
                trips: read_trips.then(|| trips.clone()),
                outputs: deferred,
            };
            tokio::spawn(outputs.run(inbox, token.clone()));
        }
        let accept = tokio::spawn(listener::run(
            ctx.clone(),
            self.mqtt,
            self.config.max_connections,
            None,
        ));
        let accept_tls = self.mqtts.map(|(listener, acceptor)| {
            tokio::spawn(listener::run(
                ctx.clone(),
                listener,
                self.config.max_connections,
                Some(acceptor),
            ))
        });
        let bridge_config = BridgeConfig {
            routes_geojson: self.network.routes_geojson(),
            ingest_body_limit: self.config.max_packet_size as usize,
            tile_url: self.config.map_tile_url(),
            ..BridgeConfig::default()
        };
        let gate = Arc::new(Gate::new(ctx.clone()));
        let app = fleetmq_bridge::app(
            hub.clone(),
            Arc::new(BridgePort {
                ctx: ctx.clone(),
                max_connections: self.config.max_connections,
                gate: gate.clone(),
                node,
            }),
            bridge_config,
        );
        let osmand_app = osmand::app(
            Arc::new(Osmand {
                gate,
                devices: self.devices,
                metrics: self.metrics.clone(),
            }),
            self.config.max_packet_size as usize,
        );
        let mut osmand_tasks = Vec::new();
        if let Some(listener) = self.osmand {
            osmand_tasks.push(tokio::spawn(fleetmq_bridge::serve(
                listener,
                osmand_app.clone(),
                token.clone().cancelled_owned(),
                self.config.max_connections,
            )));
        }
        if let Some((listener, acceptor)) = self.osmands {
            let listener =
                https::TlsListener::start(ctx.clone(), listener, acceptor, token.clone())?;
            osmand_tasks.push(tokio::spawn(fleetmq_bridge::serve(
                listener,
                osmand_app,
                token.clone().cancelled_owned(),
                self.config.max_connections,
            )));
        }
        let https = match self.https {
            Some((listener, acceptor)) => {
                let listener =
                    https::TlsListener::start(ctx.clone(), listener, acceptor, token.clone())?;
                Some(tokio::spawn(fleetmq_bridge::serve(
                    listener,
                    app.clone(),
                    token.clone().cancelled_owned(),
                    self.config.max_connections,
                )))
            }
            None => None,
        };
        let http = tokio::spawn(fleetmq_bridge::serve(
            self.http,
            app,
            token.clone().cancelled_owned(),
            self.config.max_connections,
        ));
        let sweeper = tokio::spawn(sweep(ingest, router_tx, token.clone()));
        shutdown.await;
        tracing::info!("shutting down");
        // Before clients hear 0x8B: their next fix, on another node, finds the vehicle free.
        if let Some(leases) = &leases {
            leases.release_all().await;
        }
        token.cancel();
        hub.close_all();
        let _ = accept.await;
        if let Some(task) = accept_tls {
            let _ = task.await;
        }
        let _ = router_task.await;
        let _ = sweeper.await;
        let _ = tokio::time::timeout(Duration::from_secs(3), http).await;
        if let Some(https) = https {
            let _ = tokio::time::timeout(Duration::from_secs(3), https).await;
        }
        for task in osmand_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        // Give connections a moment to write their DISCONNECT 0x8B.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.metrics.connections.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(leases) = &leases {
            leases.close().await;
        }
        if let Some(cluster) = &cluster {
            cluster.membership.close().await;
        }
        // Flush Redis last, after connections stopped producing state.
        if let Some(store) = store {
            store.close().await;
        }
        if let Some(history) = &self.history {
            history.close().await;
        }
        Ok(())
    }
}

/// `--cluster`: this node's vehicle leases, fencing the store's writes, started.
fn start_leases(
    config: &Config,
    ingest: &Arc<Ingest>,
    store: &Arc<crate::persist::Store>,
    ctx: &Context,
) -> Result<Arc<crate::cluster::lease::Leases>, Error> {
    let (Some(target), Some(node)) = (
        crate::persist::Target::from_config(config),
        config.node_id.as_deref(),
    ) else {
        return Err(Error::Config(
            "--cluster needs --redis or --redis-cluster, and --node-id".into(),
        ));
    };
    let leases = crate::cluster::lease::Leases::open(
        &target,
        node,
        ingest.clone(),
        store.clone(),
        config.state_ttl,
        config.stale_after,
    )
    .map_err(config_error)?;
    leases.start();
    let _ = ctx.leases.set(leases.clone());
    Ok(leases)
}

/// Marks vehicles offline when no fix came for `stale_after`, once a second.
async fn sweep(
    ingest: Arc<Ingest>,
    router: tokio::sync::mpsc::Sender<RouterMsg>,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        let ingest2 = ingest.clone();
        let Ok(outputs) = tokio::task::spawn_blocking(move || ingest2.sweep()).await else {
            continue;
        };
        for message in outputs {
            if router
                .send(RouterMsg::Publish {
                    message,
                    qos2_pkid: None,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Queues the local SOS log for Redis: whatever Redis has not stored yet (absent or down when
/// the SOS came) gets there; what it has is skipped by id.
fn replay_sos_log(log: &crate::sos_log::SosLog, store: &crate::persist::Store) {
    match log.read() {
        Ok(records) if records.is_empty() => {}
        Ok(records) => {
            tracing::info!(
                count = records.len(),
                "SOS log: replaying into Redis (each SOS stored once)"
            );
            store.replay_sos(records);
        }
        Err(e) => tracing::error!(error = %e, "SOS log unreadable: not replayed into Redis"),
    }
}
