//! The role table of docs/security.md#roles: what each [`Role`] may publish and subscribe to before
//! any ACL rule.
//!
//! | role | publish | subscribe |
//! |---|---|---|
//! | driver | `fleet/{own}/location`, `fleet/{own}/status`, `fleet/{own}/sos` | `fleet/{own}/ping` |
//! | rider | nothing | `vehicles/{v}`, `events/{v}/#` for each `v` in its token's `vehicles` |
//! | integrator | nothing | any filter within `vehicles/#` or `events/#` |
//! | operator | any topic | any filter, `$SYS/#` included |
//!
//! A driver's own id and a rider's vehicle ids are inserted as literal levels, never parsed as
//! filters, and an id that is not a single plain level (empty, or containing `/`, `+`, `#`) is
//! ignored, so an id like `+` cannot widen a permission. Over MQTT a rider gets only its explicit
//! vehicles: the `routes` and `trips` claims are honoured by the WebSocket bridge, which filters
//! per message; subscribing to `vehicles/+` would leak every other vehicle.

use super::topic::{Level, covers};
use super::{Identity, Role};

/// What a permission check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// PUBLISH to a topic name.
    Publish,
    /// SUBSCRIBE with a topic filter.
    Subscribe,
}

/// Whether `id`'s role allows `op` on `target` (a parsed topic for publish, a parsed filter for
/// subscribe). `false` without a role.
pub(crate) fn role_allows(id: &Identity, op: Op, target: &[Level<'_>]) -> bool {
    let Some(role) = id.role else {
        return false;
    };
    match (role, op) {
        (Role::Operator, _) => true,
        (Role::Driver, Op::Publish) => own_vehicle(id).is_some_and(|own| {
            ["location", "status", "sos"].into_iter().any(|leaf| {
                covers(
                    &[Level::Lit("fleet"), Level::Lit(own), Level::Lit(leaf)],
                    target,
                )
            })
        }),
        (Role::Driver, Op::Subscribe) => own_vehicle(id).is_some_and(|own| {
            covers(
                &[Level::Lit("fleet"), Level::Lit(own), Level::Lit("ping")],
                target,
            )
        }),
        (Role::Rider, Op::Subscribe) => id.vehicles.iter().filter(|v| plain_level(v)).any(|v| {
            covers(&[Level::Lit("vehicles"), Level::Lit(v)], target)
                || covers(&[Level::Lit("events"), Level::Lit(v), Level::Hash], target)
        }),
        (Role::Integrator, Op::Subscribe) => {
            covers(&[Level::Lit("vehicles"), Level::Hash], target)
                || covers(&[Level::Lit("events"), Level::Hash], target)
        }
        (Role::Rider | Role::Integrator, Op::Publish) => false,
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
