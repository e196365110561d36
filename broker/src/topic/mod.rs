//! Topic names and filters, the one place their rules live: validation (used by the router for
//! every PUBLISH and SUBSCRIBE), shared-subscription parsing, and the filter algebra the
//! permission checks use (`algebra`). The router's trees and the ACL agree because both start
//! from [`validate_name`] / [`validate_filter`] here.
//!
//! The rules (MQTT 5.0 §4.7, the stricter reading where the two old copies differed):
//! - a topic name is non-empty, has no `+`/`#`, no NUL and at most [`MAX_LEVELS`] levels;
//! - a filter is non-empty, has no NUL, at most [`MAX_LEVELS`] levels, `+` only as a whole
//!   level and `#` only as the whole last level;
//! - a filter whose first level is a wildcard never matches a topic whose first level starts
//!   with `$` (`#` does not match `$SYS/broker/uptime` nor `$internal/x`).
//!
//! # Layout
//! - `algebra`: [`Level`], matching, covering, overlapping and intersecting filters.

mod algebra;
#[cfg(test)]
mod tests;

pub use algebra::{
    Level, covers, escapes, filter_covers, filters_overlap, intersect, matches, topic_matches,
};

/// Why a topic name or filter is unusable. Maps to reason codes 0x90 / 0x8F.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    Wildcard,
    BadFilter,
    BadShare,
    TooDeep,
    Nul,
}

/// Most levels a topic name or filter may have. The topic trees recurse once per level, so a
/// client must not be able to make that depth arbitrary.
pub const MAX_LEVELS: usize = 128;

fn too_deep(s: &str) -> bool {
    s.bytes().filter(|&b| b == b'/').count() >= MAX_LEVELS
}

impl TopicError {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicError::Empty => "topic is empty",
            TopicError::Wildcard => "topic name contains a wildcard",
            TopicError::BadFilter => "'#' must be last and '+'/'#' must fill a whole level",
            TopicError::BadShare => "shared subscription must be $share/GROUP/FILTER",
            TopicError::TooDeep => "topic has more than 128 levels",
            TopicError::Nul => "topic contains a NUL character",
        }
    }
}

/// A PUBLISH topic name: non-empty, no `+`, `#` or NUL, at most [`MAX_LEVELS`] levels.
///
/// # Errors
/// The first rule broken.
pub fn validate_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::Wildcard);
    }
    if topic.contains('\0') {
        return Err(TopicError::Nul);
    }
    if too_deep(topic) {
        return Err(TopicError::TooDeep);
    }
    Ok(())
}

/// A subscription filter: `#` only as the whole last level, `+` only as a whole level, no NUL,
/// at most [`MAX_LEVELS`] levels.
///
/// # Errors
/// The first rule broken.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::Nul);
    }
    if too_deep(filter) {
        return Err(TopicError::TooDeep);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return Err(TopicError::BadFilter);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::BadFilter);
        }
    }
    Ok(())
}

/// Splits `$share/GROUP/FILTER` into `(Some(GROUP), FILTER)`; any other filter into `(None, filter)`.
///
/// # Errors
/// [`TopicError::BadShare`] for `$share/G` or an empty or wildcard group; the filter's own error.
pub fn parse_shared(filter: &str) -> Result<(Option<&str>, &str), TopicError> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        validate_filter(filter)?;
        return Ok((None, filter));
    };
    let (group, inner) = rest.split_once('/').ok_or(TopicError::BadShare)?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(TopicError::BadShare);
    }
    validate_filter(inner)?;
    Ok((Some(group), inner))
}

/// Strips a shared-subscription prefix: `$share/GROUP/FILTER` → `FILTER`; other filters are
/// returned unchanged. `None` for a malformed share or an invalid filter.
pub fn strip_share(filter: &str) -> Option<&str> {
    parse_shared(filter).ok().map(|(_, inner)| inner)
}

/// A valid filter split into levels; `None` if [`validate_filter`] refuses it.
pub fn parse_filter(filter: &str) -> Option<Vec<Level<'_>>> {
    validate_filter(filter).ok()?;
    Some(filter.split('/').map(Level::of_filter).collect())
}

/// A valid topic name split into literal levels; `None` if [`validate_name`] refuses it.
pub fn parse_topic(topic: &str) -> Option<Vec<Level<'_>>> {
    validate_name(topic).ok()?;
    Some(topic.split('/').map(Level::Lit).collect())
}

/// Whether a topic belongs to the broker and may not be published by clients: `$SYS/...`
/// (the broker's statistics) and `$share/...` (a subscription prefix, not a topic). Other `$`
/// topics are ordinary topics (docs/mqtt.md).
pub fn is_reserved(topic: &str) -> bool {
    let first = topic.split('/').next().unwrap_or_default();
    first == "$SYS" || first == "$share"
}
