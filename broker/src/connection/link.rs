//! The link between the router and one connection's writer: a bounded channel of packets to
//! write, a flag the router raises when the channel was full (the writer answers with `Ready`
//! once it has drained), and a token that closes the connection.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use fleetmq_codec::{Packet, PubResp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::router::session::Delivery;

/// Packets queued for one connection's writer. The capacity bounds what one slow client pins
/// in memory beyond its session queue.
pub const LINK_CAPACITY: usize = 128;

/// Something for the writer to put on the wire.
#[derive(Debug)]
pub enum Outgoing {
    /// An application message; `pkid` is 0 for QoS 0.
    Publish {
        delivery: Delivery,
        pkid: u16,
        dup: bool,
    },
    /// The second step of an outgoing QoS 2 delivery.
    PubRel(u16),
    /// A successful PUBACK, PUBREC or PUBCOMP: the common case, kept small.
    Ack(Ack),
    /// Any other control packet (CONNACK, SUBACK, PINGRESP, refusals, ...), boxed so that
    /// the channel's slots stay small.
    Packet(Box<Packet>),
    /// Write a DISCONNECT with this reason (v5 only) and close.
    Disconnect {
        reason: u8,
        message: Option<&'static str>,
    },
}

/// The router's handle on an attached connection.
#[derive(Debug, Clone)]
pub struct ConnLink {
    /// Unique per connection, so events from a replaced connection are told apart.
    pub id: u64,
    pub tx: mpsc::Sender<Outgoing>,
    pub want_ready: Arc<AtomicBool>,
    pub close: CancellationToken,
    /// Set when a new connection took the session over (the same client came back).
    pub taken_over: Arc<AtomicBool>,
}

impl ConnLink {
    /// Asks the connection to send DISCONNECT `reason` (best effort) and close.
    pub fn disconnect(&self, reason: u8, message: Option<&'static str>) {
        if reason == fleetmq_codec::reason::SESSION_TAKEN_OVER {
            self.taken_over
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let _ = self.tx.try_send(Outgoing::Disconnect { reason, message });
        self.close.cancel();
    }
}

/// A success acknowledgement of an incoming publish.
#[derive(Debug, Clone, Copy)]
pub enum Ack {
    /// PUBACK: QoS 1 received.
    Received(u16),
    /// PUBREC: QoS 2 received, waiting for PUBREL.
    Recorded(u16),
    /// PUBCOMP: QoS 2 released.
    Completed(u16),
}

impl Ack {
    pub fn packet(self) -> Packet {
        match self {
            Ack::Received(id) => Packet::PubAck(PubResp::new(id)),
            Ack::Recorded(id) => Packet::PubRec(PubResp::new(id)),
            Ack::Completed(id) => Packet::PubComp(PubResp::new(id)),
        }
    }
}
