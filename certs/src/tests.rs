//! Tests of certificate generation: files, permissions, refusal to overwrite, and the chain
//! checked by OpenSSL when it is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "fleetmq-certs-{tag}-{}-{nanos}",
            std::process::id()
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn openssl_available() -> bool {
    Command::new("openssl").arg("version").output().is_ok()
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn build_makes_six_pem_blocks_of_the_right_kind() {
    let bundle = build("bus-7").expect("build");
    for cert in [&bundle.ca_pem, &bundle.server_pem, &bundle.client_pem] {
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    }
    for key in [
        &bundle.ca_key_pem,
        &bundle.server_key_pem,
        &bundle.client_key_pem,
    ] {
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
    // Every run makes a new CA: two bundles never share a key.
    let other = build("bus-7").expect("build");
    assert_ne!(bundle.ca_key_pem, other.ca_key_pem);
    // Debug never shows the keys.
    assert!(!format!("{bundle:?}").contains("PRIVATE KEY"));
}

#[test]
fn invalid_client_names_are_refused() {
    for cn in ["", "   ", "a\nb", &"x".repeat(65)] {
        assert!(
            matches!(build(cn), Err(CertError::InvalidName(_))),
            "{cn:?} accepted"
        );
    }
    assert!(build(&"x".repeat(64)).is_ok());
}

#[test]
fn generate_writes_all_files_and_refuses_to_overwrite() {
    let tmp = TempDir::new("write");
    let dir = tmp.0.join("nested/out");
    let paths = generate(&dir, DEFAULT_CLIENT_CN).expect("generate");
    assert_eq!(paths, Paths::in_dir(&dir));
    for p in paths.all() {
        let text = fs::read_to_string(p).expect("written");
        assert!(text.contains("-----BEGIN "), "{}", p.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&paths.server_key), 0o600);
        assert_eq!(mode(&paths.ca_key), 0o600);
        assert_eq!(mode(&paths.client_key), 0o600);
        assert_eq!(mode(&paths.ca), 0o644);
    }

    let before = fs::read_to_string(&paths.ca).expect("read");
    match generate(&dir, DEFAULT_CLIENT_CN) {
        Err(CertError::Exists(p)) => assert_eq!(p, paths.ca),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(&paths.ca).expect("read"), before);

    generate_with(&dir, "bus-2", Overwrite::Yes).expect("overwrite");
    assert_ne!(fs::read_to_string(&paths.ca).expect("read"), before);
}

#[test]
fn openssl_verifies_the_chain_names_and_purposes() {
    if !openssl_available() {
        println!("note: openssl not installed; skipping the OpenSSL chain check");
        return;
    }
    let tmp = TempDir::new("verify");
    generate(&tmp.0, "bus-42").expect("generate");
    let dir = tmp.0.as_path();

    let (ok, out) = openssl(
        dir,
        &["verify", "-CAfile", "ca.pem", "server.pem", "client.pem"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("server.pem: OK") && out.contains("client.pem: OK"),
        "{out}"
    );

    let purpose =
        |p: &str, f: &str| openssl(dir, &["verify", "-CAfile", "ca.pem", "-purpose", p, f]).0;
    assert!(purpose("sslserver", "server.pem"));
    assert!(purpose("sslclient", "client.pem"));
    // Leaves are for one job each: the client certificate cannot serve TLS.
    assert!(!purpose("sslserver", "client.pem"));

    let (ok, san) = openssl(
        dir,
        &[
            "x509",
            "-in",
            "server.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(ok, "{san}");
    for name in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ] {
        assert!(san.contains(name), "{name} missing from {san}");
    }
    let (ok, subject) = openssl(dir, &["x509", "-in", "client.pem", "-noout", "-subject"]);
    assert!(
        ok && (subject.contains("CN = bus-42") || subject.contains("CN=bus-42")),
        "{subject}"
    );

    // Each key matches its certificate.
    for (cert, key) in [
        ("server.pem", "server-key.pem"),
        ("client.pem", "client-key.pem"),
    ] {
        let (_, from_cert) = openssl(dir, &["x509", "-in", cert, "-noout", "-pubkey"]);
        let (_, from_key) = openssl(dir, &["pkey", "-in", key, "-pubout"]);
        assert!(from_cert.contains("BEGIN PUBLIC KEY"), "{from_cert}");
        assert_eq!(from_cert, from_key, "{cert} and {key} do not match");
    }
}
