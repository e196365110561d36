//! [`Authenticator`]: turns MQTT CONNECT credentials, a client certificate's CN, or an HTTP
//! token into an [`Identity`].
//!
//! # The order of checks
//! 1. **A password** is checked and never falls back to anything else when wrong:
//!    - a password that looks like a JWT (`eyJ….….…`) while a JWT key is configured is verified
//!      as one (the MQTT user name is then ignored; the user is the token's `sub`);
//!    - otherwise, with a users file, the user name and password must match a user;
//!    - otherwise, with only a JWT key, it is refused as an invalid token.
//! 2. **No password but a client certificate** (its chain already verified by TLS): the CN is the
//!    user. A user of that name in the users file gives its role and vehicle; any other CN is a
//!    `driver` whose vehicle is the CN (device certificates are issued per vehicle).
//! 3. **A user name alone** while authentication is configured: bad user name or password.
//! 4. **Nothing**: anonymous, if allowed. Without any authentication configured the client is
//!    [`Identity::open`] (only `--acl` rules restrict it, and its unchecked user name is kept for
//!    `%u`); with authentication configured it is [`Identity::anonymous`] (no role).
//!
//! Without a users file or JWT key a password is ignored, as Mosquitto does without a password
//! file. A driver's own vehicle is its user's `vehicle`, else the JWT `sub`, else the certificate
//! CN (docs/security.md#authentication).

use super::users::User;
use super::{AuthError, Identity, JwtVerifier, Role, UsersFile, jwt};

/// The configured authentication methods.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// `--users FILE`.
    users: Option<UsersFile>,
    /// `--jwt-secret` / `--jwt-public-key`.
    jwt: Option<JwtVerifier>,
    /// `--allow-anonymous`: admit clients without credentials.
    allow_anonymous: bool,
}

impl Authenticator {
    /// An authenticator with the given methods.
    pub fn new(users: Option<UsersFile>, jwt: Option<JwtVerifier>, allow_anonymous: bool) -> Self {
        Authenticator {
            users,
            jwt,
            allow_anonymous,
        }
    }

    /// Whether a users file or JWT key is configured (client certificates are configured on the
    /// TLS listener, not here).
    pub fn is_configured(&self) -> bool {
        self.users.is_some() || self.jwt.is_some()
    }

    /// Whether clients may hold a rider's `routes` and `trips` claims, which only a JWT
    /// carries: without a JWT key nothing ever asks the trip book.
    pub fn may_scope_by_trip(&self) -> bool {
        self.jwt.is_some()
    }

    /// The users file's driver vehicles (empty without a users file).
    pub fn driver_vehicles(&self) -> impl Iterator<Item = &str> {
        self.users.iter().flat_map(UsersFile::driver_vehicles)
    }

    /// Whether clients without credentials are admitted.
    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// Authenticates an MQTT CONNECT (module doc: the order of checks). `cert_cn` is the CN of a
    /// client certificate the TLS layer has verified. Slow when a password is checked (argon2):
    /// call it from a blocking thread.
    ///
    /// # Errors
    /// [`AuthError`]; its [`AuthError::reason_code`] is the CONNACK reason code.
    pub fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        cert_cn: Option<&str>,
        now_unix_s: u64,
    ) -> Result<Identity, AuthError> {
        if let (Some(password), true) = (password, self.is_configured()) {
            return self.check_password(client_id, username, password, cert_cn, now_unix_s);
        }
        if let Some(cn) = cert_cn {
            return Ok(self.certificate_identity(client_id, cn));
        }
        if username.is_some() && self.is_configured() {
            // A login attempt without a password is a bad login, not an anonymous client.
            return Err(AuthError::BadCredentials);
        }
        if !self.allow_anonymous {
            return Err(AuthError::AnonymousRefused);
        }
        Ok(if self.is_configured() {
            Identity::anonymous(client_id)
        } else {
            Identity::open(client_id, username)
        })
    }

    /// Authenticates an HTTP request's `?token=` or `Authorization: Bearer` JWT. The identity's
    /// `client_id` is empty.
    ///
    /// # Errors
    /// As [`JwtVerifier::verify`], or [`AuthError::NoMethod`] without a JWT key.
    pub fn authenticate_token(&self, token: &str, now_unix_s: u64) -> Result<Identity, AuthError> {
        let verifier = self.jwt.as_ref().ok_or(AuthError::NoMethod)?;
        let claims = verifier.verify(token, now_unix_s)?;
        Ok(Identity {
            client_id: std::sync::Arc::default(),
            user: Some(claims.sub.clone()),
            role: Some(claims.role),
            vehicle: Some(claims.sub),
            vehicles: claims.vehicles,
            routes: claims.routes,
            trips: claims.trips,
            expires_at: Some(claims.exp),
            open_broker: false,
        })
    }

    fn check_password(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: &[u8],
        cert_cn: Option<&str>,
        now_unix_s: u64,
    ) -> Result<Identity, AuthError> {
        let token = std::str::from_utf8(password)
            .ok()
            .filter(|p| jwt::looks_like_jwt(p));
        if let (Some(token), Some(_)) = (token, &self.jwt) {
            let mut id = self.authenticate_token(token, now_unix_s)?;
            id.client_id = client_id.into();
            return Ok(id);
        }
        let Some(users) = &self.users else {
            return Err(AuthError::InvalidToken("the password is not a JWT".into()));
        };
        let user = username
            .and_then(|name| users.verify(name, password))
            .ok_or(AuthError::BadCredentials)?;
        Ok(user_identity(client_id, user, cert_cn))
    }

    fn certificate_identity(&self, client_id: &str, cn: &str) -> Identity {
        match self.users.as_ref().and_then(|u| u.get(cn)) {
            Some(user) => user_identity(client_id, user, Some(cn)),
            None => {
                let mut id = Identity::with_role(client_id, Some(cn), Role::Driver);
                id.vehicle = Some(cn.to_owned());
                id
            }
        }
    }
}

/// The identity of a users-file user; `cert_cn` is the vehicle fallback.
fn user_identity(client_id: &str, user: &User, cert_cn: Option<&str>) -> Identity {
    let mut id = Identity::with_role(client_id, Some(&user.name), user.role);
    id.vehicle = user.vehicle.clone().or_else(|| cert_cn.map(str::to_owned));
    id
}

#[cfg(test)]
mod tests;
