//! [`Gate`]: the way into the pipeline for location updates that do not arrive as an MQTT
//! PUBLISH — `POST /api/v1/vehicles/{id}/location` and the OsmAnd protocol (docs/ingest-http.md).
//!
//! It makes such an update indistinguishable from a publish to `fleet/{id}/location`: the same
//! per-vehicle publish rate (`--max-publish-rate`, one token per request as per PUBLISH packet),
//! the same parsing and validation ([`Ingest`]), the same outputs routed in the same order
//! (processed state and events first, then the raw docs/topics-and-payloads.md#location-updates
//! payload on `fleet/{id}/location` for its MQTT subscribers) and the same metrics, labelled with
//! the [`Source`].
//!
//! It runs on the task of the HTTP connection that carries the request (hyper's one task per
//! connection, requests of a keep-alive connection in turn): no task of its own per request.
//! A full router queue makes the request wait, as it makes an MQTT publisher wait (back-pressure),
//! bounded by the HTTP request timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fleetmq_codec::{Bytes, QoS};
use geo_engine::{Fix, Rejection};

use super::{Ingest, Source};
use crate::cluster::lease::LeaseError;
use crate::context::Context;
use crate::limits::{TokenBucket, make_room};
use crate::message::{Message, Origin};
use crate::router::RouterMsg;

/// Most fixes one request may carry (a device uploading what it buffered offline: at one fix
/// every 10 s, about 14 hours). More is 413: split the upload.
pub const MAX_BATCH: usize = 5_000;

/// What an update that got in came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Fixes that passed validation (forwarded, or dropped as duplicate or jitter).
    pub accepted: usize,
    /// Fixes of a batch that failed validation while others passed.
    pub rejected: usize,
}

/// Why an update was refused as a whole.
#[derive(Debug)]
pub enum Refused {
    /// Nothing in it passed validation: the first problem, naming the field.
    Invalid(Rejection),
    /// More than [`MAX_BATCH`] fixes.
    TooLarge(usize),
    /// Over the vehicle's publish rate; the next token comes after this long.
    RateLimited(Duration),
    /// The broker is shutting down.
    Unavailable,
    /// A new vehicle past `--max-vehicles`.
    VehicleQuota,
    /// `--cluster`: another node processes the vehicle and kept it past the handoff wait.
    Busy,
}

/// How the HTTP endpoints answer a refusal (the bridge maps these onto 400/413/429/503).
impl From<Refused> for fleetmq_bridge::IngestError {
    fn from(r: Refused) -> Self {
        use fleetmq_bridge::IngestError;
        match r {
            Refused::Invalid(r) => IngestError::Invalid {
                field: r.field.to_owned(),
                message: r.message,
            },
            Refused::TooLarge(n) => IngestError::TooLarge(format!(
                "{n} fixes in one request; at most {MAX_BATCH}: split the upload"
            )),
            Refused::RateLimited(retry_after) => IngestError::RateLimited { retry_after },
            Refused::Unavailable => IngestError::Unavailable("shutting down".into()),
            Refused::VehicleQuota => {
                IngestError::Unavailable("vehicle limit reached (--max-vehicles)".into())
            }
            Refused::Busy => IngestError::Unavailable(
                "the vehicle is being processed by another node; retry".into(),
            ),
        }
    }
}

/// See the module doc.
pub struct Gate {
    ingest: Arc<Ingest>,
    ctx: Arc<Context>,
    /// `--max-publish-rate` per vehicle, 0 = unlimited; the buckets are bounded like the
    /// per-IP tables of `limits` (full buckets are forgotten first).
    rate: u32,
    buckets: Mutex<HashMap<Arc<str>, TokenBucket>>,
}

impl Gate {
    pub fn new(ctx: Arc<Context>) -> Gate {
        Gate {
            ingest: ctx.ingest.clone(),
            rate: ctx.guard.publish_rate(),
            ctx,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A docs/topics-and-payloads.md#location-updates payload (object or batch) for `vehicle`.
    ///
    /// # Errors
    /// [`Refused`]: rate, batch size, nothing valid, shutting down.
    pub async fn payload(
        &self,
        vehicle: &str,
        payload: Bytes,
        source: Source,
    ) -> Result<Taken, Refused> {
        let received = Instant::now();
        self.admit(vehicle, received)?;
        let fixes = self
            .ingest
            .parse(&payload, source)
            .map_err(Refused::Invalid)?;
        self.run(vehicle, fixes, payload, received, source).await
    }

    /// Fixes decoded from another protocol (OsmAnd); the raw message carries their
    /// docs/topics-and-payloads.md#location-updates JSON.
    ///
    /// # Errors
    /// As [`Gate::payload`].
    pub async fn fixes(
        &self,
        vehicle: &str,
        mut fixes: Vec<Fix>,
        source: Source,
    ) -> Result<Taken, Refused> {
        let received = Instant::now();
        self.admit(vehicle, received)?;
        fixes.sort_by_key(|f| f.ts);
        let json = match fixes.as_slice() {
            [one] => serde_json::to_vec(one),
            many => serde_json::to_vec(many),
        };
        // Serializing numbers and strings cannot fail; an empty payload would only lose the raw copy.
        let payload = Bytes::from(json.unwrap_or_default());
        self.run(vehicle, fixes, payload, received, source).await
    }

    /// Takes one token of `vehicle`'s publish rate.
    fn admit(&self, vehicle: &str, now: Instant) -> Result<(), Refused> {
        if self.ctx.shutdown.is_cancelled() {
            return Err(Refused::Unavailable);
        }
        if self.rate == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(vehicle) {
            make_room(&mut buckets, |b: &TokenBucket| b.is_full(now));
        }
        let bucket = buckets
            .entry(vehicle.into())
            .or_insert_with(|| TokenBucket::new(self.rate, now));
        if bucket.take(now) {
            Ok(())
        } else {
            Err(Refused::RateLimited(bucket.retry_after()))
        }
    }

    async fn run(
        &self,
        vehicle: &str,
        fixes: Vec<Fix>,
        payload: Bytes,
        received: Instant,
        source: Source,
    ) -> Result<Taken, Refused> {
        if fixes.len() > MAX_BATCH {
            return Err(Refused::TooLarge(fixes.len()));
        }
        if let Some(leases) = self.ctx.leases.get() {
            leases.acquire(vehicle).await.map_err(|e| match e {
                LeaseError::Busy(_) => Refused::Busy,
                LeaseError::ShuttingDown => Refused::Unavailable,
            })?;
        }
        let done = self.ingest.process(vehicle, fixes, received, source);
        if done.over_quota {
            return Err(Refused::VehicleQuota);
        }
        if let (0, Some(r)) = (done.taken, done.first_rejection) {
            return Err(Refused::Invalid(r));
        }
        // `--cluster`: answered once the tracker is in Redis, as a QoS 1 PUBACK is.
        let state_mark = match (self.ctx.leases.get(), self.ctx.persist.get()) {
            (Some(_), Some(store)) if !done.outputs.is_empty() => {
                store.mark().map(|m| (store.clone(), m))
            }
            _ => None,
        };
        let raw = Arc::new(Message {
            topic: format!("fleet/{vehicle}/location").into(),
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            properties: None,
            expires_at: None,
            origin: Origin::Broker,
        });
        for message in done.outputs.into_iter().chain(std::iter::once(raw)) {
            let msg = RouterMsg::Publish {
                message,
                qos2_pkid: None,
            };
            // Closed: shutting down, nothing more is routed (as for an MQTT publisher).
            if self.ctx.router.send(msg).await.is_err() {
                break;
            }
        }
        if let Some((store, mark)) = state_mark {
            store.written(mark).await;
        }
        Ok(Taken {
            accepted: done.taken,
            rejected: done.rejected,
        })
    }
}
