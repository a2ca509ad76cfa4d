//! The public interaction and history types.

/// One user-item event: a view, a click, a purchase, a rating.
///
/// ```
/// let event = convergedb::Interaction::new("user-7", "tt0114709", 881_250_949)
///     .kind("rating")
///     .weight(4.0);
/// assert_eq!(event.weight, 4.0);
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// The user's external key.
    pub user: String,
    /// The item's external key; the item must exist and be live.
    pub item: String,
    /// When it happened, in the caller's unit (seconds since the epoch by convention). Histories
    /// are ordered by this value; ties keep arrival order.
    pub timestamp: i64,
    /// Optional kind (`"click"`, `"rating"`, ...), at most 64 bytes.
    #[serde(default)]
    pub kind: Option<String>,
    /// Weight, finite (default 1.0). Stored with the event; popularity counts events, not weights.
    #[serde(default = "default_weight")]
    pub weight: f32,
}

fn default_weight() -> f32 {
    1.0
}

impl Interaction {
    /// An interaction with no kind and weight 1.0.
    pub fn new(user: impl Into<String>, item: impl Into<String>, timestamp: i64) -> Self {
        Interaction {
            user: user.into(),
            item: item.into(),
            timestamp,
            kind: None,
            weight: 1.0,
        }
    }

    /// Sets the kind.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Sets the weight.
    pub fn weight(mut self, weight: f32) -> Self {
        self.weight = weight;
        self
    }
}

/// A user's history, oldest first, as returned by [`crate::Db::history`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct History {
    /// The user's key.
    pub user: String,
    /// Bumped by every write that changes this history; cached lists are stamped with it.
    pub version: u64,
    /// Interactions ever recorded for this user (including those dropped by the history limit).
    pub recorded: u64,
    /// The retained interactions, oldest first.
    pub entries: Vec<HistoryEntry>,
}

/// One entry of a [`History`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    /// The item's key.
    pub item: String,
    /// The item's internal id.
    pub item_id: u64,
    /// Whether the item is still in the catalog.
    pub live: bool,
    /// The interaction's timestamp.
    pub timestamp: i64,
    /// The interaction's kind, if any.
    pub kind: Option<String>,
    /// The interaction's weight.
    pub weight: f32,
}
