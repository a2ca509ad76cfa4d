//! The schema header, stored at `meta["header"]`.
//!
//! ```text
//! offset size field
//! 0      8    magic  = b"CNVRGDB\0"
//! 8      4    format_version, u32 little-endian (this build writes FORMAT_VERSION)
//! 12     4    reserved, u32 little-endian, written as 0
//! ```
//! A database whose header has another magic is not a convergedb database; one whose format
//! version is newer than [`FORMAT_VERSION`] is refused with `Error::UnsupportedFormat`.

use std::path::Path;

use crate::{Error, Result};

pub(crate) const MAGIC: &[u8; 8] = b"CNVRGDB\0";
/// The on-disk format this build writes and the newest it reads.
pub(crate) const FORMAT_VERSION: u32 = 2;
pub(crate) const HEADER_KEY: &[u8] = b"header";
const HEADER_LEN: usize = 16;

pub(crate) fn encode_header(format_version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&format_version.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

/// Validates a stored header and returns its format version.
pub(crate) fn check_header(path: &Path, bytes: &[u8]) -> Result<u32> {
    if bytes.len() != HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "its schema header does not carry the convergedb magic".into(),
        });
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[8..12]);
    let found = u32::from_le_bytes(version);
    if found > FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            found,
            supported: FORMAT_VERSION,
        });
    }
    if found == 0 {
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "schema header names format version 0".into(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejections() {
        let p = Path::new("/x");
        assert_eq!(
            check_header(p, &encode_header(FORMAT_VERSION)).unwrap(),
            FORMAT_VERSION
        );
        let newer = encode_header(FORMAT_VERSION + 1);
        assert!(matches!(
            check_header(p, &newer),
            Err(Error::UnsupportedFormat { found, .. }) if found == FORMAT_VERSION + 1
        ));
        let mut bad = encode_header(1);
        bad[0] = b'X';
        assert!(matches!(
            check_header(p, &bad),
            Err(Error::NotADatabase { .. })
        ));
        assert!(matches!(
            check_header(p, &bad[..3]),
            Err(Error::NotADatabase { .. })
        ));
    }
}
