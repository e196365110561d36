//! One delivery of a shared message to one session, and the PUBLISH it becomes on the wire:
//! the per-delivery properties (remaining message expiry, subscription identifiers, topic alias)
//! and the packet's exact encoded size, which the router compares with the client's Maximum
//! Packet Size before queueing and the connection again when it encodes (docs/mqtt.md: a message
//! that fits is delivered, one that does not is dropped and counted).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use fleetmq_codec::{Properties, Protocol, PublishRef, QoS, publish_len};

use crate::message::Message;

/// A message waiting in a session's queue with the options of the delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// The entry of a durable session's queue this delivery came from (`router::durable`):
    /// reported sent and acknowledged to the store.
    pub entry: Option<crate::router::durable::EntryId>,
}

impl Delivery {
    /// The v5 properties this delivery is sent with: the message's own unless this copy needs
    /// changes (remaining expiry at `now`, subscription identifiers, a topic alias); only then
    /// are they cloned.
    pub fn wire_properties(&self, alias: Option<u16>, now: Instant) -> Cow<'_, Properties> {
        self.properties_with(alias, || self.message.remaining_expiry(now))
    }

    fn properties_with(
        &self,
        alias: Option<u16>,
        expiry: impl FnOnce() -> Option<u32>,
    ) -> Cow<'_, Properties> {
        let m = &self.message;
        let own = m.properties();
        if m.expires_at.is_none()
            && own.message_expiry_interval.is_none()
            && self.sub_ids.is_empty()
            && own.subscription_identifiers.is_empty()
            && own.topic_alias.is_none()
            && alias.is_none()
        {
            return Cow::Borrowed(own);
        }
        let mut p = own.clone();
        // Read the clock only for the messages that expire.
        p.message_expiry_interval = m.expires_at.and_then(|_| expiry());
        p.subscription_identifiers.clone_from(&self.sub_ids);
        p.topic_alias = alias;
        Cow::Owned(p)
    }

    /// The exact size of the v5 PUBLISH for this delivery, fixed header included, sent with the
    /// full topic (`alias` `None`) or as an already set-up topic alias (empty topic).
    pub fn encoded_len(&self, alias: Option<u16>) -> usize {
        // The expiry is a four-byte integer: its value does not change the size.
        let properties = self.properties_with(alias, || Some(0));
        let topic: &str = if alias.is_some() {
            ""
        } else {
            &self.message.topic
        };
        publish_len(
            &PublishRef {
                dup: false,
                qos: self.qos,
                retain: self.retain,
                topic,
                pkid: 1,
                properties: &properties,
                payload: &self.message.payload,
            },
            Protocol::V5,
        )
    }

    /// Whether this delivery can reach a client whose Maximum Packet Size is `max`: its
    /// smallest form fits (with a topic alias when the client accepts aliases). 3.1.1 clients
    /// and v5 clients without a maximum have `usize::MAX`.
    pub fn fits(&self, max: usize, aliases: bool) -> bool {
        max == usize::MAX || self.encoded_len(aliases.then_some(1)) <= max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Origin, shared_properties};
    use fleetmq_codec::{BytesMut, encode_publish};
    use proptest::prelude::*;

    fn delivery(
        topic: &str,
        payload: usize,
        qos: QoS,
        props: Properties,
        ids: Vec<u32>,
    ) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: topic.into(),
                payload: vec![b'x'; payload].into(),
                qos,
                retain: false,
                properties: shared_properties(props),
                expires_at: None,
                origin: Origin::Broker,
            }),
            qos,
            retain: false,
            sub_ids: ids,
            entry: None,
        }
    }

    /// The example: Maximum Packet Size 64, `client_test5/TopicA`, 2-byte QoS 0
    /// payload: a 26-byte PUBLISH, which must fit.
    #[test]
    fn small_publish_fits_a_small_maximum() {
        let d = delivery(
            "client_test5/TopicA",
            2,
            QoS::AtMostOnce,
            Properties::default(),
            vec![],
        );
        assert_eq!(d.encoded_len(None), 2 + 2 + 19 + 1 + 2);
        assert!(d.fits(64, false));
        assert!(d.fits(26, false));
        assert!(!d.fits(25, false));
    }

    proptest! {
        /// The size the router checks is the size the connection's encoder writes.
        #[test]
        fn encoded_len_is_what_the_encoder_writes(
            topic in "[a-z/]{1,40}",
            payload in 0usize..300,
            qos in 0u8..3,
            ids in proptest::collection::vec(1u32..268_435_456, 0..3),
            user in proptest::option::of(("[a-z]{0,20}", "[a-z]{0,20}")),
            alias in proptest::option::of(1u16..10),
        ) {
            let mut props = Properties::default();
            if let Some((k, v)) = user {
                props.user_properties.push((k.into(), v.into()));
            }
            let qos = QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce);
            let d = delivery(&topic, payload, qos, props, ids);
            let properties = d.wire_properties(alias, Instant::now());
            let mut out = BytesMut::new();
            let view = PublishRef {
                dup: false,
                qos,
                retain: false,
                topic: if alias.is_some() { "" } else { &topic },
                pkid: 7,
                properties: &properties,
                payload: &d.message.payload,
            };
            prop_assert!(encode_publish(&view, Protocol::V5, usize::MAX, &mut out).unwrap_or(false));
            prop_assert_eq!(d.encoded_len(alias), out.len());
            prop_assert!(encode_publish(&view, Protocol::V5, out.len() - 1, &mut BytesMut::new()) == Ok(false));
        }
    }
}
