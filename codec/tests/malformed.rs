//! Malformed and hostile inputs: each is rejected with the right error class, never a panic,
//! and oversized packets are refused from their fixed header alone.

use fleetmq_codec::{BytesMut, DecodeError, Packet, Protocol, decode};

const MAX: usize = 1 << 20;

fn decode_err(bytes: &[u8], protocol: Protocol) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, protocol, MAX) {
        Err(e) => e,
        Ok(p) => panic!("{bytes:02X?} decoded to {p:?}"),
    }
}

fn assert_malformed(bytes: &[u8], protocol: Protocol) {
    let err = decode_err(bytes, protocol);
    assert!(
        matches!(err, DecodeError::Malformed(_)),
        "{bytes:02X?}: {err:?}"
    );
    assert_eq!(err.reason_code(), 0x81);
}

fn assert_protocol_error(bytes: &[u8], protocol: Protocol) {
    let err = decode_err(bytes, protocol);
    assert!(
        matches!(err, DecodeError::Protocol(_)),
        "{bytes:02X?}: {err:?}"
    );
    assert_eq!(err.reason_code(), 0x82);
}

const BOTH: [Protocol; 2] = [Protocol::V311, Protocol::V5];

#[test]
fn bad_utf8_topic() {
    for p in BOTH {
        assert_malformed(&[0x30, 0x05, 0x00, 0x02, 0xC3, 0x28, b'x'], p);
        // An overlong encoding of '/' and a lone surrogate are not UTF-8 either.
        assert_malformed(&[0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF], p);
        assert_malformed(&[0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80], p);
    }
}

#[test]
fn nul_character_in_strings() {
    for p in BOTH {
        assert_malformed(&[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'], p);
    }
    // In a CONNECT client identifier.
    let connect = [
        0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x03, b'a',
        0x00, b'b',
    ];
    assert_malformed(&connect, Protocol::V311);
    // In a v5 user property.
    let puback = [
        0x40, 0x0B, 0x00, 0x01, 0x00, 0x07, 0x26, 0x00, 0x01, 0x00, 0x00, 0x01, b'v',
    ];
    assert_malformed(&puback, Protocol::V5);
}

#[test]
fn five_byte_remaining_length() {
    for p in BOTH {
        assert_malformed(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], p);
        // Known bad as soon as the fourth byte still has its continuation bit.
        assert_malformed(&[0x30, 0x80, 0x80, 0x80, 0x80], p);
    }
}

#[test]
fn oversized_packet_is_rejected_from_the_fixed_header() {
    // Remaining length 2,097,151 with nothing of the body present.
    let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0x7F][..]);
    let err = decode(&mut buf, Protocol::V5, MAX).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 2_097_155,
            max: MAX
        }
    );
    assert_eq!(err.reason_code(), 0x95);

    // The limit counts the whole packet: a 10-byte packet passes a limit of 10, not of 9.
    let publish = [0x30u8, 0x08, 0x00, 0x01, b't', 1, 2, 3, 4, 5];
    assert!(
        decode(&mut BytesMut::from(&publish[..]), Protocol::V311, 10)
            .unwrap()
            .is_some()
    );
    let err = decode(&mut BytesMut::from(&publish[..2]), Protocol::V311, 9).unwrap_err();
    assert_eq!(err, DecodeError::PacketTooLarge { size: 10, max: 9 });
}

#[test]
fn wrong_reserved_flags() {
    for p in BOTH {
        assert_malformed(&[0x60, 0x02, 0x00, 0x01], p); // PUBREL must be 0x62
        assert_malformed(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], p); // SUBSCRIBE 0x82
        assert_malformed(&[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], p); // UNSUBSCRIBE 0xA2
        assert_malformed(&[0x41, 0x02, 0x00, 0x01], p); // PUBACK 0x40
        assert_malformed(&[0xC1, 0x00], p); // PINGREQ 0xC0
        assert_malformed(&[0xE2, 0x00], p); // DISCONNECT 0xE0
        assert_malformed(&[0x00, 0x00], p); // packet type 0
    }
}

#[test]
fn qos_3_and_dup_on_qos_0() {
    for p in BOTH {
        assert_malformed(&[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01], p);
        assert_malformed(&[0x38, 0x03, 0x00, 0x01, b't'], p);
    }
    // QoS 3 in a subscription and in a will.
    assert_malformed(
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03],
        Protocol::V311,
    );
    let will_qos3 = [
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x1E, 0x00, 0x3C, 0x00, 0x00,
    ];
    assert_malformed(&will_qos3, Protocol::V311);
}

#[test]
fn truncated_properties() {
    // PUBACK, property block of 2 bytes holding a reason string that claims 5.
    assert_malformed(
        &[0x40, 0x07, 0x00, 0x01, 0x10, 0x03, 0x1F, 0x00, 0x05],
        Protocol::V5,
    );
    // A four-byte property cut after two.
    assert_malformed(
        &[0x30, 0x07, 0x00, 0x01, b't', 0x03, 0x02, 0x00, 0x00],
        Protocol::V5,
    );
}

#[test]
fn property_length_beyond_body() {
    assert_malformed(&[0x40, 0x05, 0x00, 0x01, 0x10, 0x09, 0x1F], Protocol::V5);
    assert_malformed(&[0xE0, 0x03, 0x00, 0x7F, 0x11], Protocol::V5);
}

#[test]
fn unknown_duplicated_and_misplaced_properties() {
    // 0x07 is not a property identifier.
    assert_malformed(
        &[0x40, 0x06, 0x00, 0x01, 0x10, 0x02, 0x07, 0x00],
        Protocol::V5,
    );
    // Payload format indicator twice.
    assert_protocol_error(
        &[0x30, 0x08, 0x00, 0x01, b't', 0x04, 0x01, 0x00, 0x01, 0x01],
        Protocol::V5,
    );
    // Topic alias (PUBLISH only) on a PUBACK.
    assert_protocol_error(
        &[0x40, 0x07, 0x00, 0x01, 0x10, 0x03, 0x23, 0x00, 0x01],
        Protocol::V5,
    );
    // Two subscription identifiers on a SUBSCRIBE.
    assert_protocol_error(
        &[
            0x82, 0x0A, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00,
        ],
        Protocol::V5,
    );
    // Topic alias 0 and payload format indicator 2.
    assert_protocol_error(
        &[0x30, 0x07, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x00],
        Protocol::V5,
    );
    assert_protocol_error(
        &[0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x01, 0x02],
        Protocol::V5,
    );
    // User properties may repeat.
    let two_users = [
        0x40, 0x12, 0x00, 0x01, 0x00, 0x0E, 0x26, 0, 1, b'a', 0, 1, b'b', 0x26, 0, 1, b'a', 0, 1,
        b'c',
    ];
    let Ok(Some(Packet::PubAck(ack))) =
        decode(&mut BytesMut::from(&two_users[..]), Protocol::V5, MAX)
    else {
        panic!("two user properties must decode");
    };
    assert_eq!(ack.properties.user_properties.len(), 2);
}

#[test]
fn subscribe_and_unsubscribe_need_filters() {
    assert_protocol_error(&[0x82, 0x02, 0x00, 0x01], Protocol::V311);
    assert_protocol_error(&[0x82, 0x03, 0x00, 0x01, 0x00], Protocol::V5);
    assert_protocol_error(&[0xA2, 0x02, 0x00, 0x01], Protocol::V311);
    assert_protocol_error(&[0xA2, 0x03, 0x00, 0x01, 0x00], Protocol::V5);
}

#[test]
fn other_malformed_packets() {
    assert_malformed(&[0xF0, 0x00], Protocol::V311); // AUTH does not exist in 3.1.1
    assert_malformed(&[0xC0, 0x01, 0x00], Protocol::V5); // PINGREQ with a body
    assert_malformed(&[0xE0, 0x01, 0x00], Protocol::V311); // 3.1.1 DISCONNECT has no body
    assert_malformed(&[0x40, 0x03, 0x00, 0x01, 0x00], Protocol::V311); // 3.1.1 PUBACK is 2 bytes
    assert_malformed(&[0x40, 0x01, 0x00], Protocol::V5); // packet identifier cut short
    assert_protocol_error(&[0x40, 0x02, 0x00, 0x00], Protocol::V5); // packet identifier 0
    // CONNECT reserved flag.
    let connect = [
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x03, 0x00, 0x3C, 0x00, 0x01, b'a',
    ];
    assert_malformed(&connect, Protocol::V311);
    // 3.1.1 CONNECT with a password but no user name.
    let connect = [
        0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x42, 0x00, 0x3C, 0x00, 0x01, b'a',
        0x00, 0x01, b'p',
    ];
    assert_malformed(&connect, Protocol::V311);
    // v5 subscription options with a reserved bit and retain handling 3.
    assert_malformed(
        &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40],
        Protocol::V5,
    );
    assert_protocol_error(
        &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30],
        Protocol::V5,
    );
}

#[test]
fn incomplete_input_consumes_nothing_and_packets_split_correctly() {
    let two = [0x30u8, 0x04, 0x00, 0x01, b't', b'x', 0xC0, 0x00];
    let mut buf = BytesMut::from(&two[..5]);
    assert_eq!(decode(&mut buf, Protocol::V311, MAX), Ok(None));
    assert_eq!(&buf[..], &two[..5]);
    buf.extend_from_slice(&two[5..]);
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, Protocol::V311, MAX) else {
        panic!("publish")
    };
    assert_eq!((&p.topic[..], &p.payload[..]), ("t", &b"x"[..]));
    assert_eq!(
        decode(&mut buf, Protocol::V311, MAX),
        Ok(Some(Packet::PingReq))
    );
    assert_eq!(decode(&mut buf, Protocol::V311, MAX), Ok(None));
    // A remaining length still being read is incomplete, not an error.
    assert_eq!(
        decode(&mut BytesMut::from(&[0x30u8, 0x80][..]), Protocol::V5, MAX),
        Ok(None)
    );
}
