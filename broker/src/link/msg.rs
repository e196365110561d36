//! What a connection (or the broker's own publishers) sends the router: one [`RouterMsg`] per
//! packet the router must see, named after that packet, and the requests they carry.

use std::sync::Arc;

use fleetmq_codec::{ByteString, Bytes, Properties, QoS};
use tokio::sync::oneshot;

use super::{ConnId, ConnLink, SessionId};
use crate::auth::ReadRights;
use crate::message::Message;

/// A will message, published when its connection ends abnormally.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    pub delay: u32,
    pub expiry: Option<u32>,
}

/// CONNECT, as the router needs it.
#[derive(Debug)]
pub struct ConnectRequest {
    pub client_id: Arc<str>,
    pub clean_start: bool,
    pub expiry_interval: u32,
    pub will: Option<Will>,
    pub link: ConnLink,
    pub receive_maximum: u16,
    pub max_packet_size: usize,
    /// The client accepts topic aliases from us (v5 Topic Alias Maximum > 0).
    pub aliases: bool,
    /// What the client may read, `None` when it may read every topic.
    pub reader: Option<ReadRights>,
    pub reply: oneshot::Sender<ConnectReply>,
}

#[derive(Debug, Clone, Copy)]
pub struct ConnectReply {
    pub session: SessionId,
    pub session_present: bool,
    /// Refused: a new session past `--max-sessions` (CONNACK 0x97); no session was made.
    pub quota_exceeded: bool,
    /// Refused: the session had to be opened in the cluster's session store (Redis) and it
    /// could not be reached (CONNACK 0x88); no session was made.
    pub unavailable: bool,
}

/// Options of one subscription (MQTT 5 subscription options plus the identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub id: Option<u32>,
}

/// One filter of a SUBSCRIBE. `denied` carries the failure code when the connection already
/// refused it (ACL, invalid filter).
#[derive(Debug, Clone)]
pub struct SubRequest {
    pub filter: ByteString,
    pub opts: SubOptions,
    pub retain_handling: u8,
    pub denied: Option<u8>,
}

/// One message to the router, named after the packet it carries.
#[derive(Debug)]
pub enum RouterMsg {
    /// CONNECT: attach (or create) the client's session.
    Connect(Box<ConnectRequest>),
    /// The connection wrote CONNACK: the router sent nothing before it, now it sends what is
    /// queued.
    ConnAckSent { session: SessionId, conn: ConnId },
    /// PUBLISH (from a client, a will, or the broker's own processed state). `qos2_pkid`: a
    /// client's QoS 2 publish, which the router delivers once per packet id until PUBREL.
    Publish {
        message: Arc<Message>,
        qos2_pkid: Option<(SessionId, u16)>,
    },
    /// Other nodes' processed outputs that came in one bus frame (`cluster::outputs`), each
    /// routed as a `Publish` without a packet id: one queue slot and one send per frame
    /// instead of per output.
    PublishMany(Vec<Arc<Message>>),
    /// A QoS 1/2 PUBLISH while the cluster knows durable sessions (`router::durable`): the
    /// reply says, once its copies for durable subscribers are stored, whether they all
    /// were; the publisher is acknowledged only then.
    PublishPersisted {
        message: Arc<Message>,
        qos2_pkid: Option<(SessionId, u16)>,
        reply: oneshot::Sender<bool>,
    },
    /// A client's retained publish near the retained limits: routed only when the store admits
    /// it; the reply says whether it did (else the client gets PUBACK 0x97).
    PublishRetained {
        message: Arc<Message>,
        qos2_pkid: Option<(SessionId, u16)>,
        reply: oneshot::Sender<bool>,
    },
    /// SUBSCRIBE; replies with one SUBACK code per filter and whether each subscription is new.
    Subscribe {
        session: SessionId,
        requests: Vec<SubRequest>,
        reply: oneshot::Sender<(Vec<u8>, Vec<bool>)>,
    },
    /// The connection wrote SUBACK: deliver the retained messages the new subscriptions asked
    /// for (they follow the SUBACK on the wire).
    SubAckSent {
        session: SessionId,
        requests: Vec<SubRequest>,
        new: Vec<bool>,
    },
    /// UNSUBSCRIBE; replies with one UNSUBACK code per filter.
    Unsubscribe {
        session: SessionId,
        filters: Vec<ByteString>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// PUBACK or PUBCOMP from the client: the delivery `pkid` (QoS 1 or 2) is done. The
    /// connection also ends a delivery this way that ends without either: a PUBREC with an
    /// error code, or a message too large for the client.
    PubAckOrComp { session: SessionId, pkid: u16 },
    /// PUBREC from the client: PUBREL follows.
    PubRec { session: SessionId, pkid: u16 },
    /// PUBREL from the client for one of its QoS 2 publishes. With `known`, the router says
    /// whether the session was holding that packet id (a PUBREL the connection did not expect,
    /// e.g. after a reconnect): the connection answers PUBCOMP 0x92 when it was not.
    PubRel {
        session: SessionId,
        pkid: u16,
        known: Option<oneshot::Sender<bool>>,
    },
    /// DISCONNECT from the client, or the connection ended without one (`publish_will`).
    Disconnect {
        session: SessionId,
        conn: ConnId,
        publish_will: bool,
        expiry_interval: Option<u32>,
    },
}
