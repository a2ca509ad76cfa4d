//! Interaction kinds on the cluster tier: one table per namespace (`{<ns>}:kinds`, a hash
//! name -> code, codes 1-based in order of first use; code 0 is "no kind"), shared by every
//! node, so a kind recorded through one node reads back by name through any other. Each node
//! caches the table; a code it does not know is looked up again (another node added it).

use std::collections::HashMap;

use redis::AsyncCommands;

use super::{err, ClusterTier};
use crate::{Error, Result};

/// Both directions of the cached table.
#[derive(Default)]
pub(super) struct KindCache {
    codes: HashMap<String, u32>,
    names: HashMap<u32, String>,
}

impl ClusterTier {
    fn kinds_key(&self) -> String {
        format!("{{{}}}:kinds", self.config.namespace)
    }

    /// The code of kind `name`, added to the namespace's table on first use. Fails when the
    /// table already holds `max` kinds.
    pub fn kind_code(&self, name: &str, max: usize) -> Result<u32> {
        if let Some(&c) = self.kinds.read().codes.get(name) {
            return Ok(c);
        }
        let code: u32 = self
            .run(
                self.kind
                    .key(self.kinds_key())
                    .arg(name)
                    .arg(max)
                    .invoke_async(&mut self.conn()),
            )
            .map_err(err("interning an interaction kind"))?;
        if code == 0 {
            return Err(Error::InvalidArgument(format!(
                "kind {name:?} would be distinct kind number {}, over the limit of {max}",
                max + 1
            )));
        }
        let mut cache = self.kinds.write();
        cache.codes.insert(name.to_string(), code);
        cache.names.insert(code, name.to_string());
        Ok(code)
    }

    /// The name of kind `code` (`None` for code 0, "no kind").
    pub fn kind_name(&self, code: u32) -> Result<Option<String>> {
        if code == 0 {
            return Ok(None);
        }
        if let Some(n) = self.kinds.read().names.get(&code) {
            return Ok(Some(n.clone()));
        }
        let table: HashMap<String, u32> = self
            .run(self.conn().hgetall(self.kinds_key()))
            .map_err(err("reading the interaction kinds"))?;
        let mut cache = self.kinds.write();
        for (name, c) in table {
            cache.names.insert(c, name.clone());
            cache.codes.insert(name, c);
        }
        cache.names.get(&code).cloned().map(Some).ok_or_else(|| {
            Error::corruption(
                "cluster kinds",
                code.to_string().as_bytes(),
                "a history entry names a kind code the namespace's table does not hold",
            )
        })
    }
}
