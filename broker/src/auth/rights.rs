//! What one client may read ([`ReadRights`]), compiled once when it connects from the role table
//! and the `--acl` rules that apply to it, so that the router can check every message it
//! delivers without parsing or substituting anything (SPEC §9: reading is checked twice).

use crate::topic::{Level, escapes, intersect, matches, parse_filter};

/// One thing a client may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Every topic, `$` topics included (an operator; an open broker without grant rules).
    Everything,
    /// The topics a valid filter matches.
    Filter(Box<str>),
}

/// The topics one client may read: granted by a role entry or a grant rule, and matched by no
/// deny rule. Filters are stored substituted and validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadRights {
    grants: Vec<Grant>,
    denies: Vec<Box<str>>,
    /// A deny rule whose `%c`/`%u` could not be substituted safely: the client reads nothing.
    deny_all: bool,
}

impl ReadRights {
    pub(crate) fn new(grants: Vec<Grant>, denies: Vec<Box<str>>, deny_all: bool) -> ReadRights {
        ReadRights {
            grants,
            denies,
            deny_all,
        }
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
            && self.grants.iter().any(|g| match g {
                Grant::Everything => true,
                Grant::Filter(f) => matches(f, topic),
            })
    }

    /// Whether a subscription to `filter` (already parsed, `$share/G/` stripped) is granted:
    /// when at least one topic it matches may be read (SUBACK 0x87 only when none may).
    pub fn may_subscribe(&self, filter: &[Level<'_>]) -> bool {
        if self.deny_all {
            return false;
        }
        let denies: Vec<Vec<Level<'_>>> =
            self.denies.iter().filter_map(|d| parse_filter(d)).collect();
        self.grants.iter().any(|g| {
            let common = match g {
                Grant::Everything => Some(filter.to_vec()),
                Grant::Filter(f) => parse_filter(f).and_then(|f| intersect(filter, &f)),
            };
            common.is_some_and(|c| escapes(&c, &denies))
        })
    }
}
