//! Opening a model bundle folder and validating everything but the ONNX graph (which
//! `session.rs` checks when it builds a session).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use super::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::sid::file;
use crate::{Error, Result};

/// The largest tokenizer.json accepted (bytes).
const MAX_TOKENIZER_BYTES: u64 = 256 * 1024 * 1024;

/// A validated bundle: manifest, tokenizer and the tokenization's fingerprint.
pub(crate) struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub tokenizer: Tokenizer,
    pub onnx_path: PathBuf,
    /// Format 2: the decoding-step graph.
    pub decode_path: Option<PathBuf>,
    /// Format 3: the re-rank's user encoder.
    pub user_path: Option<PathBuf>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidBundle {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot open it: {e}")))?;
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(path, format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(bad(path, format!("larger than the {max}-byte limit")));
    }
    Ok(bytes)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot open it: {e}")))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| bad(path, format!("cannot read it: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Bundle {
    /// Reads and validates the bundle in `dir`.
    pub fn open(dir: &Path) -> Result<Bundle> {
        if !dir.is_dir() {
            return Err(bad(
                dir,
                "not a folder (a bundle is a folder holding manifest.json)",
            ));
        }
        let manifest_path = dir.join("manifest.json");
        let bytes = read_limited(&manifest_path, MAX_MANIFEST_BYTES)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| bad(&manifest_path, format!("not a valid manifest: {e}")))?;
        manifest.validate().map_err(|r| bad(&manifest_path, r))?;

        let files = &manifest.files;
        // Every file the manifest names has a checksum that must match, the optional ones
        // (`items`, `test_vectors`) included: a bundle is trusted only as far as its checksums.
        let named = [
            Some(&files.onnx),
            files.decode.as_ref(),
            files.user.as_ref(),
            Some(&files.tokenizer),
            Some(&files.tokenization),
            files.items.as_ref(),
            files.test_vectors.as_ref(),
        ];
        for name in named.into_iter().flatten() {
            let path = dir.join(name);
            let Some(expected) = manifest.sha256.get(name) else {
                return Err(bad(
                    &manifest_path,
                    format!("sha256 lists no checksum for {name:?}"),
                ));
            };
            let actual = sha256_file(&path)?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(bad(
                    &path,
                    format!("SHA-256 is {actual}, the manifest says {expected}: the file was changed or truncated"),
                ));
            }
        }

        let tokenizer_path = dir.join(&files.tokenizer);
        read_limited(&tokenizer_path, MAX_TOKENIZER_BYTES)?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            bad(
                &tokenizer_path,
                format!("not a Hugging Face tokenizer.json: {e}"),
            )
        })?;
        check_tokenizer(&tokenizer, &manifest).map_err(|r| bad(&tokenizer_path, r))?;

        let tokenization_path = dir.join(&files.tokenization);
        let parsed =
            file::read(&tokenization_path).map_err(|e| bad(&tokenization_path, e.to_string()))?;
        if parsed.table.levels != manifest.sid.levels || parsed.table.codes != manifest.sid.codes {
            return Err(bad(
                &tokenization_path,
                format!(
                    "has {} levels x {} codes, the manifest says {} x {}",
                    parsed.table.levels,
                    parsed.table.codes,
                    manifest.sid.levels,
                    manifest.sid.codes
                ),
            ));
        }
        let fingerprint = parsed
            .table
            .compute_fingerprint(parsed.items.iter().map(|(k, c)| (k.as_str(), c.as_slice())));
        if fingerprint != manifest.sid.fingerprint {
            return Err(bad(
                &tokenization_path,
                format!(
                    "its fingerprint is {fingerprint}, the manifest says {}",
                    manifest.sid.fingerprint
                ),
            ));
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            onnx_path: dir.join(&files.onnx),
            decode_path: files.decode.as_ref().map(|d| dir.join(d)),
            user_path: files.user.as_ref().map(|d| dir.join(d)),
            manifest,
            tokenizer,
        })
    }
}

/// Every ID token maps to its id; the special tokens exist; the vocabulary fits the graph.
fn check_tokenizer(tok: &Tokenizer, m: &Manifest) -> std::result::Result<(), String> {
    let vocab = tok.get_vocab_size(true);
    if vocab > m.graph.vocab_size {
        return Err(format!(
            "has {vocab} tokens, more than the graph's vocab_size {}",
            m.graph.vocab_size
        ));
    }
    for level in 0..m.sid.levels {
        for code in 0..m.sid.codes {
            let code = code as u16;
            let text = Manifest::token_text(level, code);
            let want = m.token_id(level, code);
            match tok.token_to_id(&text) {
                Some(id) if id == want => {}
                Some(id) => {
                    return Err(format!(
                        "maps the ID token {text} to id {id}, the manifest's layout says {want}"
                    ))
                }
                None => {
                    return Err(format!(
                        "lacks the ID token {text} (the semantic-ID tokens must be added tokens)"
                    ))
                }
            }
        }
    }
    // The ID tokens must survive tokenization as single tokens.
    let probe = format!(
        "{}{}",
        Manifest::token_text(0, 0),
        Manifest::token_text(1, 1)
    );
    let ids = tok
        .encode(probe.as_str(), false)
        .map_err(|e| format!("cannot tokenize {probe:?}: {e}"))?;
    let want = [m.token_id(0, 0), m.token_id(1, 1)];
    if m.sid.levels >= 2 && ids.get_ids() != want {
        return Err(format!(
            "tokenizes {probe:?} as {:?}, expected {want:?}: the ID tokens must be added tokens with normalized = false",
            ids.get_ids()
        ));
    }
    for (name, id) in [
        ("bos", m.special_tokens.bos),
        ("eos", m.special_tokens.eos),
        ("pad", m.special_tokens.pad),
    ] {
        if tok.id_to_token(id).is_none() {
            return Err(format!("has no token with the manifest's {name} id {id}"));
        }
    }
    Ok(())
}
