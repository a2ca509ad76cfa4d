//! A deterministic test double for the model (feature `fuzzing` only): the real constrained
//! beam search over the real trie, with next-token logits from a hash of the prompt and the
//! codes chosen so far instead of a neural network. It needs no ONNX Runtime and no bundle, and
//! it fits any tokenization, so the model-based fuzz harness can drive the whole refresh
//! pipeline (attach, queue, workers' batches, compare-and-swap writes, cached reads).

use std::path::PathBuf;

use super::attached::ModelInfo;
use super::beam::{self, Answer, Logits, Request, StepScorer, TokenLayout};
use super::manifest::Manifest;
use super::options::ExecutionProvider;
use crate::sid::Trie;
use crate::{Error, Result};

const BEAM_WIDTH: usize = 8;
const MAX_HISTORY: usize = 20;

pub(crate) struct FakeEngine;

impl FakeEngine {
    pub(crate) fn build(model_id: &str) -> Result<(Manifest, ModelInfo, FakeEngine)> {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format": super::manifest::FORMAT,
            "format_version": 1,
            "model_id": model_id,
            "files": {"onnx": "-", "tokenizer": "-", "tokenization": "-"},
            "sid": {"levels": 0, "codes": 0, "fingerprint": "(any)",
                    "token_format": super::manifest::TOKEN_FORMAT, "first_token_id": 0},
            "special_tokens": {"bos": 0, "eos": 0, "pad": 0},
            "prompt": {"templates": {"t": "{history}"}, "serving_template": "t",
                       "item_separator": " ", "max_history": MAX_HISTORY},
            "graph": {"num_layers": 0, "num_heads": 0, "head_dim": 0, "vocab_size": 0,
                      "kv_cache": false, "max_positions": 0}
        }))
        .map_err(|e| Error::InvalidArgument(format!("test generator manifest: {e}")))?;
        if model_id.is_empty() || model_id.len() > 128 {
            return Err(Error::InvalidArgument(
                "a model id is 1 to 128 bytes".to_string(),
            ));
        }
        let info = ModelInfo {
            model_id: model_id.to_string(),
            bundle: PathBuf::from("(test generator)"),
            dataset: None,
            sid_fingerprint: "(any)".into(),
            ort_library: PathBuf::new(),
            ort_version: "(none)".into(),
            provider: ExecutionProvider::Cpu,
            kv_cache: false,
            bundle_format: 1,
            beam_width: BEAM_WIDTH,
            max_batch: 64,
            intra_threads: 0,
            max_history: MAX_HISTORY,
            rerank_candidates: 0,
            rerank_weight: None,
            rerank_vector: None,
            sessions: 0,
            users_generated: 0,
            generate_seconds: 0.0,
            ort_seconds: 0.0,
        };
        Ok((manifest, info, FakeEngine))
    }

    pub(crate) fn max_history(&self) -> usize {
        MAX_HISTORY
    }

    /// The codes, flattened, as token ids after a leading 1.
    pub(crate) fn prompt<C: AsRef<[u16]>>(&self, codes: &[C]) -> (String, Vec<i64>) {
        let mut ids = vec![1i64];
        let mut text = String::new();
        for c in codes {
            for &code in c.as_ref() {
                ids.push(i64::from(code) + 2);
                text.push_str(&format!("<{code}>"));
            }
            text.push(' ');
        }
        (text, ids)
    }

    pub(crate) fn generate(
        &self,
        trie: &Trie,
        codes: usize,
        requests: &[Request<'_>],
    ) -> Result<Vec<Answer>> {
        let layout = TokenLayout {
            first_token_id: 0,
            codes: codes.max(1),
        };
        let mut scorer = HashScorer {
            width: trie.levels() * codes.max(1),
            states: Vec::new(),
        };
        beam::search(
            &mut scorer,
            trie,
            layout,
            beam::Widths::uniform(BEAM_WIDTH),
            requests,
        )
    }
}

/// splitmix64.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

struct HashScorer {
    width: usize,
    states: Vec<u64>,
}

impl HashScorer {
    fn fill(&self, out: &mut Logits) {
        out.rows = self.states.len();
        out.width = self.width;
        out.data.clear();
        for &s in &self.states {
            for t in 0..self.width {
                let h = mix(s ^ (t as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                out.data
                    .push((h >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0);
            }
        }
    }
}

impl StepScorer for HashScorer {
    fn prefill(&mut self, prompts: &[Vec<i64>], out: &mut Logits) -> Result<()> {
        self.states = prompts
            .iter()
            .map(|p| p.iter().fold(7u64, |h, &t| mix(h ^ t as u64)))
            .collect();
        self.fill(out);
        Ok(())
    }

    fn extend(&mut self, parents: &[usize], tokens: &[i64], out: &mut Logits) -> Result<()> {
        self.states = parents
            .iter()
            .zip(tokens)
            .map(|(&p, &t)| mix(self.states.get(p).copied().unwrap_or(0) ^ t as u64))
            .collect();
        self.fill(out);
        Ok(())
    }
}
