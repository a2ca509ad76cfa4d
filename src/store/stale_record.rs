//! The refresh queue record, `stale[user key]`: the user's list must be (re)computed.
//!
//! ```text
//! offset  size  field
//! 0       1     record version = 1
//! 1       8     seq             u64 LE  (enqueue sequence: a worker removes the record only if
//!                                        it is still the one it was dispatched for)
//! 9       8     history_version u64 LE  (the user's history version when queued)
//! 17      8     enqueued_at_ms  u64 LE  (Unix time, milliseconds)
//! 25      1     reason          (see `Reason`)
//! ```
//! Exactly 26 bytes.

use crate::{Error, Result};

const V1: u8 = 1;
const LEN: usize = 26;

/// Why a user was queued durably. (Users queued by a read or a sweep are queued in memory only:
/// the sweep on open finds them again.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// New interactions changed the history.
    History = 1,
    /// `refresh` was asked for explicitly.
    Manual = 2,
}

impl Reason {
    fn from_u8(b: u8) -> Option<Reason> {
        Some(match b {
            1 => Reason::History,
            2 => Reason::Manual,
            _ => return None,
        })
    }
}

/// One queued user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StaleRecord {
    pub seq: u64,
    pub history_version: u64,
    pub enqueued_at_ms: u64,
    pub reason: Reason,
}

impl StaleRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.push(V1);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.history_version.to_le_bytes());
        out.extend_from_slice(&self.enqueued_at_ms.to_le_bytes());
        out.push(self.reason as u8);
        out
    }

    pub(crate) fn decode(user: &[u8], bytes: &[u8]) -> Result<Self> {
        let bad = |why: String| Error::corruption("stale", user, why);
        if bytes.len() != LEN {
            return Err(bad(format!("{} bytes, expected {LEN}", bytes.len())));
        }
        if bytes[0] != V1 {
            return Err(bad(format!("unknown record version {}", bytes[0])));
        }
        let u = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let reason = Reason::from_u8(bytes[25])
            .ok_or_else(|| bad(format!("unknown reason code {}", bytes[25])))?;
        Ok(StaleRecord {
            seq: u(1),
            history_version: u(9),
            enqueued_at_ms: u(17),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let r = StaleRecord {
            seq: 7,
            history_version: 3,
            enqueued_at_ms: 1_700_000_000_000,
            reason: Reason::Manual,
        };
        let b = r.encode();
        assert_eq!(StaleRecord::decode(b"u", &b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(StaleRecord::decode(b"u", &b[..cut]).is_err());
        }
        let mut bad = b.clone();
        bad[25] = 99;
        assert!(StaleRecord::decode(b"u", &bad).is_err());
    }
}
