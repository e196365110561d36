//! The role table of docs/security.md#roles: what each [`Role`] may publish and read before any ACL
//! rule.
//!
//! | role | publish | read |
//! |---|---|---|
//! | driver | `fleet/{own}/location`, `fleet/{own}/status`, `fleet/{own}/sos` | `fleet/{own}/ping` |
//! | rider | nothing | `vehicles/{v}`, `events/{v}/#` for each `v` in its token's `vehicles` |
//! | integrator | nothing | `vehicles/#`, `events/#` |
//! | operator | any topic | every topic, `$SYS/...` included |
//!
//! Reading is checked per message (see `rights`), so a subscription whose filter reaches beyond
//! these (a rider's `vehicles/+`) is granted and delivers only the readable topics.
//!
//! A driver's own id and a rider's vehicle ids are inserted as literal levels, never parsed as
//! filters, and an id that is not a single plain level (empty, or containing `/`, `+`, `#`) is
//! ignored, so an id like `+` cannot widen a permission. A rider's `routes` and `trips` claims
//! are not in this static table: they grant a vehicle only while it runs one of them (the
//! `TripScope` of `rights`, fed by `crate::trips`).

use super::rights::Grant;
use super::{Identity, Role};
use crate::topic::{Level, covers};

/// Whether `id`'s role allows publishing to `topic` (parsed). `false` without a role.
pub(crate) fn role_may_publish(id: &Identity, topic: &[Level<'_>]) -> bool {
    match id.role {
        Some(Role::Operator) => true,
        Some(Role::Driver) => own_vehicle(id).is_some_and(|own| {
            ["location", "status", "sos"].into_iter().any(|leaf| {
                covers(
                    &[Level::Lit("fleet"), Level::Lit(own), Level::Lit(leaf)],
                    topic,
                )
            })
        }),
        Some(Role::Rider | Role::Integrator) | None => false,
    }
}

/// What `id`'s role lets it read; nothing without a role.
pub(crate) fn role_read_grants(id: &Identity) -> Vec<Grant> {
    let filter = |s: String| Grant::Filter(s.into_boxed_str());
    match id.role {
        Some(Role::Operator) => vec![Grant::Everything],
        Some(Role::Driver) => own_vehicle(id)
            .map(|own| filter(format!("fleet/{own}/ping")))
            .into_iter()
            .collect(),
        Some(Role::Rider) => id
            .vehicles
            .iter()
            .filter(|v| plain_level(v))
            .flat_map(|v| {
                [
                    filter(format!("vehicles/{v}")),
                    filter(format!("events/{v}/#")),
                ]
            })
            .collect(),
        Some(Role::Integrator) => vec![filter("vehicles/#".into()), filter("events/#".into())],
        None => Vec::new(),
    }
}

/// A driver's own vehicle id, if it is usable as one topic level.
fn own_vehicle(id: &Identity) -> Option<&str> {
    id.vehicle.as_deref().filter(|v| plain_level(v))
}

/// Whether `s` can stand as one literal topic level: non-empty, no `/`, wildcard or NUL.
pub(crate) fn plain_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}
