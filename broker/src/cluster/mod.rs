//! Several fleetmq nodes on one Redis (docs/roadmap.md#cluster, docs/redis.md#leases).
//!
//! # Layout
//! - `lease`: vehicle ownership: one node processes a vehicle at a time, under a lease with a
//!   fencing epoch; handoff of the vehicle's filters between nodes.

pub mod lease;
