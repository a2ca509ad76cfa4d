//! Record codecs: one version byte, then a bincode 2 payload decoded with a hard size limit.
//!
//! ```text
//! value = [record_version: u8] [bincode 2 "standard" payload (varint integers, LE)]
//! ```
//! Decoding rejects: an empty value, an unknown record version, a payload over the limit
//! (before allocating it), a malformed payload, and trailing bytes.

use bincode::{Decode, Encode};

use crate::{Error, Result};

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Encodes `value` behind `version`.
pub(crate) fn encode<T: Encode>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    // Writing into a Vec cannot fail for our record types (no custom encoders that error).
    if let Err(e) = bincode::encode_into_std_write(value, &mut out, CONFIG) {
        debug_assert!(false, "bincode encode into Vec failed: {e}");
    }
    out
}

/// Decodes a record written by [`encode`], at most `LIMIT` payload bytes.
pub(crate) fn decode<T: Decode<()>, const LIMIT: usize>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
    version: u8,
) -> Result<T> {
    let Some((&found, payload)) = bytes.split_first() else {
        return Err(Error::corruption(tree, key, "empty value"));
    };
    if found != version {
        return Err(Error::corruption(
            tree,
            key,
            format!("unknown record version {found} (expected {version})"),
        ));
    }
    if payload.len() > LIMIT {
        return Err(Error::corruption(
            tree,
            key,
            format!(
                "record is {} bytes, over the limit of {LIMIT}",
                payload.len()
            ),
        ));
    }
    let config = CONFIG.with_limit::<LIMIT>();
    match bincode::decode_from_slice::<T, _>(payload, config) {
        Ok((value, used)) if used == payload.len() => Ok(value),
        Ok((_, used)) => Err(Error::corruption(
            tree,
            key,
            format!("{} trailing bytes after the record", payload.len() - used),
        )),
        Err(e) => Err(Error::corruption(tree, key, format!("undecodable: {e}"))),
    }
}

/// Reads a fixed-width `[version][u64 LE]` value.
pub(crate) fn decode_u64(tree: &'static str, key: &[u8], bytes: &[u8], version: u8) -> Result<u64> {
    match bytes {
        [v, rest @ ..] if *v == version && rest.len() == 8 => {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(rest);
            Ok(u64::from_le_bytes(buf))
        }
        _ => Err(Error::corruption(
            tree,
            key,
            format!(
                "expected 9 bytes [version {version}][u64 LE], found {} bytes",
                bytes.len()
            ),
        )),
    }
}

/// Writes a fixed-width `[version][u64 LE]` value.
pub(crate) fn encode_u64(version: u8, value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(version);
    out.extend_from_slice(&value.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Encode, Decode, Debug, PartialEq)]
    struct Sample {
        name: String,
        values: Vec<u64>,
    }

    #[test]
    fn round_trip_and_rejections() {
        let s = Sample {
            name: "x".into(),
            values: vec![1, 2, 300],
        };
        let bytes = encode(1, &s);
        assert_eq!(decode::<Sample, 1024>("t", b"k", &bytes, 1).unwrap(), s);

        let err = decode::<Sample, 1024>("t", b"k", &bytes, 2).unwrap_err();
        assert!(
            err.to_string().contains("unknown record version 1"),
            "{err}"
        );

        let mut trailing = bytes.clone();
        trailing.push(0);
        let err = decode::<Sample, 1024>("t", b"k", &trailing, 1).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");

        let err = decode::<Sample, 1024>("t", b"k", &[], 1).unwrap_err();
        assert!(err.to_string().contains("empty value"), "{err}");
    }

    #[test]
    fn huge_length_prefix_is_rejected_without_allocating() {
        // version 1, string length varint = u64::MAX (0xFF marker + 8 bytes).
        let mut bytes = vec![1u8, 0xFF];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = decode::<Sample, 1024>("t", b"k", &bytes, 1).unwrap_err();
        assert!(matches!(err, Error::Corruption { tree: "t", .. }), "{err}");
        // A vector length that claims a billion u64s.
        let mut bytes = vec![1u8, 0]; // empty name
        bytes.push(0xFC); // u32 marker
        bytes.extend_from_slice(&1_000_000_000u32.to_le_bytes());
        let err = decode::<Sample, 1024>("t", b"k", &bytes, 1).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
    }

    #[test]
    fn fixed_u64() {
        let b = encode_u64(1, 42);
        assert_eq!(decode_u64("t", b"k", &b, 1).unwrap(), 42);
        assert!(decode_u64("t", b"k", &b[..5], 1).is_err());
    }
}
