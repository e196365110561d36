//! fleetmq-bridge: delivers processed vehicle state to browsers and apps over HTTP.
//!
//! It knows nothing of MQTT internals: the broker hands it the processed-state stream and a ping
//! sink through a small interface the broker implements.
