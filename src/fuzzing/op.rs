//! The op sequences of the model-based harness: [`Op`], decoded from fuzzer bytes with
//! `arbitrary`, its generators, the limits and configuration every harness database runs with,
//! and [`apply_to_model`] / [`seeded_op`] for the crash loops.
//!
//! Keys and users come from small pools (plus invalid ones: empty, too long) so that ops
//! collide: replace, revive, delete twice, interactions on deleted items, evictions. The limits
//! are small for the same reason (history limit 4, batches of at most 6).

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};

use super::model::{Limits, Model};
use crate::{Config, Durability, Interaction, Item};

/// Item keys the generator draws from (16 valid ones, then the invalid ones).
pub const ITEM_KEYS: &[&str] = &[
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "ü", "n\0ul", "p q",
];
/// User keys the generator draws from.
pub const USERS: &[&str] = &["u0", "u1", "u2", "u3", "u4", "ü5"];
/// A key one byte over `LIMITS.max_key_bytes`.
const LONG_KEY: &str = "0123456789abcdefg";
const VECTOR_NAMES: &[&str] = &["v", "w"];
const KINDS: &[&str] = &["click", "view", "buy"];

/// The limits every harness database runs with.
pub fn limits() -> Limits {
    Limits {
        max_key_bytes: 16,
        max_batch: 6,
        max_k: 10_000,
        history_limit: 4,
    }
}

/// The configuration matching [`limits`]. No refresh threads: the harness attaches no model,
/// and every open and close stays deterministic. History chunks of 3 entries under a limit of 4,
/// so every layout state (chunks, partly dropped oldest chunk, tail, late arrivals) occurs.
pub fn config(path: &Path, durability: Durability) -> Config {
    let l = limits();
    Config::new(path)
        .durability(durability)
        .refresh_workers(0)
        .max_key_bytes(l.max_key_bytes)
        .max_batch(l.max_batch)
        .max_k(l.max_k)
        .history_limit(l.history_limit)
        .history_chunk_entries(3)
}

/// One operation of a sequence.
#[derive(Clone, Debug)]
pub enum Op {
    /// `put_items` or (`insert_only`) `insert_items`.
    Put {
        /// The batch.
        items: Vec<Item>,
        /// `insert_items` instead of `put_items`.
        insert_only: bool,
    },
    /// `delete_items`.
    Delete(Vec<String>),
    /// `put_vectors`.
    PutVectors(String, Vec<(String, Vec<f32>)>),
    /// `record_interactions`.
    Record(Vec<Interaction>),
    /// `recommend`.
    Recommend(String, usize),
    /// `history`.
    History(String),
    /// `get_item` and `item_id`.
    Get(String),
    /// `tokenize` with a tiny configuration.
    Tokenize {
        /// Vector name.
        vector: String,
        /// Levels (0 and 9 are invalid).
        levels: usize,
        /// Codes per level (below 2 is invalid).
        codes: usize,
        /// k-means seed.
        seed: u64,
        /// Balanced last level.
        balance: bool,
    },
    /// `flush`.
    Flush,
    /// `export_tokenization`, then `import_tokenization` of that file: codes unchanged.
    ExportImport,
    /// `close` (or, with `false`, only drop the handle: its drop flushes), then open again.
    Reopen(bool),
    /// `attach_test_generator` with model id `GENERATORS[i]` (a model swap when it changes).
    AttachGenerator(usize),
    /// `wait_idle`: the sweep, then every queued user's list regenerated (no workers).
    Refresh,
}

/// Model ids of the deterministic test generator.
pub const GENERATORS: &[&str] = &["gen-a", "gen-b"];

fn item_key(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let i = u.int_in_range(0..=ITEM_KEYS.len() + 1)?;
    Ok(match i {
        i if i < ITEM_KEYS.len() => ITEM_KEYS[i].to_string(),
        i if i == ITEM_KEYS.len() => String::new(),
        _ => LONG_KEY.to_string(),
    })
}

fn user_key(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let i = u.int_in_range(0..=USERS.len() * 8)?;
    Ok(match i {
        i if i < USERS.len() * 8 => USERS[i % USERS.len()].to_string(),
        _ => {
            if bool::arbitrary(u)? {
                String::new()
            } else {
                LONG_KEY.to_string()
            }
        }
    })
}

fn vector_name(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0u8..=20)? {
        0 => String::new(),
        n => VECTOR_NAMES[usize::from(n) % VECTOR_NAMES.len()].to_string(),
    })
}

fn vector(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<f32>> {
    // Mostly dimension 2, sometimes 1 or 3 (dimension errors), rarely empty or non-finite.
    let dim = match u.int_in_range(0u8..=15)? {
        0 => 0,
        1 => 1,
        2 => 3,
        _ => 2,
    };
    let mut v = Vec::with_capacity(dim);
    for _ in 0..dim {
        v.push(match u.int_in_range(0u8..=40)? {
            0 => f32::NAN,
            1 => f32::INFINITY,
            n => f32::from(n % 8) - 3.5 + f32::from(u.int_in_range(0u8..=3)?) * 0.25,
        });
    }
    Ok(v)
}

fn batch_len(u: &mut Unstructured<'_>) -> arbitrary::Result<usize> {
    // Mostly 1-3, sometimes empty or over the batch limit (6).
    Ok(match u.int_in_range(0u8..=20)? {
        0 => 0,
        1 => 7,
        n => usize::from(n % 3) + 1,
    })
}

fn item(u: &mut Unstructured<'_>) -> arbitrary::Result<Item> {
    let mut item = Item::new(item_key(u)?);
    if bool::arbitrary(u)? {
        item.title = format!("t{}", u.int_in_range(0u8..=9)?);
    }
    if u.ratio(1u8, 4)? {
        item.description = "d".repeat(usize::from(u.int_in_range(0u8..=3)?));
    }
    if u.ratio(1u8, 4)? {
        item.attributes
            .insert("genre".into(), format!("g{}", u.int_in_range(0u8..=2)?));
    }
    for _ in 0..u.int_in_range(0u8..=2)? {
        item.vectors.insert(vector_name(u)?, vector(u)?);
    }
    Ok(item)
}

fn interaction(u: &mut Unstructured<'_>) -> arbitrary::Result<Interaction> {
    let mut e = Interaction::new(
        user_key(u)?,
        item_key(u)?,
        i64::from(u.int_in_range(-3i8..=12)?),
    );
    e.kind = match u.int_in_range(0u8..=12)? {
        0 => Some(String::new()),
        1..=3 => Some(KINDS[usize::from(u.int_in_range(0u8..=2)?)].to_string()),
        _ => None,
    };
    e.weight = match u.int_in_range(0u8..=30)? {
        0 => f32::NAN,
        1..=5 => f32::from(u.int_in_range(0u8..=10)?) * 0.5,
        _ => 1.0,
    };
    Ok(e)
}

fn vec_of<T>(
    u: &mut Unstructured<'_>,
    f: impl Fn(&mut Unstructured<'_>) -> arbitrary::Result<T>,
) -> arbitrary::Result<Vec<T>> {
    (0..batch_len(u)?).map(|_| f(u)).collect()
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=99)? {
            0..=19 => Op::Put {
                items: vec_of(u, item)?,
                insert_only: false,
            },
            20..=24 => Op::Put {
                items: vec_of(u, item)?,
                insert_only: true,
            },
            25..=34 => Op::Delete(vec_of(u, item_key)?),
            35..=41 => Op::PutVectors(
                vector_name(u)?,
                vec_of(u, |u| Ok((item_key(u)?, vector(u)?)))?,
            ),
            42..=69 => Op::Record(vec_of(u, interaction)?),
            70..=77 => Op::Recommend(
                user_key(u)?,
                match u.int_in_range(0u8..=10)? {
                    0 => 0,
                    1 => 10_001,
                    n => usize::from(n),
                },
            ),
            78..=83 => Op::History(user_key(u)?),
            84..=88 => Op::Get(item_key(u)?),
            89..=92 => Op::Tokenize {
                vector: match u.int_in_range(0u8..=6)? {
                    0 => "x".to_string(),
                    n => VECTOR_NAMES[usize::from(n) % 2].to_string(),
                },
                levels: u.int_in_range(0..=3)?,
                codes: u.int_in_range(1..=4)?,
                seed: u64::from(u8::arbitrary(u)?),
                balance: bool::arbitrary(u)?,
            },
            93 => Op::Flush,
            94..=95 => Op::Refresh,
            96 => Op::ExportImport,
            97 => Op::AttachGenerator(usize::from(bool::arbitrary(u)?)),
            _ => Op::Reopen(bool::arbitrary(u)?),
        })
    }
}

/// Applies the writes of `op` to `model` alone (reads, flushes and reopens change nothing):
/// how a crash test replays the ops a killed child acknowledged.
pub fn apply_to_model(model: &mut Model, op: &Op) {
    match op {
        Op::Put { items, insert_only } => {
            let _ = model.put(items, *insert_only);
        }
        Op::Delete(keys) => {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let _ = model.delete(&keys);
        }
        Op::PutVectors(name, vectors) => {
            let _ = model.put_vectors(name, vectors);
        }
        Op::Record(events) => {
            let _ = model.record(events);
        }
        Op::Tokenize {
            vector,
            levels,
            codes,
            ..
        } => {
            let _ = model.tokenize(vector, *levels, *codes);
        }
        // Crash loops never attach a generator (`seeded_op`), so there is nothing to refresh.
        Op::Recommend(..)
        | Op::History(_)
        | Op::Get(_)
        | Op::Flush
        | Op::ExportImport
        | Op::Reopen(_)
        | Op::AttachGenerator(_)
        | Op::Refresh => {}
    }
}

/// Op number `i` of the sequence of `seed`: each op decoded from its own 256 random bytes, so
/// that a parent can regenerate any op of a child's sequence without replaying it (generator
/// ops become `Flush`).
pub fn seeded_op(seed: u64, i: u64) -> Op {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i);
    let mut bytes = [0u8; 256];
    rng.fill_bytes(&mut bytes);
    match Op::arbitrary(&mut Unstructured::new(&bytes)) {
        // The crash loops compare with a model that never sees the generator's lists.
        Ok(Op::AttachGenerator(_) | Op::Refresh) | Err(_) => Op::Flush,
        Ok(op) => op,
    }
}
