//! `fleetmq passwd`: reads one password line from stdin and prints its argon2id PHC hash
//! (`$argon2id$v=19$m=19456,t=2,p=1$...`) for the `password_hash` of a users-file entry.

use std::io::{BufRead, IsTerminal, Write};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use thiserror::Error;

use super::failure::Failure;

/// Longest password accepted on stdin, bytes (MQTT passwords are binary data up to 65535 bytes,
/// but a users-file password is typed by a person).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password could not be hashed.
#[derive(Debug, Error)]
pub enum PasswordError {
    /// Empty passwords are refused: a user with one could not be told from an anonymous client.
    #[error("empty password")]
    Empty,
    #[error("argon2: {0}")]
    Hash(String),
}

/// Hashes `password` with argon2id (argon2 crate defaults: 19 MiB, 2 passes, 1 lane, the OWASP
/// recommendation) and a random 16-byte salt, as a PHC string. Verify with
/// `argon2::PasswordVerifier::verify_password` on `PasswordHash::new(hash)`.
///
/// # Errors
/// [`PasswordError::Empty`] for an empty password; [`PasswordError::Hash`] if argon2 fails.
pub fn hash_password(password: &[u8]) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Reads one line (without its line ending) from `input`, at most [`MAX_PASSWORD_BYTES`].
fn read_password(input: impl BufRead) -> Result<Vec<u8>, Failure> {
    let mut line = Vec::new();
    input
        .take(MAX_PASSWORD_BYTES as u64 + 3)
        .read_until(b'\n', &mut line)
        .map_err(|e| Failure::Runtime(anyhow::Error::new(e).context("reading stdin")))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_PASSWORD_BYTES {
        return Err(Failure::Config(format!(
            "password longer than {MAX_PASSWORD_BYTES} bytes on stdin: use a shorter one"
        )));
    }
    Ok(line)
}

/// The `passwd` command.
///
/// # Errors
/// [`Failure::Config`] (exit 2) for an empty or over-long password.
pub fn run() -> Result<(), Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // Typed passwords are echoed: there is no portable way to turn echo off without a
        // terminal crate, so say so.
        eprint!("password (visible as you type; or pipe it: echo secret | fleetmq passwd): ");
        let _ = std::io::stderr().flush();
    }
    let password = read_password(stdin.lock())?;
    let hash = hash_password(&password).map_err(|e| match e {
        PasswordError::Empty => Failure::Config(
            "empty password on stdin: give one line, e.g. `echo 's3cret' | fleetmq passwd`"
                .to_string(),
        ),
        other => Failure::Runtime(anyhow::Error::new(other).context("hashing the password")),
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{hash}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Runtime(anyhow::Error::new(e).context("writing to stdout")))
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    use super::*;

    #[test]
    fn hash_verifies_and_is_salted() {
        let a = hash_password(b"hunter2").expect("hash");
        let b = hash_password(b"hunter2").expect("hash");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "same salt twice");
        let parsed = PasswordHash::new(&a).expect("PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"hunter2", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"hunter3", &parsed)
                .is_err()
        );
        assert!(matches!(hash_password(b""), Err(PasswordError::Empty)));
    }

    #[test]
    fn reads_one_line_without_its_ending() {
        let read = |s: &[u8]| read_password(s).map_err(|e| e.to_string());
        assert_eq!(read(b"pw\nsecond line\n"), Ok(b"pw".to_vec()));
        assert_eq!(read(b"pw\r\n"), Ok(b"pw".to_vec()));
        assert_eq!(read(b"no newline"), Ok(b"no newline".to_vec()));
        assert_eq!(read(b" spaces kept \n"), Ok(b" spaces kept ".to_vec()));
        let long = vec![b'x'; MAX_PASSWORD_BYTES];
        assert_eq!(read(&[long.as_slice(), b"\n"].concat()), Ok(long.clone()));
        let longer = vec![b'x'; MAX_PASSWORD_BYTES + 1];
        assert!(read(&longer).is_err());
    }
}
