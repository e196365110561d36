//! The link between the router and one connection: a bounded queue of packets to write, a
//! flag the router raises when it found the queue full (the connection answers with `Ready`
//! once it has drained), and the close and takeover signals.
//!
//! One small allocation per connection: every idle connection holds a link, so it is a
//! mutex-guarded `VecDeque` (no memory while empty) and one waker rather than a channel
//! with preallocated blocks and its own close token.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{AcqRel, Acquire, SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use fleetmq_codec::{Packet, PubResp};
use futures_util::task::AtomicWaker;

use super::{ConnId, Delivery};

/// Packets queued for one connection. The capacity bounds what one slow client pins in
/// memory beyond its session queue.
pub const LINK_CAPACITY: usize = 128;

/// Something for the connection to put on the wire.
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
    /// Any other control packet, boxed so that the queue's slots stay small.
    Packet(Box<Packet>),
    /// Write a DISCONNECT with this reason (v5 only) and close.
    Disconnect {
        reason: u8,
        message: Option<&'static str>,
    },
}

/// Queue slots a quiet link keeps between wake-ups (a few hundred bytes).
const QUIET_CAPACITY: usize = 8;

/// Flag bits of [`Shared::flags`].
const WANT_READY: u8 = 1;
const CLOSING: u8 = 2;
const TAKEN_OVER: u8 = 4;
/// The connection is gone: nothing more is accepted.
const GONE: u8 = 8;

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<VecDeque<Outgoing>>,
    waker: AtomicWaker,
    flags: AtomicU8,
}

/// The router's (and the connection's own) handle on an attached connection.
#[derive(Debug, Clone)]
pub struct ConnLink {
    /// Unique per connection, so events from a replaced connection are told apart.
    pub id: ConnId,
    shared: Arc<Shared>,
}

/// Why nothing can be queued right now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Full,
    Closed,
}

/// Room for one item, checked by [`ConnLink::try_reserve`]. Only the router queues
/// publishes, so the room cannot be taken by someone else before [`Permit::send`].
pub struct Permit<'a>(&'a ConnLink);

impl Permit<'_> {
    pub fn send(self, item: Outgoing) {
        self.0.push(item);
    }
}

impl ConnLink {
    pub fn new(id: ConnId) -> ConnLink {
        ConnLink {
            id,
            shared: Arc::default(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Outgoing>> {
        // A panic while holding the lock cannot leave the queue half-changed (push and pop
        // are whole operations), so a poisoned lock is still a good queue.
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn has(&self, flag: u8) -> bool {
        self.shared.flags.load(Acquire) & flag != 0
    }

    /// Room for one more item, or why not.
    pub fn try_reserve(&self) -> Result<Permit<'_>, Refused> {
        if self.has(GONE | CLOSING) {
            return Err(Refused::Closed);
        }
        if self.queue().len() >= LINK_CAPACITY {
            return Err(Refused::Full);
        }
        Ok(Permit(self))
    }

    /// Queues `item` if there is room, with one lock (the router's path for a delivery that
    /// needs no bookkeeping first); gives it back with the reason otherwise.
    pub fn try_push(&self, item: Outgoing) -> Result<(), (Refused, Outgoing)> {
        if self.has(GONE | CLOSING) {
            return Err((Refused::Closed, item));
        }
        let was_empty = {
            let mut q = self.queue();
            if q.len() >= LINK_CAPACITY {
                return Err((Refused::Full, item));
            }
            q.push_back(item);
            q.len() == 1
        };
        if was_empty {
            self.shared.waker.wake();
        }
        Ok(())
    }

    /// Queues `item` whatever the queue's length (callers check with `try_reserve`, or send
    /// a final DISCONNECT) and wakes the connection if the queue was empty: a connection
    /// drains everything it is woken for, so a non-empty queue already has a wakeup coming.
    fn push(&self, item: Outgoing) {
        if self.has(GONE) {
            return;
        }
        let was_empty = {
            let mut q = self.queue();
            q.push_back(item);
            q.len() == 1
        };
        if was_empty {
            self.shared.waker.wake();
        }
    }

    /// Asks the connection to send DISCONNECT `reason` (best effort) and close.
    pub fn disconnect(&self, reason: u8, message: Option<&'static str>) {
        let mut flags = CLOSING;
        if reason == fleetmq_codec::reason::SESSION_TAKEN_OVER {
            flags |= TAKEN_OVER;
        }
        self.push(Outgoing::Disconnect { reason, message });
        self.shared.flags.fetch_or(flags, SeqCst);
        self.shared.waker.wake();
    }

    /// The router found the queue full: the connection must say `Ready` when it has room.
    pub fn want_ready(&self) {
        self.shared.flags.fetch_or(WANT_READY, SeqCst);
    }

    /// Whether the router is waiting for `Ready`, clearing the request (connection side).
    pub fn take_want_ready(&self) -> bool {
        self.has(WANT_READY) && self.shared.flags.fetch_and(!WANT_READY, AcqRel) & WANT_READY != 0
    }

    /// Whether the connection was told to close.
    pub fn is_closing(&self) -> bool {
        self.has(CLOSING)
    }

    /// Whether a new connection took the session over (the same client came back).
    pub fn is_taken_over(&self) -> bool {
        self.has(TAKEN_OVER)
    }

    /// Connection side: whether anything is queued.
    pub fn has_queued(&self) -> bool {
        !self.queue().is_empty()
    }

    /// Connection side: the task to wake when something is queued or the link closes.
    pub fn register(&self, waker: &Waker) {
        self.shared.waker.register(waker);
    }

    /// Connection side: pops queued items in order, handing each to `take` until it says it
    /// has no room for more. An idle queue gives its memory back. Returns how many were
    /// taken and how many are left, read under the same lock.
    pub fn drain(&self, mut take: impl FnMut(Outgoing) -> bool) -> (usize, usize) {
        let mut q = self.queue();
        let mut n = 0;
        while let Some(item) = q.pop_front() {
            n += 1;
            if !take(item) {
                break;
            }
        }
        if q.is_empty() && n < 8 && q.capacity() > QUIET_CAPACITY {
            // Quiet: a few items at a time is not worth keeping a large allocation for; a
            // small one is kept, so a watcher woken for one message at a time does not
            // allocate and free its queue on every message.
            q.shrink_to(QUIET_CAPACITY);
        }
        (n, q.len())
    }

    /// Connection side: the connection has ended. Later items are refused, and the queued
    /// ones (which the session keeps copies of when they matter) are dropped.
    pub fn close_for_good(&self) -> VecDeque<Outgoing> {
        self.shared.flags.fetch_or(GONE, SeqCst);
        std::mem::take(&mut *self.queue())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_capacity_and_after_close() {
        let link = ConnLink::new(ConnId(1));
        for i in 0..LINK_CAPACITY {
            link.try_reserve().unwrap().send(Outgoing::PubRel(i as u16));
        }
        assert_eq!(link.try_reserve().err(), Some(Refused::Full));
        let mut seen = Vec::new();
        link.drain(|item| match item {
            Outgoing::PubRel(id) => {
                seen.push(id);
                seen.len() < 10
            }
            _ => unreachable!(),
        });
        assert_eq!(seen, (0..10).collect::<Vec<u16>>());
        assert!(link.try_reserve().is_ok());
        link.disconnect(fleetmq_codec::reason::SESSION_TAKEN_OVER, None);
        assert!(link.is_closing() && link.is_taken_over());
        assert_eq!(link.try_reserve().err(), Some(Refused::Closed));
        assert_eq!(link.close_for_good().len(), LINK_CAPACITY - 10 + 1);
    }

    #[test]
    fn want_ready_is_taken_once() {
        let link = ConnLink::new(ConnId(1));
        assert!(!link.take_want_ready());
        link.want_ready();
        assert!(link.take_want_ready());
        assert!(!link.take_want_ready());
    }
}
