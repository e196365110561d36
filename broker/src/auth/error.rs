//! The two error types of authentication: [`AuthError`] refuses one client (it maps onto an MQTT
//! v5 CONNACK reason code), [`AuthConfigError`] refuses a configuration file at start-up.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::role::UnknownRole;

/// Why a client's credentials were refused.
///
/// The `Display` text is safe to send to the client as a reason string: it never says whether a
/// user name exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, wrong password, or a user name without a password.
    #[error("bad user name or password")]
    BadCredentials,
    /// A JWT that is malformed, badly signed, or lacks a required claim.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A JWT whose `exp` is more than the 30 s leeway in the past.
    #[error("token expired")]
    Expired,
    /// A JWT whose `nbf` is more than the 30 s leeway in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// A JWT whose `role` claim is missing or names no known role.
    #[error("not authorized: {0}")]
    UnknownRole(#[from] UnknownRole),
    /// No credentials, and anonymous clients are not allowed.
    #[error("not authorized: anonymous clients are not allowed")]
    AnonymousRefused,
    /// Credentials of a kind no configured method can check (a JWT without a JWT key, a user
    /// name and password without a users file).
    #[error("not authorized: no authentication method accepts these credentials")]
    NoMethod,
}

impl AuthError {
    /// The MQTT v5 CONNACK reason code: 0x86 (bad user name or password) for bad credentials
    /// including a bad or expired token, 0x87 (not authorized) otherwise. A v3.1.1 broker maps
    /// these onto return codes 4 and 5.
    pub fn reason_code(&self) -> u8 {
        match self {
            AuthError::BadCredentials
            | AuthError::InvalidToken(_)
            | AuthError::Expired
            | AuthError::NotYetValid => 0x86,
            AuthError::UnknownRole(_) | AuthError::AnonymousRefused | AuthError::NoMethod => 0x87,
        }
    }
}

/// A users file, ACL file or JWT key that cannot be used. `Display` is one line naming the file
/// and the problem.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The content is invalid.
    #[error("{}{problem}", InFile(path.as_deref()))]
    Invalid {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// What is wrong and where, e.g. `line 3, column 1: unknown field `acess``.
        problem: String,
    },
}

impl AuthConfigError {
    /// An [`AuthConfigError::Invalid`] not yet tied to a file.
    pub(crate) fn invalid(problem: impl Into<String>) -> Self {
        AuthConfigError::Invalid {
            path: None,
            problem: problem.into(),
        }
    }

    /// Names `path` as the file the error is in.
    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            AuthConfigError::Invalid { problem, .. } => AuthConfigError::Invalid {
                path: Some(path.to_owned()),
                problem,
            },
            other => other,
        }
    }

    /// A TOML syntax or schema error as one line with its position in `text`.
    pub(crate) fn toml(text: &str, err: &toml::de::Error) -> Self {
        let message = err.message().replace('\n', " ");
        let problem = match err.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("line {line}, column {column}: {message}")
            }
            None => message,
        };
        AuthConfigError::invalid(problem)
    }
}

/// Reads a whole configuration file, naming it on failure.
pub(crate) fn read_file(path: &Path) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Formats `path: ` when there is a path.
struct InFile<'a>(Option<&'a Path>);

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes() {
        assert_eq!(AuthError::BadCredentials.reason_code(), 0x86);
        assert_eq!(AuthError::Expired.reason_code(), 0x86);
        assert_eq!(AuthError::InvalidToken("x".into()).reason_code(), 0x86);
        assert_eq!(AuthError::AnonymousRefused.reason_code(), 0x87);
        assert_eq!(
            AuthError::UnknownRole(UnknownRole("boss".into())).reason_code(),
            0x87
        );
    }

    #[test]
    fn positions_and_file_names() {
        assert_eq!(line_column("ab\ncd\nef", 4), (2, 2));
        assert_eq!(line_column("ab", 0), (1, 1));
        let err = AuthConfigError::invalid("line 1: bad").in_file(Path::new("/etc/acl.toml"));
        assert_eq!(err.to_string(), "/etc/acl.toml: line 1: bad");
        let err = read_file(Path::new("/nonexistent/users.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/users.toml: ")
        );
    }
}
