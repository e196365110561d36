//! `GET /mqtt`: MQTT over WebSocket (subprotocol `mqtt`). The WebSocket's binary frames are adapted
//! into a duplex byte stream with bounded buffers and handed to the broker, which runs the same MQTT
//! session as on TCP. Text frames are a protocol violation and end the connection.

use std::net::SocketAddr;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::AppState;
use crate::error::AppError;
use crate::metrics::Gauge;

/// Bytes buffered in each direction between the WebSocket and the broker.
const PIPE_BYTES: usize = 64 * 1024;
/// Largest binary frame sent to the client.
const CHUNK: usize = 16 * 1024;
/// Smallest read from the broker side: an idle connection holds only this much; a read that
/// fills the buffer doubles the next one, up to [`CHUNK`].
const MIN_CHUNK: usize = 512;
/// WebSocket read buffer: MQTT packets from clients are mostly small, a larger one makes the
/// buffer grow for it (tungstenite's 128 KiB default cost every idle connection that much).
const READ_BUFFER: usize = 4 * 1024;

/// The peer address when the server records it (`serve` does), else the unspecified address.
pub struct Peer(pub SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |ConnectInfo(a)| *a);
        Ok(Peer(addr))
    }
}

/// Upgrades with subprotocol `mqtt` (400 if the client does not offer it) and hands the stream over.
pub async fn handler(
    State(st): State<AppState>,
    Peer(peer): Peer,
    ws: WebSocketUpgrade,
) -> Response {
    // `mqttv3.1` is what MQTT 3.1 clients ask for; Mosquitto accepts it too.
    let ws = ws.protocols(["mqtt", "mqttv3.1"]);
    if ws.selected_protocol().is_none() {
        return AppError::BadRequest("MQTT over WebSocket needs the subprotocol \"mqtt\"".into())
            .into_response();
    }
    let max = st.config.mqtt_max_message;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(crate::ws::WRITE_BUFFER)
        .on_upgrade(move |socket| adapt(st, socket, peer))
}

async fn adapt(st: AppState, socket: WebSocket, peer: SocketAddr) {
    let _gauge = Gauge::hold(&st.hub.metrics().mqtt_ws_clients);
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    st.port.serve_mqtt(Box::new(theirs), peer);
    let (mut from_broker, mut to_broker) = tokio::io::split(ours);
    let (mut tx, mut rx) = socket.split();
    let inbound = async {
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Binary(b) => {
                    if to_broker.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Message::Text(_) | Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        let _ = to_broker.shutdown().await;
    };
    let outbound = async {
        let mut want = MIN_CHUNK;
        loop {
            let mut buf = BytesMut::with_capacity(want);
            match from_broker.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    want = if n == want {
                        (want * 2).min(CHUNK)
                    } else {
                        MIN_CHUNK
                    };
                    if tx.send(Message::Binary(buf.freeze())).await.is_err() {
                        return;
                    }
                }
            }
        }
        // The broker ended the session: close the WebSocket normally.
        let _ = tx.send(Message::Close(None)).await;
    };
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
}
