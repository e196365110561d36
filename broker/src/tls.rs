//! TLS for the `--mqtts` (and `--https`) listeners: a rustls [`ServerConfig`] built from PEM
//! files, and the CN of a verified client certificate, which becomes the client's identity.
//!
//! TLS 1.2 and 1.3 only, on the `ring` provider (no aws-lc: faster builds). With
//! `--tls-client-ca` a client certificate is verified against that CA when one is presented: an
//! untrusted one fails the handshake, and a client without one falls back to password, token
//! or anonymous authentication (so one listener serves devices and people). Without it no
//! client certificate is asked for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Time a new TLS connection has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS configuration could not be built; each names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `--mqtts`/`--https` without `--tls-cert` and `--tls-key`.
    #[error(
        "--mqtts and --https need --tls-cert FILE and --tls-key FILE (try `fleetmq certs --out DIR`)"
    )]
    Missing,
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    /// rustls refused the certificate, key or CA.
    #[error("{path}: {message}")]
    Rustls { path: PathBuf, message: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE in this PEM file".into()));
    }
    Ok(certs)
}

/// The server configuration for `cert` (a PEM chain, leaf first) and `key` (PKCS#8, PKCS#1 or
/// SEC1 PEM), verifying client certificates against `client_ca` when given.
///
/// # Errors
/// A file is unreadable, holds no certificate or key, or rustls rejects it (e.g. the key does
/// not match the certificate).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build(cert, key, client_ca).map(Arc::new)
}

fn build(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    let chain = certificates(cert)?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls {
            path: cert.to_owned(),
            message: e.to_string(),
        })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let rustls_error = |message: String| TlsError::Rustls {
                path: ca.to_owned(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| rustls_error(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| rustls_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Rustls {
            path: key.to_owned(),
            message: e.to_string(),
        })
}

/// Builds the acceptor from the configured files.
///
/// # Errors
/// As [`server_config`]; [`TlsError::Missing`] without a certificate or key.
pub fn acceptor(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err(TlsError::Missing);
    };
    Ok(TlsAcceptor::from(server_config(cert, key, client_ca)?))
}

/// The acceptor for `--https`: the same certificate, no client certificates (a browser would
/// prompt for one), and HTTP/1.1 by ALPN (WebSocket upgrades need it).
///
/// # Errors
/// As [`acceptor`].
pub fn https_acceptor(cert: Option<&Path>, key: Option<&Path>) -> Result<TlsAcceptor, TlsError> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err(TlsError::Missing);
    };
    let mut config = build(cert, key, None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The common name of the certificate a client presented (rustls has verified its chain by the
/// time the handshake completes). `None` without a certificate, or when the leaf has no
/// readable CN.
pub fn peer_cn<S>(stream: &TlsStream<S>) -> Option<Arc<str>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let leaf = stream.get_ref().1.peer_certificates()?.first()?;
    common_name(leaf)
}

/// The first CN of a DER certificate's subject.
pub fn common_name(der: &[u8]) -> Option<Arc<str>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty()).then(|| Arc::from(cn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_generated_certs_and_reads_the_client_cn() {
        let bundle = fleetmq_certs::build("bus-7").expect("generating certificates");
        let dir = std::env::temp_dir().join(format!("fleetmq-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let paths = fleetmq_certs::Paths::in_dir(&dir);
        for (path, pem) in [
            (&paths.ca, &bundle.ca_pem),
            (&paths.server, &bundle.server_pem),
            (&paths.server_key, &bundle.server_key_pem),
            (&paths.client, &bundle.client_pem),
        ] {
            std::fs::write(path, pem).expect("writing PEM");
        }
        let config = server_config(&paths.server, &paths.server_key, Some(&paths.ca));
        assert!(config.is_ok(), "{:?}", config.err());
        let client = certificates(&paths.client).expect("client cert");
        assert_eq!(common_name(&client[0]).as_deref(), Some("bus-7"));
        // A key that does not belong to the certificate is refused.
        std::fs::write(&paths.server_key, &bundle.client_key_pem).expect("writing PEM");
        assert!(server_config(&paths.server, &paths.server_key, None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_files_name_the_path() {
        let err = server_config(Path::new("/nonexistent/cert.pem"), Path::new("/x"), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(common_name(b"not a certificate").is_none());
    }
}
