//! Control packets. One type serves both protocol versions: fields that exist only in MQTT 5
//! (properties, reason codes on acks) are ignored when encoding 3.1.1 and defaulted when decoding it.

use bytes::Bytes;
use bytestring::ByteString;

use crate::properties::Properties;

/// Protocol level negotiated by CONNECT. Every packet after CONNECT is read and written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4). Level 3 ("MQIsdp", 3.1) is accepted and treated as 3.1.1.
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// Quality of service of a PUBLISH or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// QoS 0: fire and forget.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK, may be duplicated.
    AtLeastOnce = 1,
    /// QoS 2: PUBREC / PUBREL / PUBCOMP handshake, delivered once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS with wire value `v`; `None` for 3 and above (a malformed packet).
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// One MQTT control packet, as read by [`crate::decode`] and written by [`crate::encode`].
// CONNECT is the largest variant because it holds two property sets; it is read once per
// connection, so boxing it would buy little and change the type the broker matches on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Client to server, first packet of a connection.
    Connect(Connect),
    /// Server to client, answer to CONNECT.
    ConnAck(ConnAck),
    /// An application message, either direction.
    Publish(Publish),
    /// QoS 1 acknowledgement.
    PubAck(PubResp),
    /// QoS 2, step 1: publish received.
    PubRec(PubResp),
    /// QoS 2, step 2: publish release.
    PubRel(PubResp),
    /// QoS 2, step 3: publish complete.
    PubComp(PubResp),
    /// Client to server: add subscriptions.
    Subscribe(Subscribe),
    /// Server to client, answer to SUBSCRIBE.
    SubAck(SubAck),
    /// Client to server: remove subscriptions.
    Unsubscribe(Unsubscribe),
    /// Server to client, answer to UNSUBSCRIBE.
    UnsubAck(UnsubAck),
    /// Keep-alive ping from the client.
    PingReq,
    /// Answer to PINGREQ.
    PingResp,
    /// Either direction in v5 (with a reason code); client to server only in 3.1.1.
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's control packet name in upper case, e.g. `"PUBLISH"`; for logs and metrics.
    pub fn packet_type_name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT: who the client is, how long it may stay silent, its will and credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    /// Read from the packet's protocol name and level; the level written when encoding.
    pub protocol: Protocol,
    /// "Clean Session" in 3.1.1.
    pub clean_start: bool,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// May be empty: the server then assigns one (v5) or, for 3.1.1, only with clean session.
    pub client_id: ByteString,
    /// Message to publish if the connection ends without DISCONNECT.
    pub will: Option<Will>,
    /// User name, if the client sent one.
    pub username: Option<ByteString>,
    /// Password (binary data; a JWT in fleetmq), if the client sent one.
    pub password: Option<Bytes>,
    /// Session expiry, receive maximum, maximum packet size, topic alias maximum, auth, ... (v5).
    pub properties: Properties,
}

/// The message the server publishes for a client that goes away without DISCONNECT.
#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    /// Topic the will is published to.
    pub topic: ByteString,
    /// Will payload, a slice of the CONNECT packet.
    pub payload: Bytes,
    /// QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is published retained.
    pub retain: bool,
    /// Will properties: will delay interval, payload format, message expiry, content type,
    /// response topic, correlation data, user properties.
    pub properties: Properties,
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnAck {
    /// The server resumed a stored session.
    pub session_present: bool,
    /// A v5 reason code (see [`crate::reason`]); encoded as the nearest 3.1.1 return code for 3.1.1.
    pub code: u8,
    /// Server limits and assignments (v5): receive maximum, server keep alive, ...
    pub properties: Properties,
}

/// PUBLISH: an application message; topic and payload share the read buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// A redelivery of an earlier attempt (QoS 1 and 2 only).
    pub dup: bool,
    /// Delivery guarantee of this message.
    pub qos: QoS,
    /// Store as the topic's retained message (client to server) or "was retained" (to client).
    pub retain: bool,
    /// May be empty in v5 when a topic alias property stands in for it.
    pub topic: ByteString,
    /// Packet identifier; 0 and ignored for QoS 0.
    pub pkid: u16,
    /// Message expiry, topic alias, content type, response topic, ... (v5).
    pub properties: Properties,
    /// Application payload, a slice of the read buffer.
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PubResp {
    /// Packet identifier of the PUBLISH (or PUBREL) being answered.
    pub pkid: u16,
    /// v5 reason code; 0 (success) is always the value after decoding 3.1.1.
    pub reason: u8,
    /// Reason string and user properties (v5).
    pub properties: Properties,
}

impl PubResp {
    /// A success response (reason 0, no properties) for packet identifier `pkid`.
    pub fn new(pkid: u16) -> PubResp {
        PubResp {
            pkid,
            reason: 0,
            properties: Properties::default(),
        }
    }
}

/// SUBSCRIBE: one or more topic filters with their options.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// Packet identifier, echoed by SUBACK.
    pub pkid: u16,
    /// At least one filter.
    pub filters: Vec<SubscribeFilter>,
    /// Subscription identifier and user properties.
    pub properties: Properties,
}

/// One topic filter of a SUBSCRIBE and its subscription options.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeFilter {
    /// Topic filter, possibly with wildcards or a `$share/GROUP/` prefix.
    pub filter: ByteString,
    /// Maximum QoS the client accepts on this subscription.
    pub qos: QoS,
    /// v5: do not send the client its own publications.
    /// v5 subscription options; false / 0 when decoding 3.1.1.
    pub no_local: bool,
    /// v5: keep the RETAIN flag as published instead of clearing it.
    pub retain_as_published: bool,
    /// 0: send retained on subscribe, 1: only if the subscription is new, 2: never.
    pub retain_handling: u8,
}

/// SUBACK: one result per filter of the SUBSCRIBE.
#[derive(Debug, Clone, PartialEq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub pkid: u16,
    /// One per filter: granted QoS (0..=2) or a v5 failure code (>= 0x80); 3.1.1 encodes every
    /// failure as 0x80.
    pub codes: Vec<u8>,
    /// Reason string and user properties (v5).
    pub properties: Properties,
}

/// UNSUBSCRIBE: one or more topic filters to remove.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    /// Packet identifier, echoed by UNSUBACK.
    pub pkid: u16,
    /// At least one filter.
    pub filters: Vec<ByteString>,
    /// User properties (v5).
    pub properties: Properties,
}

/// UNSUBACK: the answer to UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub pkid: u16,
    /// One per filter in v5; empty (and not encoded) for 3.1.1.
    pub codes: Vec<u8>,
    pub properties: Properties,
}

/// DISCONNECT: orderly end of a connection, with a reason in v5.
#[derive(Debug, Clone, PartialEq)]
pub struct Disconnect {
    /// 0 = normal disconnection; the short forms `E0 00` and `E0 01 rc` decode to this.
    pub reason: u8,
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with `reason` and no properties.
    pub fn new(reason: u8) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }
}

/// AUTH (v5 only): a step of an extended authentication exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason: u8,
    /// Authentication method and data, reason string, user properties.
    pub properties: Properties,
}
