//! CONNECT to CONNACK: checking the CONNECT that `connection/mod.rs` read within the connect
//! timeout, settling the client identifier, keep-alive and session expiry, and attaching to the
//! router.

use std::sync::Arc;

use fleetmq_codec::{ConnAck, Connect, Packet, Properties, Protocol, reason};
use tokio::sync::oneshot;

use crate::auth::Identity;
use crate::context::Context;
use crate::link::{ConnLink, ConnectRequest, RouterMsg, SessionId, Will};
use crate::topic;

/// What the rest of the connection needs to know after a successful CONNECT.
pub struct Accepted {
    pub session: SessionId,
    pub link: ConnLink,
    pub connack: ConnAck,
    /// Seconds; 0 = no keep-alive.
    pub keep_alive: u16,
    pub client_id: Arc<str>,
    /// Client's Topic Alias Maximum (aliases we may use towards it).
    pub client_alias_max: u16,
    pub client_max_packet: usize,
    /// v5 Request Problem Information: 0 asks for no reason strings or user properties on
    /// acknowledgements.
    pub problem_information: bool,
    /// v5: the session expiry the CONNECT asked for (0 can't be raised at DISCONNECT).
    pub expiry_interval: u32,
    pub identity: Arc<Identity>,
}

/// Why a CONNECT was refused: the CONNACK reason and a reason string.
pub struct Refusal {
    pub protocol: Protocol,
    pub code: u8,
    pub message: String,
}

impl Refusal {
    pub fn connack(&self) -> Packet {
        let mut properties = Properties::default();
        if self.protocol == Protocol::V5 {
            properties.reason_string = Some(self.message.as_str().into());
        }
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: self.code,
            properties,
        })
    }
}

fn refuse(protocol: Protocol, code: u8, message: impl Into<String>) -> Refusal {
    Refusal {
        protocol,
        code,
        message: message.into(),
    }
}

/// Checks credentials; password hashing is slow, so it runs off the async workers.
async fn authenticate(
    ctx: &Context,
    c: &Connect,
    client_id: &str,
    cert_cn: Option<&str>,
) -> Result<Identity, Refusal> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let auth = ctx.auth.clone();
    let client_id = client_id.to_owned();
    let user = c.username.as_ref().map(|u| u.to_string());
    let password = c.password.clone();
    let cn = cert_cn.map(str::to_owned);
    let check = move || {
        auth.authenticate(
            &client_id,
            user.as_deref(),
            password.as_deref(),
            cn.as_deref(),
            now,
        )
    };
    let result = if ctx.auth.is_configured() && c.password.is_some() {
        tokio::task::spawn_blocking(check).await.map_err(|_| {
            refuse(
                c.protocol,
                reason::SERVER_UNAVAILABLE,
                "authentication failed to run",
            )
        })?
    } else {
        check()
    };
    result.map_err(|e| refuse(c.protocol, e.reason_code(), e.to_string()))
}

/// Checks a CONNECT and attaches the session to the router.
pub async fn accept(ctx: &Context, c: Connect, cert_cn: Option<&str>) -> Result<Accepted, Refusal> {
    let protocol = c.protocol;
    let v5 = protocol == Protocol::V5;
    let mut assigned = None;
    let client_id: Arc<str> = if c.client_id.is_empty() {
        if !v5 && !c.clean_start {
            return Err(refuse(
                protocol,
                reason::CLIENT_IDENTIFIER_NOT_VALID,
                "an empty client id needs clean session",
            ));
        }
        let id: Arc<str> = format!("fleetmq-{:016x}", rand_id(ctx)).into();
        assigned = Some(id.clone());
        id
    } else {
        Arc::from(&*c.client_id)
    };
    if c.properties.authentication_method.is_some() {
        return Err(refuse(
            protocol,
            reason::BAD_AUTHENTICATION_METHOD,
            "enhanced authentication is not supported",
        ));
    }
    let mut identity = authenticate(ctx, &c, &client_id, cert_cn).await?;
    // One copy of the client id per client: the session's.
    identity.client_id = client_id.clone();
    let identity = Arc::new(identity);
    if c.will
        .as_ref()
        .is_some_and(|w| !ctx.acl.can_publish(&identity, &w.topic))
    {
        return Err(refuse(
            protocol,
            reason::NOT_AUTHORIZED,
            "not authorized to publish to the will topic",
        ));
    }
    let will = match c.will {
        Some(w) => {
            if topic::validate_name(&w.topic).is_err() {
                return Err(refuse(
                    protocol,
                    reason::TOPIC_NAME_INVALID,
                    "will topic is not a valid topic name",
                ));
            }
            Some(Will {
                delay: w.properties.will_delay_interval.unwrap_or(0),
                expiry: w.properties.message_expiry_interval,
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                properties: Properties {
                    will_delay_interval: None,
                    message_expiry_interval: None,
                    ..w.properties
                },
            })
        }
        None => None,
    };
    let expiry_interval = if v5 {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        // 3.1.1 has no expiry of its own: `--session-expiry-311`, as Mosquitto's
        // `persistent_client_expiration`.
        ctx.limits.session_expiry_311
    };
    let max = ctx.limits.max_keepalive;
    let (keep_alive, server_keep_alive) =
        if c.keep_alive > max || (c.keep_alive == 0 && max < u16::MAX) {
            (max, v5.then_some(max))
        } else {
            (c.keep_alive, None)
        };
    let client_max_packet = c
        .properties
        .maximum_packet_size
        .map_or(usize::MAX, |m| m as usize);
    let client_alias_max = if v5 {
        c.properties.topic_alias_maximum.unwrap_or(0)
    } else {
        0
    };
    let link = ConnLink::new(ctx.next_conn_id());
    let (reply_tx, reply_rx) = oneshot::channel();
    let req = ConnectRequest {
        client_id: client_id.clone(),
        clean_start: c.clean_start,
        expiry_interval,
        will,
        link: link.clone(),
        receive_maximum: c.properties.receive_maximum.unwrap_or(u16::MAX),
        max_packet_size: client_max_packet,
        aliases: client_alias_max > 0,
        reader: ctx.acl.reader(&identity),
        reply: reply_tx,
    };
    let unavailable = || {
        refuse(
            protocol,
            reason::SERVER_UNAVAILABLE,
            "broker is shutting down",
        )
    };
    ctx.router
        .send(RouterMsg::Connect(Box::new(req)))
        .await
        .map_err(|_| unavailable())?;
    let reply = reply_rx.await.map_err(|_| unavailable())?;
    if reply.unavailable {
        return Err(refuse(
            protocol,
            reason::SERVER_UNAVAILABLE,
            "the cluster's session store (Redis) is unavailable",
        ));
    }
    if reply.quota_exceeded {
        return Err(refuse(
            protocol,
            reason::QUOTA_EXCEEDED,
            "too many sessions (--max-sessions)",
        ));
    }
    let mut properties = Properties::default();
    if v5 {
        properties.receive_maximum = Some(ctx.limits.receive_maximum);
        properties.maximum_packet_size = u32::try_from(ctx.limits.max_packet_size).ok();
        properties.topic_alias_maximum = Some(ctx.limits.topic_alias_maximum);
        properties.retain_available = Some(1);
        properties.wildcard_subscription_available = Some(1);
        properties.subscription_identifier_available = Some(1);
        properties.shared_subscription_available = Some(1);
        properties.server_keep_alive = server_keep_alive;
        properties.assigned_client_identifier = assigned.map(|a| (*a).into());
    }
    let connack = ConnAck {
        session_present: reply.session_present,
        code: reason::SUCCESS,
        properties,
    };
    Ok(Accepted {
        session: reply.session,
        link,
        connack,
        keep_alive,
        client_id,
        client_alias_max,
        client_max_packet,
        problem_information: c.properties.request_problem_information != Some(0),
        expiry_interval,
        identity,
    })
}

/// A process-unique, hard-to-guess suffix for assigned client identifiers.
fn rand_id(ctx: &Context) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(ctx.next_conn_id().0);
    h.finish()
}
