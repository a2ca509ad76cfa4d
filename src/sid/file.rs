//! The tokenization file: the JSON format the database exports and imports and the training
//! pipeline reads and writes (`docs/model-bundle.md`, "Tokenization file"). Also reads the
//! LC-Rec/LETTER `*.index.json` format (`{"item": ["<a_12>", "<b_7>", ...]}`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::table::{Encoder, SidTable, MAX_CODES, MAX_LEVELS};
use super::train::Codebooks;
use crate::{Error, Result};

/// The `format` field of a tokenization file.
pub const FILE_FORMAT: &str = "convergedb.tokenization";
const FILE_FORMAT_VERSION: u32 = 1;
/// Largest tokenization file read (bounds the memory an import may take).
const MAX_FILE_BYTES: u64 = 2 << 30;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizationFile {
    format: String,
    format_version: u32,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    fingerprint: Option<String>,
    levels: usize,
    codes: usize,
    #[serde(default)]
    vector: Option<String>,
    #[serde(default)]
    dim: Option<usize>,
    /// `levels * codes * dim` floats, row-major (level, code, component).
    #[serde(default)]
    codebooks: Option<Vec<f32>>,
    #[serde(default)]
    encoder: Option<Encoder>,
    #[serde(default)]
    balance_last_level: bool,
    #[serde(default)]
    source: Option<String>,
    /// Item key -> codes (one per level).
    items: BTreeMap<String, Vec<u16>>,
}

/// A parsed file: the table (version and fingerprint not yet assigned) and its item codes.
pub(crate) struct Parsed {
    pub table: SidTable,
    pub items: Vec<(String, Vec<u16>)>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidTokenization(format!("{}: {}", path.display(), reason.into()))
}

/// Reads a convergedb tokenization file or a LETTER index file.
pub(crate) fn read(path: &Path) -> Result<Parsed> {
    parse(path, &read_text(path)?)
}

/// The text of a tokenization file, within the size limit.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(bad(
            path,
            format!("{len} bytes, over the limit of {MAX_FILE_BYTES}"),
        ));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Parses the text of a tokenization file or a LETTER index file; `path` only names it in
/// errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Parsed> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad(path, format!("not JSON: {e}")))?;
    let parsed = if value.get("format").is_some() {
        from_file(path, value)?
    } else {
        from_letter_index(path, &value)?
    };
    parsed
        .table
        .validate()
        .map_err(|e| bad(path, e.to_string()))?;
    for (key, codes) in &parsed.items {
        if codes.len() != parsed.table.levels {
            return Err(bad(
                path,
                format!(
                    "item {key:?} has {} codes, expected {}",
                    codes.len(),
                    parsed.table.levels
                ),
            ));
        }
        if let Some(c) = codes
            .iter()
            .find(|c| usize::from(**c) >= parsed.table.codes)
        {
            return Err(bad(
                path,
                format!(
                    "item {key:?} has code {c}, but a level has only {} codes",
                    parsed.table.codes
                ),
            ));
        }
    }
    Ok(parsed)
}

fn from_file(path: &Path, value: Value) -> Result<Parsed> {
    let f: TokenizationFile =
        serde_json::from_value(value).map_err(|e| bad(path, e.to_string()))?;
    if f.format != FILE_FORMAT {
        return Err(bad(
            path,
            format!("format {:?} is not {FILE_FORMAT:?}", f.format),
        ));
    }
    if f.format_version != FILE_FORMAT_VERSION {
        return Err(bad(
            path,
            format!(
                "format_version {} is not supported (this build reads {FILE_FORMAT_VERSION})",
                f.format_version
            ),
        ));
    }
    let codebooks = match (f.codebooks, f.dim) {
        (Some(centroids), Some(dim)) => Some(Codebooks {
            levels: f.levels,
            codes: f.codes,
            dim,
            centroids,
        }),
        (Some(_), None) => return Err(bad(path, "codebooks need \"dim\"")),
        (None, _) => None,
    };
    Ok(Parsed {
        table: SidTable {
            version: 0,
            fingerprint: String::new(),
            levels: f.levels,
            codes: f.codes,
            vector: f.vector,
            codebooks,
            encoder: f.encoder,
            balance_last_level: f.balance_last_level,
            source: f
                .source
                .unwrap_or_else(|| format!("imported from {}", path.display())),
        },
        items: f.items.into_iter().collect(),
    })
}

/// `<a_128>`: level letter (a = level 0) and code.
fn parse_token(token: &str, level: usize) -> Option<u16> {
    let inner = token.strip_prefix('<')?.strip_suffix('>')?;
    let (letter, code) = inner.split_once('_')?;
    let expected = char::from(b'a' + u8::try_from(level).ok()?);
    if letter.len() != 1 || !letter.starts_with(expected) {
        return None;
    }
    code.parse().ok()
}

fn from_letter_index(path: &Path, value: &Value) -> Result<Parsed> {
    let Value::Object(map) = value else {
        return Err(bad(path, "expected a JSON object of item -> tokens"));
    };
    let mut items = Vec::with_capacity(map.len());
    let mut levels = None;
    let mut max_code = 0u16;
    for (key, tokens) in map {
        let Some(tokens) = tokens.as_array() else {
            return Err(bad(
                path,
                format!("item {key:?}: expected a list of tokens like \"<a_12>\""),
            ));
        };
        if tokens.is_empty() || tokens.len() > MAX_LEVELS {
            return Err(bad(
                path,
                format!(
                    "item {key:?} has {} tokens (1 to {MAX_LEVELS} allowed)",
                    tokens.len()
                ),
            ));
        }
        if *levels.get_or_insert(tokens.len()) != tokens.len() {
            return Err(bad(
                path,
                format!(
                    "item {key:?} has {} tokens, other items have {:?}",
                    tokens.len(),
                    levels
                ),
            ));
        }
        let mut codes = Vec::with_capacity(tokens.len());
        for (level, t) in tokens.iter().enumerate() {
            let code = t
                .as_str()
                .and_then(|s| parse_token(s, level))
                .ok_or_else(|| {
                    bad(
                        path,
                        format!(
                            "item {key:?}: token {t} is not <{}_N>",
                            char::from(b'a' + level as u8)
                        ),
                    )
                })?;
            max_code = max_code.max(code);
            codes.push(code);
        }
        items.push((key.clone(), codes));
    }
    let Some(levels) = levels else {
        return Err(bad(path, "the file names no item"));
    };
    // Codes per level: the next power of two that holds the largest code (LETTER uses 256).
    let codes = (usize::from(max_code) + 1)
        .next_power_of_two()
        .clamp(2, MAX_CODES);
    Ok(Parsed {
        table: SidTable {
            version: 0,
            fingerprint: String::new(),
            levels,
            codes,
            vector: None,
            codebooks: None,
            encoder: None,
            balance_last_level: false,
            source: format!("imported LETTER index {}", path.display()),
        },
        items,
    })
}

/// Writes `table` and the current item codes as a tokenization file.
pub(crate) fn write(
    path: &Path,
    table: &SidTable,
    items: BTreeMap<String, Vec<u16>>,
) -> Result<()> {
    let file = TokenizationFile {
        format: FILE_FORMAT.to_string(),
        format_version: FILE_FORMAT_VERSION,
        version: Some(table.version),
        fingerprint: Some(table.fingerprint.clone()),
        levels: table.levels,
        codes: table.codes,
        vector: table.vector.clone(),
        dim: table.codebooks.as_ref().map(|c| c.dim),
        codebooks: table.codebooks.as_ref().map(|c| c.centroids.clone()),
        encoder: table.encoder.clone(),
        balance_last_level: table.balance_last_level,
        source: Some(table.source.clone()),
        items,
    };
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let out = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(out);
    serde_json::to_writer(&mut w, &file).map_err(|e| bad(path, e.to_string()))?;
    std::io::Write::flush(&mut w).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::parse_token;

    #[test]
    fn letter_tokens() {
        assert_eq!(parse_token("<a_128>", 0), Some(128));
        assert_eq!(parse_token("<d_0>", 3), Some(0));
        assert_eq!(parse_token("<b_1>", 0), None);
        assert_eq!(parse_token("a_1", 0), None);
        assert_eq!(parse_token("<a_70000>", 0), None);
    }
}
