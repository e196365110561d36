//! Frames that real clients send and that other Rust MQTT codecs have choked on: the v5 short
//! forms of DISCONNECT and AUTH, and CONNECTs captured from mosquitto_pub.

use fleetmq_codec::{
    Auth, BytesMut, Disconnect, Packet, Properties, Protocol, decode, encode, encoded_len, reason,
};

const MAX: usize = 1 << 20;

/// Decodes exactly one packet from `bytes`, asserting the buffer is used up.
fn decode_one(bytes: &[u8], protocol: Protocol) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, protocol, MAX)
        .expect("decodes")
        .expect("complete");
    assert!(buf.is_empty(), "trailing bytes left: {buf:?}");
    packet
}

fn encode_vec(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).expect("encodes");
    assert_eq!(out.len(), encoded_len(packet, protocol));
    out.to_vec()
}

#[test]
fn v5_disconnect_short_form_e0_00() {
    let p = decode_one(&[0xE0, 0x00], Protocol::V5);
    assert_eq!(p, Packet::Disconnect(Disconnect::new(0)));
    assert_eq!(encode_vec(&p, Protocol::V5), [0xE0, 0x00]);
}

#[test]
fn v5_disconnect_reason_without_property_length() {
    let p = decode_one(&[0xE0, 0x01, 0x8E], Protocol::V5);
    assert_eq!(
        p,
        Packet::Disconnect(Disconnect::new(reason::SESSION_TAKEN_OVER))
    );
    assert_eq!(encode_vec(&p, Protocol::V5), [0xE0, 0x01, 0x8E]);
}

#[test]
fn v5_auth_short_form_f0_00() {
    let p = decode_one(&[0xF0, 0x00], Protocol::V5);
    assert_eq!(
        p,
        Packet::Auth(Auth {
            reason: 0,
            properties: Properties::default()
        })
    );
    assert_eq!(encode_vec(&p, Protocol::V5), [0xF0, 0x00]);
}

#[test]
fn v311_disconnect_e0_00() {
    let p = decode_one(&[0xE0, 0x00], Protocol::V311);
    assert_eq!(p, Packet::Disconnect(Disconnect::new(0)));
    // A v5 reason code cannot be carried by 3.1.1: it is always `E0 00`.
    let with_reason = Packet::Disconnect(Disconnect::new(reason::SERVER_SHUTTING_DOWN));
    assert_eq!(encode_vec(&with_reason, Protocol::V311), [0xE0, 0x00]);
}

#[test]
fn v5_pubresp_short_forms() {
    for first in [0x40, 0x50, 0x62, 0x70] {
        let two = decode_one(&[first, 0x02, 0x12, 0x34], Protocol::V5);
        let three = decode_one(&[first, 0x03, 0x12, 0x34, 0x10], Protocol::V5);
        let (Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a)) = &two
        else {
            panic!("not a publish response: {two:?}");
        };
        assert_eq!((a.pkid, a.reason), (0x1234, 0));
        assert_eq!(encode_vec(&two, Protocol::V5), [first, 0x02, 0x12, 0x34]);
        let (Packet::PubAck(b) | Packet::PubRec(b) | Packet::PubRel(b) | Packet::PubComp(b)) =
            &three
        else {
            panic!("not a publish response: {three:?}");
        };
        assert_eq!((b.pkid, b.reason), (0x1234, 0x10));
        assert_eq!(
            encode_vec(&three, Protocol::V5),
            [first, 0x03, 0x12, 0x34, 0x10]
        );
    }
}

/// `mosquitto_pub -V mqttv5 -i fleet-cap -t a -m b` (mosquitto 2.x), captured with a TCP listener.
const MOSQUITTO_CONNECT_V5: &[u8] = &[
    0x10, 0x19, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x03, 0x21, 0x00, 0x14,
    0x00, 0x09, b'f', b'l', b'e', b'e', b't', b'-', b'c', b'a', b'p',
];

/// `mosquitto_pub -V mqttv311 -i fleet-cap -t a -m b`, captured the same way.
const MOSQUITTO_CONNECT_V311: &[u8] = &[
    0x10, 0x15, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x09, b'f', b'l',
    b'e', b'e', b't', b'-', b'c', b'a', b'p',
];

#[test]
fn mosquitto_connect_v5() {
    // CONNECT decides its own protocol: the connection's is not known yet.
    let Packet::Connect(c) = decode_one(MOSQUITTO_CONNECT_V5, Protocol::V311) else {
        panic!("not a CONNECT");
    };
    assert_eq!(c.protocol, Protocol::V5);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "fleet-cap");
    assert_eq!(c.properties.receive_maximum, Some(20));
    assert!(c.will.is_none() && c.username.is_none() && c.password.is_none());
    assert_eq!(
        encode_vec(&Packet::Connect(c), Protocol::V5),
        MOSQUITTO_CONNECT_V5
    );
}

#[test]
fn mosquitto_connect_v311() {
    let Packet::Connect(c) = decode_one(MOSQUITTO_CONNECT_V311, Protocol::V5) else {
        panic!("not a CONNECT");
    };
    assert_eq!(c.protocol, Protocol::V311);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "fleet-cap");
    assert_eq!(c.properties, Properties::default());
    assert_eq!(
        encode_vec(&Packet::Connect(c), Protocol::V311),
        MOSQUITTO_CONNECT_V311
    );
}

#[test]
fn mqisdp_level_3_is_read_as_v311_and_others_are_unsupported() {
    let mut frame = vec![0x10, 0x0F, 0x00, 0x06];
    frame.extend_from_slice(b"MQIsdp");
    frame.extend_from_slice(&[0x03, 0x02, 0x00, 0x0A, 0x00, 0x01, b'x']);
    let Packet::Connect(c) = decode_one(&frame, Protocol::V5) else {
        panic!("not a CONNECT")
    };
    assert_eq!(c.protocol, Protocol::V311);
    assert_eq!(c.client_id, "x");

    let mut level6 = MOSQUITTO_CONNECT_V311.to_vec();
    level6[8] = 6;
    let err = decode(&mut BytesMut::from(&level6[..]), Protocol::V5, MAX).unwrap_err();
    assert_eq!(err, fleetmq_codec::DecodeError::UnsupportedProtocol(6));
    assert_eq!(err.reason_code(), reason::UNSUPPORTED_PROTOCOL_VERSION);
}

#[test]
fn packet_type_names() {
    assert_eq!(Packet::PingReq.packet_type_name(), "PINGREQ");
    assert_eq!(
        decode_one(&[0xE0, 0x00], Protocol::V5).packet_type_name(),
        "DISCONNECT"
    );
}

#[test]
fn publish_topic_and_payload_share_the_read_buffer() {
    let frame = [
        0x32, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x05, b'x', b'y', b'z',
    ];
    let mut buf = BytesMut::from(&frame[..]);
    let range = buf.as_ptr_range();
    let Packet::Publish(p) = decode(&mut buf, Protocol::V311, MAX).unwrap().unwrap() else {
        panic!("not a PUBLISH");
    };
    assert_eq!(
        (&p.topic[..], p.pkid, &p.payload[..]),
        ("a/b", 5, &b"xyz"[..])
    );
    assert!(range.contains(&p.payload.as_ptr()), "payload was copied");
    assert!(
        range.contains(&p.topic.as_bytes().as_ptr()),
        "topic was copied"
    );
}
