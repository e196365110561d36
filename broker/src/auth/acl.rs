//! `--acl FILE`: Mosquitto-style topic rules on top of the role table, and the final
//! publish/subscribe decision ([`Acl::can_publish`], [`Acl::can_subscribe`]).
//!
//! # File format
//! ```toml
//! [[rule]]
//! client = "dispatch-1"        # or `user = "..."`, or `role = "rider"`, or none: every client
//! topic = "fleet/+/ping"       # a filter; `%c` is the client id, `%u` the user name
//! access = "write"             # "read" | "write" | "readwrite" | "deny"
//! ```
//!
//! # The decision
//! A publish to topic `T`:
//!
//! ```text
//! allowed = (base OR a write/readwrite rule matching T) AND NOT a deny rule matching T
//! base    = the role table (see `permissions`)            if the client has a role
//!         = true iff the ACL contains no grant rule        if authentication is off (open broker)
//!         = false                                          for an anonymous client of a broker with auth
//! ```
//!
//! Reading is checked twice, as in Mosquitto (docs/security.md#acl-file). The client's
//! [`ReadRights`] are the topics it may read: `base` (role table, or everything for an open broker
//! without grant rules) or a `read`/`readwrite` rule matches, and no `deny` rule matches. A
//! SUBSCRIBE filter `F` (after stripping `$share/G/`) is granted when at least one topic it matches
//! is readable (SUBACK 0x87 only when none is: a `#` subscriber with one denied topic is granted);
//! then the router checks every message against the rights before delivering it, so the denied
//! topic never arrives.
//!
//! - A rule *applies* to a client when it names nothing, or its `user`, `role` or `client` equals
//!   the client's. `%c`/`%u` are substituted before matching; a rule with `%u` does not apply to a
//!   client without a user name, nor one with `%c` to an HTTP identity (empty client id).
//! - A deny wins over every grant.
//! - A rider's `routes` and `trips` claims (with [`Acl::with_trips`]) make `vehicles/{v}` and
//!   `events/{v}/...` readable while vehicle `v` runs one of them; that part of the decision is
//!   taken per message, never cached.
//! - Without authentication an ACL file that grants anything is an allow-list, as in Mosquitto:
//!   what no rule grants is refused. A file of deny rules only is a block-list.
//! - Fail closed on odd ids: a substituted `%c`/`%u` that contains `/`, `+`, `#` makes a grant
//!   rule grant nothing and a deny rule deny everything for that client.
//! - Invalid topics and filters (a wildcard in a PUBLISH topic, `#` not last) are refused, and
//!   nobody publishes to `$SYS/...` or `$share/...`; other `$` topics are ordinary (docs/mqtt.md).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::error::{AuthConfigError, read_file};
use super::permissions::{plain_level, role_may_publish, role_read_grants};
use super::rights::{Grant, ReadRights, TripScope};
use super::{Identity, Role};
use crate::topic::{is_reserved, matches, parse_filter, parse_topic, strip_share, validate_name};
use crate::trips::TripBook;

/// The parsed `--acl` rules; [`Acl::empty`] when no file is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    /// The rules in file order (order does not change the decision).
    rules: Vec<Rule>,
    /// Whether any rule grants access (makes the file an allow-list for an open broker).
    has_grants: bool,
    /// The vehicles' current trips, for riders' `routes`/`trips` claims; without it those
    /// claims grant nothing over MQTT.
    trips: Option<BookRef>,
}

/// The shared [`TripBook`]; two ACLs are equal when they share the same one.
#[derive(Debug, Clone)]
struct BookRef(Arc<TripBook>);

impl PartialEq for BookRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for BookRef {}

/// One `[[rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Which clients it applies to.
    who: Who,
    /// The topic filter, possibly with `%c`/`%u`.
    topic: String,
    /// What it grants or denies.
    access: Access,
}

/// Which clients a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Everyone,
    User(String),
    Role(Role),
    Client(String),
}

/// The `access` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Access {
    Read,
    Write,
    Readwrite,
    Deny,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::Readwrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::Readwrite)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    user: Option<String>,
    role: Option<String>,
    client: Option<String>,
    topic: String,
    access: Access,
}

/// A rule's filter after substitution for one client.
enum Subst<'a> {
    /// The filter to match.
    Filter(Cow<'a, str>),
    /// `%u` without a user name, or `%c` with an empty client id: the rule does not apply.
    NotApplicable,
    /// The substituted value cannot be one level: fail closed.
    Unsafe,
}

impl Acl {
    /// No rules: the role table alone decides.
    pub fn empty() -> Acl {
        Acl::default()
    }

    /// Lets riders' `routes` and `trips` claims grant the state and events of the vehicles
    /// running them, as `book` tells.
    pub fn with_trips(mut self, book: Arc<TripBook>) -> Acl {
        self.trips = Some(BookRef(book));
        self
    }

    /// The trip book given to [`Acl::with_trips`].
    pub fn trips(&self) -> Option<&Arc<TripBook>> {
        self.trips.as_ref().map(|b| &b.0)
    }

    /// Reads and parses an ACL file.
    ///
    /// # Errors
    /// [`AuthConfigError`] naming the file and the problem (unreadable, bad TOML, unknown key,
    /// unknown role, invalid filter, more than one of `user`/`role`/`client`).
    pub fn load(path: &Path) -> Result<Acl, AuthConfigError> {
        Acl::parse(&read_file(path)?).map_err(|e| e.in_file(path))
    }

    /// Parses ACL rules from TOML text.
    ///
    /// # Errors
    /// As [`Acl::load`], without a file name.
    pub fn parse(text: &str) -> Result<Acl, AuthConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| AuthConfigError::toml(text, &e))?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (index, r) in raw.rule.into_iter().enumerate() {
            let n = index + 1;
            let who = match (r.user, r.role, r.client) {
                (None, None, None) => Who::Everyone,
                (Some(u), None, None) => Who::User(u),
                (None, Some(role), None) => Who::Role(
                    role.parse()
                        .map_err(|e| AuthConfigError::invalid(format!("rule {n}: {e}")))?,
                ),
                (None, None, Some(c)) => Who::Client(c),
                _ => {
                    return Err(AuthConfigError::invalid(format!(
                        "rule {n}: give at most one of `user`, `role`, `client` (use two rules)"
                    )));
                }
            };
            let probe = r.topic.replace("%c", "c").replace("%u", "u");
            if parse_filter(&probe).is_none() {
                return Err(AuthConfigError::invalid(format!(
                    "rule {n}: `{}` is not a valid topic filter (`+` and `#` must be whole levels, `#` last)",
                    r.topic
                )));
            }
            rules.push(Rule {
                who,
                topic: r.topic,
                access: r.access,
            });
        }
        let has_grants = rules.iter().any(|r| r.access != Access::Deny);
        Ok(Acl {
            rules,
            has_grants,
            trips: None,
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `id` may publish to `topic` (module doc: the decision). `false` for a topic with a
    /// wildcard, and for `$SYS/...` (the broker's) and `$share/...` (a subscription prefix, not a
    /// topic), whatever the role or rules.
    pub fn can_publish(&self, id: &Identity, topic: &str) -> bool {
        if is_reserved(topic) {
            return false;
        }
        // Split into levels only for a role's check: an anonymous publish (every update of an
        // open broker) needs no allocation here.
        let base = match id.role {
            Some(_) => match parse_topic(topic) {
                Some(t) => role_may_publish(id, &t),
                None => return false,
            },
            None if validate_name(topic).is_err() => return false,
            None => id.open_broker && !self.has_grants,
        };
        let granted = base
            || self.applying(id).any(|(rule, subst)| {
                rule.access.writes() && matches!(&subst, Subst::Filter(f) if matches(f, topic))
            });
        let denied = self.applying(id).any(|(rule, subst)| {
            rule.access == Access::Deny
                && match &subst {
                    Subst::Filter(f) => matches(f, topic),
                    Subst::Unsafe => true,
                    Subst::NotApplicable => false,
                }
        });
        granted && !denied
    }

    /// Whether `id` may subscribe to `filter`: some topic it matches is readable (module doc);
    /// `$share/G/F` is checked as `F`. `false` for an invalid filter.
    pub fn can_subscribe(&self, id: &Identity, filter: &str) -> bool {
        strip_share(filter)
            .and_then(parse_filter)
            .is_some_and(|f| self.read_rights(id).may_subscribe(&f))
    }

    /// What `id` may read, compiled for per-message checks; `None` when it may read every
    /// topic (nothing to check).
    pub fn reader(&self, id: &Identity) -> Option<ReadRights> {
        // The common cases, without building anything: no rules, and a client that reads all.
        if self.rules.is_empty()
            && (id.role == Some(Role::Operator) || (id.role.is_none() && id.open_broker))
        {
            return None;
        }
        let rights = self.read_rights(id);
        (!rights.is_everything()).then_some(rights)
    }

    /// What `id` may read: its role's grants (or everything on an open broker without grant
    /// rules), the read rules applying to it, minus the deny rules applying to it.
    pub fn read_rights(&self, id: &Identity) -> ReadRights {
        let mut grants = match id.role {
            Some(_) => role_read_grants(id),
            None if id.open_broker && !self.has_grants => vec![Grant::Everything],
            None => Vec::new(),
        };
        let mut denies = Vec::new();
        let mut deny_all = false;
        for (rule, subst) in self.applying(id) {
            match (rule.access, subst) {
                (Access::Deny, Subst::Filter(f)) => denies.push(Box::from(&*f)),
                (Access::Deny, Subst::Unsafe) => deny_all = true,
                (a, Subst::Filter(f)) if a.reads() => grants.push(Grant::Filter(Box::from(&*f))),
                _ => {}
            }
        }
        let rights = ReadRights::new(grants, denies, deny_all);
        match (&self.trips, id.role) {
            (Some(book), Some(Role::Rider)) if !id.routes.is_empty() || !id.trips.is_empty() => {
                rights.with_scope(TripScope {
                    routes: id.routes.clone(),
                    trips: id.trips.clone(),
                    book: book.0.clone(),
                })
            }
            _ => rights,
        }
    }

    /// The rules applying to `id`, each with its substituted filter.
    fn applying<'a>(&'a self, id: &'a Identity) -> impl Iterator<Item = (&'a Rule, Subst<'a>)> {
        self.rules
            .iter()
            .filter(|rule| match &rule.who {
                Who::Everyone => true,
                Who::User(u) => id.user.as_deref() == Some(u.as_str()),
                Who::Role(r) => id.role == Some(*r),
                Who::Client(c) => *id.client_id == **c,
            })
            .map(|rule| (rule, substitute(&rule.topic, id)))
    }
}

/// Substitutes `%c` and `%u` in `topic` for `id`, in one pass (a substituted value is never
/// substituted again).
fn substitute<'a>(topic: &'a str, id: &Identity) -> Subst<'a> {
    if !topic.contains("%c") && !topic.contains("%u") {
        return Subst::Filter(Cow::Borrowed(topic));
    }
    let mut out = String::with_capacity(topic.len() + 32);
    let mut rest = topic;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let value = if after.starts_with('c') {
            &*id.client_id
        } else if after.starts_with('u') {
            id.user.as_deref().unwrap_or_default()
        } else {
            out.push('%');
            rest = after;
            continue;
        };
        if value.is_empty() {
            return Subst::NotApplicable;
        }
        if !plain_level(value) {
            return Subst::Unsafe;
        }
        out.push_str(value);
        rest = &after[1..];
    }
    out.push_str(rest);
    Subst::Filter(Cow::Owned(out))
}
