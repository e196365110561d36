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
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
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
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResp),
    PubRec(PubResp),
    PubRel(PubResp),
    PubComp(PubResp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    pub protocol: Protocol,
    /// "Clean Session" in 3.1.1.
    pub clean_start: bool,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// May be empty: the server then assigns one (v5) or, for 3.1.1, only with clean session.
    pub client_id: ByteString,
    pub will: Option<Will>,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties: will delay interval, payload format, message expiry, content type,
    /// response topic, correlation data, user properties.
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConnAck {
    pub session_present: bool,
    /// A v5 reason code (see [`crate::reason`]); encoded as the nearest 3.1.1 return code for 3.1.1.
    pub code: u8,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in v5 when a topic alias property stands in for it.
    pub topic: ByteString,
    /// Packet identifier; 0 and ignored for QoS 0.
    pub pkid: u16,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PubResp {
    pub pkid: u16,
    /// v5 reason code; 0 (success) is always the value after decoding 3.1.1.
    pub reason: u8,
    pub properties: Properties,
}

impl PubResp {
    pub fn new(pkid: u16) -> PubResp {
        PubResp {
            pkid,
            reason: 0,
            properties: Properties::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub pkid: u16,
    pub filters: Vec<SubscribeFilter>,
    /// Subscription identifier and user properties.
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeFilter {
    pub filter: ByteString,
    pub qos: QoS,
    /// v5 subscription options; false / 0 when decoding 3.1.1.
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained on subscribe, 1: only if the subscription is new, 2: never.
    pub retain_handling: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubAck {
    pub pkid: u16,
    /// One per filter: granted QoS (0..=2) or a v5 failure code (>= 0x80); 3.1.1 encodes every
    /// failure as 0x80.
    pub codes: Vec<u8>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    pub pkid: u16,
    pub filters: Vec<ByteString>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnsubAck {
    pub pkid: u16,
    /// One per filter in v5; empty (and not encoded) for 3.1.1.
    pub codes: Vec<u8>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Disconnect {
    /// 0 = normal disconnection; the short forms `E0 00` and `E0 01 rc` decode to this.
    pub reason: u8,
    pub properties: Properties,
}

impl Disconnect {
    pub fn new(reason: u8) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    pub reason: u8,
    pub properties: Properties,
}
