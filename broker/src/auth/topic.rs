//! MQTT topic-filter algebra used by the permission checks: does a filter match a topic
//! ([`topic_matches`]), does one filter match every topic another one could ([`filter_covers`]),
//! and can two filters match a common topic ([`filters_overlap`]).
//!
//! All three follow MQTT 5.0 §4.7: `+` is one whole level, `#` is a whole last level and also
//! matches the parent (`a/#` matches `a`), and a filter whose first level is a wildcard never
//! matches a topic whose first level starts with `$` (so `#` does not match `$SYS/broker/uptime`).
//! Invalid filters or topics never match, cover or overlap anything: a permission check on
//! malformed input fails closed.

/// One level of a parsed filter or topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Level<'a> {
    /// A literal level (may be empty: `a//b` has an empty middle level).
    Lit(&'a str),
    /// `+`: exactly one level.
    Plus,
    /// `#`: this level and everything below it, including nothing.
    Hash,
}

impl Level<'_> {
    /// Whether this level is a literal starting with `$` (only meaningful as the first level).
    fn is_dollar(&self) -> bool {
        matches!(self, Level::Lit(s) if s.starts_with('$'))
    }
}

/// Parses a topic filter into levels; `None` if it is not a valid filter (empty, `#` not last,
/// a wildcard sharing a level with other characters, or a NUL character).
pub(crate) fn parse_filter(filter: &str) -> Option<Vec<Level<'_>>> {
    if filter.is_empty() || filter.contains('\0') {
        return None;
    }
    let count = filter.split('/').count();
    let mut levels = Vec::with_capacity(count);
    for (i, part) in filter.split('/').enumerate() {
        let level = match part {
            "#" if i + 1 == count => Level::Hash,
            "+" => Level::Plus,
            _ if part.contains(['+', '#']) => return None,
            _ => Level::Lit(part),
        };
        levels.push(level);
    }
    Some(levels)
}

/// Parses a topic name into literal levels; `None` if it is empty or contains a wildcard or NUL.
pub(crate) fn parse_topic(topic: &str) -> Option<Vec<Level<'_>>> {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return None;
    }
    Some(topic.split('/').map(Level::Lit).collect())
}

/// Strips a shared-subscription prefix: `$share/GROUP/FILTER` → `FILTER`. Other filters are
/// returned unchanged. `None` for a malformed share (`$share/G` or an empty or wildcard group).
pub fn strip_share(filter: &str) -> Option<&str> {
    match filter.strip_prefix("$share/") {
        None => Some(filter),
        Some(rest) => {
            let (group, inner) = rest.split_once('/')?;
            if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
                None
            } else {
                Some(inner)
            }
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

/// Whether some topic is matched by both filters (used for deny rules: a subscription that could
/// receive any denied topic is refused).
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
        (Some(a), Some(b)) => overlap(&a, &b),
        _ => false,
    }
}

/// [`filter_covers`] on parsed levels; a topic is a filter of literals, so this also matches.
pub(crate) fn covers(outer: &[Level<'_>], inner: &[Level<'_>]) -> bool {
    // A leading wildcard in `outer` cannot reach `$` topics; a leading wildcard in `inner`
    // only reaches non-`$` topics, which a leading wildcard in `outer` does reach.
    if matches!(outer.first(), Some(Level::Plus | Level::Hash))
        && inner.first().is_some_and(Level::is_dollar)
    {
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

/// [`filters_overlap`] on parsed levels.
pub(crate) fn overlap(a: &[Level<'_>], b: &[Level<'_>]) -> bool {
    let a_wild = matches!(a.first(), Some(Level::Plus | Level::Hash));
    let b_wild = matches!(b.first(), Some(Level::Plus | Level::Hash));
    if (a_wild && b.first().is_some_and(Level::is_dollar))
        || (b_wild && a.first().is_some_and(Level::is_dollar))
    {
        return false;
    }
    overlap_rest(a, b)
}

fn overlap_rest(a: &[Level<'_>], b: &[Level<'_>]) -> bool {
    match (a.split_first(), b.split_first()) {
        (Some((Level::Hash, _)), _) | (_, Some((Level::Hash, _))) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((x, x_rest)), Some((y, y_rest))) => {
            let level_ok = match (x, y) {
                (Level::Lit(p), Level::Lit(q)) => p == q,
                _ => true,
            };
            level_ok && overlap_rest(x_rest, y_rest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_table() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/+", "a/", true),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
            ("+/+", "/x", true),
            ("a/b", "a/+", false),
            ("a/#/b", "a/x/b", false),
            ("a/b+", "a/b+", false),
            ("", "a", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(topic_matches(filter, topic), expected, "{filter} ~ {topic}");
        }
    }

    #[test]
    fn covers_table() {
        let cases = [
            ("vehicles/#", "vehicles/+", true),
            ("vehicles/#", "vehicles/+/x", true),
            ("vehicles/#", "vehicles/#", true),
            ("vehicles/#", "vehicles", true),
            ("vehicles/#", "#", false),
            ("vehicles/#", "+/x", false),
            ("vehicles/+", "vehicles/#", false),
            ("vehicles/+", "vehicles/a", true),
            ("vehicles/a", "vehicles/+", false),
            ("#", "#", true),
            ("#", "+/+", true),
            ("#", "$SYS/#", false),
            ("+/#", "#", true),
            ("+/+/#", "#", false),
            ("a/+/#", "a/#", false),
            ("+/#", "$SYS/a", false),
            ("$SYS/#", "$SYS/+/x", true),
            ("$SYS/#", "#", false),
            ("a/+/c", "a/+/c", true),
            ("a/+/c", "a/+/#", false),
            ("a/b", "a/b/#", false),
            ("a/b/#", "a/b", true),
            ("a/#/b", "a/b", false),
        ];
        for (outer, inner, expected) in cases {
            assert_eq!(filter_covers(outer, inner), expected, "{outer} ⊇ {inner}");
        }
    }

    #[test]
    fn overlap_table() {
        let cases = [
            ("fleet/#", "fleet/+/sos", true),
            ("fleet/a/sos", "fleet/+/sos", true),
            ("fleet/a/sos", "fleet/b/#", false),
            ("+/a", "b/+", true),
            ("a/+", "a", false),
            ("a/#", "a", true),
            ("#", "$SYS/#", false),
            ("+/broker", "$SYS/+", false),
            ("$SYS/#", "$SYS/broker", true),
            ("a/b/c", "a/b", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(filters_overlap(a, b), expected, "{a} ∩ {b}");
            assert_eq!(filters_overlap(b, a), expected, "{b} ∩ {a}");
        }
    }

    #[test]
    fn covering_implies_overlap_and_matching_is_covering() {
        let filters = ["#", "a/#", "a/+", "+/b", "a/b", "$SYS/#", "+/+/c", "a/b/#"];
        let topics = ["a", "a/b", "x/b", "a/b/c", "$SYS/b", "q/r/c"];
        for outer in filters {
            for inner in filters {
                if filter_covers(outer, inner) {
                    assert!(filters_overlap(outer, inner), "{outer} {inner}");
                    for t in topics {
                        if topic_matches(inner, t) {
                            assert!(topic_matches(outer, t), "{outer} ⊇ {inner} but not {t}");
                        }
                    }
                }
            }
            for t in topics {
                assert_eq!(
                    topic_matches(outer, t),
                    filter_covers(outer, t),
                    "{outer} {t}"
                );
            }
        }
    }

    /// Every sequence of 1..=`max` levels drawn from `alphabet`.
    fn sequences<'a>(alphabet: &[&'a str], max: usize) -> Vec<Vec<&'a str>> {
        let mut out: Vec<Vec<&str>> = alphabet.iter().map(|a| vec![*a]).collect();
        let mut last = out.clone();
        for _ in 1..max {
            last = last
                .iter()
                .flat_map(|seq| {
                    alphabet
                        .iter()
                        .map(move |a| [seq.as_slice(), &[*a]].concat())
                })
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    /// Exhaustive check of the algebra against its definition over a finite universe: every
    /// filter of up to 3 levels over {a, b, $x, +, #} and every topic of up to 4 levels over
    /// {a, b, $x, c} (`c` appears in no filter, so it witnesses what a wildcard reaches).
    /// `covers(o, i)` must hold exactly when every topic `i` matches is matched by `o`, and
    /// `overlap(a, b)` exactly when some topic matches both.
    #[test]
    fn algebra_agrees_with_its_definition_exhaustively() {
        let filters: Vec<String> = sequences(&["a", "b", "$x", "+", "#"], 3)
            .into_iter()
            .map(|levels| levels.join("/"))
            .filter(|f| parse_filter(f).is_some())
            .collect();
        let topics: Vec<String> = sequences(&["a", "b", "$x", "c"], 4)
            .into_iter()
            .map(|levels| levels.join("/"))
            .collect();
        let parsed: Vec<Vec<Level<'_>>> = filters.iter().filter_map(|f| parse_filter(f)).collect();
        let parsed_topics: Vec<Vec<Level<'_>>> =
            topics.iter().filter_map(|t| parse_topic(t)).collect();
        assert_eq!(
            (parsed.len(), parsed_topics.len()),
            (filters.len(), topics.len())
        );
        // matched[f][t]: whether filter f matches topic t.
        let matched: Vec<Vec<bool>> = parsed
            .iter()
            .map(|f| parsed_topics.iter().map(|t| covers(f, t)).collect())
            .collect();
        for (oi, o) in parsed.iter().enumerate() {
            for (ii, i) in parsed.iter().enumerate() {
                let by_definition = (0..topics.len()).all(|t| !matched[ii][t] || matched[oi][t]);
                assert_eq!(
                    covers(o, i),
                    by_definition,
                    "{} ⊇ {}",
                    filters[oi],
                    filters[ii]
                );
                let common = (0..topics.len()).any(|t| matched[ii][t] && matched[oi][t]);
                assert_eq!(overlap(o, i), common, "{} ∩ {}", filters[oi], filters[ii]);
            }
        }
        // Spot checks that the universe is what it claims.
        let idx = |f: &str| filters.iter().position(|x| x == f).unwrap();
        let tdx = |t: &str| topics.iter().position(|x| x == t).unwrap();
        assert!(matched[idx("a/#")][tdx("a")]);
        assert!(!matched[idx("#")][tdx("$x/a")]);
        assert!(matched[idx("$x/+")][tdx("$x/c")]);
    }

    #[test]
    fn share_prefix() {
        assert_eq!(strip_share("$share/g/vehicles/#"), Some("vehicles/#"));
        assert_eq!(strip_share("vehicles/#"), Some("vehicles/#"));
        assert_eq!(strip_share("$share/g"), None);
        assert_eq!(strip_share("$share//a"), None);
        assert_eq!(strip_share("$share/+/a"), None);
    }
}
