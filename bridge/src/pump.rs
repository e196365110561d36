//! The writer loop shared by WebSocket and SSE clients: takes due batches from a client's queue
//! and sends them, closing the client when a batch cannot be sent within the slow-client limit
//! counted from when its oldest message became due.
//!
//! # Write delay
//! A client that is sent something every few milliseconds (a dashboard of the whole fleet gets
//! thousands of updates a second) would otherwise cost a wake-up of its writer, a frame flush and
//! a `write` per update, on the server and on the client. Once its writes come closer together
//! than twice [`Pace::write_delay`], the writer waits out one delay after each write before it
//! takes the next batch, so everything that became due meanwhile goes in one write (Centrifugo PRO's
//! `client.write_delay` does the same). A client written to less often (a rider following one
//! bus) never waits; a batch that filled the batch limit is followed at once (the client is
//! behind, waiting would only grow that). At most one delay is added to an update's latency.

use std::time::Duration;

use tokio::time::Instant;

use crate::client::{Batch, Client, CloseReason, Outgoing};
use crate::metrics::{Metrics, inc};

/// Where a client's messages go (a WebSocket sink, an SSE channel).
pub trait Outlet {
    /// Sends the messages in order; `Err` when the peer is gone.
    fn send_batch(&mut self, msgs: Vec<Outgoing>) -> impl Future<Output = Result<(), ()>> + Send;
}

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server closes the client for this reason.
    Closed(CloseReason),
    /// The peer went away.
    Gone,
}

/// The pump's timing.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// A batch not sent within this long of its oldest message becoming due closes the client.
    pub slow: Duration,
    /// The wait after each write of a busy client (module doc); zero: never wait.
    pub write_delay: Duration,
}

/// Sends the client's messages until it is closed or its peer goes away. A batch that is not sent
/// by `oldest due + slow` means the client has been behind for `slow`: it is closed as slow.
pub async fn pump(client: &Client, out: &mut impl Outlet, pace: Pace, metrics: &Metrics) -> Ending {
    let mut last_write: Option<Instant> = None;
    loop {
        match client.next_batch().await {
            Batch::Close(reason) => return Ending::Closed(reason),
            Batch::Messages { msgs, oldest, full } => {
                match tokio::time::timeout_at(oldest + pace.slow, out.send_batch(msgs)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(())) => return Ending::Gone,
                    Err(_) => {
                        inc(&metrics.slow_clients_closed);
                        tracing::info!(
                            client = client.id,
                            "closing a client that could not keep up"
                        );
                        client.close(CloseReason::Slow);
                        return Ending::Closed(CloseReason::Slow);
                    }
                }
                let now = Instant::now();
                let busy =
                    last_write.is_some_and(|prev| now.duration_since(prev) < pace.write_delay * 2);
                last_write = Some(now);
                if busy && !full && !pace.write_delay.is_zero() {
                    tokio::time::sleep_until(now + pace.write_delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::client::tests::prepared;
    use crate::client::{QueueLimits, SubMeta};

    /// One write: when, and the `ts` of the states in it.
    type Write = (Instant, Vec<i64>);

    /// Records every write.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Write>>>);

    impl Outlet for Recorder {
        async fn send_batch(&mut self, msgs: Vec<Outgoing>) -> Result<(), ()> {
            let ts = msgs
                .iter()
                .filter_map(|m| {
                    let at = m.text.find(r#""ts":"#)? + 5;
                    let digits = m.text[at..].split(|c: char| !c.is_ascii_digit()).next()?;
                    digits.parse().ok()
                })
                .collect();
            self.0.lock().unwrap().push((Instant::now(), ts));
            Ok(())
        }
    }

    /// Offers `n` states, one every `every` (each of its own vehicle, `ts` = offer time in ms
    /// since the start), to a client pumped with `write_delay`; returns the writes.
    async fn run(n: i64, every: Duration, write_delay: Duration) -> Vec<(Duration, Vec<i64>)> {
        let client = Arc::new(Client::new(
            1,
            QueueLimits {
                events: 8,
                control: 8,
                batch: 256,
            },
            Arc::new(Metrics::default()),
        ));
        client.add_sub(
            0,
            SubMeta {
                sub_json: Arc::from("\"s\""),
                interval: Duration::ZERO,
                ready: true,
                batch: false,
            },
        );
        let out = Recorder::default();
        let pace = Pace {
            slow: Duration::from_secs(30),
            write_delay,
        };
        let pumped = {
            let (client, mut out) = (client.clone(), out.clone());
            tokio::spawn(async move { pump(&client, &mut out, pace, &Metrics::default()).await })
        };
        let start = Instant::now();
        for i in 0..n {
            let ts = i64::try_from(start.elapsed().as_millis()).unwrap();
            let vehicle = u32::try_from(i).unwrap();
            client.offer_state(0, &prepared(&format!("v{i}"), ts), vehicle, Instant::now());
            tokio::time::sleep(every).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        pumped.abort();
        let writes = out.0.lock().unwrap().clone();
        writes
            .into_iter()
            .map(|(at, ts)| (at - start, ts))
            .collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_client_gets_one_write_per_delay_and_no_update_waits_longer() {
        let writes = run(100, ms(1), ms(5)).await;
        let states: usize = writes.iter().map(|(_, ts)| ts.len()).sum();
        assert_eq!(states, 100, "every state is written: {writes:?}");
        assert!(
            writes.len() <= 100 / 5 + 3,
            "{} writes: {writes:?}",
            writes.len()
        );
        for (at, ts) in &writes {
            for t in ts {
                let waited = at.saturating_sub(ms(u64::try_from(*t).unwrap()));
                assert!(waited <= ms(6), "a state of {t} ms waited {waited:?}");
            }
        }
        // Without the delay, the same client gets a write per state.
        let undelayed = run(100, ms(1), Duration::ZERO).await;
        assert_eq!(undelayed.len(), 100, "{undelayed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_written_to_now_and_then_never_waits() {
        let writes = run(10, ms(20), ms(5)).await;
        assert_eq!(writes.len(), 10, "{writes:?}");
        for (at, ts) in &writes {
            assert_eq!(ts.len(), 1);
            assert_eq!(
                *at,
                ms(u64::try_from(ts[0]).unwrap()),
                "written when offered"
            );
        }
    }
}
