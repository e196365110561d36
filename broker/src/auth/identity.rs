//! Who a connected client is once authenticated: the [`Identity`] every permission check takes.

use super::Role;

/// The authenticated identity of one connection (MQTT) or request (HTTP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The MQTT client id (`%c` in ACL rules); empty for HTTP requests.
    pub client_id: String,
    /// The user name (`%u` in ACL rules): users-file name, JWT `sub`, certificate CN, or the
    /// unchecked MQTT user name while no authentication is configured.
    pub user: Option<String>,
    /// The role; `None` for an anonymous client (see [`Identity::open_broker`]).
    pub role: Option<Role>,
    /// A driver's own vehicle id: the user's `vehicle`, else the JWT `sub`, else the certificate CN.
    pub vehicle: Option<String>,
    /// A rider's vehicles (JWT `vehicles` claim).
    pub vehicles: Vec<String>,
    /// A rider's routes (JWT `routes` claim); used by the WebSocket bridge, not over MQTT.
    pub routes: Vec<String>,
    /// A rider's trips (JWT `trips` claim); used by the WebSocket bridge, not over MQTT.
    pub trips: Vec<String>,
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
            client_id: client_id.to_owned(),
            user: user.map(str::to_owned),
            open_broker: true,
            ..Identity::default()
        }
    }

    /// An anonymous client admitted by `--allow-anonymous` while authentication is configured:
    /// no role, so nothing beyond what ACL rules grant.
    pub fn anonymous(client_id: &str) -> Self {
        Identity {
            client_id: client_id.to_owned(),
            ..Identity::default()
        }
    }

    /// A client with a role (used by tests and by callers that build identities themselves).
    pub fn with_role(client_id: &str, user: Option<&str>, role: Role) -> Self {
        Identity {
            client_id: client_id.to_owned(),
            user: user.map(str::to_owned),
            role: Some(role),
            ..Identity::default()
        }
    }
}
