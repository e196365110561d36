//! Primitive readers and writers: variable byte integers, UTF-8 strings, binary data.
//!
//! Readers take a `Bytes` holding (the rest of) one packet body and advance it; every read is
//! bounds-checked, so a short body is `Malformed`, never a panic. Strings are validated UTF-8
//! without U+0000 and returned as `ByteString`s sharing the read buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{DecodeError, EncodeError};

/// The largest value a variable byte integer can hold (four bytes).
pub(crate) const VBI_MAX: usize = 268_435_455;

/// Reads one byte.
pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Malformed("packet body too short"));
    }
    Ok(buf.get_u8())
}

/// Reads a big-endian two byte integer.
pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::Malformed("packet body too short"));
    }
    Ok(buf.get_u16())
}

/// Reads a big-endian four byte integer.
pub(crate) fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Malformed("packet body too short"));
    }
    Ok(buf.get_u32())
}

/// Outcome of parsing a variable byte integer from a slice that may be incomplete.
pub(crate) enum Vbi {
    /// The value and how many bytes encoded it.
    Complete(usize, usize),
    /// The slice ends before the last byte of the integer.
    Incomplete,
}

/// Parses a variable byte integer at the start of `bytes`. More than four bytes is `Malformed`.
pub(crate) fn parse_vbi(bytes: &[u8]) -> Result<Vbi, DecodeError> {
    let mut value = 0usize;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Vbi::Complete(value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ))
    } else {
        Ok(Vbi::Incomplete)
    }
}

/// Reads a variable byte integer from a packet body.
pub(crate) fn read_vbi(buf: &mut Bytes) -> Result<usize, DecodeError> {
    match parse_vbi(buf)? {
        Vbi::Complete(value, len) => {
            buf.advance(len);
            Ok(value)
        }
        Vbi::Incomplete => Err(DecodeError::Malformed("truncated variable byte integer")),
    }
}

/// Reads two-byte-length-prefixed binary data, sharing the buffer.
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = usize::from(read_u16(buf)?);
    if buf.len() < len {
        return Err(DecodeError::Malformed("length prefix beyond packet body"));
    }
    Ok(buf.split_to(len))
}

/// Reads a UTF-8 string; invalid UTF-8 and U+0000 are `Malformed`.
pub(crate) fn read_string(buf: &mut Bytes) -> Result<ByteString, DecodeError> {
    let raw = read_binary(buf)?;
    if raw.contains(&0) {
        return Err(DecodeError::Malformed("string contains U+0000"));
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))
}

/// Reads a UTF-8 string pair (user property).
pub(crate) fn read_string_pair(buf: &mut Bytes) -> Result<(ByteString, ByteString), DecodeError> {
    let key = read_string(buf)?;
    let value = read_string(buf)?;
    Ok((key, value))
}

/// Bytes a variable byte integer takes on the wire.
pub(crate) fn vbi_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a variable byte integer.
///
/// # Errors
/// `TooLong` when `value` exceeds [`VBI_MAX`].
pub(crate) fn write_vbi(
    out: &mut BytesMut,
    value: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    if value > VBI_MAX {
        return Err(EncodeError::TooLong(what));
    }
    let mut v = value;
    loop {
        // Truncation is intended: the low seven bits only.
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if v == 0 {
            return Ok(());
        }
    }
}

/// Writes two-byte-length-prefixed binary data.
///
/// # Errors
/// `TooLong` when `data` is longer than 65535 bytes.
pub(crate) fn write_binary(
    out: &mut BytesMut,
    data: &[u8],
    what: &'static str,
) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::TooLong(what))?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

/// Writes a length-prefixed UTF-8 string.
///
/// # Errors
/// `TooLong` when `s` is longer than 65535 bytes.
pub(crate) fn write_string(
    out: &mut BytesMut,
    s: &str,
    what: &'static str,
) -> Result<(), EncodeError> {
    write_binary(out, s.as_bytes(), what)
}

/// Bytes a length-prefixed string or binary field takes on the wire.
pub(crate) fn field_len(data: &[u8]) -> usize {
    2 + data.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vbi_round_trips_at_boundaries() {
        for value in [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VBI_MAX] {
            let mut out = BytesMut::new();
            write_vbi(&mut out, value, "test").unwrap();
            assert_eq!(out.len(), vbi_len(value));
            let mut b = out.freeze();
            assert_eq!(read_vbi(&mut b).unwrap(), value);
            assert!(b.is_empty());
        }
    }

    #[test]
    fn vbi_too_large_is_rejected() {
        let mut out = BytesMut::new();
        assert!(write_vbi(&mut out, VBI_MAX + 1, "x").is_err());
        assert!(matches!(
            parse_vbi(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(parse_vbi(&[0xFF, 0xFF]), Ok(Vbi::Incomplete)));
    }

    #[test]
    fn string_rejects_nul_and_bad_utf8() {
        let mut b = Bytes::from_static(&[0, 2, b'a', 0]);
        assert!(read_string(&mut b).is_err());
        let mut b = Bytes::from_static(&[0, 2, 0xC3, 0x28]);
        assert!(read_string(&mut b).is_err());
        let mut b = Bytes::from_static(&[0, 3, b'a', b'/', b'b']);
        assert_eq!(read_string(&mut b).unwrap(), "a/b");
    }
}
