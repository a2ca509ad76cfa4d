//! A typed view over one transaction spanning the trees an operation touches.

use sled::transaction::{TransactionalTree, UnabortableTransactionError};
use sled::IVec;

use super::records::{self, Counts, ItemRecord};
use super::{keys, TreeId};
use crate::Error;

/// Why a transaction closure stopped: a sled conflict or storage error (retried or reported by
/// sled), or our own abort with an [`Error`].
#[derive(Debug)]
pub(crate) enum TxFail {
    Sled(UnabortableTransactionError),
    Abort(Error),
}

impl From<UnabortableTransactionError> for TxFail {
    fn from(e: UnabortableTransactionError) -> Self {
        TxFail::Sled(e)
    }
}

impl From<Error> for TxFail {
    fn from(e: Error) -> Self {
        TxFail::Abort(e)
    }
}

pub(crate) type TxResult<T> = std::result::Result<T, TxFail>;

pub(crate) struct Tx<'a> {
    views: &'a [TransactionalTree],
    trees: &'a [TreeId],
}

impl<'a> Tx<'a> {
    pub(super) fn new(views: &'a [TransactionalTree], trees: &'a [TreeId]) -> Self {
        Tx { views, trees }
    }

    /// The view of `id`. Naming a tree the operation did not declare is a bug in this crate; it
    /// aborts the transaction with an error rather than panicking.
    fn view(&self, id: TreeId) -> TxResult<&TransactionalTree> {
        match self.trees.iter().position(|t| *t == id) {
            Some(i) => Ok(&self.views[i]),
            None => {
                debug_assert!(false, "tree {} used outside its transaction", id.name());
                Err(Error::InvalidArgument(format!(
                    "internal error: tree {} used outside its transaction",
                    id.name()
                ))
                .into())
            }
        }
    }

    pub(crate) fn get(&self, id: TreeId, key: &[u8]) -> TxResult<Option<IVec>> {
        Ok(self.view(id)?.get(key)?)
    }

    pub(crate) fn insert(&self, id: TreeId, key: &[u8], value: Vec<u8>) -> TxResult<()> {
        self.view(id)?.insert(key, value)?;
        Ok(())
    }

    pub(crate) fn remove(&self, id: TreeId, key: &[u8]) -> TxResult<()> {
        self.view(id)?.remove(key)?;
        Ok(())
    }

    pub(crate) fn counts(&self) -> TxResult<Counts> {
        match self.get(TreeId::Meta, keys::META_COUNTS)? {
            Some(bytes) => Ok(Counts::decode(&bytes)?),
            None => {
                Err(Error::corruption("meta", keys::META_COUNTS, "missing counts record").into())
            }
        }
    }

    pub(crate) fn set_counts(&self, counts: &Counts) -> TxResult<()> {
        self.insert(TreeId::Meta, keys::META_COUNTS, counts.encode())
    }

    pub(crate) fn item_id(&self, key: &str) -> TxResult<Option<u64>> {
        match self.get(TreeId::ItemKeys, key.as_bytes())? {
            Some(v) => Ok(Some(records::decode_item_pointer(key.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn item(&self, id: u64) -> TxResult<Option<ItemRecord>> {
        let key = keys::item_id(id);
        match self.get(TreeId::Items, &key)? {
            Some(v) => Ok(Some(ItemRecord::decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn popular(&self, id: u64) -> TxResult<u64> {
        let key = keys::item_id(id);
        match self.get(TreeId::Popular, &key)? {
            Some(v) => Ok(records::decode_popular(&key, &v)?),
            None => Ok(0),
        }
    }

    pub(crate) fn set_popular(&self, id: u64, count: u64) -> TxResult<()> {
        let key = keys::item_id(id);
        if count == 0 {
            self.remove(TreeId::Popular, &key)
        } else {
            self.insert(TreeId::Popular, &key, records::encode_popular(count))
        }
    }

    pub(crate) fn dim(&self, name: &str) -> TxResult<Option<usize>> {
        let key = keys::dim(name);
        match self.get(TreeId::Meta, &key)? {
            Some(v) => Ok(Some(records::decode_dim(&key, &v)?)),
            None => Ok(None),
        }
    }
}
