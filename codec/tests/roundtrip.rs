//! Property tests: every packet type encodes and decodes back to itself in both protocol
//! versions, `encoded_len` is exact, partial input yields `None` until the last byte, and no
//! input makes the decoder panic.

use fleetmq_codec::{
    Auth, ByteString, Bytes, BytesMut, ConnAck, Connect, Disconnect, Packet, Properties, Protocol,
    PubResp, Publish, QoS, SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe, Will, decode,
    encode, encoded_len,
};
use proptest::collection::vec;
use proptest::option::of as opt;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn string() -> impl Strategy<Value = ByteString> {
    // `\PC`: any character that is not a control character, so never U+0000.
    "\\PC{0,8}".prop_map(ByteString::from)
}

fn nonempty_string() -> impl Strategy<Value = ByteString> {
    "\\PC{1,8}".prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

prop_compose! {
    /// Every property with a valid value, before [`restrict`] drops those a packet may not carry.
    fn any_properties()(
        a in (opt(0u8..=1), opt(any::<u32>()), opt(string()), opt(string()), opt(binary()),
              vec(1u32..=268_435_455, 0..3), opt(any::<u32>()), opt(string())),
        b in (opt(any::<u16>()), opt(string()), opt(binary()), opt(0u8..=1), opt(any::<u32>()),
              opt(0u8..=1), opt(string()), opt(string()), opt(string())),
        c in (opt(1..=u16::MAX), opt(any::<u16>()), opt(1..=u16::MAX), opt(0u8..=1), opt(0u8..=1),
              vec((string(), string()), 0..3), opt(1..=u32::MAX)),
        d in (opt(0u8..=1), opt(0u8..=1), opt(0u8..=1)),
    ) -> Properties {
        Properties {
            payload_format_indicator: a.0,
            message_expiry_interval: a.1,
            content_type: a.2,
            response_topic: a.3,
            correlation_data: a.4,
            subscription_identifiers: a.5,
            session_expiry_interval: a.6,
            assigned_client_identifier: a.7,
            server_keep_alive: b.0,
            authentication_method: b.1,
            authentication_data: b.2,
            request_problem_information: b.3,
            will_delay_interval: b.4,
            request_response_information: b.5,
            response_information: b.6,
            server_reference: b.7,
            reason_string: b.8,
            receive_maximum: c.0,
            topic_alias_maximum: c.1,
            topic_alias: c.2,
            maximum_qos: c.3,
            retain_available: c.4,
            user_properties: c.5,
            maximum_packet_size: c.6,
            wildcard_subscription_available: d.0,
            subscription_identifier_available: d.1,
            shared_subscription_available: d.2,
        }
    }
}

/// Property identifiers each packet may carry (MQTT 5.0, table 2-4).
const PUBLISH: &[u8] = &[0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26];
const WILL: &[u8] = &[0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26];
const CONNECT: &[u8] = &[0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27];
const CONNACK: &[u8] = &[
    0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29,
    0x2A,
];
const ACK: &[u8] = &[0x1F, 0x26];
const SUBSCRIBE: &[u8] = &[0x0B, 0x26];
const UNSUBSCRIBE: &[u8] = &[0x26];
const DISCONNECT: &[u8] = &[0x11, 0x1C, 0x1F, 0x26];
const AUTH: &[u8] = &[0x15, 0x16, 0x1F, 0x26];

/// Clears every property whose identifier is not in `ids`.
fn restrict(mut p: Properties, ids: &[u8]) -> Properties {
    macro_rules! keep {
        ($($id:literal => $field:ident),* $(,)?) => {
            $(if !ids.contains(&$id) { p.$field = Default::default(); })*
        };
    }
    keep! {
        0x01 => payload_format_indicator, 0x02 => message_expiry_interval, 0x03 => content_type,
        0x08 => response_topic, 0x09 => correlation_data, 0x0B => subscription_identifiers,
        0x11 => session_expiry_interval, 0x12 => assigned_client_identifier,
        0x13 => server_keep_alive, 0x15 => authentication_method, 0x16 => authentication_data,
        0x17 => request_problem_information, 0x18 => will_delay_interval,
        0x19 => request_response_information, 0x1A => response_information,
        0x1C => server_reference, 0x1F => reason_string, 0x21 => receive_maximum,
        0x22 => topic_alias_maximum, 0x23 => topic_alias, 0x24 => maximum_qos,
        0x25 => retain_available, 0x26 => user_properties, 0x27 => maximum_packet_size,
        0x28 => wildcard_subscription_available, 0x29 => subscription_identifier_available,
        0x2A => shared_subscription_available,
    }
    p
}

/// Properties valid for a packet: none for 3.1.1, the allowed subset for v5.
fn props(protocol: Protocol, ids: &'static [u8]) -> BoxedStrategy<Properties> {
    match protocol {
        Protocol::V311 => Just(Properties::default()).boxed(),
        Protocol::V5 => any_properties().prop_map(move |p| restrict(p, ids)).boxed(),
    }
}

/// A reason code: any byte in v5, always 0 in 3.1.1.
fn reason(protocol: Protocol) -> BoxedStrategy<u8> {
    match protocol {
        Protocol::V311 => Just(0).boxed(),
        Protocol::V5 => any::<u8>().boxed(),
    }
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let will = (
        string(),
        binary(),
        qos(),
        any::<bool>(),
        props(protocol, WILL),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    let credentials =
        (opt(string()), opt(binary())).prop_map(move |(username, password)| match protocol {
            // 3.1.1 forbids a password without a user name.
            Protocol::V311 if username.is_none() => (None, None),
            _ => (username, password),
        });
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        opt(will),
        credentials,
        props(protocol, CONNECT),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, (username, password), properties)| {
                Packet::Connect(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
}

fn connack(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let code = match protocol {
        // The v5 codes that survive the trip through a 3.1.1 return code.
        Protocol::V311 => prop::sample::select(vec![0u8, 0x84, 0x85, 0x86, 0x87, 0x88]).boxed(),
        Protocol::V5 => any::<u8>().boxed(),
    };
    (any::<bool>(), code, props(protocol, CONNACK)).prop_map(
        |(session_present, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties,
            })
        },
    )
}

fn publish(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let topic = match protocol {
        Protocol::V311 => nonempty_string().boxed(),
        Protocol::V5 => string().boxed(),
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic,
        pkid(),
        props(protocol, PUBLISH),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(qos, dup, retain, topic, pkid, properties, payload)| {
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                pkid: if qos0 { 0 } else { pkid },
                properties,
                payload: Bytes::from(payload),
            })
        })
}

fn pubresp(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (0..4u8, pkid(), reason(protocol), props(protocol, ACK)).prop_map(
        |(kind, pkid, reason, properties)| {
            let r = PubResp {
                pkid,
                reason,
                properties,
            };
            match kind {
                0 => Packet::PubAck(r),
                1 => Packet::PubRec(r),
                2 => Packet::PubRel(r),
                _ => Packet::PubComp(r),
            }
        },
    )
}

fn subscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol == Protocol::V5;
    let filter = (string(), qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(
        move |(filter, qos, nl, rap, rh)| SubscribeFilter {
            filter,
            qos,
            no_local: v5 && nl,
            retain_as_published: v5 && rap,
            retain_handling: if v5 { rh } else { 0 },
        },
    );
    (pkid(), vec(filter, 1..4), props(protocol, SUBSCRIBE)).prop_map(
        |(pkid, filters, mut properties)| {
            properties.subscription_identifiers.truncate(1);
            Packet::Subscribe(Subscribe {
                pkid,
                filters,
                properties,
            })
        },
    )
}

fn suback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let code = match protocol {
        Protocol::V311 => prop::sample::select(vec![0u8, 1, 2, 0x80]).boxed(),
        Protocol::V5 => any::<u8>().boxed(),
    };
    (pkid(), vec(code, 1..5), props(protocol, ACK)).prop_map(|(pkid, codes, properties)| {
        Packet::SubAck(SubAck {
            pkid,
            codes,
            properties,
        })
    })
}

fn unsubscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (pkid(), vec(string(), 1..4), props(protocol, UNSUBSCRIBE)).prop_map(
        |(pkid, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                pkid,
                filters,
                properties,
            })
        },
    )
}

fn unsuback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let codes = match protocol {
        Protocol::V311 => Just(Vec::new()).boxed(),
        Protocol::V5 => vec(any::<u8>(), 1..5).boxed(),
    };
    (pkid(), codes, props(protocol, ACK)).prop_map(|(pkid, codes, properties)| {
        Packet::UnsubAck(UnsubAck {
            pkid,
            codes,
            properties,
        })
    })
}

fn disconnect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (reason(protocol), props(protocol, DISCONNECT))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (any::<u8>(), props(Protocol::V5, AUTH))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any packet that is valid in `protocol`.
fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(protocol),
        connack(protocol),
        publish(protocol),
        pubresp(protocol),
        subscribe(protocol),
        suback(protocol),
        unsubscribe(protocol),
        unsuback(protocol),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(protocol),
    ];
    match protocol {
        Protocol::V311 => common.boxed(),
        Protocol::V5 => prop_oneof![10 => common, 1 => auth()].boxed(),
    }
}

fn protocol_and_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    prop_oneof![
        packet(Protocol::V311).prop_map(|p| (Protocol::V311, p)),
        packet(Protocol::V5).prop_map(|p| (Protocol::V5, p)),
    ]
}

fn encode_checked(packet: &Packet, protocol: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).expect("valid packet encodes");
    assert_eq!(
        out.len(),
        encoded_len(packet, protocol),
        "encoded_len is exact"
    );
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip((protocol, packet) in protocol_and_packet()) {
        let mut buf = encode_checked(&packet, protocol);
        let decoded = decode(&mut buf, protocol, MAX).expect("decodes").expect("complete");
        prop_assert_eq!(&decoded, &packet);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn byte_at_a_time_is_none_until_the_last_byte((protocol, packet) in protocol_and_packet()) {
        let encoded = encode_checked(&packet, protocol);
        let mut buf = BytesMut::new();
        for (i, byte) in encoded.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let result = decode(&mut buf, protocol, MAX).expect("a prefix is never an error");
            if i + 1 < encoded.len() {
                prop_assert!(result.is_none(), "complete after {} of {} bytes", i + 1, encoded.len());
                prop_assert_eq!(buf.len(), i + 1, "an incomplete packet consumes nothing");
            } else {
                prop_assert_eq!(result.as_ref(), Some(&packet));
            }
        }
    }

    #[test]
    fn publish_from_borrowed_parts_is_the_same_bytes(
        v5 in any::<bool>(),
        packet in publish(Protocol::V5),
        max in 0usize..600,
    ) {
        let protocol = if v5 { Protocol::V5 } else { Protocol::V311 };
        let Packet::Publish(p) = &packet else { unreachable!() };
        let whole = encode_checked(&packet, protocol);
        let mut parts = BytesMut::from(&b"before"[..]);
        let written = fleetmq_codec::encode_publish(&p.as_ref(), protocol, max, &mut parts)
            .expect("encodes");
        prop_assert_eq!(written, whole.len() <= max);
        let expected = if written { [&b"before"[..], &whole[..]].concat() } else { b"before".to_vec() };
        prop_assert_eq!(&parts[..], &expected[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256), v5 in any::<bool>(), max in 0usize..512) {
        let protocol = if v5 { Protocol::V5 } else { Protocol::V311 };
        let mut buf = BytesMut::from(&bytes[..]);
        // Each successful decode consumes at least two bytes, so this terminates.
        while let Ok(Some(_)) = decode(&mut buf, protocol, max) {}
    }

    #[test]
    fn mutated_packets_never_panic(
        (protocol, packet) in protocol_and_packet(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode_checked(&packet, protocol).to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len()) + 1);
        let mut buf = BytesMut::from(&bytes[..]);
        // Whatever still decodes must re-encode to something that decodes the same.
        while let Ok(Some(decoded)) = decode(&mut buf, protocol, MAX) {
            let mut again = encode_checked(&decoded, protocol);
            prop_assert_eq!(decode(&mut again, protocol, MAX), Ok(Some(decoded)));
        }
    }
}

#[test]
fn v311_drops_v5_only_fields() {
    let v5_only = Packet::SubAck(SubAck {
        pkid: 7,
        codes: vec![0, 0x97, 2],
        properties: Properties {
            reason_string: Some("quota".into()),
            ..Properties::default()
        },
    });
    let bytes = encode_checked(&v5_only, Protocol::V311);
    assert_eq!(&bytes[..], [0x90, 0x05, 0x00, 0x07, 0x00, 0x80, 0x02]);

    let unsuback = Packet::UnsubAck(UnsubAck {
        pkid: 9,
        codes: vec![0x11],
        properties: Properties::default(),
    });
    assert_eq!(
        &encode_checked(&unsuback, Protocol::V311)[..],
        [0xB0, 0x02, 0x00, 0x09]
    );

    let puback = Packet::PubAck(PubResp {
        pkid: 1,
        reason: 0x10,
        properties: Properties::default(),
    });
    assert_eq!(
        &encode_checked(&puback, Protocol::V311)[..],
        [0x40, 0x02, 0x00, 0x01]
    );

    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        code: 0x87,
        properties: Properties::default(),
    });
    assert_eq!(
        &encode_checked(&connack, Protocol::V311)[..],
        [0x20, 0x02, 0x00, 0x05]
    );

    let auth = Packet::Auth(Auth {
        reason: 0,
        properties: Properties::default(),
    });
    let mut out = BytesMut::new();
    assert!(encode(&auth, Protocol::V311, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn oversized_field_is_an_encode_error_and_writes_nothing() {
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: ByteString::from("t".repeat(70_000)),
        pkid: 0,
        properties: Properties::default(),
        payload: Bytes::new(),
    });
    let mut out = BytesMut::from(&b"xy"[..]);
    assert!(encode(&publish, Protocol::V5, &mut out).is_err());
    assert_eq!(&out[..], b"xy");
}
