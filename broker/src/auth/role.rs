//! The four roles of docs/security.md#roles and their names in users files, JWT `role` claims and
//! ACL rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a client is for; decides its base permissions (see [`crate::auth::Acl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A vehicle's GPS unit or driver app: publishes its own location, status and SOS.
    Driver,
    /// A passenger app: reads the vehicles in its token.
    Rider,
    /// A third-party system: reads every vehicle's state and events.
    Integrator,
    /// Fleet staff: everything.
    Operator,
}

impl Role {
    /// Every role, in table order.
    pub const ALL: [Role; 4] = [Role::Driver, Role::Rider, Role::Integrator, Role::Operator];

    /// The lowercase name used in files and tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Driver => "driver",
            Role::Rider => "rider",
            Role::Integrator => "integrator",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `driver`, `rider`, `integrator`, `operator`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected driver, rider, integrator or operator)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses an exact lowercase role name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
        }
        assert_eq!("Driver".parse::<Role>(), Err(UnknownRole("Driver".into())));
        assert!("admin".parse::<Role>().is_err());
    }
}
