//! `--users FILE`: user names with argon2 password hashes, roles and vehicles, and
//! [`hash_password`] for `fleetmq passwd`.
//!
//! ```toml
//! [[user]]
//! name = "bus-12-unit"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `fleetmq passwd`
//! role = "driver"
//! vehicle = "bus-12"                                     # optional
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use serde::Deserialize;

use super::Role;
use super::error::{AuthConfigError, read_file};

/// One user of the users file. `Debug` leaves the password hash out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The MQTT user name.
    pub name: String,
    /// The role granted after a correct password.
    pub role: Role,
    /// A driver's vehicle id (its own topics); `None`: the JWT `sub` or certificate CN is used.
    pub vehicle: Option<String>,
    /// The argon2 PHC string, validated at load.
    password_hash: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("vehicle", &self.vehicle)
            .finish_non_exhaustive()
    }
}

/// The parsed users file, keyed by user name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersFile {
    /// Users by name (names are unique in the file).
    users: HashMap<String, User>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_hash: String,
    role: String,
    vehicle: Option<String>,
}

impl UsersFile {
    /// Reads and parses a users file.
    ///
    /// # Errors
    /// [`AuthConfigError`] naming the file and the problem: unreadable, bad TOML, unknown key,
    /// unknown role, a duplicate name, or a `password_hash` that is not an argon2 PHC string.
    pub fn load(path: &Path) -> Result<Self, AuthConfigError> {
        Self::parse(&read_file(path)?).map_err(|e| e.in_file(path))
    }

    /// Parses a users file from TOML text.
    ///
    /// # Errors
    /// As [`UsersFile::load`], without a file name.
    pub fn parse(text: &str) -> Result<Self, AuthConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| AuthConfigError::toml(text, &e))?;
        let mut users = HashMap::with_capacity(raw.user.len());
        for r in raw.user {
            let name = r.name;
            let bad =
                |problem: String| AuthConfigError::invalid(format!("user `{name}`: {problem}"));
            let role: Role = r.role.parse().map_err(|e| bad(format!("{e}")))?;
            let hash_ok = PasswordHash::new(&r.password_hash)
                .is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"));
            if !hash_ok {
                return Err(bad(
                    "password_hash is not an argon2 hash (make one with `fleetmq passwd`)".into(),
                ));
            }
            if users.contains_key(&name) {
                return Err(bad("listed twice".into()));
            }
            let user = User {
                name: name.clone(),
                role,
                vehicle: r.vehicle,
                password_hash: r.password_hash,
            };
            users.insert(name, user);
        }
        Ok(UsersFile { users })
    }

    /// The user called `name`, without checking a password (for a client certificate's CN).
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// The user called `name` if `password` is theirs. An unknown name costs as much time as a
    /// wrong password, so timing does not reveal which names exist.
    pub fn verify(&self, name: &str, password: &[u8]) -> Option<&User> {
        match self.users.get(name) {
            Some(user) => check(&user.password_hash, password).then_some(user),
            None => {
                check(dummy_hash(), password);
                None
            }
        }
    }

    /// The `vehicle` of every driver (the OsmAnd listener lets these devices in).
    pub fn driver_vehicles(&self) -> impl Iterator<Item = &str> {
        self.users
            .values()
            .filter(|u| u.role == Role::Driver)
            .filter_map(|u| u.vehicle.as_deref())
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Hashes `password` with argon2id, default parameters and a random salt, as a PHC string for
/// the users file.
///
/// # Panics
/// Never in practice: default parameters with a fresh 16-byte salt are always valid and the
/// password length limit is 4 GiB.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .expect("argon2 default parameters and a generated salt are valid")
}

/// Whether `password` matches the PHC string `hash` (its own parameters are used).
fn check(hash: &str, password: &[u8]) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
}

/// A hash of a random string with default parameters, checked against for unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(SaltString::generate(&mut OsRng).as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_text(hash: &str) -> String {
        format!(
            "[[user]]\nname = \"unit-12\"\npassword_hash = \"{hash}\"\nrole = \"driver\"\nvehicle = \"bus-12\"\n\n\
             [[user]]\nname = \"ops\"\npassword_hash = \"{hash}\"\nrole = \"operator\"\n"
        )
    }

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let a = hash_password("s3cret");
        let b = hash_password("s3cret");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "random salt");
        assert!(check(&a, b"s3cret"));
        assert!(!check(&a, b"s3cret "));
    }

    #[test]
    fn right_password_wrong_password_unknown_user() {
        let users = UsersFile::parse(&users_text(&hash_password("pw"))).unwrap();
        assert_eq!(users.len(), 2);
        let unit = users.verify("unit-12", b"pw").unwrap();
        assert_eq!(unit.role, Role::Driver);
        assert_eq!(unit.vehicle.as_deref(), Some("bus-12"));
        assert_eq!(users.verify("ops", b"pw").unwrap().vehicle, None);
        assert!(users.verify("unit-12", b"PW").is_none());
        assert!(users.verify("unit-12", b"").is_none());
        assert!(users.verify("nobody", b"pw").is_none());
        assert_eq!(users.get("ops").unwrap().role, Role::Operator);
        let shown = format!("{users:?}");
        assert!(
            shown.contains("unit-12") && !shown.contains("argon2"),
            "{shown}"
        );
    }

    #[test]
    fn malformed_users_file_names_the_problem() {
        let good = hash_password("pw");
        let cases = [
            (
                users_text("plaintext"),
                "`unit-12`: password_hash is not an argon2",
            ),
            (
                users_text(&good).replace("\"driver\"", "\"boss\""),
                "`unit-12`: unknown role `boss`",
            ),
            (
                users_text(&good).replace("\"ops\"", "\"unit-12\""),
                "`unit-12`: listed twice",
            ),
            (
                users_text(&good).replace("vehicle =", "vehicel ="),
                "vehicel",
            ),
            (users_text(&good).replace("name = \"ops\"\n", ""), "name"),
            ("[[user]\n".to_owned(), "line 1"),
        ];
        for (text, needle) in cases {
            let err = UsersFile::parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        // A scrypt-style or other PHC string is not accepted either.
        let other = "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
        assert!(UsersFile::parse(&users_text(other)).is_err());
    }

    #[test]
    fn load_names_the_file() {
        let path =
            std::env::temp_dir().join(format!("fleetmq-auth-users-{}.toml", std::process::id()));
        std::fs::write(&path, users_text(&hash_password("pw"))).unwrap();
        assert_eq!(UsersFile::load(&path).unwrap().len(), 2);
        std::fs::write(&path, "[[user]]\nname = 1\n").unwrap();
        let err = UsersFile::load(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
}
