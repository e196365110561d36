//! Who a connected client is once authenticated: the [`Identity`] every permission check takes,
//! and the read rules the HTTP/WebSocket bridge applies per vehicle (riders see only the vehicles,
//! routes and trips in their token).

use std::sync::Arc;

use super::Role;

/// The authenticated identity of one connection (MQTT) or request (HTTP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The MQTT client id (`%c` in ACL rules); empty for HTTP requests. Shared with the
    /// router's session of the same client.
    pub client_id: Arc<str>,
    /// The user name (`%u` in ACL rules): users-file name, JWT `sub`, certificate CN, or the
    /// unchecked MQTT user name while no authentication is configured.
    pub user: Option<String>,
    /// The role; `None` for an anonymous client (see [`Identity::open_broker`]).
    pub role: Option<Role>,
    /// A driver's own vehicle id: the user's `vehicle`, else the JWT `sub`, else the certificate CN.
    pub vehicle: Option<String>,
    /// A rider's vehicles (JWT `vehicles` claim).
    pub vehicles: Vec<String>,
    /// A rider's routes (JWT `routes` claim): the vehicles running them, while they do.
    pub routes: Vec<String>,
    /// A rider's trips (JWT `trips` claim): the vehicles running them, while they do.
    pub trips: Vec<String>,
    /// The token's `exp` (Unix seconds): live connections end then. `None` without a token.
    pub expires_at: Option<u64>,
    /// True when the broker runs with no authentication configured: the role table does not
    /// apply and only `--acl` rules restrict this client. False for every client once a users
    /// file or JWT key is configured, so an anonymous client then has no access beyond ACL grants.
    pub open_broker: bool,
}

impl Identity {
    /// An anonymous client of a broker without authentication (`open_broker`), keeping the
    /// unchecked MQTT user name for `%u`, as Mosquitto does.
    pub fn open(client_id: &str, user: Option<&str>) -> Self {
        Identity {
            client_id: client_id.into(),
            user: user.map(str::to_owned),
            open_broker: true,
            ..Identity::default()
        }
    }

    /// An anonymous client admitted by `--allow-anonymous` while authentication is configured:
    /// no role, so nothing beyond what ACL rules grant.
    pub fn anonymous(client_id: &str) -> Self {
        Identity {
            client_id: client_id.into(),
            ..Identity::default()
        }
    }

    /// A client with a role (used by tests and by callers that build identities themselves).
    pub fn with_role(client_id: &str, user: Option<&str>, role: Role) -> Self {
        Identity {
            client_id: client_id.into(),
            user: user.map(str::to_owned),
            role: Some(role),
            ..Identity::default()
        }
    }

    /// Whether this identity may read `vehicle`'s state and events over HTTP or WebSocket, given
    /// the vehicle's current `route` and `trip` (docs/security.md#roles read column): integrators
    /// and operators see everything, a rider the vehicles, routes and trips of its token, a driver
    /// nothing, an anonymous client everything only on a broker without authentication. `--acl`
    /// rules are MQTT topic rules and are not consulted here.
    pub fn may_read_vehicle(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        let listed =
            |list: &[String], item: Option<&str>| item.is_some_and(|i| list.iter().any(|x| x == i));
        match self.role {
            Some(Role::Operator | Role::Integrator) => true,
            Some(Role::Rider) => {
                listed(&self.vehicles, Some(vehicle))
                    || listed(&self.routes, route)
                    || listed(&self.trips, trip)
            }
            Some(Role::Driver) => false,
            None => self.open_broker,
        }
    }

    /// Whether this identity may read every vehicle at once (bounding-box, nearest and list
    /// queries, `events: true` for all vehicles): integrators, operators, and anonymous clients of
    /// a broker without authentication.
    pub fn may_read_all_vehicles(&self) -> bool {
        match self.role {
            Some(Role::Operator | Role::Integrator) => true,
            Some(Role::Rider | Role::Driver) => false,
            None => self.open_broker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_read_rules() {
        let mut rider = Identity::with_role("", Some("r"), Role::Rider);
        rider.vehicles = vec!["bus-1".into()];
        rider.routes = vec!["R1".into()];
        rider.trips = vec!["T1".into()];
        assert!(rider.may_read_vehicle("bus-1", None, None));
        assert!(rider.may_read_vehicle("bus-2", Some("R1"), None));
        assert!(rider.may_read_vehicle("bus-3", Some("R9"), Some("T1")));
        assert!(!rider.may_read_vehicle("bus-4", Some("R9"), Some("T9")));
        assert!(!rider.may_read_vehicle("bus-4", None, None));
        assert!(!rider.may_read_all_vehicles());
        let mut driver = Identity::with_role("d", None, Role::Driver);
        driver.vehicle = Some("bus-1".into());
        assert!(!driver.may_read_vehicle("bus-1", None, None));
        for role in [Role::Integrator, Role::Operator] {
            let id = Identity::with_role("", None, role);
            assert!(id.may_read_vehicle("any", None, None) && id.may_read_all_vehicles());
        }
        assert!(Identity::open("", None).may_read_all_vehicles());
        assert!(Identity::open("", None).may_read_vehicle("x", None, None));
        assert!(!Identity::anonymous("").may_read_all_vehicles());
        assert!(!Identity::anonymous("").may_read_vehicle("x", None, None));
    }
}
