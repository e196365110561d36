//! fleetmq-bench: drives any MQTT broker (fleetmq, Mosquitto, rumqttd) with the same workloads
//! and reports throughput, latency percentiles and memory per connection.

fn main() {
    eprintln!("fleetmq-bench: not built yet");
    std::process::exit(2);
}
