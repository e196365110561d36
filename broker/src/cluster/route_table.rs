//! The other nodes' filters (`routing`'s route table) as a trie over topic levels, so that
//! finding the nodes a publish goes to costs about the topic's depth, not one match per filter
//! of every node: with thousands of subscriptions in the cluster, a linear scan would cost every
//! client publish that many string matches on the router's task.
//!
//! Built whole by the sync task from the filter sets it reads (every 2 s and on change
//! notices) and swapped in behind an `Arc`; the router only reads it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::topic;

/// A filter of one node, at the trie node where it ends.
#[derive(Debug)]
struct Route {
    /// Index into [`RouteTable::nodes`].
    node: u32,
    /// The whole `$share/G/F` filter for a shared subscription; `None` for a plain one.
    group: Option<Box<str>>,
}

#[derive(Debug, Default)]
struct Level {
    children: HashMap<Box<str>, Level>,
    /// `+` at this level.
    plus: Option<Box<Level>>,
    /// Filters ending in `#` here: they match this level and everything below it.
    hash: Vec<Route>,
    /// Filters ending exactly here.
    exact: Vec<Route>,
}

/// The filters of the other live nodes, by topic level.
#[derive(Debug, Default)]
pub struct RouteTable {
    nodes: Vec<Arc<str>>,
    root: Level,
}

impl RouteTable {
    /// The table of `nodes` and their filters (as given, `$share/G/` included); invalid
    /// filters are left out (Redis is writable by others than fleetmq).
    pub fn new(nodes: Vec<(Arc<str>, Vec<Box<str>>)>) -> RouteTable {
        let mut table = RouteTable::default();
        for (i, (node, filters)) in nodes.into_iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            for f in filters {
                table.insert(i, &f);
            }
            table.nodes.push(node);
        }
        table
    }

    fn insert(&mut self, node: u32, given: &str) {
        let Ok((group, filter)) = topic::parse_shared(given) else {
            return;
        };
        if topic::validate_filter(filter).is_err() {
            return;
        }
        let route = Route {
            node,
            group: group.map(|_| given.into()),
        };
        let mut at = &mut self.root;
        for level in filter.split('/') {
            match level {
                "#" => {
                    at.hash.push(route);
                    return;
                }
                "+" => at = at.plus.get_or_insert_with(Box::default),
                name => at = at.children.entry(name.into()).or_default(),
            }
        }
        at.exact.push(route);
    }

    /// The nodes, in the order their indices count.
    pub fn nodes(&self) -> &[Arc<str>] {
        &self.nodes
    }

    /// Whether no node has a filter.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Calls `visit(node index, group)` for every filter matching `topic` (`group`: the whole
    /// `$share/G/F` of a shared subscription). A topic starting with `$` is not matched by a
    /// wildcard in its first level (MQTT 5 §4.7.2).
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(u32, Option<&'a str>)) {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        walk(&self.root, &levels, dollar, &mut visit);
    }
}

fn walk<'a>(
    at: &'a Level,
    levels: &[&str],
    no_wildcards: bool,
    visit: &mut impl FnMut(u32, Option<&'a str>),
) {
    let emit = |routes: &'a [Route], visit: &mut dyn FnMut(u32, Option<&'a str>)| {
        for r in routes {
            visit(r.node, r.group.as_deref());
        }
    };
    if !no_wildcards {
        emit(&at.hash, visit);
    }
    let Some((level, rest)) = levels.split_first() else {
        emit(&at.exact, visit);
        return;
    };
    if let Some(child) = at.children.get(*level) {
        walk(child, rest, false, visit);
    }
    if !no_wildcards && let Some(plus) = &at.plus {
        walk(plus, rest, false, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::RouteTable;
    use crate::topic;

    fn table(filters: &[&[&str]]) -> RouteTable {
        RouteTable::new(
            filters
                .iter()
                .enumerate()
                .map(|(i, fs)| {
                    (
                        format!("n{i}").into(),
                        fs.iter().map(|f| (*f).into()).collect(),
                    )
                })
                .collect(),
        )
    }

    fn matches(t: &RouteTable, topic: &str) -> Vec<(u32, Option<String>)> {
        let mut out = Vec::new();
        t.for_each_match(topic, |n, g| out.push((n, g.map(String::from))));
        out.sort();
        out
    }

    /// The trie agrees with `topic::matches` on every pair of these filters and topics.
    #[test]
    fn the_trie_matches_what_the_filter_matcher_matches() {
        let filters = [
            "#", "+", "+/+", "a", "a/#", "a/+", "a/b", "a/b/#", "a/+/c", "+/b/c", "a/b/c",
            "$SYS/#", "$SYS/+", "+/#", "a//b", "a/+/+/#", "/a", "+/a",
        ];
        let topics = [
            "a", "a/b", "a/b/c", "a/x/c", "b", "b/b/c", "$SYS/x", "$SYS", "a//b", "/a", "a/b/c/d",
            "x/a",
        ];
        for (i, f) in filters.iter().enumerate() {
            let t = table(&[&[f]]);
            for topic in topics {
                let got = !matches(&t, topic).is_empty();
                assert_eq!(
                    got,
                    topic::matches(f, topic),
                    "filter {f} topic {topic} ({i})"
                );
            }
        }
    }

    #[test]
    fn shared_groups_and_nodes_are_reported() {
        let t = table(&[&["a/+", "$share/g/a/#"], &["a/b", "x"], &[]]);
        assert_eq!(
            matches(&t, "a/b"),
            vec![(0, None), (0, Some("$share/g/a/#".into())), (1, None)]
        );
        assert_eq!(matches(&t, "x"), vec![(1, None)]);
        assert!(matches(&t, "y").is_empty());
        assert_eq!(t.nodes().len(), 3);
        // Invalid filters (Redis is writable by others) are left out.
        let bad = table(&[&["a/#/b", "$share/g", "a+"]]);
        assert!(matches(&bad, "a/x/b").is_empty());
    }
}
