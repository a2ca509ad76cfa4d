//! The sid table: one versioned tokenization (codebooks, optional encoder, parameters) and its
//! fingerprint. Stored at `meta["sid_table"]`; the per-item codes live in the `sids` and
//! `sid_items` trees.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use super::train::Codebooks;
use crate::{Error, Result};

/// Most levels a tokenization may have.
pub const MAX_LEVELS: usize = 8;
/// Most codes per level: codes are stored as u16.
pub const MAX_CODES: usize = 1 << 16;
/// Most floats in the codebooks plus the encoder (bounds the stored record: 256 MiB).
pub(crate) const MAX_FLOATS: usize = 64 << 20;

/// One dense layer `y = W x + b` of an encoder; `weight` is `output x input`, row-major.
#[derive(Clone, Debug, PartialEq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct EncoderLayer {
    /// Input width.
    pub input: usize,
    /// Output width.
    pub output: usize,
    /// `output * input` weights, row-major.
    pub weight: Vec<f32>,
    /// `output` biases.
    pub bias: Vec<f32>,
}

/// An MLP applied to an item vector before quantization: dense layers with ReLU between them
/// (not after the last), as an RQ-VAE style training pipeline produces.
#[derive(Clone, Debug, PartialEq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct Encoder {
    /// The layers, input first.
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.layers.is_empty() {
            return Err(bad("the encoder has no layers"));
        }
        for (i, l) in self.layers.iter().enumerate() {
            if l.input == 0 || l.output == 0 {
                return Err(bad(format!("encoder layer {i} has a zero width")));
            }
            if l.weight.len() != l.input.saturating_mul(l.output) || l.bias.len() != l.output {
                return Err(bad(format!(
                    "encoder layer {i}: {} weights and {} biases for {}x{}",
                    l.weight.len(),
                    l.bias.len(),
                    l.output,
                    l.input
                )));
            }
            if l.weight.iter().chain(&l.bias).any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "encoder layer {i} holds NaN or infinite values"
                )));
            }
            if i > 0 && self.layers[i - 1].output != l.input {
                return Err(bad(format!(
                    "encoder layer {i} takes {} inputs but layer {} gives {}",
                    l.input,
                    i - 1,
                    self.layers[i - 1].output
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn input(&self) -> usize {
        self.layers.first().map_or(0, |l| l.input)
    }

    pub(crate) fn output(&self) -> usize {
        self.layers.last().map_or(0, |l| l.output)
    }

    pub(crate) fn floats(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight.len() + l.bias.len())
            .sum()
    }

    /// Applies the encoder (assumes `validate` passed and `x.len() == input()`).
    pub(crate) fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut cur = x.to_vec();
        for (i, l) in self.layers.iter().enumerate() {
            let mut next = l.bias.clone();
            for (o, out) in next.iter_mut().enumerate() {
                let row = &l.weight[o * l.input..(o + 1) * l.input];
                *out += row.iter().zip(&cur).map(|(w, v)| w * v).sum::<f32>();
            }
            if i + 1 < self.layers.len() {
                next.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            cur = next;
        }
        cur
    }
}

/// A tokenization version: what maps item vectors to codes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SidTable {
    pub version: u64,
    pub fingerprint: String,
    pub levels: usize,
    pub codes: usize,
    /// The item vector the codebooks quantize (`None` for a code table without codebooks).
    pub vector: Option<String>,
    pub codebooks: Option<Codebooks>,
    pub encoder: Option<Encoder>,
    pub balance_last_level: bool,
    pub source: String,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidTokenization(reason.into())
}

impl SidTable {
    /// Checks the shape: levels, codes, codebook and encoder dimensions, finite values.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.levels == 0 || self.levels > MAX_LEVELS {
            return Err(bad(format!(
                "levels = {} must be between 1 and {MAX_LEVELS}",
                self.levels
            )));
        }
        if !(2..=MAX_CODES).contains(&self.codes) {
            return Err(bad(format!(
                "codes = {} must be between 2 and {MAX_CODES} (codes are stored as u16)",
                self.codes
            )));
        }
        if let Some(cb) = &self.codebooks {
            if cb.levels != self.levels || cb.codes != self.codes {
                return Err(bad(
                    "the codebooks' levels or codes differ from the table's",
                ));
            }
            if cb.dim == 0 || cb.centroids.len() != cb.levels * cb.codes * cb.dim {
                return Err(bad(format!(
                    "codebooks hold {} floats, expected levels x codes x dim = {} x {} x {}",
                    cb.centroids.len(),
                    cb.levels,
                    cb.codes,
                    cb.dim
                )));
            }
            if cb.centroids.iter().any(|v| !v.is_finite()) {
                return Err(bad("the codebooks hold NaN or infinite values"));
            }
            if self.vector.is_none() {
                return Err(bad(
                    "codebooks need the name of the item vector they quantize",
                ));
            }
        }
        if let Some(enc) = &self.encoder {
            enc.validate()?;
            match &self.codebooks {
                Some(cb) if enc.output() == cb.dim => {}
                Some(cb) => {
                    return Err(bad(format!(
                        "the encoder outputs {} values but the codebooks have dimension {}",
                        enc.output(),
                        cb.dim
                    )))
                }
                None => return Err(bad("an encoder needs codebooks")),
            }
        }
        let floats = self.codebooks.as_ref().map_or(0, |c| c.centroids.len())
            + self.encoder.as_ref().map_or(0, Encoder::floats);
        if floats > MAX_FLOATS {
            return Err(bad(format!(
                "{floats} floats, over the limit of {MAX_FLOATS}"
            )));
        }
        Ok(())
    }

    /// The dimension of the item vector this table reads (encoder input, else codebook dim).
    pub(crate) fn input_dim(&self) -> Option<usize> {
        match (&self.encoder, &self.codebooks) {
            (Some(e), _) => Some(e.input()),
            (None, Some(cb)) => Some(cb.dim),
            (None, None) => None,
        }
    }

    /// The vector the codebooks see for an item vector `x` (after the encoder, if any).
    pub(crate) fn encode_input(&self, x: &[f32]) -> Vec<f32> {
        match &self.encoder {
            Some(e) => e.apply(x),
            None => x.to_vec(),
        }
    }

    /// SHA-256 over the canonical bytes of the table and its item codes (see
    /// `docs/model-bundle.md`, "Fingerprint"), lowercase hex.
    pub(crate) fn compute_fingerprint<'a>(
        &self,
        items: impl Iterator<Item = (&'a str, &'a [u16])>,
    ) -> String {
        let mut h = Sha256::new();
        h.update(b"convergedb-sid-fingerprint-v1");
        h.update((self.levels as u32).to_le_bytes());
        h.update((self.codes as u32).to_le_bytes());
        let name = self.vector.as_deref().unwrap_or("");
        h.update((name.len() as u32).to_le_bytes());
        h.update(name.as_bytes());
        match &self.encoder {
            Some(e) => {
                h.update([1u8]);
                h.update((e.layers.len() as u32).to_le_bytes());
                for l in &e.layers {
                    h.update((l.input as u32).to_le_bytes());
                    h.update((l.output as u32).to_le_bytes());
                    l.weight
                        .iter()
                        .chain(&l.bias)
                        .for_each(|v| h.update(v.to_le_bytes()));
                }
            }
            None => h.update([0u8]),
        }
        match &self.codebooks {
            Some(cb) => {
                h.update([1u8]);
                h.update((cb.dim as u32).to_le_bytes());
                cb.centroids.iter().for_each(|v| h.update(v.to_le_bytes()));
            }
            None => h.update([0u8]),
        }
        let mut sorted: Vec<(&str, &[u16])> = items.collect();
        sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        h.update((sorted.len() as u64).to_le_bytes());
        for (key, codes) in sorted {
            h.update((key.len() as u32).to_le_bytes());
            h.update(key.as_bytes());
            codes.iter().for_each(|c| h.update(c.to_le_bytes()));
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `meta["sid_table"]`: `[1][bincode TableRecord]`.
#[derive(Encode, Decode)]
pub(crate) struct TableRecord {
    version: u64,
    fingerprint: String,
    levels: u32,
    codes: u32,
    vector: Option<String>,
    codebook_dim: u32,
    centroids: Option<Vec<f32>>,
    encoder: Option<Encoder>,
    balance_last_level: bool,
    source: String,
}

const TABLE_V1: u8 = 1;
const TABLE_LIMIT: usize = 4 * MAX_FLOATS + (1 << 20);

impl SidTable {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let rec = TableRecord {
            version: self.version,
            fingerprint: self.fingerprint.clone(),
            levels: self.levels as u32,
            codes: self.codes as u32,
            vector: self.vector.clone(),
            codebook_dim: self.codebooks.as_ref().map_or(0, |c| c.dim as u32),
            centroids: self.codebooks.as_ref().map(|c| c.centroids.clone()),
            encoder: self.encoder.clone(),
            balance_last_level: self.balance_last_level,
            source: self.source.clone(),
        };
        crate::store::codec::encode(TABLE_V1, &rec)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SidTable> {
        let key = b"sid_table";
        let rec: TableRecord =
            crate::store::codec::decode::<TableRecord, TABLE_LIMIT>("meta", key, bytes, TABLE_V1)?;
        let codebooks = rec.centroids.map(|centroids| Codebooks {
            levels: rec.levels as usize,
            codes: rec.codes as usize,
            dim: rec.codebook_dim as usize,
            centroids,
        });
        let table = SidTable {
            version: rec.version,
            fingerprint: rec.fingerprint,
            levels: rec.levels as usize,
            codes: rec.codes as usize,
            vector: rec.vector,
            codebooks,
            encoder: rec.encoder,
            balance_last_level: rec.balance_last_level,
            source: rec.source,
        };
        table
            .validate()
            .map_err(|e| Error::corruption("meta", key, e.to_string()))?;
        Ok(table)
    }
}
