//! Authentication end to end: users file, JWT as password, certificates, anonymous clients.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use super::*;
use crate::auth::{Acl, hash_password};

const NOW: u64 = 1_763_700_000;
const SECRET: &[u8] = b"jwt secret";

fn users() -> UsersFile {
    let hash = hash_password("pw");
    UsersFile::parse(&format!(
        "[[user]]\nname = \"unit-12\"\npassword_hash = \"{hash}\"\nrole = \"driver\"\nvehicle = \"bus-12\"\n\n\
         [[user]]\nname = \"unit-x\"\npassword_hash = \"{hash}\"\nrole = \"driver\"\n\n\
         [[user]]\nname = \"ops\"\npassword_hash = \"{hash}\"\nrole = \"operator\"\n"
    ))
    .unwrap()
}

fn token(role: &str, exp: u64) -> String {
    let claims = json!({"sub": "bus-7", "role": role, "exp": exp, "vehicles": ["bus-1"]});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn full(allow_anonymous: bool) -> Authenticator {
    Authenticator::new(
        Some(users()),
        Some(JwtVerifier::hs256(SECRET)),
        allow_anonymous,
    )
}

#[test]
fn users_file_password() {
    let auth = full(false);
    assert!(auth.is_configured());
    let id = auth
        .authenticate("c1", Some("unit-12"), Some(b"pw"), None, NOW)
        .unwrap();
    assert_eq!(&*id.client_id, "c1");
    assert_eq!(id.user.as_deref(), Some("unit-12"));
    assert_eq!(id.role, Some(Role::Driver));
    assert_eq!(id.vehicle.as_deref(), Some("bus-12"));
    assert!(!id.open_broker);
    assert!(Acl::empty().can_publish(&id, "fleet/bus-12/location"));

    for (user, pass) in [
        (Some("unit-12"), &b"wrong"[..]),
        (Some("nobody"), b"pw"),
        (None, b"pw"),
    ] {
        let err = auth
            .authenticate("c1", user, Some(pass), None, NOW)
            .unwrap_err();
        assert_eq!(err, AuthError::BadCredentials, "{user:?}");
        assert_eq!(err.reason_code(), 0x86);
    }
}

#[test]
fn driver_vehicle_falls_back_to_certificate_cn() {
    let auth = full(false);
    let id = auth
        .authenticate("c", Some("unit-x"), Some(b"pw"), Some("bus-99"), NOW)
        .unwrap();
    assert_eq!(id.vehicle.as_deref(), Some("bus-99"));
    let id = auth
        .authenticate("c", Some("unit-x"), Some(b"pw"), None, NOW)
        .unwrap();
    assert_eq!(id.vehicle, None);
    // A wrong password never falls back to the certificate.
    let err = auth.authenticate("c", Some("unit-x"), Some(b"no"), Some("bus-99"), NOW);
    assert_eq!(err, Err(AuthError::BadCredentials));
}

#[test]
fn jwt_as_mqtt_password() {
    let auth = full(false);
    let t = token("driver", NOW + 60);
    let id = auth
        .authenticate("c2", Some("ignored"), Some(t.as_bytes()), None, NOW)
        .unwrap();
    assert_eq!(&*id.client_id, "c2");
    assert_eq!(id.user.as_deref(), Some("bus-7"));
    assert_eq!(
        id.vehicle.as_deref(),
        Some("bus-7"),
        "driver's own id is the JWT sub"
    );
    assert_eq!(id.vehicles, vec!["bus-1".to_owned()]);
    let expired = token("driver", NOW - 31);
    let err = auth
        .authenticate("c2", None, Some(expired.as_bytes()), None, NOW)
        .unwrap_err();
    assert_eq!(err.reason_code(), 0x86);
    let boss = token("boss", NOW + 60);
    let err = auth
        .authenticate("c2", None, Some(boss.as_bytes()), None, NOW)
        .unwrap_err();
    assert_eq!(err.reason_code(), 0x87);
    // JWT only: a plain password is an invalid token.
    let jwt_only = Authenticator::new(None, Some(JwtVerifier::hs256(SECRET)), false);
    let err = jwt_only
        .authenticate("c", Some("u"), Some(b"pw"), None, NOW)
        .unwrap_err();
    assert_eq!(err.reason_code(), 0x86);
    // Users only: a JWT-looking password is checked as a password.
    let users_only = Authenticator::new(Some(users()), None, false);
    let err = users_only.authenticate("c", Some("ops"), Some(t.as_bytes()), None, NOW);
    assert_eq!(err, Err(AuthError::BadCredentials));
}

#[test]
fn http_token() {
    let auth = full(false);
    let id = auth
        .authenticate_token(&token("rider", NOW + 60), NOW)
        .unwrap();
    assert_eq!((id.role, &*id.client_id), (Some(Role::Rider), ""));
    assert!(Acl::empty().can_subscribe(&id, "vehicles/bus-1"));
    assert!(!Acl::empty().can_subscribe(&id, "vehicles/bus-2"));
    assert_eq!(
        auth.authenticate_token(&token("rider", NOW - 100), NOW),
        Err(AuthError::Expired)
    );
    let users_only = Authenticator::new(Some(users()), None, true);
    let err = users_only
        .authenticate_token(&token("rider", NOW + 60), NOW)
        .unwrap_err();
    assert_eq!(err, AuthError::NoMethod);
}

#[test]
fn client_certificate() {
    let auth = full(false);
    let id = auth
        .authenticate("c", None, None, Some("bus-5"), NOW)
        .unwrap();
    assert_eq!(
        (id.role, id.vehicle.as_deref()),
        (Some(Role::Driver), Some("bus-5"))
    );
    assert_eq!(id.user.as_deref(), Some("bus-5"));
    let id = auth
        .authenticate("c", Some("x"), None, Some("ops"), NOW)
        .unwrap();
    assert_eq!(
        id.role,
        Some(Role::Operator),
        "a CN that names a user takes its role"
    );
    let none = Authenticator::new(None, None, false);
    let id = none
        .authenticate("c", None, None, Some("bus-6"), NOW)
        .unwrap();
    assert_eq!(id.vehicle.as_deref(), Some("bus-6"));
}

#[test]
fn anonymous_clients() {
    let err = full(false)
        .authenticate("c", None, None, None, NOW)
        .unwrap_err();
    assert_eq!(
        (err.clone(), err.reason_code()),
        (AuthError::AnonymousRefused, 0x87)
    );
    for allow in [false, true] {
        let err = full(allow).authenticate("c", Some("unit-12"), None, None, NOW);
        assert_eq!(
            err,
            Err(AuthError::BadCredentials),
            "user name without password"
        );
    }
    // Allowed with auth configured: no role, nothing without ACL grants.
    let id = full(true).authenticate("c", None, None, None, NOW).unwrap();
    assert_eq!(id, Identity::anonymous("c"));
    assert!(!Acl::empty().can_subscribe(&id, "vehicles/#"));
    // No authentication configured: an open broker, the user name kept for %u, password ignored.
    let open = Authenticator::new(None, None, true);
    assert!(!open.is_configured());
    let id = open
        .authenticate("c", Some("u"), Some(b"whatever"), None, NOW)
        .unwrap();
    assert_eq!(id, Identity::open("c", Some("u")));
    assert!(Acl::empty().can_subscribe(&id, "#"));
    let closed = Authenticator::new(None, None, false);
    assert_eq!(
        closed.authenticate("c", None, None, None, NOW),
        Err(AuthError::AnonymousRefused)
    );
}
