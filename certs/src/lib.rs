//! fleetmq-certs: makes a development CA, a server certificate for localhost/127.0.0.1/::1 and a
//! client certificate, for `fleetmq certs --out DIR`. See `certs/README.md` for real certificates.
//!
//! # Layout
//! - [`build`]: the certificates and keys in memory, as PEM ([`Bundle`]); tests of the TLS
//!   listeners use this without touching the disk.
//! - [`generate`]: the same, written to a directory ([`Paths`]).
//!
//! Keys are ECDSA P-256 (PKCS#8 PEM), which rustls, OpenSSL and Mosquitto's clients all read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use thiserror::Error;
use time::{Duration, OffsetDateTime};

/// Client CN used when the caller gives none: the vehicle id of the sample bus.
pub const DEFAULT_CLIENT_CN: &str = "bus-1";

/// How long the development CA stays valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long the server and client certificates stay valid (the longest that Apple's TLS stack
/// accepts for a leaf, so the same files work from a phone or a Mac).
const LEAF_VALIDITY: Duration = Duration::days(825);
/// Longest common name X.520 allows (`ub-common-name`).
const MAX_CN_LEN: usize = 64;

/// Why the certificates could not be made or written.
#[derive(Debug, Error)]
pub enum CertError {
    /// The client common name is empty, too long or has control characters.
    #[error("invalid client common name {0:?}: use 1 to 64 printable characters, e.g. bus-1")]
    InvalidName(String),
    /// rcgen refused the parameters or could not make a key.
    #[error("cannot create the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file would be overwritten and the caller did not allow it.
    #[error("{} already exists: choose another directory or allow overwriting", .0.display())]
    Exists(PathBuf),
    /// The output directory or a file in it could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The directory or file that could not be written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Whether [`generate`] may replace files that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with [`CertError::Exists`] before writing anything.
    No,
    /// Replace existing files.
    Yes,
}

/// The generated certificates and private keys, PEM encoded.
#[derive(Clone)]
pub struct Bundle {
    /// The development CA's self-signed certificate: clients trust this (`--cafile`).
    pub ca_pem: String,
    /// The CA's private key; keep it to sign more certificates, or delete it.
    pub ca_key_pem: String,
    /// Server certificate for `localhost`, `127.0.0.1` and `::1`, signed by the CA.
    pub server_pem: String,
    /// The server certificate's private key (`--tls-key`).
    pub server_key_pem: String,
    /// Client certificate whose CN is the client name, signed by the CA.
    pub client_pem: String,
    /// The client certificate's private key (`mosquitto_pub --key`).
    pub client_key_pem: String,
}

impl std::fmt::Debug for Bundle {
    /// Shows the certificates only: private keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("ca_pem", &self.ca_pem)
            .field("server_pem", &self.server_pem)
            .field("client_pem", &self.client_pem)
            .finish_non_exhaustive()
    }
}

/// Where [`generate`] wrote each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `ca.pem`: the CA certificate clients trust.
    pub ca: PathBuf,
    /// `ca-key.pem`: the CA's private key.
    pub ca_key: PathBuf,
    /// `server.pem`: for `--tls-cert`.
    pub server: PathBuf,
    /// `server-key.pem`: for `--tls-key`.
    pub server_key: PathBuf,
    /// `client.pem`: a device's certificate.
    pub client: PathBuf,
    /// `client-key.pem`: that device's private key.
    pub client_key: PathBuf,
}

impl Paths {
    /// The file names used inside `dir`: `ca.pem`, `ca-key.pem`, `server.pem`, `server-key.pem`,
    /// `client.pem`, `client-key.pem`.
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            client: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        }
    }

    fn all(&self) -> [&Path; 6] {
        [
            &self.ca,
            &self.ca_key,
            &self.server,
            &self.server_key,
            &self.client,
            &self.client_key,
        ]
    }
}

/// Makes a fresh CA and a server and client certificate signed by it, in memory.
///
/// # Errors
/// [`CertError::InvalidName`] for a bad `client_cn`; [`CertError::Generate`] if rcgen fails.
pub fn build(client_cn: &str) -> Result<Bundle, CertError> {
    check_cn(client_cn)?;
    let now = OffsetDateTime::now_utc();
    // Back-date by a day so a client whose clock is a little behind still accepts the files.
    let not_before = now - Duration::days(1);

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fleetmq development CA");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "fleetmq");
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = now + CA_VALIDITY;
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut server_params = CertificateParams::new(vec!["localhost".to_string()])?;
    server_params.subject_alt_names.extend([
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ]);
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_common(&mut server_params, not_before, now);
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca)?;

    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, client_cn);
    leaf_common(&mut client_params, not_before, now);
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client = client_params.signed_by(&client_key, &ca)?;

    Ok(Bundle {
        ca_pem: ca.pem(),
        ca_key_pem,
        server_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

/// Makes the certificates ([`build`]) and writes them to `out_dir` (created if missing), with the
/// private keys readable by the owner only. Refuses to replace existing files; see
/// [`generate_with`].
///
/// # Errors
/// As [`build`], plus [`CertError::Exists`] and [`CertError::Io`].
pub fn generate(out_dir: &Path, client_cn: &str) -> Result<Paths, CertError> {
    generate_with(out_dir, client_cn, Overwrite::No)
}

/// [`generate`], choosing whether existing files may be replaced.
///
/// # Errors
/// As [`generate`].
pub fn generate_with(
    out_dir: &Path,
    client_cn: &str,
    overwrite: Overwrite,
) -> Result<Paths, CertError> {
    let paths = Paths::in_dir(out_dir);
    if overwrite == Overwrite::No
        && let Some(existing) = paths.all().into_iter().find(|p| p.exists())
    {
        return Err(CertError::Exists(existing.to_path_buf()));
    }
    let bundle = build(client_cn)?;
    fs::create_dir_all(out_dir).map_err(|source| CertError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    write_file(&paths.ca, &bundle.ca_pem, Secret::No)?;
    write_file(&paths.ca_key, &bundle.ca_key_pem, Secret::Yes)?;
    write_file(&paths.server, &bundle.server_pem, Secret::No)?;
    write_file(&paths.server_key, &bundle.server_key_pem, Secret::Yes)?;
    write_file(&paths.client, &bundle.client_pem, Secret::No)?;
    write_file(&paths.client_key, &bundle.client_key_pem, Secret::Yes)?;
    Ok(paths)
}

fn check_cn(cn: &str) -> Result<(), CertError> {
    let ok = !cn.trim().is_empty() && cn.len() <= MAX_CN_LEN && !cn.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(CertError::InvalidName(cn.to_string()))
    }
}

/// Validity and key usage shared by the server and client certificates.
fn leaf_common(params: &mut CertificateParams, not_before: OffsetDateTime, now: OffsetDateTime) {
    params.not_before = not_before;
    params.not_after = now + LEAF_VALIDITY;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    Yes,
    No,
}

fn write_file(path: &Path, contents: &str, secret: Secret) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret == Secret::Yes { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io)?;
    // `mode` applies only to a new file: an overwritten key file gets its mode reset here.
    #[cfg(unix)]
    if secret == Secret::Yes {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests;
