//! Waiting one round of the scheduler, the way both sides of the link batch their work: the
//! router before a pass over the client messages that woke it, a connection before writing the
//! items the router queued for it. Whatever the other ready tasks (the publishers'
//! connections) produce during that round is handled in the same pass and written with the
//! same `write`, instead of one wake-up and one system call per message.
//!
//! The wait is no timer: tokio runs a deferred task again at its next poll for I/O, which comes
//! once the ready tasks have run and at the latest after 61 of them (`event_interval`), so
//! it adds at most a fraction of a millisecond, and nothing while the scheduler is idle.

use std::task::{Context, Poll};

/// `Pending`, with this task woken again after one round of the scheduler.
pub fn defer<T>(cx: &mut Context<'_>) -> Poll<T> {
    let mut yielding = std::pin::pin!(tokio::task::yield_now());
    // `yield_now`'s first poll registers the deferred wake-up and is always pending; the
    // future is done with after it.
    let _ = yielding.as_mut().poll(cx);
    Poll::Pending
}
