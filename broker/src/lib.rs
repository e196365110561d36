//! fleetmq broker: MQTT 3.1.1/5.0 protocol handling, sessions, the topic tree, listeners and the
//! ingest hook that runs location updates through geo-engine.
