//! The two ids that cross the router ↔ connection boundary, as types of their own so that one
//! cannot be passed for the other: a session outlives its connections, and a connection's id
//! tells a replaced connection's late messages apart from the current one's.

/// A session, as the router numbers them (in sequence, never chosen by a client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// One connection (one socket), numbered by the connections' shared context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl SessionId {
    /// The raw number, for logs (kept a number, as it was before the newtype).
    pub fn get(self) -> u64 {
        self.0
    }
}
