//! The subscription tree: filters split by level, each node holding the sessions subscribed to
//! exactly that filter and its shared-subscription groups. Matching a topic walks only the
//! branches that can match (literal level, `+`, `#`), so its cost follows the topic's depth and
//! the number of matching filters, not the number of subscriptions.
//!
//! The tree also counts the subscriptions that could receive a driver's raw
//! `fleet/{vehicle}/location` publish, in a counter shared with the connections, so a driver
//! publish nobody can receive is not routed at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::hash::FastMap;
use crate::link::{SessionId, SubOptions};

use crate::ingest::topics::filter_may_match_location;

/// Members of one `$share/GROUP/FILTER`, served round-robin.
#[derive(Debug, Default)]
pub struct SharedGroup {
    /// The filter as subscribed, `$share/GROUP/FILTER`: how other nodes name the group.
    name: Box<str>,
    members: Vec<(SessionId, SubOptions)>,
    next: usize,
}

impl SharedGroup {
    /// `$share/GROUP/FILTER`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next member, in turn, for which `preferred` holds (e.g. connected and allowed to
    /// read the message); else the next one for which `allowed` holds, so the message waits in
    /// a session queue; `None` when no member is allowed.
    pub fn pick(
        &mut self,
        preferred: impl Fn(SessionId) -> bool,
        allowed: impl Fn(SessionId) -> bool,
    ) -> Option<(SessionId, SubOptions)> {
        let n = self.members.len();
        for eligible in [&preferred as &dyn Fn(SessionId) -> bool, &allowed] {
            for i in 0..n {
                let idx = (self.next + i) % n;
                if eligible(self.members[idx].0) {
                    self.next = (idx + 1) % n;
                    return Some(self.members[idx]);
                }
            }
        }
        None
    }
}

/// What a matching topic delivers to.
pub enum Target<'a> {
    Direct(SessionId, SubOptions),
    Shared(&'a mut SharedGroup),
}

#[derive(Debug, Default)]
struct Node {
    children: FastMap<Box<str>, Node>,
    direct: super::id_map::IdMap<SubOptions>,
    shared: FastMap<Box<str>, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.direct.is_empty() && self.shared.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct SubscriptionTree {
    root: Node,
    count: usize,
    /// Subscriptions whose filter can match a location topic
    /// (`ingest::topics::filter_may_match_location`); read by the connections.
    locations: Arc<AtomicUsize>,
}

impl SubscriptionTree {
    /// An empty tree that keeps its location-subscription count in `locations`.
    pub fn counting_locations_in(locations: Arc<AtomicUsize>) -> SubscriptionTree {
        SubscriptionTree {
            locations,
            ..SubscriptionTree::default()
        }
    }

    /// Number of subscriptions (shared members included).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Adds or replaces a subscription; returns true when it did not exist before.
    pub fn subscribe(
        &mut self,
        session: SessionId,
        group: Option<&str>,
        filter: &str,
        opts: SubOptions,
    ) -> bool {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let is_new = match group {
            None => node.direct.insert(session, opts).is_none(),
            Some(g) => {
                let grp = node.shared.entry(g.into()).or_insert_with(|| SharedGroup {
                    name: format!("$share/{g}/{filter}").into(),
                    ..SharedGroup::default()
                });
                match grp.members.iter_mut().find(|(s, _)| *s == session) {
                    Some(m) => {
                        m.1 = opts;
                        false
                    }
                    None => {
                        grp.members.push((session, opts));
                        true
                    }
                }
            }
        };
        if is_new {
            self.count += 1;
            if filter_may_match_location(filter) {
                // Before the SUBACK: a publish that follows it sees the subscription.
                self.locations.fetch_add(1, Ordering::SeqCst);
            }
        }
        is_new
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, session: SessionId, group: Option<&str>, filter: &str) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove(&mut self.root, &levels, session, group);
        if removed {
            self.count -= 1;
            if filter_may_match_location(filter) {
                self.locations.fetch_sub(1, Ordering::SeqCst);
            }
        }
        removed
    }

    /// Calls `visit` for every subscription whose filter matches `topic`.
    pub fn for_each_match(&mut self, topic: &str, mut visit: impl FnMut(Target<'_>)) {
        let dollar = topic.starts_with('$');
        walk(&mut self.root, Some(topic), dollar, &mut visit);
    }
}

fn remove(node: &mut Node, levels: &[&str], session: SessionId, group: Option<&str>) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return match group {
            None => node.direct.remove(&session).is_some(),
            Some(g) => {
                let Some(grp) = node.shared.get_mut(g) else {
                    return false;
                };
                let before = grp.members.len();
                grp.members.retain(|(s, _)| *s != session);
                let removed = grp.members.len() != before;
                if grp.members.is_empty() {
                    node.shared.remove(g);
                }
                removed
            }
        };
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove(child, rest, session, group);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn visit_node(node: &mut Node, visit: &mut dyn FnMut(Target<'_>)) {
    for (s, o) in &node.direct {
        visit(Target::Direct(*s, *o));
    }
    for grp in node.shared.values_mut() {
        visit(Target::Shared(grp));
    }
}

/// `dollar`: the topic starts with `$` and this is the first level, where wildcards don't match.
fn walk(node: &mut Node, rest: Option<&str>, dollar: bool, visit: &mut dyn FnMut(Target<'_>)) {
    // The topic is consumed level by level without collecting its levels: no allocation per
    // publish.
    let Some(rest) = rest else {
        visit_node(node, visit);
        return;
    };
    let (first, tail) = match rest.split_once('/') {
        Some((first, tail)) => (first, Some(tail)),
        None => (rest, None),
    };
    if !dollar {
        if let Some(hash) = node.children.get_mut("#") {
            visit_node(hash, visit);
        }
        if let Some(plus) = node.children.get_mut("+") {
            walk_level(plus, tail, visit);
        }
    }
    if let Some(child) = node.children.get_mut(first) {
        walk_level(child, tail, visit);
    }
}

/// After consuming a level: `a/#` also matches `a` itself.
fn walk_level(node: &mut Node, tail: Option<&str>, visit: &mut dyn FnMut(Target<'_>)) {
    if tail.is_none()
        && let Some(hash) = node.children.get_mut("#")
    {
        visit_node(hash, visit);
    }
    walk(node, tail, false, visit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic;
    use fleetmq_codec::QoS;
    use proptest::prelude::*;

    fn opts() -> SubOptions {
        SubOptions {
            qos: QoS::AtMostOnce,
            no_local: false,
            retain_as_published: false,
            id: None,
        }
    }

    fn matched(tree: &mut SubscriptionTree, topic: &str) -> Vec<u64> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |t| {
            if let Target::Direct(s, _) = t {
                out.push(s.0)
            }
        });
        out.sort();
        out
    }

    #[test]
    fn wildcards_and_dollar() {
        let mut t = SubscriptionTree::default();
        t.subscribe(SessionId(1), None, "#", opts());
        t.subscribe(SessionId(2), None, "a/+", opts());
        t.subscribe(SessionId(3), None, "a/#", opts());
        t.subscribe(SessionId(4), None, "$SYS/#", opts());
        t.subscribe(SessionId(5), None, "+/b", opts());
        assert_eq!(matched(&mut t, "a/b"), vec![1, 2, 3, 5]);
        assert_eq!(matched(&mut t, "a"), vec![1, 3]);
        assert_eq!(matched(&mut t, "$SYS/x"), vec![4]);
        assert!(t.unsubscribe(SessionId(1), None, "#"));
        assert!(!t.unsubscribe(SessionId(1), None, "#"));
        assert_eq!(matched(&mut t, "a/b"), vec![2, 3, 5]);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn location_subscriptions_are_counted() {
        let n = Arc::new(AtomicUsize::new(0));
        let mut t = SubscriptionTree::counting_locations_in(n.clone());
        let count = || n.load(Ordering::SeqCst);
        t.subscribe(SessionId(1), None, "fleet/+/ping", opts());
        assert_eq!(count(), 0);
        t.subscribe(SessionId(1), None, "fleet/+/location", opts());
        t.subscribe(SessionId(1), None, "fleet/+/location", opts()); // replaced, not added
        t.subscribe(SessionId(2), Some("g"), "#", opts());
        assert_eq!(count(), 2);
        assert!(t.unsubscribe(SessionId(1), None, "fleet/+/location"));
        assert!(!t.unsubscribe(SessionId(1), None, "fleet/+/location"));
        assert_eq!(count(), 1);
        assert!(t.unsubscribe(SessionId(2), Some("g"), "#"));
        assert_eq!(count(), 0);
    }

    #[test]
    fn shared_round_robin() {
        let mut t = SubscriptionTree::default();
        t.subscribe(SessionId(1), Some("g"), "x/+", opts());
        t.subscribe(SessionId(2), Some("g"), "x/+", opts());
        let mut picks = Vec::new();
        for _ in 0..4 {
            t.for_each_match("x/y", |tg| {
                if let Target::Shared(g) = tg {
                    picks.push(g.pick(|_| true, |_| true).map(|p| p.0.0));
                }
            });
        }
        assert_eq!(picks, vec![Some(1), Some(2), Some(1), Some(2)]);
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string()),
            Just("$x".to_string())
        ]
    }

    proptest! {
        /// The tree agrees with the plain matcher for every filter/topic pair.
        #[test]
        fn tree_agrees_with_matcher(
            filters in proptest::collection::vec(proptest::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..4), 1..6),
            hash in proptest::collection::vec(any::<bool>(), 6),
            topic in proptest::collection::vec(level(), 1..4),
        ) {
            let mut t = SubscriptionTree::default();
            let mut fs = Vec::new();
            for (i, f) in filters.iter().enumerate() {
                let mut f = f.join("/");
                if hash[i] { f.push_str("/#"); }
                t.subscribe(SessionId(i as u64), None, &f, opts());
                fs.push(f);
            }
            let topic = topic.join("/");
            let expect: Vec<u64> = fs.iter().enumerate().filter(|(_, f)| topic::matches(f, &topic)).map(|(i, _)| i as u64).collect();
            prop_assert_eq!(matched(&mut t, &topic), expect);
        }
    }
}
