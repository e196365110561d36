//! JWT verification (`--jwt-secret` HS256, `--jwt-public-key` RS256/ES256) into [`Claims`].
//!
//! Required claims: `sub`, `role`, `exp`; optional: `nbf`, `vehicles`, `routes`, `trips`
//! (arrays of strings). `exp` and `nbf` are checked here against the caller's clock with
//! [`LEEWAY_S`] of skew, not against the system clock. Only the one algorithm of the configured
//! key is accepted, so a token cannot pick `HS256` with a public key as its secret or `none`.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

use super::error::{AuthConfigError, read_file};
use super::{AuthError, Role};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: u64 = 30;

/// Checks JWT signatures and claims against one configured key.
#[derive(Clone)]
pub struct JwtVerifier {
    /// The secret or public key.
    key: DecodingKey,
    /// Accepts only the key's algorithm; time claims are checked by [`JwtVerifier::verify`].
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// The claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Subject: the user name, and a driver's vehicle id when its user has none.
    pub sub: String,
    /// The role.
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// A rider's vehicles.
    pub vehicles: Vec<String>,
    /// A rider's routes.
    pub routes: Vec<String>,
    /// A rider's trips.
    pub trips: Vec<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    role: Option<String>,
    exp: serde_json::Value,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
    #[serde(default)]
    vehicles: Vec<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    trips: Vec<String>,
}

impl JwtVerifier {
    /// HS256 with a shared secret (`--jwt-secret`).
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// RS256 or ES256 (P-256) with a PEM public key (`--jwt-public-key`), chosen by the key type.
    ///
    /// # Errors
    /// [`AuthConfigError::Invalid`] if the PEM holds neither an RSA nor an EC public key.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Self, AuthConfigError> {
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::with(key, Algorithm::ES256));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::with(key, Algorithm::RS256));
        }
        Err(AuthConfigError::invalid(
            "not a PEM RSA or EC (P-256) public key (expected `-----BEGIN PUBLIC KEY-----`)",
        ))
    }

    /// Reads a PEM public key file for [`JwtVerifier::from_public_key_pem`].
    ///
    /// # Errors
    /// [`AuthConfigError`] naming the file if it cannot be read or holds no usable key.
    pub fn load_public_key(path: &Path) -> Result<Self, AuthConfigError> {
        let pem = read_file(path)?;
        Self::from_public_key_pem(pem.as_bytes()).map_err(|e| e.in_file(path))
    }

    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        JwtVerifier { key, validation }
    }

    /// Verifies `token` at `now_unix_s`.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] (malformed, bad signature, wrong algorithm, missing `sub` or
    /// `exp`), [`AuthError::Expired`] (`exp` + 30 s < now), [`AuthError::NotYetValid`],
    /// [`AuthError::UnknownRole`] (missing or unknown `role`).
    pub fn verify(&self, token: &str, now_unix_s: u64) -> Result<Claims, AuthError> {
        let data = decode::<RawClaims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let raw = data.claims;
        let exp = numeric_date(&raw.exp).ok_or_else(|| bad_claim("exp"))?;
        if now_unix_s > exp.saturating_add(LEEWAY_S) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = &raw.nbf {
            let nbf = numeric_date(nbf).ok_or_else(|| bad_claim("nbf"))?;
            if nbf > now_unix_s.saturating_add(LEEWAY_S) {
                return Err(AuthError::NotYetValid);
            }
        }
        let role: Role = raw.role.as_deref().unwrap_or("(none)").parse()?;
        Ok(Claims {
            sub: raw.sub,
            role,
            exp,
            vehicles: raw.vehicles,
            routes: raw.routes,
            trips: raw.trips,
        })
    }
}

/// A JWT NumericDate: non-negative seconds, integer or fractional (truncated).
fn numeric_date(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
            // Truncation is the point: a fractional NumericDate counts from its whole second.
            .map(|f| f as u64)
    })
}

fn bad_claim(name: &str) -> AuthError {
    AuthError::InvalidToken(format!("claim `{name}` is not a NumericDate"))
}

/// Whether `s` looks like a compact JWS (`header.payload.signature`, header starting `eyJ`), so an
/// MQTT password can be told apart from a plain one.
pub(crate) fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ")
        && s.split('.').count() == 3
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

#[cfg(test)]
mod tests;
