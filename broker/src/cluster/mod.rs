//! The cluster (`--cluster --node-id NAME --redis URL`, docs/redis.md#keys, README "Running a
//! cluster"): several fleetmq nodes behind one load balancer whose only shared engine is the
//! Redis they already use for snapshots. This module owns what nodes know of each other
//! (membership) and how the processed outputs of one node (`vehicles/{id}`, `events/...`) reach
//! the MQTT, WebSocket, SSE and REST clients of every other node.
//!
//! # Design, and why
//! - **Redis is the only shared engine.** Nodes heartbeat into Redis keys and exchange processed
//!   outputs over Redis pub/sub. No consensus protocol, no node-to-node sockets, no new server to
//!   run. This is Aedes's choice (`mqemitter-redis` plus Redis persistence), the closest peer to
//!   a broker that already keeps its state in Redis. EMQX (Mria) and rmqtt's Raft mode replicate
//!   a routing table between nodes so that a publish goes only to nodes with subscribers; that
//!   needs a consensus layer we would have to run and test ourselves.
//! - **Broadcast of processed outputs, matched locally.** Like rmqtt's broadcast mode, every
//!   node receives every processed state and feeds it into its own router, hub and GTFS-Realtime
//!   set, which match their own subscribers. Cost grows with nodes × updates, which is fine for
//!   a fleet (states are small, one per vehicle per second) and keeps REST lists, `near` and
//!   `bbox` of every node complete without a cross-node query. A receiving node parses and
//!   indexes the states of vehicles none of its clients watches only when something reads
//!   its fleet (`deferred`), so the receiving half of that cost is paid per read, not per
//!   update, on nodes whose clients watch a few vehicles. Plain pub/sub is fire and forget:
//!   a node that misses a state while Redis is away gets the vehicle's next one, which
//!   supersedes it (processed state is latest-wins, unlike QoS 1 session queues).
//! - **Plain MQTT: a route table per node, in Redis** (`routing`). Client publishes are not
//!   latest-wins, and broadcasting each to every node costs nodes × publishes; so, as EMQX
//!   does with its per-node routes, each node writes its own filters to Redis and the others
//!   read them, and a publish goes only to the nodes whose filters match. No consensus is
//!   needed: each node writes only its own set, and a stale copy costs at most a sync period
//!   (2 s) of misrouting right after a subscribe or unsubscribe.
//! - **Sharded channels.** Outputs go on one of [`bus::SHARDS`] channels chosen by the
//!   vehicle's hash ([`bus::channel`]), so that Redis Cluster's sharded `SPUBLISH` spreads them
//!   over the masters (on one Redis server all on the first); the transport sits behind
//!   [`bus::Transport`].
//! - **Batched.** The bus joins the outputs of a few milliseconds into one `PUBLISH` per
//!   channel, and carries each state's and event's JSON as made by its node behind a few
//!   binary fields (`record`): receivers decide from those fields what to parse and hand the
//!   JSON to their MQTT subscribers and WebSocket clients as it is (`outputs`).
//! - **Ordering per vehicle.** Every output carries an ordering key (epoch, ts, seq)
//!   ([`outputs::Order`]); receivers drop what is not newer than what they have, so duplicates
//!   and stale outputs (a former owner's late message) never overwrite newer state.
//! - **Partitions.** While Redis is unreachable every node keeps serving its own clients with
//!   its own vehicles; `/readyz` says `degraded`; cross-node traffic resumes on reconnect. As
//!   in VerneMQ's "window of uncertainty", clients of one node miss other nodes' updates in
//!   that time; they get each vehicle's next state after it.
//!
//! # Layout
//! - `membership`: heartbeats, the node listing (`GET /api/v1/cluster`), incarnations.
//! - `bus`: pub/sub between nodes over Redis: bounded queues, reconnect with backoff.
//! - `resp`: a Redis connection and RESP2 reader of our own for the bus on one Redis server
//!   (cheaper than redis-rs's per message; bounded; pings a silent Redis); `subscriber` and
//!   `publisher`: the bus's `SUBSCRIBE` and `PUBLISH` connections on it.
//! - `outputs`: processed states and events onto the bus, and other nodes' into local outputs.
//! - `record`: the bus's versioned frame and record format (binary header fields, then the
//!   output's JSON as its node made it).
//! - `deferred`: other nodes' states of unwatched vehicles, held unparsed until a read.
//! - `lease`: vehicle ownership: one node processes a vehicle at a time, under a lease with a
//!   fencing epoch (docs/redis.md#leases); handoff of the vehicle's filters between nodes.
//! - `orphans`: vehicles left without a node (their node died, their driver never came back):
//!   one live node adopts them so they go offline as on a single node.
//! - `routing`: MQTT between nodes (issue 14): the route table, forwarding a publish to the
//!   nodes whose filters match, shared groups once cluster-wide, client id takeover and the
//!   shared retained store; the router's `Remote` in a cluster.
//! - `route_table`: the other nodes' filters as a trie, matched per publish.
//! - `route_sync`: the Redis side of routing (route sets, client id claims, retained writes).
//! - `frame`: what one node sends another's inbox (a PUBLISH with the groups it serves, a kick,
//!   a wake for durable sessions).
//! - `sessions`: durable MQTT sessions in Redis: resumed on any node, surviving their node.

pub mod bus;
pub mod deferred;
pub mod frame;
pub mod lease;
pub mod membership;
pub mod orphans;
pub mod outputs;
pub mod publisher;
mod record;
pub mod resp;
mod route_sync;
pub mod route_table;
pub mod routing;
pub mod sessions;
mod sharded;
pub mod subscriber;

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::ingest::StateSink;
use crate::persist::fence::Fence;
use crate::persist::pubsub::PubSub;
use crate::persist::{Conn, Target};
pub use bus::Bus;
pub use membership::{LocalNode, Me, Membership};
pub use outputs::{LocalOutputs, OutputSink};

/// The node name outside a cluster, as `GET /api/v1/cluster` lists it.
pub const LOCAL_NODE: &str = "local";

/// Whether `id` is a node name: 1 to 64 of `A-Z a-z 0-9 _ -` (it goes into Redis key names).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `--redis` / `--redis-cluster` is not usable.
    #[error("invalid --redis or --redis-cluster URL for the cluster: {0}")]
    Url(#[source] redis::RedisError),
    /// The pub/sub transport could not be made.
    #[error("cluster pub/sub: {0}")]
    Store(String),
}

/// A running cluster node: its membership and its bus. Cheap to share behind an `Arc`.
pub struct Cluster {
    pub membership: Arc<Membership>,
    pub bus: Arc<Bus>,
    /// This node's name.
    pub node: Arc<str>,
    /// The vehicle leases, set once they run: outputs carry the epoch of their vehicle's lease.
    leases: Arc<OnceLock<Arc<dyn Fence>>>,
    /// Counters of the durable sessions' store ([`sessions::start`]).
    pub sessions: Arc<crate::router::durable::OpStats>,
    /// Other nodes' states on their way into this node's hub, set once they are received.
    deferred: OnceLock<Arc<deferred::Deferred>>,
}

impl Cluster {
    /// Connects lazily to `redis_url` (Redis down now is not an error) and starts the heartbeat
    /// and the bus; both stop with `stop`.
    ///
    /// # Errors
    /// [`ClusterError::Url`] when the URL is not a Redis URL.
    pub fn start(
        target: &Target,
        local: LocalNode,
        stop: CancellationToken,
    ) -> Result<Cluster, ClusterError> {
        let transport: Arc<dyn bus::Transport> = match target {
            Target::Single(url) => Arc::new(bus::RedisTransport::new(url)?),
            Target::Cluster(_) => Arc::new(sharded::ShardedTransport::new(
                Conn::open(target).map_err(ClusterError::Url)?,
                PubSub::open(target).map_err(|e| ClusterError::Store(e.to_string()))?,
            )),
        };
        let node: Arc<str> = local.me.id.as_str().into();
        let prefix = bytes::Bytes::from(record::prefix(&node));
        let bus = Arc::new(Bus::start(transport, prefix, stop.clone()));
        let membership = Arc::new(Membership::start(target, local, stop)?);
        Ok(Cluster {
            membership,
            bus,
            node,
            leases: Arc::default(),
            sessions: Arc::default(),
            deferred: OnceLock::new(),
        })
    }

    /// The sink that puts this node's processed outputs on the bus.
    pub fn sink(&self) -> Arc<dyn StateSink> {
        Arc::new(OutputSink::new(self.bus.clone(), self.leases.clone()))
    }

    /// From now on outputs carry their vehicle's lease epoch (see [`outputs::Order`]).
    pub fn set_leases(&self, leases: Arc<dyn Fence>) {
        let _ = self.leases.set(leases);
    }

    /// Other nodes' states go through `deferred` (for its metrics).
    pub fn set_deferred(&self, deferred: Arc<deferred::Deferred>) {
        let _ = self.deferred.set(deferred);
    }

    /// Whether cluster traffic flows: the bus is subscribed and the heartbeat reaches Redis.
    pub fn is_up(&self) -> bool {
        self.bus.is_up() && self.membership.is_up()
    }

    /// `fleetmq_cluster_*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        self.bus.render_metrics(out);
        self.membership.render_metrics(out);
        sessions::render_metrics(&self.sessions, out);
        if let Some(d) = self.deferred.get() {
            d.render_metrics(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_node_id;

    #[test]
    fn node_ids_are_key_safe() {
        for ok in ["a", "node-a", "N_1", &"x".repeat(64)] {
            assert!(valid_node_id(ok), "{ok}");
        }
        for bad in ["", "a b", "a:b", "a{b}", "é", &"x".repeat(65)] {
            assert!(!valid_node_id(bad), "{bad}");
        }
    }
}
