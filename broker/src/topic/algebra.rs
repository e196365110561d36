//! The topic-filter algebra: does a filter match a topic ([`matches`], [`topic_matches`]), does
//! one filter match every topic another one could ([`filter_covers`]), can two filters match a
//! common topic ([`filters_overlap`]), which topics do two filters both match ([`intersect`]),
//! and does some topic of a filter escape a set of filters ([`escapes`]).
//!
//! All follow MQTT 5.0 §4.7: `+` is one whole level, `#` is a whole last level and also matches
//! the parent (`a/#` matches `a`), and a filter whose first level is a wildcard never matches a
//! topic whose first level starts with `$`. The string entry points validate first: invalid
//! filters or topics never match, cover or overlap anything, so a permission check on malformed
//! input fails closed.

use super::{parse_filter, parse_topic};

/// One level of a parsed filter or topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level<'a> {
    /// A literal level (may be empty: `a//b` has an empty middle level).
    Lit(&'a str),
    /// `+`: exactly one level.
    Plus,
    /// `#`: this level and everything below it, including nothing.
    Hash,
}

impl<'a> Level<'a> {
    /// One level of an already validated filter.
    pub fn of_filter(level: &'a str) -> Level<'a> {
        match level {
            "+" => Level::Plus,
            "#" => Level::Hash,
            _ => Level::Lit(level),
        }
    }

    /// Whether this level is a literal starting with `$` (only meaningful as the first level).
    fn is_dollar(&self) -> bool {
        matches!(self, Level::Lit(s) if s.starts_with('$'))
    }

    fn is_wild(&self) -> bool {
        matches!(self, Level::Plus | Level::Hash)
    }
}

/// Whether the valid filter `filter` matches the valid topic name `topic`, without allocating:
/// the per-message check of the router and the ACL. Both must already be validated
/// ([`super::validate_filter`], [`super::validate_name`]); use [`topic_matches`] otherwise.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether the topic filter `filter` matches the topic name `topic` (MQTT 5.0 §4.7).
///
/// `false` if either is invalid, e.g. a topic containing a wildcard.
///
/// # Examples
/// ```
/// use fleetmq::auth::topic_matches;
/// assert!(topic_matches("fleet/+/location", "fleet/bus-1/location"));
/// assert!(topic_matches("vehicles/#", "vehicles"));
/// assert!(!topic_matches("#", "$SYS/broker/uptime"));
/// ```
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    match (parse_filter(filter), parse_topic(topic)) {
        (Some(f), Some(t)) => covers(&f, &t),
        _ => false,
    }
}

/// Whether every topic that `inner` can match is also matched by `outer`, i.e. a subscription to
/// `inner` is within a permission to read `outer`.
///
/// `false` if either filter is invalid.
///
/// # Examples
/// ```
/// use fleetmq::auth::filter_covers;
/// assert!(filter_covers("vehicles/#", "vehicles/+"));
/// assert!(filter_covers("vehicles/#", "vehicles/+/x"));
/// assert!(!filter_covers("vehicles/#", "#"));
/// assert!(!filter_covers("#", "$SYS/#"));
/// ```
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    match (parse_filter(outer), parse_filter(inner)) {
        (Some(o), Some(i)) => covers(&o, &i),
        _ => false,
    }
}

/// Whether some topic is matched by both filters.
///
/// `false` if either filter is invalid.
///
/// # Examples
/// ```
/// use fleetmq::auth::filters_overlap;
/// assert!(filters_overlap("fleet/#", "fleet/+/sos"));
/// assert!(filters_overlap("+/a", "b/+"));
/// assert!(!filters_overlap("#", "$SYS/#"));
/// ```
pub fn filters_overlap(a: &str, b: &str) -> bool {
    match (parse_filter(a), parse_filter(b)) {
        (Some(a), Some(b)) => intersect(&a, &b).is_some(),
        _ => false,
    }
}

/// [`filter_covers`] on parsed levels; a topic is a filter of literals, so this also matches.
pub fn covers(outer: &[Level<'_>], inner: &[Level<'_>]) -> bool {
    // A leading wildcard in `outer` cannot reach `$` topics; a leading wildcard in `inner`
    // only reaches non-`$` topics, which a leading wildcard in `outer` does reach.
    if outer.first().is_some_and(Level::is_wild) && inner.first().is_some_and(Level::is_dollar) {
        return false;
    }
    // A topic has at least one level, so a leading `#` in `inner` means "one level or more",
    // which `+/#` covers as well as `#` does. Deeper, `x/#` also matches `x`, which only a
    // trailing `#` in `outer` covers.
    if let (Some(Level::Plus), [Level::Hash]) = (outer.first(), inner) {
        return outer.get(1..) == Some(&[Level::Hash][..]);
    }
    covers_rest(outer, inner)
}

fn covers_rest(outer: &[Level<'_>], inner: &[Level<'_>]) -> bool {
    match (outer.split_first(), inner.split_first()) {
        (Some((Level::Hash, _)), _) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((o, o_rest)), Some((i, i_rest))) => {
            let level_ok = match (o, i) {
                (Level::Plus, Level::Lit(_) | Level::Plus) => true,
                (Level::Lit(a), Level::Lit(b)) => a == b,
                _ => false,
            };
            level_ok && covers_rest(o_rest, i_rest)
        }
    }
}

/// The filter matching exactly the topics both `a` and `b` match, or `None` when they share
/// none. Two MQTT filters always intersect in one filter: level by level a literal beats `+`,
/// and a `#` takes whatever the other filter has left (`a/#` ∩ `+/b` = `a/b`, `a/#` ∩ `a` = `a`).
pub fn intersect<'a>(a: &[Level<'a>], b: &[Level<'a>]) -> Option<Vec<Level<'a>>> {
    let a_wild = a.first().is_some_and(Level::is_wild);
    let b_wild = b.first().is_some_and(Level::is_wild);
    if (a_wild && b.first().is_some_and(Level::is_dollar))
        || (b_wild && a.first().is_some_and(Level::is_dollar))
    {
        return None;
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(Level::Hash), _) => {
                out.extend_from_slice(&b[i.min(b.len())..]);
                return Some(out);
            }
            (_, Some(Level::Hash)) => {
                out.extend_from_slice(&a[i.min(a.len())..]);
                return Some(out);
            }
            (None, None) => return Some(out),
            (None, Some(_)) | (Some(_), None) => return None,
            (Some(x), Some(y)) => out.push(match (*x, *y) {
                (Level::Lit(p), Level::Lit(q)) if p == q => Level::Lit(p),
                (Level::Lit(_), Level::Lit(_)) => return None,
                (Level::Lit(p), _) | (_, Level::Lit(p)) => Level::Lit(p),
                _ => Level::Plus,
            }),
        }
        i += 1;
    }
}

/// Whether some topic matched by `filter` is matched by none of `excluded` (is a filter with
/// a few denied topics still good for anything?).
///
/// Topic levels come from an unbounded alphabet, so it is enough to try the topics that fill
/// every wildcard of `filter` with a level no excluded filter names ("fresh"), with `#` taking
/// 0 to (longest excluded filter + 1) such levels: if any topic of `filter` escapes, so does
/// the one of these with the same shape, because an excluded filter matching a fresh level
/// must have a wildcard there, which matches the original level too.
pub fn escapes(filter: &[Level<'_>], excluded: &[Vec<Level<'_>>]) -> bool {
    let (fixed, tail) = match filter.split_last() {
        Some((Level::Hash, head)) => (head, true),
        _ => (filter, false),
    };
    // `None` is a fresh level.
    let mut witness: Vec<Option<&str>> = fixed
        .iter()
        .map(|l| match l {
            Level::Lit(s) => Some(*s),
            _ => None,
        })
        .collect();
    let longest = excluded.iter().map(Vec::len).max().unwrap_or(0);
    let extra = if tail { longest + 1 } else { 0 };
    for k in 0..=extra {
        if k > 0 {
            witness.push(None);
        }
        // A topic has at least one level (a lone `#` needs one).
        if witness.is_empty() {
            continue;
        }
        if !excluded.iter().any(|d| matches_witness(d, &witness)) {
            return true;
        }
    }
    false
}

/// [`matches`] for a witness topic whose `None` levels equal no literal of any filter.
fn matches_witness(filter: &[Level<'_>], topic: &[Option<&str>]) -> bool {
    let dollar = matches!(topic.first(), Some(Some(s)) if s.starts_with('$'));
    if dollar && filter.first().is_some_and(Level::is_wild) {
        return false;
    }
    let mut t = topic.iter();
    for level in filter {
        match (level, t.next()) {
            (Level::Hash, _) => return true,
            (Level::Plus, Some(_)) => {}
            (Level::Lit(a), Some(Some(b))) if a == b => {}
            _ => return false,
        }
    }
    t.next().is_none()
}
