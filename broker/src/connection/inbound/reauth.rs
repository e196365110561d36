//! MQTT v5 re-authentication with a fresh JWT (issue 19): a token's `exp` ends the connection
//! (DISCONNECT 0xA0, see `socket`), unless the client sends, before that, AUTH with reason 0x19
//! (re-authenticate), Authentication Method `jwt` and the new token as Authentication Data.
//!
//! The new token must verify and name the same subject, role, vehicles, routes and trips as the
//! one the connection was opened with (the router compiled the session's read rights from
//! those), so only the deadline moves: AUTH 0x00 back, and the connection lives until the new
//! `exp`. Anything else is DISCONNECT 0x87 (not authorized), or 0x8C for another method.
//!
//! Strictly, MQTT 5 allows AUTH only after a CONNECT that named an Authentication Method;
//! fleetmq takes the JWT as the CONNECT password, so it accepts this AUTH without one.

use std::sync::Arc;

use fleetmq_codec::{Auth, Packet, Properties, reason};

use super::{Flow, Inbound, violation};
use crate::auth::Identity;

/// The Authentication Method fleetmq understands.
pub const METHOD: &str = "jwt";

impl Inbound {
    pub(super) fn reauthenticate(&mut self, auth: Auth) -> Flow {
        if auth.reason != reason::REAUTHENTICATE {
            return violation(reason::PROTOCOL_ERROR, "AUTH must re-authenticate (0x19)");
        }
        if auth.properties.authentication_method.as_deref() != Some(METHOD) {
            return violation(
                reason::BAD_AUTHENTICATION_METHOD,
                "the authentication method must be \"jwt\"",
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = auth
            .properties
            .authentication_data
            .as_deref()
            .and_then(|d| std::str::from_utf8(d).ok());
        let fresh = token.and_then(|t| self.ctx.auth.authenticate_token(t, now).ok());
        let Some(mut fresh) = fresh else {
            return violation(reason::NOT_AUTHORIZED, "the token is invalid or expired");
        };
        fresh.client_id = self.identity.client_id.clone();
        let same = Identity {
            expires_at: self.identity.expires_at,
            ..fresh.clone()
        };
        if same != *self.identity || self.identity.expires_at.is_none() {
            return violation(
                reason::NOT_AUTHORIZED,
                "the token must name the same subject and claims as at CONNECT",
            );
        }
        let expires_at = fresh.expires_at;
        self.identity = Arc::new(fresh);
        self.send(Packet::Auth(Auth {
            reason: reason::SUCCESS,
            properties: Properties {
                authentication_method: Some(METHOD.into()),
                ..Properties::default()
            },
        }));
        Flow::Reauthenticated { expires_at }
    }
}
