//! [`super`]'s reader on bytes: a reply split anywhere comes out whole and once, every reply
//! kind, what it refuses before buffering it. Against a real Redis: `super::super::subscriber`'s
//! and `publisher`'s tests.

use bytes::{Bytes, BytesMut};

use super::{MAX_BULK, MAX_LINE, Reply, RespError, parse};

/// Every reply in `bytes`, fed one byte at a time: none may come out early or twice.
fn parse_bytewise(bytes: &[u8]) -> Vec<Reply> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for b in bytes {
        buf.extend_from_slice(&[*b]);
        while let Some(r) = parse(&mut buf).expect("valid RESP") {
            out.push(r);
        }
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    out
}

fn message(channel: &str, payload: &[u8]) -> Reply {
    Reply::Message(
        Bytes::copy_from_slice(channel.as_bytes()),
        Bytes::copy_from_slice(payload),
    )
}

#[test]
fn replies_come_out_whole_however_the_bytes_arrive() {
    let stream = b"+OK\r\n\
        *3\r\n$9\r\nsubscribe\r\n$13\r\nfleetmq:out:0\r\n:1\r\n\
        *3\r\n$7\r\nmessage\r\n$13\r\nfleetmq:out:0\r\n$6\r\na\r\nb\x00c\r\n\
        *2\r\n$4\r\npong\r\n$0\r\n\r\n\
        *3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$0\r\n\r\n\
        -NOPERM no permissions\r\n\
        :7\r\n$-1\r\n*-1\r\n$3\r\nabc\r\n";
    assert_eq!(
        parse_bytewise(stream),
        vec![
            Reply::Other,
            Reply::Subscribed,
            message("fleetmq:out:0", b"a\r\nb\x00c"),
            Reply::Other,
            message("x", b""),
            Reply::Error("NOPERM no permissions".into()),
            Reply::Other,
            Reply::Other,
            Reply::Other,
            Reply::Other,
        ]
    );
}

#[test]
fn several_replies_in_one_read_come_out_in_order() {
    let mut buf = BytesMut::from(
        &b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\n10\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\n11\r\n*3\r\n$7\r\nmess"[..],
    );
    assert_eq!(parse(&mut buf).expect("ok"), Some(message("a", b"10")));
    assert_eq!(parse(&mut buf).expect("ok"), Some(message("a", b"11")));
    assert_eq!(parse(&mut buf).expect("ok"), None);
    assert_eq!(&buf[..], b"*3\r\n$7\r\nmess", "the incomplete reply stays");
}

fn refused(bytes: &[u8]) -> RespError {
    let mut buf = BytesMut::from(bytes);
    match parse(&mut buf) {
        Err(e) => e,
        Ok(r) => panic!("{bytes:?} parsed as {r:?}"),
    }
}

#[test]
fn what_is_not_resp2_or_too_long_is_refused_before_it_is_buffered() {
    // A bulk string over the limit is refused at its header, before its bytes are read.
    let header = format!("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n${}\r\n", MAX_BULK + 1);
    assert!(matches!(refused(header.as_bytes()), RespError::Protocol(_)));
    // A header line that never ends.
    assert!(matches!(
        refused(&vec![b'-'; MAX_LINE]),
        RespError::Protocol(_)
    ));
    for bad in [
        &b"?what\r\n"[..],
        b"*5\r\n",
        b"*x\r\n",
        b"\r\n",
        b"*3\r\n$7\r\nmessageXX",
        b"*1\r\n*1\r\n",
        b"*3\r\n$7\r\nmessage\r\n:1\r\n:2\r\n",
    ] {
        assert!(matches!(refused(bad), RespError::Protocol(_)), "{bad:?}");
    }
}
