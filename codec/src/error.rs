//! Codec errors. Each decode error names the v5 reason code the broker sends in its DISCONNECT
//! (or CONNACK) before closing the offending connection.

use thiserror::Error;

use crate::reason;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The fixed header announces more bytes than the receiver accepts; detected before the body
    /// is buffered.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("unsupported protocol name or level {0}")]
    UnsupportedProtocol(u8),
}

impl DecodeError {
    /// The MQTT 5 reason code that reports this error to the peer.
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
            DecodeError::Protocol(_) => reason::PROTOCOL_ERROR,
            DecodeError::UnsupportedProtocol(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A string, binary field or the whole packet does not fit MQTT's length fields.
    #[error("field too long to encode: {0}")]
    TooLong(&'static str),
    /// The packet does not exist in the protocol version (AUTH in 3.1.1).
    #[error("packet not available in this protocol version: {0}")]
    NotInProtocol(&'static str),
}
