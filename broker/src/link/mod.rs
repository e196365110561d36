//! The contract between the router and the connections, and the only thing they share: what
//! a connection sends the router ([`RouterMsg`], one per packet the router must see), what
//! the router hands back ([`ConnLink`], a bounded queue of [`Outgoing`] items per
//! connection), the [`Delivery`] those items carry, and the ids of both sides
//! ([`SessionId`], [`ConnId`]). It imports neither `router` nor `connection`: each side
//! depends on this module only, so the router can route for connections it never sees (other
//! nodes, later) and a connection can be served by any router.
//!
//! # Layout
//! - `ids`: [`SessionId`] and [`ConnId`].
//! - `msg`: [`RouterMsg`] and the requests it carries (CONNECT, SUBSCRIBE, wills).
//! - `queue`: [`ConnLink`], the router → connection queue, and what goes on it.
//! - `delivery`: one message to one session, its wire properties and exact encoded size.

pub mod delivery;
pub mod ids;
pub mod msg;
pub mod queue;

pub use delivery::Delivery;
pub use ids::{ConnId, SessionId};
pub use msg::{ConnectReply, ConnectRequest, RouterMsg, SubOptions, SubRequest, Will};
pub use queue::{Ack, ConnLink, LINK_CAPACITY, Outgoing, Permit, Refused};
