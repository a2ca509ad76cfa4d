//! The public item type.

use std::collections::BTreeMap;

/// A catalog item: an external key, text fields, free attributes and named embedding vectors.
///
/// ```
/// let item = convergedb::Item::new("tt0114709")
///     .title("Toy Story")
///     .attribute("year", "1995")
///     .vector("text", vec![0.1, 0.2, 0.3]);
/// assert_eq!(item.key, "tt0114709");
/// ```
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The external key (non-empty, unique in the catalog).
    pub key: String,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Free-text description.
    #[serde(default)]
    pub description: String,
    /// Free attributes (name -> value), e.g. `genre`, `year`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Named embedding vectors; every vector of one name has one fixed dimension.
    #[serde(default)]
    pub vectors: BTreeMap<String, Vec<f32>>,
}

impl Item {
    /// An item with only a key.
    pub fn new(key: impl Into<String>) -> Self {
        Item {
            key: key.into(),
            ..Item::default()
        }
    }

    /// Sets the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds (or replaces) an attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Adds (or replaces) a named vector.
    pub fn vector(mut self, name: impl Into<String>, values: Vec<f32>) -> Self {
        self.vectors.insert(name.into(), values);
        self
    }
}
