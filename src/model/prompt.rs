//! Prompt rendering and tokenization (docs/model-bundle.md, "Prompt rendering").

use tokenizers::Tokenizer;

use super::manifest::Manifest;
use crate::{Error, Result};

/// Renders and tokenizes prompts for one bundle.
pub(crate) struct Prompter {
    prefix: String,
    suffix: String,
    separator: String,
    max_history: usize,
    max_positions: usize,
    levels: usize,
    bos: i64,
    tokenizer: Tokenizer,
}

impl Prompter {
    pub fn new(manifest: &Manifest, tokenizer: Tokenizer) -> Prompter {
        let template = manifest.template();
        let (prefix, suffix) = template.split_once("{history}").unwrap_or((template, ""));
        Prompter {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            separator: manifest.prompt.item_separator.clone(),
            max_history: manifest.prompt.max_history,
            max_positions: manifest.graph.max_positions,
            levels: manifest.sid.levels,
            bos: i64::from(manifest.special_tokens.bos),
            tokenizer,
        }
    }

    /// Most history items a prompt shows.
    pub fn max_history(&self) -> usize {
        self.max_history
    }

    /// The prompt text for a history given as code tuples, oldest first. Only the last
    /// `max_history` tuples are shown.
    pub fn render<C: AsRef<[u16]>>(&self, history: &[C]) -> String {
        let shown = &history[history.len().saturating_sub(self.max_history)..];
        let mut text =
            String::with_capacity(self.prefix.len() + self.suffix.len() + 32 * shown.len());
        text.push_str(&self.prefix);
        for (i, codes) in shown.iter().enumerate() {
            if i > 0 {
                text.push_str(&self.separator);
            }
            for (level, &code) in codes.as_ref().iter().enumerate() {
                text.push_str(&Manifest::token_text(level, code));
            }
        }
        text.push_str(&self.suffix);
        text
    }

    /// `[bos] ++ encode(text, add_special_tokens = false)`, checked against the positions.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::InvalidArgument(format!("cannot tokenize the prompt: {e}")))?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 1);
        ids.push(self.bos);
        ids.extend(enc.get_ids().iter().map(|&i| i64::from(i)));
        if ids.len() + self.levels > self.max_positions {
            return Err(Error::PromptTooLong {
                tokens: ids.len(),
                max: self.max_positions,
                levels: self.levels,
            });
        }
        Ok(ids)
    }
}
