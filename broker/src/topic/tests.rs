//! Tests of the one topic module: validation, matching, and the filter algebra checked
//! exhaustively against its definition over a finite universe.

use super::*;

fn overlap(a: &[Level<'_>], b: &[Level<'_>]) -> bool {
    intersect(a, b).is_some()
}

#[test]
fn filters() {
    assert!(validate_filter("a/+/b/#").is_ok());
    assert!(validate_filter("#").is_ok());
    assert!(validate_filter("a/#/b").is_err());
    assert!(validate_filter("a/b#").is_err());
    assert!(validate_filter("a+/b").is_err());
    assert!(validate_name("a/+").is_err());
    assert!(validate_name("a/b").is_ok());
    assert_eq!(validate_name(&"/".repeat(60_000)), Err(TopicError::TooDeep));
    assert_eq!(validate_filter(&"+/".repeat(200)), Err(TopicError::TooDeep));
    assert!(validate_filter(&"a/".repeat(100)).is_ok());
}

/// The two validators the router and the ACL used to have disagreed on NUL and depth; now
/// there is one, and the parsed forms the ACL uses refuse exactly what the router refuses.
#[test]
fn one_rule_for_router_and_acl() {
    assert_eq!(validate_name("a/\0b"), Err(TopicError::Nul));
    assert_eq!(validate_filter("a/\0/#"), Err(TopicError::Nul));
    let deep_filter = "+/".repeat(200) + "#";
    let deep_topic = "a/".repeat(200) + "b";
    assert!(parse_filter(&deep_filter).is_none());
    assert!(parse_topic(&deep_topic).is_none());
    assert!(!topic_matches("#", &deep_topic));
    for f in ["a/+/b/#", "#", "a/#/b", "a/b#", "", "a/\0", "$share/g/x"] {
        assert_eq!(
            parse_filter(f).is_some(),
            validate_filter(f).is_ok(),
            "{f:?}"
        );
    }
    for t in ["a/b", "a/+", "", "a\0", "$SYS/x", "$internal/x"] {
        assert_eq!(parse_topic(t).is_some(), validate_name(t).is_ok(), "{t:?}");
    }
}

#[test]
fn reserved_topics() {
    assert!(is_reserved("$SYS/broker/uptime"));
    assert!(is_reserved("$SYS"));
    assert!(is_reserved("$share/g/x"));
    assert!(!is_reserved("$internal/x"));
    assert!(!is_reserved("$SYSTEM/x"));
    assert!(!is_reserved("fleet/$SYS"));
}

#[test]
fn shared() {
    assert_eq!(parse_shared("$share/g/a/b"), Ok((Some("g"), "a/b")));
    assert_eq!(parse_shared("a/b"), Ok((None, "a/b")));
    assert!(parse_shared("$share/g").is_err());
    assert!(parse_shared("$share//a").is_err());
    assert!(parse_shared("a/#/b").is_err());
    assert!(parse_shared("a+/b").is_err());
}

#[test]
fn matching() {
    assert!(matches("a/+/c", "a/b/c"));
    assert!(matches("a/#", "a"));
    assert!(matches("a/#", "a/b/c"));
    assert!(!matches("a/+", "a/b/c"));
    assert!(!matches("#", "$SYS/x"));
    assert!(!matches("+/x", "$SYS/x"));
    assert!(!matches("#", "$internal/x"));
    assert!(matches("$internal/#", "$internal/x"));
    assert!(matches("$SYS/#", "$SYS/x"));
    assert!(matches("a//b", "a//b"));
    assert!(matches("+/+", "/x"));
}

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
    let parsed_topics: Vec<Vec<Level<'_>>> = topics.iter().filter_map(|t| parse_topic(t)).collect();
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
            // The intersection matches exactly the topics both match.
            if let Some(x) = intersect(o, i) {
                for (t, topic) in parsed_topics.iter().enumerate() {
                    assert_eq!(
                        covers(&x, topic),
                        matched[oi][t] && matched[ii][t],
                        "{} ∩ {} at {}",
                        filters[oi],
                        filters[ii],
                        topics[t]
                    );
                }
            }
            // One excluded filter: does some topic of `o` escape `i`?
            let escaped = (0..topics.len()).any(|t| matched[oi][t] && !matched[ii][t]);
            assert_eq!(
                escapes(o, std::slice::from_ref(i)),
                escaped,
                "{} \\ {}",
                filters[oi],
                filters[ii]
            );
        }
    }
    // Two excluded filters (a sample of the pairs, to keep the test fast): `a/#` escapes
    // `a/+/#` alone but not together with `a`.
    for (oi, o) in parsed.iter().enumerate() {
        for (ai, a) in parsed.iter().enumerate().step_by(5) {
            for (bi, b) in parsed.iter().enumerate().skip(oi % 3).step_by(3) {
                let escaped =
                    (0..topics.len()).any(|t| matched[oi][t] && !matched[ai][t] && !matched[bi][t]);
                assert_eq!(
                    escapes(o, &[a.clone(), b.clone()]),
                    escaped,
                    "{} \\ ({} ∪ {})",
                    filters[oi],
                    filters[ai],
                    filters[bi]
                );
            }
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
fn intersections_and_escapes() {
    let f = |s| parse_filter(s).unwrap();
    assert_eq!(intersect(&f("a/#"), &f("+/b")), Some(f("a/b")));
    assert_eq!(intersect(&f("a/#"), &f("a")), Some(f("a")));
    assert_eq!(intersect(&f("#"), &f("$SYS/#")), None);
    assert_eq!(intersect(&f("+/+"), &f("a/+/c")), None);
    assert!(escapes(&f("#"), &[f("test/nosubscribe")]));
    assert!(!escapes(&f("test/nosubscribe"), &[f("test/#")]));
    assert!(escapes(&f("a/#"), &[f("a/+/#")]));
    assert!(!escapes(&f("a/#"), &[f("a/+/#"), f("a")]));
    assert!(!escapes(&f("#"), &[f("#")]));
    assert!(escapes(&f("$x/#"), &[f("#")]));
}

#[test]
fn share_prefix() {
    assert_eq!(strip_share("$share/g/vehicles/#"), Some("vehicles/#"));
    assert_eq!(strip_share("vehicles/#"), Some("vehicles/#"));
    assert_eq!(strip_share("$share/g"), None);
    assert_eq!(strip_share("$share//a"), None);
    assert_eq!(strip_share("$share/+/a"), None);
}
