//! The seam where routing across nodes joins the router, and [`SingleNode`], the
//! implementation of a broker that is alone (today's only one: every method does nothing).
//!
//! The router owns this node's sessions only. A publish enters it from a local client, a
//! will or the broker itself; `local` delivers it to this node's subscribers and then
//! [`Remote::forward`] hands it to the other nodes. A publish made on another node comes back
//! through [`Remote::poll_incoming`] as an [`Incoming`]; the router delivers it locally and
//! never forwards it again, so messages cannot loop between nodes. The cluster's
//! implementation is `crate::cluster::routing::ClusterRemote`. `$SYS` describes one node and stays on it.
//!
//! # What cluster part 2 (issue 14) plugs in here
//! - **Announce filters.** [`Remote::subscribed`] and [`Remote::unsubscribed`] see every
//!   subscription added to and removed from this node's tree (the filter as the client gave
//!   it, `$share/G/` included). Part 2 counts them per filter and announces the node's set of
//!   filters to the others (through Redis), withdrawing a filter when its count drops to 0.
//! - **Forward to matching nodes only.** [`Remote::forward`] sends a message to the nodes
//!   whose announced filters match its topic, once per node however many subscribers it has
//!   there, and to no node when none match. Shared
//!   subscriptions (`$share/G/F`) pick one member cluster-wide, not one per node.
//! - **Accept from other nodes.** [`Remote::poll_incoming`] yields what other nodes forwarded.
//!   Their messages must carry `Origin::Broker` (a foreign session id would be compared with
//!   this node's for no-local).
//! - **Retained.** The local router stores a retained message it routes, forwarded ones
//!   included, so every node holding a matching filter keeps a copy; part 2 must also give a
//!   node the retained messages published before it subscribed (e.g. a retained store in
//!   Redis consulted by `subscribe::send_retained`) and refuse at one cluster-wide limit.
//! - **Takeover.** [`Remote::connected`] is told each client id that attaches here. Part 2
//!   claims the id cluster-wide; the node holding the previous connection disconnects it
//!   (0x8E, as `lifecycle::connect` does locally) and ends its session there. A durable
//!   session's subscriptions and queue come back from Redis instead (`super::durable`).

use std::sync::Arc;
use std::task::{Context, Poll};

use crate::message::Message;

/// What another node sends this one.
#[derive(Debug)]
pub enum Incoming {
    /// A message published on another node. This node delivers it to its direct
    /// subscriptions and, of its shared groups, only to those named in `shared`
    /// (`$share/G/F`): the publishing node picked this node for them, and another node
    /// serves the group's other copies.
    /// `durable` names the durable sessions the publishing node queued the message for
    /// (`super::durable`): they get it from their queue, not live.
    Publish {
        message: Arc<Message>,
        shared: Vec<Box<str>>,
        durable: Vec<Box<str>>,
    },
    /// Messages were queued for these durable sessions of this node: read their queues.
    Wake { client_ids: Vec<Box<str>> },
    /// A client with this id connected to another node: its connection here, if any, is
    /// taken over (DISCONNECT 0x8E, will published as on a local takeover) and its session
    /// here ends.
    Kick { client_id: Box<str> },
}

/// Routing to and from other nodes, called by the router's single task (so `&mut self`, no
/// locks). Every method must return at once: the router never waits on another node.
pub trait Remote: Send {
    /// A message published on this node, already delivered to this node's subscribers;
    /// `durable` names the durable sessions it was queued for (not delivered live).
    fn forward(&mut self, message: &Arc<Message>, durable: &[Arc<str>]);

    /// The next message published on another node for this node's subscribers; `Pending`
    /// (with the waker kept) while there is none, `Ready(None)` once there will be no more.
    fn poll_incoming(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>>;

    /// What other nodes left for this one before it started (the cluster's retained
    /// messages), taken once by [`crate::router::Router::set_remote`]: it goes into the store
    /// before any listener accepts, so a client of a new node gets it as retained, not live.
    fn preloaded(&mut self) -> Vec<Incoming> {
        Vec::new()
    }

    /// A session of this node subscribed to `filter` (as given, `$share/G/` included).
    fn subscribed(&mut self, filter: &str);

    /// A session of this node no longer subscribes to `filter` (unsubscribed or ended).
    fn unsubscribed(&mut self, filter: &str);

    /// A client with this id attached a connection to this node.
    fn connected(&mut self, client_id: &str);

    /// The session of this client id on this node ended (expired, clean, or taken over).
    fn ended(&mut self, client_id: &str);
}

/// A broker without other nodes: nothing to forward, nothing comes in.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleNode;

impl Remote for SingleNode {
    fn forward(&mut self, _message: &Arc<Message>, _durable: &[Arc<str>]) {}

    fn poll_incoming(&mut self, _cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        // Never ready, and no waker kept: a single node has no one to wake it.
        Poll::Pending
    }

    fn subscribed(&mut self, _filter: &str) {}

    fn unsubscribed(&mut self, _filter: &str) {}

    fn connected(&mut self, _client_id: &str) {}

    fn ended(&mut self, _client_id: &str) {}
}
