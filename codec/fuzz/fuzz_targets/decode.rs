//! Fuzzes `fleetmq_codec::decode` in both protocol versions. Besides "never panics", it checks
//! that whatever decodes re-encodes to bytes that decode to the same packet, with an exact
//! `encoded_len`.

#![no_main]

use fleetmq_codec::{BytesMut, Protocol, decode, encode, encoded_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a packet size limit so the too-large path is exercised too.
    let Some((&limit, data)) = data.split_first() else {
        return;
    };
    let max = if limit == 0 {
        1 << 20
    } else {
        usize::from(limit) * 4
    };
    for protocol in [Protocol::V311, Protocol::V5] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, protocol, max) {
            let mut out = BytesMut::new();
            encode(&packet, protocol, &mut out).expect("a decoded packet re-encodes");
            assert_eq!(out.len(), encoded_len(&packet, protocol));
            let again = decode(&mut out, protocol, usize::MAX).expect("re-encoded packet decodes");
            assert_eq!(again.as_ref(), Some(&packet));
            assert!(out.is_empty());
        }
    }
});
