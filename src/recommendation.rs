//! What `recommend` returns.

/// Which part of the database produced a [`Recommendation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Source {
    /// The most-interacted live items, excluding the user's own history.
    Popularity,
    /// The attached LLM, by trie-constrained beam search over the user's history; scores are
    /// log-probabilities of the item's semantic ID.
    Model,
    /// The nearest items (ANN index) to a recency-weighted mean of the user's recent item vectors.
    Ann,
}

/// A ranked list of items for one user, with the source that produced it and its stamps.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Recommendation {
    /// The user asked about.
    pub user: String,
    /// The source that produced the list.
    pub source: Source,
    /// The user's history version the list was computed against (0 for a user with no history).
    pub history_version: u64,
    /// Best first; at most `k`, fewer when the catalog has fewer eligible items.
    pub items: Vec<ScoredItem>,
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
