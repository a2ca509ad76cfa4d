//! The catalog log: one stream per namespace (`{<ns>}:catalog`) that orders every change of
//! the node-local part (items, vectors, tokenizations, model attaches) made through any node,
//! and a hash (`{<ns>}:catalog-outcomes`) where the first node to apply an entry records what
//! it got, so every other node can compare (docs/cluster.md, "Nodes"). The database side,
//! which applies the entries, is `src/db/catalog_log.rs`.

use super::{err, ClusterTier};
use crate::{Error, Result};

/// The largest change body the log accepts (a tokenization of a big catalog is the largest).
pub(crate) const MAX_CHANGE_BYTES: usize = 256 << 20;

/// Entries read per round trip while catching up.
const PAGE: usize = 64;

/// One entry of the catalog log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The stream id (`<ms>-<seq>`), the entry's place in the order.
    pub id: String,
    /// The encoded change (JSON, `src/db/catalog_log.rs`).
    pub body: Vec<u8>,
}

impl ClusterTier {
    fn catalog_key(&self) -> String {
        format!("{{{}}}:catalog", self.config.namespace)
    }

    fn outcomes_key(&self) -> String {
        format!("{{{}}}:catalog-outcomes", self.config.namespace)
    }

    /// Appends a change to the log; returns its id.
    pub fn publish_change(&self, body: &[u8]) -> Result<String> {
        if body.len() > MAX_CHANGE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a catalog change of {} bytes is over the log's limit of {} MiB: split it into \
                 smaller batches",
                body.len(),
                MAX_CHANGE_BYTES >> 20
            )));
        }
        let key = self.catalog_key();
        self.run(async {
            redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("change")
                .arg(body)
                .query_async::<String>(&mut self.conn())
                .await
        })
        .map_err(err("appending to the catalog log"))
    }

    /// The entries after `after` (a stream id; `"0-0"` for the beginning), at most one page.
    pub fn changes_after(&self, after: &str) -> Result<Vec<LogEntry>> {
        let key = self.catalog_key();
        let rows: Vec<(String, Vec<Vec<u8>>)> = self
            .run(async {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut self.conn())
                    .await
            })
            .map_err(err("reading the catalog log"))?;
        rows.into_iter()
            .map(|(id, fields)| match fields.as_slice() {
                [name, body] if name.as_slice() == b"change" => Ok(LogEntry {
                    id,
                    body: body.clone(),
                }),
                _ => Err(Error::Cluster(format!(
                    "catalog log entry {id} is not a change entry ({} fields): another program \
                     writes to this namespace's keys",
                    fields.len()
                ))),
            })
            .collect()
    }

    /// Records `outcome` for entry `id` unless a node recorded one first; returns the recorded
    /// outcome (this one, or the first node's).
    pub fn settle_outcome(&self, id: &str, outcome: &str) -> Result<String> {
        let key = self.outcomes_key();
        // HSETNX alone decides who was first (fields are never removed), so the read after it
        // needs no transaction.
        self.run(async {
            let mut conn = self.conn();
            redis::cmd("HSETNX")
                .arg(&key)
                .arg(id)
                .arg(outcome)
                .query_async::<bool>(&mut conn)
                .await?;
            redis::cmd("HGET")
                .arg(&key)
                .arg(id)
                .query_async::<String>(&mut conn)
                .await
        })
        .map_err(err("recording a catalog change's outcome"))
    }

    /// The id of the log's last entry (`"0-0"` when empty).
    pub fn last_change(&self) -> Result<String> {
        let key = self.catalog_key();
        let rows: Vec<(String, Vec<Vec<u8>>)> = self
            .run(async {
                redis::cmd("XREVRANGE")
                    .arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut self.conn())
                    .await
            })
            .map_err(err("reading the catalog log"))?;
        Ok(rows
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id))
    }
}
