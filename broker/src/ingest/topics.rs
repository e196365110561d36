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

/// Whether the subscription filter `filter` (without `$share/GROUP/`) can match the location
/// topic `fleet/{vehicle}/location` of some vehicle. Errs on the side of `true` (a filter naming
/// one vehicle counts), so "no such filter" means no subscriber can receive a location publish.
pub fn filter_may_match_location(filter: &str) -> bool {
    let mut levels = filter.split('/');
    let first = levels.next();
    if first == Some("#") {
        return true;
    }
    if !matches!(first, Some("fleet" | "+")) {
        return false;
    }
    match levels.next() {
        Some("#") => return true,
        Some(_) => {}
        None => return false,
    }
    matches!(
        (levels.next(), levels.next(), levels.next()),
        (Some("#"), _, _) | (Some("location" | "+"), None | Some("#"), None)
    )
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

    #[test]
    fn location_filters_are_recognised_and_never_missed() {
        let vehicles = ["bus-1", "b2", "+", "#", "location", "fleet"];
        let filters = [
            "#",
            "+/#",
            "fleet/#",
            "fleet/+/location",
            "fleet/bus-1/location",
            "+/+/+",
            "+/+/location",
            "fleet/+/#",
            "fleet/+/location/#",
            "fleet/+/+/#",
            "fleet/+/ping",
            "fleet/+",
            "fleet",
            "+",
            "vehicles/#",
            "fleet/+/location/x",
            "+/bus-1/+",
            "fleet/+/+/+",
            "$SYS/#",
            "fleet/+/sos",
        ];
        for f in filters {
            let matches_some = vehicles
                .iter()
                .any(|v| crate::topic::matches(f, &format!("fleet/{v}/location")));
            if matches_some {
                assert!(filter_may_match_location(f), "{f} matches a location topic");
            }
        }
        for f in [
            "fleet/+/ping",
            "fleet/+",
            "fleet",
            "+",
            "vehicles/#",
            "fleet/+/+/+",
        ] {
            assert!(!filter_may_match_location(f), "{f}");
        }
        for f in [
            "fleet/+/location",
            "#",
            "+/+/+",
            "fleet/x/location/#",
            "fleet/+/#",
        ] {
            assert!(filter_may_match_location(f), "{f}");
        }
    }
}
