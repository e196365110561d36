//! The per-message read check of one session (docs/security.md: "every message is checked against
//! the caller's rights before delivery"), with the decision cached per topic so that a `#`
//! subscriber under a long ACL pays one hash lookup per message, not one match per rule.

use std::collections::HashMap;

use fleetmq_codec::ByteString;

use crate::auth::ReadRights;

/// Topics whose decision one session remembers. Past this the cache starts over: a session
/// reading an unbounded variety of topics costs at most this much memory, and the rules are
/// cheap enough to evaluate again.
pub const CACHE_MAX: usize = 4096;

/// A restricted session's rights and its decisions so far. The rights are fixed for the
/// connection (the ACL and the identity do not change while it lasts), so a cached decision
/// never goes stale; a reconnect brings new rights and an empty cache. A rider's trip scope is
/// the exception: it depends on which trip each vehicle runs now, so it is not cached (one read
/// lock and one hash lookup per message).
#[derive(Debug)]
pub struct Reader {
    rights: ReadRights,
    cache: HashMap<ByteString, bool>,
}

impl Reader {
    pub fn new(rights: ReadRights) -> Reader {
        Reader {
            rights,
            cache: HashMap::new(),
        }
    }

    /// Whether the session may receive a message on `topic`.
    pub fn may_read(&mut self, topic: &ByteString) -> bool {
        if self.rights.is_dynamic() {
            // A rider's trip scope changes with the vehicles' trips: never cached.
            return self.rights.may_read(topic);
        }
        if let Some(&ok) = self.cache.get(topic) {
            return ok;
        }
        let ok = self.rights.may_read(topic);
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(topic.clone(), ok);
        ok
    }

    /// The same decision without touching the cache (for a shared group's pick, which only
    /// borrows the sessions).
    pub fn may_read_uncached(&self, topic: &str) -> bool {
        self.rights.may_read(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Acl, Identity};

    #[test]
    fn caches_decisions_and_stays_bounded() {
        let acl =
            Acl::parse("[[rule]]\ntopic = \"test/nosubscribe\"\naccess = \"deny\"\n").expect("acl");
        let rights = acl.reader(&Identity::open("c", None)).expect("restricted");
        let mut r = Reader::new(rights);
        assert!(!r.may_read(&"test/nosubscribe".into()));
        assert!(r.may_read(&"test/other".into()));
        assert!(!r.may_read(&"test/nosubscribe".into()), "cached answer");
        for i in 0..CACHE_MAX * 2 {
            assert!(r.may_read(&format!("t/{i}").into()));
            assert!(r.cache.len() <= CACHE_MAX);
        }
        assert!(!r.may_read(&"test/nosubscribe".into()));
    }
}
