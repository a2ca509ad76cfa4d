//! The calls of the C-API harness and their generation from fuzzer bytes: arguments are NULL,
//! invalid UTF-8, arbitrary bytes or drawn from small pools; handles are mostly the one opened
//! first, sometimes another slot or NULL.

use std::ffi::{c_char, CString};
use std::ptr;

use arbitrary::{Arbitrary, Unstructured};

/// A string argument: NULL, or NUL-terminated bytes (valid UTF-8 or not).
pub(super) struct Arg(pub(super) Option<CString>);

impl Arg {
    pub(super) fn ptr(&self) -> *const c_char {
        self.0.as_ref().map_or(ptr::null(), |c| c.as_ptr())
    }
    pub(super) fn is_bad(&self) -> bool {
        self.0.as_ref().is_none_or(|c| c.to_str().is_err())
    }
    pub(super) fn text(s: &str) -> Arg {
        Arg(CString::new(s).ok())
    }
}

const KEYS: &[&str] = &["a", "b", "c", "d", "u1", "u2", "", "v"];
const ATTRS: &[&str] = &["{\"genre\": \"x\"}", "{}", "[1, 2]", "{\"a\": 1}", "{"];
const VECTORS: &[&str] = &[
    "{\"v\": [1.0, 2.0]}",
    "{\"v\": [0.5, -2.0]}",
    "{\"v\": [3.0, 1.0], \"w\": [1.0]}",
    "{\"v\": [1.0]}",
    "{\"v\": []}",
    "{\"v\": [\"a\"]}",
    "{\"v\": [1e39, 0.0]}",
    "null",
];
const JSONL: &[&str] = &[
    "{\"key\": \"a\", \"vectors\": {\"v\": [0.5, 1.0]}}\n{\"key\": \"b\"}",
    "{\"key\": \"c\", \"title\": \"t\"}\n\n",
    "{\"user\": \"u1\", \"item\": \"a\", \"timestamp\": 3}",
    "{\"user\": \"u2\", \"item\": \"b\", \"timestamp\": 1, \"kind\": \"view\", \"weight\": 2.0}",
    "{\"user\": \"u1\", \"item\": \"zz\", \"timestamp\": 3}",
    "{\"key\": \"a\"}\n{\"key\": \"a\"}",
    "not json",
];

fn arg(u: &mut Unstructured<'_>, pool: &[&str]) -> arbitrary::Result<Arg> {
    Ok(match u.int_in_range(0u8..=39)? {
        0 => Arg(None),
        1 => Arg(CString::new(vec![b'k', 0xff, 0xfe]).ok()),
        2 => {
            let bytes: Vec<u8> = Vec::<u8>::arbitrary(u)?
                .into_iter()
                .filter(|b| *b != 0)
                .take(40)
                .collect();
            Arg(CString::new(bytes).ok())
        }
        n => Arg::text(pool[usize::from(n) % pool.len()]),
    })
}

/// An optional JSON argument: NULL (not given) a third of the time.
fn opt_arg(u: &mut Unstructured<'_>, pool: &[&str]) -> arbitrary::Result<Arg> {
    if u.ratio(1u8, 3)? {
        return Ok(Arg(None));
    }
    arg(u, pool)
}

/// Which handle slot a call uses; slot `HANDLES` means a NULL handle.
pub(super) const HANDLES: usize = 3;

pub(super) enum Call {
    Open {
        slot: usize,
        path: u8,
        opts: u8,
        null_out: bool,
    },
    Close(usize),
    Free(usize),
    Flush(usize),
    Stats(usize, bool),
    Check(usize),
    Put(usize, [Arg; 5]),
    PutJsonl(usize, Arg),
    Get(usize, Arg, bool),
    Delete(usize, Arg),
    Record(usize, Arg, Arg, i64, Arg, f32),
    RecordJsonl(usize, Arg),
    History(usize, Arg, bool),
    Recommend(usize, Arg, usize, bool, usize),
    Tokenize(usize, Arg, usize, usize),
    Sid(usize, Arg, usize, bool, bool),
    AllowedNext(usize, Vec<u16>, bool, usize, bool),
    Import(usize, u8, Vec<u8>),
    Export(usize, u8),
    AnnBuild(usize, Arg),
    /// slot, vector name, query length (0-3), NaN in the query, k, NULL out, item index.
    RecommendByVector(usize, Arg, usize, bool, usize, bool, usize),
    StatusName(i32),
}

pub(super) fn call(u: &mut Unstructured<'_>) -> arbitrary::Result<Call> {
    // Mostly the handle opened first; sometimes another slot or a NULL handle.
    let slot = match u.int_in_range(0u8..=19)? {
        0 => HANDLES,
        1 => 1,
        2 => 2,
        _ => 0,
    };
    Ok(match u.int_in_range(0u8..=19)? {
        0 | 2 => Call::Open {
            slot: slot.min(HANDLES - 1),
            // Mostly the first database, so that a freed slot 0 reopens it.
            path: match u.int_in_range(0u8..=9)? {
                n @ 0..=4 => n,
                _ => 0,
            },
            opts: u.int_in_range(0..=8)?,
            null_out: u.ratio(1u8, 10)?,
        },
        1 => match u.int_in_range(0u8..=5)? {
            0 => Call::Close(slot),
            1 => Call::Free(slot),
            _ => Call::Flush(slot),
        },
        3 => Call::Flush(slot),
        4 => Call::Stats(slot, u.ratio(1u8, 5)?),
        5 => Call::Check(slot),
        6 => Call::Put(
            slot,
            [
                arg(u, KEYS)?,
                arg(u, KEYS)?,
                arg(u, KEYS)?,
                opt_arg(u, ATTRS)?,
                opt_arg(u, VECTORS)?,
            ],
        ),
        7 => Call::PutJsonl(slot, arg(u, JSONL)?),
        8 => Call::Get(slot, arg(u, KEYS)?, u.ratio(1u8, 8)?),
        9 => Call::Delete(slot, arg(u, KEYS)?),
        10 => Call::Record(
            slot,
            arg(u, KEYS)?,
            arg(u, KEYS)?,
            i64::arbitrary(u)?,
            opt_arg(u, &["view", "", "click"])?,
            match u.int_in_range(0u8..=6)? {
                0 => f32::NAN,
                1 => f32::INFINITY,
                _ => 1.0,
            },
        ),
        11 => Call::RecordJsonl(slot, arg(u, JSONL)?),
        12 => Call::History(slot, arg(u, KEYS)?, u.ratio(1u8, 8)?),
        13 => Call::Recommend(
            slot,
            arg(u, KEYS)?,
            match u.int_in_range(0u8..=5)? {
                0 => 0,
                1 => usize::MAX,
                n => usize::from(n),
            },
            u.ratio(1u8, 8)?,
            u.int_in_range(0..=6)?,
        ),
        14 => Call::Tokenize(
            slot,
            arg(u, &["v", "w"])?,
            u.int_in_range(0..=2)?,
            u.int_in_range(1..=4)?,
        ),
        15 => Call::Sid(
            slot,
            arg(u, KEYS)?,
            u.int_in_range(0..=4)?,
            u.ratio(1u8, 6)?,
            u.ratio(1u8, 8)?,
        ),
        16 => {
            let len = u.int_in_range(0..=3)?;
            let mut prefix = Vec::with_capacity(len);
            for _ in 0..len {
                prefix.push(u.int_in_range(0..=4)?);
            }
            Call::AllowedNext(
                slot,
                prefix,
                u.ratio(1u8, 6)?,
                u.int_in_range(0..=4)?,
                u.ratio(1u8, 8)?,
            )
        }
        17 => Call::Import(slot, u.int_in_range(0..=3)?, Vec::<u8>::arbitrary(u)?),
        18 => match u.int_in_range(0u8..=3)? {
            0 => Call::AnnBuild(slot, arg(u, &["v", "w", "x"])?),
            1 => Call::RecommendByVector(
                slot,
                arg(u, &["v", "w", "x"])?,
                u.int_in_range(0..=3)?,
                u.ratio(1u8, 8)?,
                match u.int_in_range(0u8..=5)? {
                    0 => 0,
                    1 => usize::MAX,
                    n => usize::from(n),
                },
                u.ratio(1u8, 8)?,
                u.int_in_range(0..=4)?,
            ),
            _ => Call::Export(slot, u.int_in_range(0..=2)?),
        },
        19 if u.ratio(1u8, 2)? => Call::StatusName(i32::arbitrary(u)?),
        // Well-formed writes, so that the catalog and the histories fill up.
        _ if u.ratio(1u8, 2)? => Call::Put(
            slot,
            [
                Arg::text(KEYS[usize::from(u.int_in_range(0u8..=3)?)]),
                Arg::text("t"),
                Arg::text(""),
                Arg(None),
                Arg::text(VECTORS[usize::from(u.int_in_range(0u8..=2)?)]),
            ],
        ),
        _ => Call::Record(
            slot,
            Arg::text(["u1", "u2"][usize::from(u.int_in_range(0u8..=1)?)]),
            Arg::text(KEYS[usize::from(u.int_in_range(0u8..=3)?)]),
            i64::from(u.int_in_range(0u8..=9)?),
            Arg(None),
            1.0,
        ),
    })
}
