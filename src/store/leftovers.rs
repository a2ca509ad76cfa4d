//! Files a failed write leaves behind that would stop sled 0.34 from opening.
//!
//! sled writes a snapshot to `snap.<lsn>.generating`, fsyncs it, then renames it to
//! `snap.<lsn>`. When the disk fills up (or the process dies) before the rename, the
//! `.generating` file stays; being the newest name, it is the one sled reads on the next open,
//! and an empty or partly written one fails every open with "Read corrupted data" although no
//! data is lost (the log and the previous snapshot are intact). Before sled opens, such files
//! are removed: only `snap.*.generating` files that sled itself would reject (12 bytes or fewer,
//! or a CRC-32 that does not match their content); a complete one is left for sled to use.

use std::path::{Path, PathBuf};

/// Removes the unusable `snap.*.generating` files in `dir`; returns what it removed.
pub(crate) fn remove_failed_snapshots(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with("snap.") && name.ends_with(".generating")) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let path = entry.path();
        if meta.len() <= 12 || !crc_matches(&path, meta.len())? {
            std::fs::remove_file(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// sled's snapshot trailer: `[body][len: u64 LE][crc32(body): u32 LE]`. Reads the file in
/// chunks (snapshots can be large).
fn crc_matches(path: &Path, len: u64) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let body_len = len - 12;
    let mut hasher = crc32fast::Hasher::new();
    let mut remaining = body_len;
    let mut buf = vec![0u8; 64 * 1024];
    while remaining > 0 {
        let n = remaining.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        remaining -= n as u64;
    }
    let mut trailer = [0u8; 12];
    file.read_exact(&mut trailer)?;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&trailer[8..]);
    Ok(hasher.finalize() == u32::from_le_bytes(crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_bytes(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out
    }

    #[test]
    fn only_unusable_generating_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("snap.00000000000000AA.generating"), b"").unwrap();
        std::fs::write(p("snap.00000000000000AB.generating"), b"short").unwrap();
        let mut bad = snapshot_bytes(&[7u8; 100]);
        bad[3] ^= 1;
        std::fs::write(p("snap.00000000000000AC.generating"), bad).unwrap();
        std::fs::write(
            p("snap.00000000000000AD.generating"),
            snapshot_bytes(&[7u8; 100]),
        )
        .unwrap();
        std::fs::write(p("snap.00000000000000AE"), b"").unwrap();
        std::fs::write(p("other.generating"), b"").unwrap();
        let mut removed = remove_failed_snapshots(dir.path()).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            vec![
                p("snap.00000000000000AA.generating"),
                p("snap.00000000000000AB.generating"),
                p("snap.00000000000000AC.generating"),
            ]
        );
        assert!(p("snap.00000000000000AD.generating").exists());
        assert!(p("snap.00000000000000AE").exists());
        assert!(p("other.generating").exists());
    }
}
