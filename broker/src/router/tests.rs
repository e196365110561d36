//! The router through its contract only (`RouterMsg` in, the link out), with a [`Remote`] that
//! records what the router hands it: a local publish is delivered and forwarded once, a
//! publish from another node is delivered and not forwarded back (to a shared group only when
//! it names the group), subscriptions are announced and withdrawn, and a kick from another
//! node takes the connection over (DISCONNECT 0x8E).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fleetmq_codec::QoS;
use tokio::sync::{mpsc, oneshot};

use super::remote::{Incoming, Remote};
use super::{Router, RouterConfig, RouterMsg};
use crate::link::{ConnId, ConnLink, ConnectRequest, Outgoing, SessionId, SubOptions, SubRequest};
use crate::message::{Message, Origin};
use crate::metrics::Metrics;

/// What the router told the remote side, in order.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }
    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct Recording {
    log: Arc<Log>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
}

impl Remote for Recording {
    fn forward(&mut self, message: &Arc<Message>, _durable: &[Arc<str>]) {
        self.log.push(format!("forward {}", message.topic));
    }
    fn poll_incoming(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.incoming.poll_recv(cx)
    }
    fn subscribed(&mut self, filter: &str) {
        self.log.push(format!("subscribed {filter}"));
    }
    fn unsubscribed(&mut self, filter: &str) {
        self.log.push(format!("unsubscribed {filter}"));
    }
    fn connected(&mut self, client_id: &str) {
        self.log.push(format!("connected {client_id}"));
    }
    fn ended(&mut self, client_id: &str) {
        self.log.push(format!("ended {client_id}"));
    }
}

fn message(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: topic.into(),
        payload: "x".into(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: None,
        expires_at: None,
        origin: Origin::Broker,
    })
}

/// The topics of the publishes queued on `link`, waiting up to 5 s for `n` of them.
async fn delivered(link: &ConnLink, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut topics = Vec::new();
    while topics.len() < n && tokio::time::Instant::now() < deadline {
        link.drain(|item| {
            if let Outgoing::Publish { delivery, .. } = item {
                topics.push(delivery.message.topic.to_string());
            }
            true
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    topics
}

#[tokio::test]
async fn remote_seam_sees_local_traffic_and_feeds_local_subscribers() {
    let (mut router, tx) = Router::new(RouterConfig::default(), Arc::new(Metrics::default()));
    let log = Arc::new(Log::default());
    let (remote_tx, incoming) = mpsc::unbounded_channel();
    router.remote = Box::new(Recording {
        log: log.clone(),
        incoming,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(router.run(async {
        let _ = stopped.await;
    }));

    let link = ConnLink::new(ConnId(7));
    let (reply, connected) = oneshot::channel();
    let req = ConnectRequest {
        client_id: "watcher".into(),
        clean_start: true,
        expiry_interval: 0,
        will: None,
        link: link.clone(),
        receive_maximum: 10,
        max_packet_size: usize::MAX,
        aliases: false,
        reader: None,
        reply,
    };
    tx.send(RouterMsg::Connect(Box::new(req))).await.unwrap();
    let session: SessionId = connected.await.unwrap().session;
    tx.send(RouterMsg::ConnAckSent {
        session,
        conn: ConnId(7),
    })
    .await
    .unwrap();
    let (reply, subscribed) = oneshot::channel();
    let opts = SubOptions {
        qos: QoS::AtMostOnce,
        no_local: false,
        retain_as_published: false,
        id: None,
    };
    let requests = ["a/#", "$share/g/s/#"]
        .into_iter()
        .map(|filter| SubRequest {
            filter: filter.into(),
            opts,
            retain_handling: 0,
            denied: None,
        })
        .collect();
    tx.send(RouterMsg::Subscribe {
        session,
        requests,
        reply,
    })
    .await
    .unwrap();
    assert_eq!(subscribed.await.unwrap().0, vec![0, 0]);

    // Published here: delivered here and forwarded.
    tx.send(RouterMsg::Publish {
        message: message("a/local"),
        qos2_pkid: None,
    })
    .await
    .unwrap();
    assert_eq!(delivered(&link, 1).await, vec!["a/local"]);
    // Published on another node: delivered here, not forwarded back.
    let from_remote = |topic: &str, shared: &[&str]| Incoming::Publish {
        message: message(topic),
        shared: shared.iter().map(|s| Box::from(*s)).collect(),
        durable: Vec::new(),
    };
    remote_tx.send(from_remote("a/remote", &[])).unwrap();
    assert_eq!(delivered(&link, 1).await, vec!["a/remote"]);

    // A shared group gets another node's message only when that node picked this one for it.
    remote_tx
        .send(from_remote("s/skipped", &["$share/other/s/#"]))
        .unwrap();
    remote_tx
        .send(from_remote("s/picked", &["$share/g/s/#"]))
        .unwrap();
    assert_eq!(delivered(&link, 1).await, vec!["s/picked"]);

    let (reply, unsubscribed) = oneshot::channel();
    tx.send(RouterMsg::Unsubscribe {
        session,
        filters: vec!["a/#".into()],
        reply,
    })
    .await
    .unwrap();
    assert_eq!(unsubscribed.await.unwrap(), vec![0]);
    assert_eq!(
        log.entries(),
        vec![
            "connected watcher",
            "subscribed a/#",
            "subscribed $share/g/s/#",
            "forward a/local",
            "unsubscribed a/#"
        ]
    );
    // The client connected to another node: taken over here, its session (and the shared
    // subscription) ends.
    remote_tx
        .send(Incoming::Kick {
            client_id: "watcher".into(),
        })
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut reason = None;
    while reason.is_none() && tokio::time::Instant::now() < deadline {
        link.drain(|item| {
            if let Outgoing::Disconnect { reason: r, .. } = item {
                reason = Some(r);
            }
            true
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(reason, Some(fleetmq_codec::reason::SESSION_TAKEN_OVER));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while log.entries().len() < 7 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        log.entries()[5..],
        ["unsubscribed $share/g/s/#", "ended watcher"]
    );
    let _ = stop.send(());
    task.await.unwrap();
}
