//! Retained messages, stored in a tree by topic level so that a subscription's lookup visits only
//! the branches its filter can match: a narrow filter over 100k retained topics touches a handful
//! of nodes instead of scanning the whole store.
//!
//! The store counts its topics and bytes (topic + payload) so the router can hold it within
//! `--max-retained` / `--max-retained-bytes`: [`RetainedStore::admits`] refuses a new topic past
//! either (and a replacement that grows the bytes past the limit); clearing always works.

use std::sync::Arc;

use crate::hash::FastState;
use crate::message::Message;

#[derive(Debug, Default)]
struct Node {
    children: hashbrown::HashMap<Box<str>, Node, FastState>,
    message: Option<Arc<Message>>,
}

#[derive(Debug, Default)]
pub struct RetainedStore {
    root: Node,
    count: usize,
    bytes: usize,
}

/// What one retained message costs the store.
fn cost(m: &Message) -> usize {
    m.topic.len() + m.payload.len()
}

impl RetainedStore {
    pub fn len(&self) -> usize {
        self.count
    }

    /// Topic and payload bytes of every retained message.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether storing `message` keeps the store within `max_count` topics and `max_bytes`:
    /// a clear always does, a replacement unless it grows the bytes past the limit, a new
    /// topic only with room for one more and its bytes.
    pub fn admits(&self, message: &Message, max_count: usize, max_bytes: usize) -> bool {
        if message.payload.is_empty() {
            return true;
        }
        let old = self.find(&message.topic).map_or(0, |m| cost(m));
        let new_bytes = self.bytes - old + cost(message);
        if old > 0 {
            return new_bytes <= max_bytes || cost(message) <= old;
        }
        self.count < max_count && new_bytes <= max_bytes
    }

    fn find(&self, topic: &str) -> Option<&Arc<Message>> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.message.as_ref()
    }

    /// Stores `message` as the retained message of its topic; an empty payload clears it.
    pub fn set(&mut self, message: Arc<Message>) {
        let topic = message.topic.clone();
        if message.payload.is_empty() {
            let levels: Vec<&str> = topic.split('/').collect();
            if let Some(old) = clear(&mut self.root, &levels) {
                self.count -= 1;
                self.bytes -= cost(&old);
            }
            return;
        }
        let added = cost(&message);
        let mut node = &mut self.root;
        for level in topic.split('/') {
            // An existing level (the usual case: a vehicle's state replaces its last one) is
            // found with one lookup and without allocating its key; only a new level allocates.
            node = node.children.entry_ref(level).or_default();
        }
        match node.message.replace(message) {
            Some(old) => self.bytes -= cost(&old),
            None => self.count += 1,
        }
        self.bytes += added;
    }

    /// The retained message of exactly `topic`.
    #[cfg(test)]
    pub fn get(&self, topic: &str) -> Option<&Arc<Message>> {
        self.find(topic)
    }

    /// Every retained message matching `filter`.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut out = Vec::new();
        collect(&self.root, &levels, true, &mut out);
        out
    }
}

fn clear(node: &mut Node, levels: &[&str]) -> Option<Arc<Message>> {
    let Some((first, rest)) = levels.split_first() else {
        return node.message.take();
    };
    let child = node.children.get_mut(*first)?;
    let removed = clear(child, rest);
    if child.message.is_none() && child.children.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn subtree(node: &Node, out: &mut Vec<Arc<Message>>) {
    out.extend(node.message.iter().cloned());
    for child in node.children.values() {
        subtree(child, out);
    }
}

/// `root`: at the first level, where wildcards do not match topics starting with `$`.
fn collect(node: &Node, levels: &[&str], root: bool, out: &mut Vec<Arc<Message>>) {
    let Some((first, rest)) = levels.split_first() else {
        out.extend(node.message.iter().cloned());
        return;
    };
    let visible = |name: &str| !(root && name.starts_with('$'));
    match *first {
        "#" => {
            // `a/#` matches `a` itself as well as everything below it.
            if !root {
                out.extend(node.message.iter().cloned());
            }
            for (name, child) in &node.children {
                if visible(name) {
                    subtree(child, out);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if visible(name) {
                    collect(child, rest, false, out);
                }
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                collect(child, rest, false, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Origin;
    use crate::topic;
    use fleetmq_codec::{Bytes, QoS};
    use proptest::prelude::*;

    fn msg(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: None,
            expires_at: None,
            origin: Origin::Broker,
        })
    }

    fn topics(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut v: Vec<String> = store
            .matching(filter)
            .iter()
            .map(|m| m.topic.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn set_replace_clear() {
        let mut s = RetainedStore::default();
        s.set(msg("a/b", b"1"));
        s.set(msg("a/b", b"2"));
        s.set(msg("a", b"3"));
        s.set(msg("$SYS/x", b"4"));
        assert_eq!(s.len(), 3);
        assert_eq!(topics(&s, "a/#"), vec!["a", "a/b"]);
        assert_eq!(topics(&s, "#"), vec!["a", "a/b"]);
        assert_eq!(topics(&s, "+/b"), vec!["a/b"]);
        assert_eq!(topics(&s, "$SYS/+"), vec!["$SYS/x"]);
        assert_eq!(&s.get("a/b").unwrap().payload[..], b"2");
        s.set(msg("a/b", b""));
        assert_eq!(s.len(), 2);
        assert_eq!(topics(&s, "a/#"), vec!["a"]);
        assert_eq!(s.bytes(), "a".len() + 1 + "$SYS/x".len() + 1);
    }

    #[test]
    fn admits_within_count_and_bytes_only() {
        let mut s = RetainedStore::default();
        s.set(msg("a", b"12345"));
        // Full at one topic: a new topic is refused, the existing one replaced or cleared.
        assert!(!s.admits(&msg("b", b"1"), 1, 100));
        assert!(s.admits(&msg("a", b"xyz"), 1, 100));
        assert!(s.admits(&msg("a", b""), 1, 0));
        // Bytes: 6 stored; a new 2-byte topic fits 8, not 7; a replacement may shrink.
        assert!(s.admits(&msg("b", b"1"), 10, 8));
        assert!(!s.admits(&msg("b", b"1"), 10, 7));
        assert!(!s.admits(&msg("a", b"123456789"), 10, 7));
        assert!(s.admits(&msg("a", b"1"), 10, 3));
    }

    proptest! {
        /// The tree lookup returns exactly the topics the plain matcher accepts.
        #[test]
        fn lookup_agrees_with_matcher(
            ts in proptest::collection::hash_set(proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just(""), Just("$s")], 1..4), 1..12),
            filter in proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("+"), Just(""), Just("$s")], 1..4),
            hash in any::<bool>(),
        ) {
            let mut s = RetainedStore::default();
            let ts: Vec<String> = ts.into_iter().map(|t| t.join("/")).collect();
            for t in &ts { s.set(msg(t, b"x")); }
            let mut f = filter.join("/");
            if hash { f.push_str("/#"); }
            let mut expect: Vec<String> = ts.iter().filter(|t| topic::matches(&f, t)).cloned().collect();
            expect.sort();
            expect.dedup();
            prop_assert_eq!(topics(&s, &f), expect);
        }
    }
}
