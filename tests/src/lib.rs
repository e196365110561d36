//! End-to-end tests across crates. `tests/tests/*.rs` start real fleetmq servers on free loopback
//! ports and talk to them over sockets; `tests/python/` drives them with paho-mqtt and the
//! mosquitto clients. This library holds the shared harness.
