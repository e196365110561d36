//! MQTT packets as hand-written bytes, straight from the OASIS 3.1.1 and 5.0 specifications.
//!
//! Deliberately independent of `fleetmq-codec`: a codec bug must not be able to hide itself by
//! agreeing with its own encoder. Builders take only what the tests vary.

/// Packet type nibbles (upper four bits of the first byte).
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
}

/// Protocol level in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5): property blocks in CONNECT, PUBLISH, SUBSCRIBE.
    V5,
}

/// Appends an MQTT variable byte integer.
pub fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

/// Appends a two-byte length and the bytes (a UTF-8 string or binary data).
pub fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data[..usize::from(len)]);
}

/// A whole packet: first byte, remaining length, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// CONNECT with clean start, no will, no credentials and no properties (v5: empty property set).
pub fn connect(version: Version, client_id: &str, keep_alive: u16) -> Vec<u8> {
    connect_session(version, client_id, keep_alive, true, None)
}

/// CONNECT choosing clean start and (v5) the Session Expiry Interval property, in seconds.
pub fn connect_session(
    version: Version,
    client_id: &str,
    keep_alive: u16,
    clean_start: bool,
    session_expiry: Option<u32>,
) -> Vec<u8> {
    let mut body = Vec::new();
    put_bytes(&mut body, b"MQTT");
    body.push(if version == Version::V5 { 5 } else { 4 });
    body.push(if clean_start { 0x02 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if version == Version::V5 {
        match session_expiry {
            Some(secs) => {
                body.push(5);
                body.push(0x11);
                body.extend_from_slice(&secs.to_be_bytes());
            }
            None => body.push(0),
        }
    }
    put_bytes(&mut body, client_id.as_bytes());
    frame(kind::CONNECT << 4, &body)
}

/// SUBSCRIBE to one filter at `qos`.
pub fn subscribe(version: Version, pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.push(0);
    }
    put_bytes(&mut body, filter.as_bytes());
    body.push(qos);
    frame((kind::SUBSCRIBE << 4) | 0x02, &body)
}

/// PUBLISH with raw topic bytes (so tests can send invalid UTF-8 or wildcards).
pub fn publish(version: Version, topic: &[u8], qos: u8, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 8);
    put_bytes(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if version == Version::V5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame((kind::PUBLISH << 4) | (qos << 1), &body)
}

/// PUBACK for `pkid` (v5 short form: success, no properties).
pub fn puback(pkid: u16) -> Vec<u8> {
    frame(kind::PUBACK << 4, &pkid.to_be_bytes())
}

/// PINGREQ.
pub fn pingreq() -> Vec<u8> {
    vec![kind::PINGREQ << 4, 0]
}

/// A normal DISCONNECT (v5: reason 0x00 in the short form).
pub fn disconnect() -> Vec<u8> {
    vec![kind::DISCONNECT << 4, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries() {
        for (n, bytes) in [
            (0usize, vec![0u8]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (268_435_455, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            assert_eq!(out, bytes, "{n}");
        }
    }

    #[test]
    fn connect_v5_matches_the_spec_example_layout() {
        let p = connect(Version::V5, "ab", 60);
        assert_eq!(
            p,
            [
                0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 2, b'a', b'b'
            ]
        );
        let p = connect(Version::V311, "", 10);
        assert_eq!(
            p,
            [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 0]
        );
    }

    #[test]
    fn publish_qos1_layout() {
        let p = publish(Version::V5, b"a/b", 1, 7, b"hi");
        assert_eq!(p, [0x32, 10, 0, 3, b'a', b'/', b'b', 0, 7, 0, b'h', b'i']);
    }
}
