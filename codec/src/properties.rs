//! The MQTT 5 property set. One struct holds every property; which ones a packet may carry is
//! checked by the decoder (a property not allowed in a packet is a protocol error).

use bytes::Bytes;
use bytestring::ByteString;

/// Every MQTT 5 property a packet can carry; `None` / empty means absent. 3.1.1 packets always
/// have the default (empty) set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    /// 0x01, PUBLISH / will.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 seconds, PUBLISH / will.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH / will.
    pub content_type: Option<ByteString>,
    /// 0x08, PUBLISH / will.
    pub response_topic: Option<ByteString>,
    /// 0x09, PUBLISH / will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B: one in SUBSCRIBE, any number in PUBLISH (server to client).
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 seconds, CONNECT / CONNACK / DISCONNECT.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x13 seconds, CONNACK.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT / CONNACK / AUTH.
    pub authentication_method: Option<ByteString>,
    /// 0x16, CONNECT / CONNACK / AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT.
    pub request_problem_information: Option<u8>,
    /// 0x18 seconds, will.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT.
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<ByteString>,
    /// 0x1C, CONNACK / DISCONNECT.
    pub server_reference: Option<ByteString>,
    /// 0x1F, every ack, DISCONNECT, AUTH.
    pub reason_string: Option<ByteString>,
    /// 0x21, CONNECT / CONNACK.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT / CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK.
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK.
    pub retain_available: Option<u8>,
    /// 0x26, every packet that has properties; order is kept.
    pub user_properties: Vec<(ByteString, ByteString)>,
    /// 0x27, CONNECT / CONNACK.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK.
    pub shared_subscription_available: Option<u8>,
}
