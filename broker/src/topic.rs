//! Topic names and filters: validation, shared-subscription parsing and matching.

/// Why a topic name or filter is unusable. Maps to reason codes 0x90 / 0x8F.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    Wildcard,
    BadFilter,
    BadShare,
    TooDeep,
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
        }
    }
}

/// A PUBLISH topic name: non-empty, no `+` or `#`.
pub fn validate_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::Wildcard);
    }
    if too_deep(topic) {
        return Err(TopicError::TooDeep);
    }
    Ok(())
}

/// A subscription filter: `#` only as the whole last level, `+` only as a whole level.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
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

/// Whether `filter` matches `topic`. Topics starting with `$` are not matched by a filter
/// starting with a wildcard. The reference the subscription and retained trees are tested against.
#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("a//b", "a//b"));
        assert!(matches("+/+", "/x"));
    }
}
