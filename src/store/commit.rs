//! Detecting acknowledged writes that sled's recovery lost.
//!
//! Two numbers that must agree after every recovery:
//! - `meta["commit"]`: a counter bumped inside every write transaction (so it is exactly as
//!   recent as the newest transaction sled recovered);
//! - `convergedb.ack`: a small file beside sled's, outside sled's log, rewritten and fsynced after
//!   every flush that acknowledged writes (a `Sync` write, `Db::flush`), holding the commit
//!   number that flush made durable.
//!
//! A damaged log that sled takes for a torn tail makes it drop every later write without an
//! error; the counter then comes back lower than the ack file, and `open` refuses with
//! `Error::LostWrites` instead of answering as if nothing happened.
//!
//! File layout (24 bytes): magic `CDBACK\0\x01`, the commit number (u64 LE), the first 8 bytes
//! of the SHA-256 of the first 16 bytes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::codec::{decode_u64, encode_u64};
use super::keys::META_COMMIT;
use super::tx::{Tx, TxResult};
use super::TreeId;
use crate::{Error, Result};

/// The ack file's name in the database directory.
pub(crate) const ACK_FILE: &str = "convergedb.ack";
const MAGIC: &[u8; 8] = b"CDBACK\x00\x01";
const FILE_LEN: usize = 24;
const COMMIT_VERSION: u8 = 1;

/// The commit counter as stored (0 before the first write).
pub(crate) fn stored_commit(meta: &sled::Tree) -> Result<u64> {
    match meta.get(META_COMMIT)? {
        Some(v) => decode_u64("meta", META_COMMIT, &v, COMMIT_VERSION),
        None => Ok(0),
    }
}

/// Bumps the commit counter inside a transaction; returns the new commit number.
pub(crate) fn bump_commit(tx: &Tx<'_>) -> TxResult<u64> {
    let current = match tx.get(TreeId::Meta, META_COMMIT)? {
        Some(v) => decode_u64("meta", META_COMMIT, &v, COMMIT_VERSION)?,
        None => 0,
    };
    let next = current.saturating_add(1);
    tx.insert(TreeId::Meta, META_COMMIT, encode_u64(COMMIT_VERSION, next))?;
    Ok(next)
}

fn encode(commit: u64) -> [u8; FILE_LEN] {
    let mut out = [0u8; FILE_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&commit.to_le_bytes());
    let sum = Sha256::digest(&out[..16]);
    out[16..].copy_from_slice(&sum[..8]);
    out
}

/// The commit number in an ack file's bytes, or why they are not an ack file.
fn decode(bytes: &[u8]) -> std::result::Result<u64, String> {
    if bytes.len() != FILE_LEN {
        return Err(format!("{} bytes instead of {FILE_LEN}", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err("wrong magic bytes".into());
    }
    if Sha256::digest(&bytes[..16])[..8] != bytes[16..] {
        return Err("checksum mismatch".into());
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[8..16]);
    Ok(u64::from_le_bytes(n))
}

/// The open ack file and the last commit number it holds.
pub(crate) struct AckFile {
    path: PathBuf,
    state: Mutex<(File, u64)>,
}

impl AckFile {
    /// Opens (or creates) the ack file of the database in `dir` and compares it with the
    /// recovered commit counter `recovered`. A counter behind the file means acknowledged writes
    /// are missing: `Error::LostWrites`, unless `accept_lost_writes`, which rewrites the file.
    pub(crate) fn open(dir: &Path, recovered: u64, accept_lost_writes: bool) -> Result<AckFile> {
        let path = dir.join(ACK_FILE);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let acknowledged = if existed {
            // Bounded read: a foreign or damaged file is refused, never read whole.
            let mut bytes = Vec::with_capacity(FILE_LEN + 1);
            (&mut file)
                .take(FILE_LEN as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
            match decode(&bytes) {
                Ok(n) => Some(n),
                Err(_) if accept_lost_writes => None,
                Err(why) => {
                    return Err(Error::Corruption {
                        tree: "(convergedb.ack)",
                        key: path.display().to_string(),
                        reason: format!(
                            "the acknowledged-commit file is damaged ({why}), so acknowledged \
                             writes cannot be checked; restore a backup, or open with \
                             Config::accept_lost_writes(true) (CLI: --accept-lost-writes; C: \
                             convergedb_options.accept_lost_writes) to rewrite it from the \
                             database's commit counter"
                        ),
                    })
                }
            }
        } else {
            None
        };
        if let Some(acknowledged) = acknowledged {
            if recovered < acknowledged && !accept_lost_writes {
                return Err(Error::LostWrites {
                    path: dir.to_path_buf(),
                    acknowledged,
                    recovered,
                });
            }
        }
        let ack = AckFile {
            path,
            state: Mutex::new((file, 0)),
        };
        if acknowledged != Some(recovered) {
            ack.write(recovered, true)?;
            if !existed {
                sync_dir(dir).map_err(|source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        } else {
            ack.state.lock().1 = recovered;
        }
        Ok(ack)
    }

    /// Records `commit` as acknowledged (durable): call it after a successful flush with the
    /// commit number read before the flush started. Only ever moves forward. One positioned
    /// write, no fsync: like sled's log after its flush, the record then survives a process
    /// crash (it is in the kernel's page cache), and a power loss can only leave it behind the
    /// log, which may hide a loss but never reports one that did not happen. An fsync here
    /// halved the Sync write rate (docs/benchmarks.md, issue 18).
    pub(crate) fn record_ack(&self, commit: u64) -> Result<()> {
        self.write(commit, false)
    }

    /// Writes the record; `force` rewrites it even when not newer, and fsyncs it (on open, when
    /// the record is created or rewritten after accepting a loss).
    fn write(&self, commit: u64, force: bool) -> Result<()> {
        let mut state = self.state.lock();
        if !force && commit <= state.1 {
            return Ok(());
        }
        let bytes = encode(commit);
        let file = &mut state.0;
        let result = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&bytes))
            .and_then(|()| {
                if force {
                    file.set_len(FILE_LEN as u64)
                        .and_then(|()| file.sync_data())
                } else {
                    Ok(())
                }
            });
        result.map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        state.1 = commit;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage_refused() {
        let bytes = encode(12345);
        assert_eq!(decode(&bytes), Ok(12345));
        for i in 0..FILE_LEN {
            for bit in 0..8 {
                let mut b = bytes;
                b[i] ^= 1 << bit;
                assert!(
                    decode(&b).is_err(),
                    "flip of bit {bit} of byte {i} accepted"
                );
            }
        }
        for n in 0..FILE_LEN {
            assert!(decode(&bytes[..n]).is_err());
        }
    }
}
