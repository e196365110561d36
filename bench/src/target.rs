//! Where the bench may point: `HOST:PORT` resolved to a socket address that must be on loopback,
//! so the bench can never be aimed at someone else's machine.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, Result, bail};

/// Resolves `target` (`HOST:PORT`) and refuses anything that is not a loopback address.
///
/// # Errors
/// Unresolvable text, or an address outside 127.0.0.0/8 and ::1.
pub fn loopback(target: &str) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .with_context(|| format!("resolve {target:?} (expected HOST:PORT)"))?
        .collect();
    match addrs.iter().find(|a| a.ip().is_loopback()) {
        Some(a) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(*a),
        _ => bail!("{target} is not a loopback address: the bench only targets 127.0.0.0/8 or ::1"),
    }
}

/// The loopback host of a `ws://HOST:PORT/path` URL checked like [`loopback`].
///
/// # Errors
/// Not a `ws://` URL, or not on loopback.
pub fn loopback_ws(url: &str) -> Result<SocketAddr> {
    let Some(rest) = url.strip_prefix("ws://") else {
        bail!("{url} is not a ws:// URL");
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    loopback(authority)
}

/// The loopback address of an `http://HOST:PORT` base URL checked like [`loopback`].
///
/// # Errors
/// Not an `http://` URL, or not on loopback.
pub fn loopback_http(url: &str) -> Result<SocketAddr> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url} is not an http:// URL");
    };
    loopback(rest.split('/').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_accepted_others_refused() {
        assert!(loopback("127.0.0.1:1883").is_ok());
        assert!(loopback("127.3.2.1:1883").is_ok());
        assert!(loopback("[::1]:1883").is_ok());
        assert!(loopback("10.0.0.1:1883").is_err());
        assert!(loopback("8.8.8.8:53").is_err());
        assert!(loopback("127.0.0.1").is_err());
        assert!(loopback_ws("ws://127.0.0.1:8080/ws").is_ok());
        assert!(loopback_ws("ws://192.168.1.1:8080/ws").is_err());
        assert!(loopback_ws("http://127.0.0.1:8080/ws").is_err());
        assert!(loopback_http("http://127.0.0.1:8080").is_ok());
        assert!(loopback_http("http://10.1.1.1:8080/").is_err());
        assert!(loopback_http("ws://127.0.0.1:8080").is_err());
    }
}
