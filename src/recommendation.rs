//! What `recommend` returns.

/// Which part of the database produced a [`Recommendation`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Source {
    /// The most-interacted live items, excluding the user's own history.
    #[default]
    Popularity,
    /// The attached LLM, by trie-constrained beam search over the user's history; scores are
    /// log-probabilities of the item's semantic ID.
    Model,
    /// The nearest items (ANN index) to a recency-weighted mean of the user's recent item vectors.
    Ann,
}

/// A ranked list of items for one user, with the source that produced it and its stamps.
/// (`Default` is an empty popularity answer, a buffer for [`crate::Db::recommend_into`].)
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Recommendation {
    /// The user asked about.
    pub user: String,
    /// The source that produced the list.
    pub source: Source,
    /// The user's history version the list was computed against (0 for a user with no history).
    /// For a cached list this is its stamp, which is older than the user's history when the
    /// answer is `stale`.
    pub history_version: u64,
    /// True when a cached list answered but is no longer current: the history changed since,
    /// another model or tokenization is now in use, or it held a deleted item (filtered out). The
    /// user is queued for a refresh. Always false for the other sources, which are computed now.
    pub stale: bool,
    /// The stamps of a model-generated list (cached or just generated); `None` for the other
    /// sources.
    pub stamps: Option<ListStamps>,
    /// Best first; at most `k`, fewer when the catalog has fewer eligible items.
    pub items: Vec<ScoredItem>,
}

/// Where a model-generated list came from (stored with every cached list).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListStamps {
    /// The model bundle's `model_id`.
    pub model_id: String,
    /// The tokenization (sid-table) version whose codes the model generated.
    pub sid_version: u64,
    /// When the list was computed, Unix time in milliseconds.
    pub computed_at_ms: u64,
}

/// One ranked item.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScoredItem {
    /// The item's key.
    pub key: String,
    /// The item's internal id.
    pub item_id: u64,
    /// The source's score; higher is better. For popularity: retained interactions with the item;
    /// for ANN: cosine similarity to the query.
    pub score: f64,
}
