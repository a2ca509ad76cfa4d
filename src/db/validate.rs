//! Input checks run before any write: a rejected call changes nothing.

use std::collections::HashSet;

use crate::config::Limits;
use crate::{Error, Interaction, Item, Result};

pub(crate) const MAX_KIND_BYTES: usize = 64;
const MAX_VECTOR_NAME_BYTES: usize = 128;

pub(crate) fn validate_key(what: &'static str, key: &str, limits: &Limits) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey { what });
    }
    if key.len() > limits.max_key_bytes {
        return Err(Error::TooLong {
            what: format!("{what} key"),
            len: key.len(),
            max: limits.max_key_bytes,
            unit: "bytes",
        });
    }
    Ok(())
}

pub(crate) fn validate_vector_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_VECTOR_NAME_BYTES {
        return Err(Error::InvalidArgument(format!(
            "vector name {name:?} must be 1 to {MAX_VECTOR_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn validate_batch_len(len: usize, limits: &Limits) -> Result<()> {
    if len > limits.max_batch {
        return Err(Error::BatchTooLarge {
            len,
            max: limits.max_batch,
        });
    }
    Ok(())
}

fn text(what: String, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::TooLong {
            what,
            len: value.len(),
            max,
            unit: "bytes",
        });
    }
    Ok(())
}

pub(crate) fn validate_items(items: &[Item], limits: &Limits) -> Result<()> {
    validate_batch_len(items.len(), limits)?;
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        validate_key("item", &item.key, limits)?;
        if !seen.insert(item.key.as_str()) {
            return Err(Error::DuplicateInBatch {
                key: item.key.clone(),
            });
        }
        let max = limits.max_text_bytes;
        text(format!("title of item {:?}", item.key), &item.title, max)?;
        text(
            format!("description of item {:?}", item.key),
            &item.description,
            max,
        )?;
        if item.attributes.len() > limits.max_attributes {
            return Err(Error::TooLong {
                what: format!("attribute list of item {:?}", item.key),
                len: item.attributes.len(),
                max: limits.max_attributes,
                unit: "entries",
            });
        }
        let attr_bytes: usize = item.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        if attr_bytes > max {
            return Err(Error::TooLong {
                what: format!("attributes of item {:?}", item.key),
                len: attr_bytes,
                max,
                unit: "bytes",
            });
        }
        for (name, values) in &item.vectors {
            validate_vector_name(name)?;
            let invalid = |reason: String| Error::InvalidVector {
                item: item.key.clone(),
                name: name.clone(),
                reason,
            };
            if values.is_empty() {
                return Err(invalid("it is empty".into()));
            }
            if values.len() > limits.max_vector_dim {
                return Err(invalid(format!(
                    "dimension {} is over the limit of {}",
                    values.len(),
                    limits.max_vector_dim
                )));
            }
            if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
                return Err(invalid(format!("component {pos} is {}", values[pos])));
            }
        }
    }
    Ok(())
}

pub(crate) fn validate_interactions(events: &[Interaction], limits: &Limits) -> Result<()> {
    validate_batch_len(events.len(), limits)?;
    for (i, e) in events.iter().enumerate() {
        validate_key("user", &e.user, limits)?;
        validate_key("item", &e.item, limits)?;
        if !e.weight.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "interaction {i} (user {:?}, item {:?}): weight {} is not finite",
                e.user, e.item, e.weight
            )));
        }
        if let Some(kind) = &e.kind {
            if kind.is_empty() || kind.len() > MAX_KIND_BYTES {
                return Err(Error::InvalidArgument(format!(
                    "interaction {i}: kind {kind:?} must be 1 to {MAX_KIND_BYTES} bytes"
                )));
            }
        }
    }
    Ok(())
}

pub(crate) fn validate_k(k: usize, limits: &Limits) -> Result<()> {
    if k == 0 || k > limits.max_k {
        return Err(Error::InvalidK {
            k,
            max: limits.max_k,
        });
    }
    Ok(())
}
