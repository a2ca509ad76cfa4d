//! `manifest.json` of a model bundle (docs/model-bundle.md, "The model bundle").

use std::collections::BTreeMap;

use serde::Deserialize;

/// Largest manifest accepted (bytes): the manifest is small; a huge file is not one.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Longest `prompt.item_separator` accepted (bytes): it is repeated between every history item
/// of every prompt, so a huge one costs every generation.
pub(crate) const MAX_ITEM_SEPARATOR_BYTES: usize = 64;

/// The parsed manifest. Unknown fields are ignored (the `training` block is informative).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub model_id: String,
    #[serde(default)]
    pub dataset: Option<String>,
    pub files: Files,
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
    pub sid: SidTokens,
    pub special_tokens: Specials,
    pub prompt: Prompt,
    pub graph: Graph,
    /// Format 3: the hybrid re-rank of the beam's candidates.
    #[serde(default)]
    pub rerank: Option<Rerank>,
}

/// Format 3's `rerank` block (docs/model-bundle.md, "Format 3: the hybrid re-rank"): the
/// beam's first `candidates` items are re-scored `lm + weight * dot(user, item)`, the user
/// vector from `files.user` over the stored `vector` of the last `max_history` history items.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Rerank {
    /// The stored item-vector name (items.jsonl `vectors`) the dense score reads.
    pub vector: String,
    /// The fusion weight of the dense score, chosen on validation.
    pub weight: f64,
    /// Beam candidates re-scored per user.
    pub candidates: usize,
    /// History positions of the user encoder.
    pub max_history: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Files {
    pub onnx: String,
    pub tokenizer: String,
    pub tokenization: String,
    /// For tools that set a database up from the bundle; its checksum is verified on open.
    #[serde(default)]
    pub items: Option<String>,
    /// Read by the parity tests; its checksum is verified on open.
    #[serde(default)]
    pub test_vectors: Option<String>,
    /// Format 2: the decoding-step graph (`files.onnx` is then the prefill graph).
    #[serde(default)]
    pub decode: Option<String>,
    /// Format 3: the user encoder of the re-rank.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct SidTokens {
    pub levels: usize,
    pub codes: usize,
    pub fingerprint: String,
    pub token_format: String,
    pub first_token_id: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Specials {
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Prompt {
    pub templates: BTreeMap<String, String>,
    pub serving_template: String,
    pub item_separator: String,
    pub max_history: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Graph {
    pub num_layers: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub kv_cache: bool,
    pub max_positions: usize,
    /// Format 2: `"shared_prefix"` (the only decoding format 2 defines).
    #[serde(default)]
    pub decoding: Option<String>,
    /// Format 2: the vocabulary slice the graphs' `id_logits` output holds.
    #[serde(default)]
    pub id_logits: Option<IdLogits>,
}

/// The columns of a format-2 graph's `id_logits`: token ids `start..start + count`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct IdLogits {
    pub start: usize,
    pub count: usize,
}

/// The only manifest format this build reads.
pub(crate) const FORMAT: &str = "convergedb.bundle";
/// The manifest format versions this build reads: 1 (one graph, a KV cache per beam), 2
/// (shared-prefix decoding: a prefill graph and a decoding-step graph) and 3 (format 2 and the
/// hybrid re-rank: a user encoder and a `rerank` block).
pub(crate) const FORMAT_VERSIONS: std::ops::RangeInclusive<u32> = 1..=3;
/// Most beam candidates a re-rank may ask for.
pub(crate) const MAX_RERANK_CANDIDATES: usize = 4096;
/// Most history positions a user encoder may take.
pub(crate) const MAX_RERANK_HISTORY: usize = 4096;
/// The decoding format 2 defines.
pub(crate) const SHARED_PREFIX: &str = "shared_prefix";
/// The ID-token spelling the bundle format fixes.
pub(crate) const TOKEN_FORMAT: &str = "<{letter}_{code}>";

impl Manifest {
    /// Checks every field that does not need the other files. `Err` is the reason.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if !FORMAT_VERSIONS.contains(&self.format_version) {
            return Err(format!(
                "format_version {} is not supported (this build reads {} to {}): export the bundle with a training pipeline of this release, or upgrade a format-1 bundle with `python -m convergedb_train.reexport OLD NEW`",
                self.format_version,
                FORMAT_VERSIONS.start(),
                FORMAT_VERSIONS.end()
            ));
        }
        if self.model_id.is_empty() || self.model_id.len() > 128 {
            return Err("model_id must be 1 to 128 bytes".into());
        }
        if let Some(c) = self.model_id.chars().find(|c| c.is_control()) {
            return Err(format!(
                "model_id {:?} holds the control character U+{:04X}: use printable characters \
                 (it is stored with every cached list and shown in stats)",
                self.model_id, c as u32
            ));
        }
        let sep = &self.prompt.item_separator;
        if sep.len() > MAX_ITEM_SEPARATOR_BYTES {
            return Err(format!(
                "prompt.item_separator is {} bytes, over the limit of {MAX_ITEM_SEPARATOR_BYTES} \
                 bytes",
                sep.len()
            ));
        }
        let sid = &self.sid;
        if !(1..=crate::MAX_LEVELS).contains(&sid.levels) {
            return Err(format!("sid.levels {} is out of range 1..=8", sid.levels));
        }
        if !(2..=crate::MAX_CODES).contains(&sid.codes) {
            return Err(format!("sid.codes {} is out of range 2..=65536", sid.codes));
        }
        if sid.token_format != TOKEN_FORMAT {
            return Err(format!(
                "sid.token_format {:?} is not supported (expected {TOKEN_FORMAT:?})",
                sid.token_format
            ));
        }
        if sid.fingerprint.len() != 64 || !sid.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("sid.fingerprint must be 64 hex digits (a SHA-256)".into());
        }
        let g = &self.graph;
        let id_end = sid.first_token_id as usize + sid.levels * sid.codes;
        if id_end > g.vocab_size {
            return Err(format!(
                "the ID tokens end at id {id_end}, past graph.vocab_size {}",
                g.vocab_size
            ));
        }
        for (name, id) in [
            ("bos", self.special_tokens.bos),
            ("eos", self.special_tokens.eos),
            ("pad", self.special_tokens.pad),
        ] {
            if id as usize >= g.vocab_size {
                return Err(format!(
                    "special_tokens.{name} = {id} is past graph.vocab_size"
                ));
            }
        }
        if g.num_layers == 0 || g.num_layers > 256 || g.num_heads == 0 || g.head_dim == 0 {
            return Err("graph.num_layers, num_heads and head_dim must be positive".into());
        }
        if g.vocab_size == 0 || g.vocab_size > 1 << 24 {
            return Err(format!("graph.vocab_size {} is out of range", g.vocab_size));
        }
        if g.max_positions <= sid.levels {
            return Err("graph.max_positions leaves no room for a prompt".into());
        }
        self.validate_decoding()?;
        self.validate_rerank()?;
        let p = &self.prompt;
        let template = p.templates.get(&p.serving_template).ok_or_else(|| {
            format!(
                "prompt.serving_template {:?} is not in prompt.templates",
                p.serving_template
            )
        })?;
        if template.matches("{history}").count() != 1 {
            return Err(format!(
                "the serving template {:?} must contain {{history}} exactly once",
                p.serving_template
            ));
        }
        if p.max_history == 0 {
            return Err("prompt.max_history must be at least 1".into());
        }
        for name in [
            Some(&self.files.onnx),
            Some(&self.files.tokenizer),
            Some(&self.files.tokenization),
            self.files.decode.as_ref(),
            self.files.user.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.')
            {
                return Err(format!(
                    "file name {name:?} must be a plain name inside the bundle"
                ));
            }
        }
        Ok(())
    }

    /// Format 2's fields present exactly when the format says, and consistent with the ID
    /// tokens.
    fn validate_decoding(&self) -> std::result::Result<(), String> {
        let g = &self.graph;
        if self.format_version == 1 {
            if self.files.decode.is_some() || g.decoding.is_some() || g.id_logits.is_some() {
                return Err("files.decode, graph.decoding and graph.id_logits belong to format_version 2, the manifest says 1".into());
            }
            return Ok(());
        }
        if g.decoding.as_deref() != Some(SHARED_PREFIX) {
            return Err(format!(
                "graph.decoding is {:?}, format_version 2 needs {SHARED_PREFIX:?}",
                g.decoding
            ));
        }
        let Some(decode) = &self.files.decode else {
            return Err("format_version 2 needs files.decode (the decoding-step graph)".into());
        };
        if decode == &self.files.onnx {
            return Err("files.decode and files.onnx must be two different graphs".into());
        }
        if !g.kv_cache {
            return Err(
                "format_version 2 decodes with a cache: graph.kv_cache must be true".into(),
            );
        }
        let want = IdLogits {
            start: self.sid.first_token_id as usize,
            count: self.sid.levels * self.sid.codes,
        };
        if g.id_logits != Some(want) {
            return Err(format!(
                "graph.id_logits is {:?}, expected {{\"start\": {}, \"count\": {}}} (the ID tokens)",
                g.id_logits, want.start, want.count
            ));
        }
        Ok(())
    }

    /// Format 3's `rerank` block and `files.user`, present exactly when the format says.
    fn validate_rerank(&self) -> std::result::Result<(), String> {
        let Some(r) = &self.rerank else {
            if self.format_version == 3 || self.files.user.is_some() {
                return Err("format_version 3 needs both a rerank block and files.user (the user encoder); earlier versions have neither".into());
            }
            return Ok(());
        };
        if self.format_version != 3 || self.files.user.is_none() {
            return Err(format!(
                "the rerank block belongs to format_version 3 with files.user, the manifest says version {}{}",
                self.format_version,
                if self.files.user.is_none() { " without files.user" } else { "" }
            ));
        }
        if r.vector.is_empty() || r.vector.len() > 128 {
            return Err("rerank.vector must name a stored vector (1 to 128 bytes)".into());
        }
        if !r.weight.is_finite() {
            return Err(format!("rerank.weight {} is not a finite number", r.weight));
        }
        if !(1..=MAX_RERANK_CANDIDATES).contains(&r.candidates) {
            return Err(format!(
                "rerank.candidates {} is out of range 1..={MAX_RERANK_CANDIDATES}",
                r.candidates
            ));
        }
        if !(1..=MAX_RERANK_HISTORY).contains(&r.max_history) {
            return Err(format!(
                "rerank.max_history {} is out of range 1..={MAX_RERANK_HISTORY}",
                r.max_history
            ));
        }
        Ok(())
    }

    /// The serving template (validated to exist).
    pub fn template(&self) -> &str {
        self.prompt
            .templates
            .get(&self.prompt.serving_template)
            .map_or("", String::as_str)
    }

    /// Vocabulary id of code `code` at level `level`.
    pub fn token_id(&self, level: usize, code: u16) -> u32 {
        self.sid.first_token_id + (level * self.sid.codes) as u32 + u32::from(code)
    }

    /// The token string of code `code` at level `level` (`<a_12>`).
    pub fn token_text(level: usize, code: u16) -> String {
        let letter = (b'a' + level as u8) as char;
        format!("<{letter}_{code}>")
    }
}
