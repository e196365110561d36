//! Authentication and authorization (docs/security.md): who a client is ([`Authenticator`] →
//! [`Identity`]) and what it may publish and subscribe to ([`Acl`]).
//!
//! Pure and synchronous: the current time is passed in, and the only I/O is the `load`
//! functions reading a configuration file. Password checks are deliberately slow (argon2), so
//! async callers should run [`Authenticator::authenticate`] on a blocking thread.
//!
//! # Layout
//! - `role`: the four [`Role`]s.
//! - `identity`: [`Identity`], the result of authentication.
//! - `error`: [`AuthError`] (a refused client, with its CONNACK reason code) and
//!   [`AuthConfigError`] (a bad file).
//! - `permissions`: the role table.
//! - `rights`: [`ReadRights`], what one client may read, checked per delivered message.
//! - `acl`: `--acl` rules and the final decision ([`Acl`]; its doc states the exact rule).
//! - `users`: the users file ([`UsersFile`]) and [`hash_password`].
//! - `jwt`: token verification ([`JwtVerifier`]).
//! - `authenticator`: credentials → [`Identity`] ([`Authenticator`]).

mod acl;
mod authenticator;
mod error;
mod identity;
mod jwt;
mod permissions;
mod rights;
mod role;
mod users;

#[cfg(test)]
mod tests;

pub use acl::Acl;
pub use authenticator::Authenticator;
pub use error::{AuthConfigError, AuthError};
pub use identity::Identity;
pub use jwt::{Claims, JwtVerifier, LEEWAY_S};
pub use rights::ReadRights;
pub use role::{Role, UnknownRole};
// The filter algebra lives in `crate::topic`, shared with the router; re-exported for callers
// that check permissions.
pub use crate::topic::{filter_covers, filters_overlap, strip_share, topic_matches};
pub use users::{User, UsersFile, hash_password};
