//! What one client may read ([`ReadRights`]), compiled once when it connects from the role table
//! and the `--acl` rules that apply to it, so that the router can check every message it
//! delivers without parsing or substituting anything (docs/security.md: reading is checked twice).
//! A rider's `routes` and `trips` claims are the one part decided at delivery time: a [`TripScope`]
//! asks the shared [`TripBook`] which trip the vehicle runs now.

use std::sync::Arc;

use crate::topic::{Level, escapes, intersect, matches, parse_filter};
use crate::trips::TripBook;

/// One thing a client may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Every topic, `$` topics included (an operator; an open broker without grant rules).
    Everything,
    /// The topics a valid filter matches.
    Filter(Box<str>),
}

/// A rider's routes and trips: `vehicles/{v}` and `events/{v}/...` are readable while `v` runs
/// one of them, which only the [`TripBook`] knows at the moment a message is delivered.
#[derive(Debug, Clone)]
pub(crate) struct TripScope {
    pub routes: Vec<String>,
    pub trips: Vec<String>,
    pub book: Arc<TripBook>,
}

impl PartialEq for TripScope {
    fn eq(&self, other: &Self) -> bool {
        self.routes == other.routes
            && self.trips == other.trips
            && Arc::ptr_eq(&self.book, &other.book)
    }
}

impl Eq for TripScope {}

impl TripScope {
    /// Whether `topic` is a state or event topic of a vehicle running one of the scope's
    /// routes or trips now.
    fn allows(&self, topic: &str) -> bool {
        let mut levels = topic.split('/');
        let (kind, vehicle, rest) = (levels.next(), levels.next(), levels.next());
        let vehicle = match (kind, vehicle, rest) {
            (Some("vehicles"), Some(v), None) | (Some("events"), Some(v), Some(_)) => v,
            _ => return false,
        };
        self.book.runs_any(vehicle, &self.routes, &self.trips)
    }
}

/// What a trip scope may come to grant, for subscription checks.
static SCOPE_GRANTS: std::sync::LazyLock<[Grant; 2]> = std::sync::LazyLock::new(|| {
    [
        Grant::Filter("vehicles/+".into()),
        Grant::Filter("events/+/#".into()),
    ]
});

/// The topics one client may read: granted by a role entry or a grant rule, and matched by no
/// deny rule. Filters are stored substituted and validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadRights {
    grants: Vec<Grant>,
    denies: Vec<Box<str>>,
    /// A deny rule whose `%c`/`%u` could not be substituted safely: the client reads nothing.
    deny_all: bool,
    /// A rider's routes and trips, judged per message against the vehicles' current trips.
    scope: Option<TripScope>,
}

impl ReadRights {
    pub(crate) fn new(grants: Vec<Grant>, denies: Vec<Box<str>>, deny_all: bool) -> ReadRights {
        ReadRights {
            grants,
            denies,
            deny_all,
            scope: None,
        }
    }

    /// Adds a rider's trip scope.
    pub(crate) fn with_scope(mut self, scope: TripScope) -> ReadRights {
        self.scope = Some(scope);
        self
    }

    /// Whether a decision can change while the client stays connected (a vehicle changes trip),
    /// so it must not be cached.
    pub(crate) fn is_dynamic(&self) -> bool {
        self.scope.is_some()
    }

    /// Whether these rights let the client read every topic (then nobody needs to check).
    pub(crate) fn is_everything(&self) -> bool {
        !self.deny_all && self.denies.is_empty() && self.grants.contains(&Grant::Everything)
    }

    /// Whether the client may receive a message on `topic` (a valid topic name). Allocation
    /// free: a few string comparisons per rule.
    pub fn may_read(&self, topic: &str) -> bool {
        !self.deny_all
            && !self.denies.iter().any(|d| matches(d, topic))
            && (self.grants.iter().any(|g| match g {
                Grant::Everything => true,
                Grant::Filter(f) => matches(f, topic),
            }) || self.scope.as_ref().is_some_and(|s| s.allows(topic)))
    }

    /// Whether a subscription to `filter` (already parsed, `$share/G/` stripped) is granted:
    /// when at least one topic it matches may be read (SUBACK 0x87 only when none may).
    pub fn may_subscribe(&self, filter: &[Level<'_>]) -> bool {
        if self.deny_all {
            return false;
        }
        let denies: Vec<Vec<Level<'_>>> =
            self.denies.iter().filter_map(|d| parse_filter(d)).collect();
        // A trip scope may come to grant any vehicle's state and events.
        let scoped: &[Grant] = match self.scope {
            Some(_) => &*SCOPE_GRANTS,
            None => &[],
        };
        self.grants.iter().chain(scoped).any(|g| {
            let common = match g {
                Grant::Everything => Some(filter.to_vec()),
                Grant::Filter(f) => parse_filter(f).and_then(|f| intersect(filter, &f)),
            };
            common.is_some_and(|c| escapes(&c, &denies))
        })
    }
}
