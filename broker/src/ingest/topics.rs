//! The driver topics fleetmq interprets (docs/topics-and-payloads.md): `fleet/{vehicle}/location`,
//! `.../status`, `.../sos`; drivers subscribe to `.../ping`.

/// A driver topic, with its vehicle id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverTopic<'a> {
    Location(&'a str),
    Sos(&'a str),
}

/// Classifies a PUBLISH topic.
pub fn driver_topic(topic: &str) -> Option<DriverTopic<'_>> {
    let rest = topic.strip_prefix("fleet/")?;
    let (vehicle, kind) = rest.split_once('/')?;
    if vehicle.is_empty() {
        return None;
    }
    match kind {
        "location" => Some(DriverTopic::Location(vehicle)),
        "sos" => Some(DriverTopic::Sos(vehicle)),
        _ => None,
    }
}

/// The topic a vehicle's pings are published to.
pub fn ping_topic(vehicle: &str) -> String {
    format!("fleet/{vehicle}/ping")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        assert_eq!(
            driver_topic("fleet/bus-1/location"),
            Some(DriverTopic::Location("bus-1"))
        );
        assert_eq!(
            driver_topic("fleet/bus-1/sos"),
            Some(DriverTopic::Sos("bus-1"))
        );
        assert_eq!(driver_topic("fleet/bus-1/status"), None);
        assert_eq!(driver_topic("fleet//location"), None);
        assert_eq!(driver_topic("fleet/a/b/location"), None);
        assert_eq!(driver_topic("vehicles/x"), None);
    }
}
