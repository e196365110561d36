//! JWT verification: HS256 and ES256 with keys made here, time claims, roles, tampering.

use jsonwebtoken::{EncodingKey, Header, encode};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::OsRng;
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_763_700_000;
const SECRET: &[u8] = b"a test secret of reasonable length";

fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn claims(role: &str, exp: u64) -> Value {
    json!({"sub": "bus-12", "role": role, "exp": exp})
}

/// A fresh P-256 key pair: (private PKCS#8 PEM, public SPKI PEM).
fn es256_pair() -> (String, String) {
    let sk = SigningKey::random(&mut OsRng);
    let private = sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = p256::PublicKey::from(sk.verifying_key())
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    (private, public)
}

fn es256(claims: &Value, private_pem: &str) -> String {
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

#[test]
fn valid_hs256_token_gives_its_claims() {
    let v = JwtVerifier::hs256(SECRET);
    let token = hs256(
        &json!({"sub": "rider-7", "role": "rider", "exp": NOW + 600,
                "vehicles": ["bus-1", "bus-2"], "routes": ["R1"], "trips": ["T9"]}),
        SECRET,
    );
    assert!(looks_like_jwt(&token));
    let c = v.verify(&token, NOW).unwrap();
    assert_eq!(
        c,
        Claims {
            sub: "rider-7".into(),
            role: Role::Rider,
            exp: NOW + 600,
            vehicles: vec!["bus-1".into(), "bus-2".into()],
            routes: vec!["R1".into()],
            trips: vec!["T9".into()],
        }
    );
    // Optional claims default to empty; a fractional exp is accepted.
    let token = hs256(
        &json!({"sub": "s", "role": "operator", "exp": (NOW as f64) + 0.5}),
        SECRET,
    );
    let c = v.verify(&token, NOW).unwrap();
    assert_eq!((c.exp, c.role, c.vehicles.len()), (NOW, Role::Operator, 0));
}

#[test]
fn expiry_is_enforced_with_30_s_leeway_on_the_given_clock() {
    let v = JwtVerifier::hs256(SECRET);
    let token = hs256(&claims("driver", NOW), SECRET);
    assert!(v.verify(&token, NOW - 1000).is_ok());
    assert!(v.verify(&token, NOW + LEEWAY_S - 1).is_ok());
    assert!(v.verify(&token, NOW + LEEWAY_S).is_ok(), "within leeway");
    let err = v.verify(&token, NOW + LEEWAY_S + 1).unwrap_err();
    assert_eq!(err, AuthError::Expired);
    assert_eq!(err.reason_code(), 0x86);
}

#[test]
fn not_before_is_enforced_with_leeway() {
    let v = JwtVerifier::hs256(SECRET);
    let token = hs256(
        &json!({"sub": "s", "role": "driver", "exp": NOW + 900, "nbf": NOW + 100}),
        SECRET,
    );
    assert_eq!(v.verify(&token, NOW), Err(AuthError::NotYetValid));
    assert!(v.verify(&token, NOW + 100 - LEEWAY_S).is_ok());
}

#[test]
fn wrong_signature_and_tampering_are_refused() {
    let v = JwtVerifier::hs256(SECRET);
    let forged = hs256(&claims("operator", NOW + 60), b"another secret");
    let err = v.verify(&forged, NOW).unwrap_err();
    assert!(matches!(err, AuthError::InvalidToken(_)), "{err:?}");
    assert_eq!(err.reason_code(), 0x86);
    // Swap in another payload under the original signature.
    let good = hs256(&claims("rider", NOW + 60), SECRET);
    let other = hs256(&claims("operator", NOW + 60), b"x");
    let parts: Vec<&str> = good.split('.').collect();
    let other_payload = other.split('.').nth(1).unwrap();
    let spliced = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
    assert!(matches!(
        v.verify(&spliced, NOW),
        Err(AuthError::InvalidToken(_))
    ));
    for garbage in ["", "a.b.c", "eyJ.eyJ.x", "not a token"] {
        assert!(
            matches!(v.verify(garbage, NOW), Err(AuthError::InvalidToken(_))),
            "{garbage}"
        );
    }
}

#[test]
fn unknown_or_missing_role_is_not_authorized() {
    let v = JwtVerifier::hs256(SECRET);
    let err = v
        .verify(&hs256(&claims("admin", NOW + 60), SECRET), NOW)
        .unwrap_err();
    assert!(matches!(err, AuthError::UnknownRole(_)), "{err:?}");
    assert_eq!(err.reason_code(), 0x87);
    let no_role = hs256(&json!({"sub": "s", "exp": NOW + 60}), SECRET);
    assert_eq!(v.verify(&no_role, NOW).unwrap_err().reason_code(), 0x87);
}

#[test]
fn missing_sub_or_exp_is_invalid() {
    let v = JwtVerifier::hs256(SECRET);
    for c in [
        json!({"role": "rider", "exp": NOW + 60}),
        json!({"sub": "s", "role": "rider"}),
    ] {
        let err = v.verify(&hs256(&c, SECRET), NOW).unwrap_err();
        assert!(matches!(err, AuthError::InvalidToken(_)), "{c}: {err:?}");
    }
    let bad_exp = hs256(
        &json!({"sub": "s", "role": "rider", "exp": "tomorrow"}),
        SECRET,
    );
    assert!(matches!(
        v.verify(&bad_exp, NOW),
        Err(AuthError::InvalidToken(_))
    ));
}

#[test]
fn es256_with_a_generated_key() {
    let (private, public) = es256_pair();
    let v = JwtVerifier::from_public_key_pem(public.as_bytes()).unwrap();
    let token = es256(&claims("integrator", NOW + 60), &private);
    let c = v.verify(&token, NOW).unwrap();
    assert_eq!((c.sub.as_str(), c.role), ("bus-12", Role::Integrator));
    assert_eq!(v.verify(&token, NOW + 91), Err(AuthError::Expired));
    // Another key's signature is refused.
    let (other_private, _) = es256_pair();
    let forged = es256(&claims("integrator", NOW + 60), &other_private);
    assert!(matches!(
        v.verify(&forged, NOW),
        Err(AuthError::InvalidToken(_))
    ));
    // Algorithm confusion: an HS256 token keyed with the public key is refused.
    let confused = hs256(&claims("operator", NOW + 60), public.as_bytes());
    assert!(matches!(
        v.verify(&confused, NOW),
        Err(AuthError::InvalidToken(_))
    ));
    // And an HS256 verifier refuses ES256 tokens.
    let hs = JwtVerifier::hs256(public.as_bytes());
    assert!(matches!(
        hs.verify(&token, NOW),
        Err(AuthError::InvalidToken(_))
    ));
}

#[test]
fn rs256_with_a_generated_key() {
    use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    let sk = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let private = sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = sk
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let v = JwtVerifier::from_public_key_pem(public.as_bytes()).unwrap();
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let token = encode(
        &Header::new(Algorithm::RS256),
        &claims("rider", NOW + 60),
        &key,
    )
    .unwrap();
    let c = v.verify(&token, NOW).unwrap();
    assert_eq!((c.sub.as_str(), c.role), ("bus-12", Role::Rider));
    assert_eq!(v.verify(&token, NOW + 91), Err(AuthError::Expired));
    // The RSA key does not verify an ES256 token, nor an HS256 token keyed with the PEM.
    let (ec_private, _) = es256_pair();
    let es = es256(&claims("rider", NOW + 60), &ec_private);
    assert!(matches!(
        v.verify(&es, NOW),
        Err(AuthError::InvalidToken(_))
    ));
    let confused = hs256(&claims("operator", NOW + 60), public.as_bytes());
    assert!(matches!(
        v.verify(&confused, NOW),
        Err(AuthError::InvalidToken(_))
    ));
}

#[test]
fn public_key_errors_name_the_problem_and_file() {
    let err = JwtVerifier::from_public_key_pem(
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a PEM RSA or EC"), "{err}");
    let (private, public) = es256_pair();
    // A private key is not a public key.
    assert!(JwtVerifier::from_public_key_pem(private.as_bytes()).is_err());
    let path = std::env::temp_dir().join(format!("fleetmq-auth-jwt-{}.pem", std::process::id()));
    std::fs::write(&path, &public).unwrap();
    assert!(JwtVerifier::load_public_key(&path).is_ok());
    std::fs::write(&path, "hello").unwrap();
    let err = JwtVerifier::load_public_key(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
}

#[test]
fn debug_output_hides_the_secret() {
    let v = JwtVerifier::hs256(SECRET);
    let shown = format!("{v:?}");
    assert!(!shown.contains("reasonable"), "{shown}");
    assert!(shown.contains("HS256"), "{shown}");
}
