//! The catalog log: catalog changes, tokenization imports and model attaches made through one
//! cluster node reach every other node in the same order, with the same item ids; a node that
//! did not start from the same catalog is told it diverged instead of serving other ids.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`) and a cluster (`common/cluster.rs`).

mod common;

use common::bundle;
use convergedb::cluster::{ClusterConfig, ClusterDurability};
use convergedb::{Config, Db, Error, Item, ModelOptions};

fn node(dir: &std::path::Path, name: &str) -> Db {
    let mut c = ClusterConfig::new(common::cluster::urls());
    c.namespace = common::cluster::namespace(name);
    c.durability = ClusterDurability::Buffered;
    Config::new(dir)
        .refresh_workers(0)
        .cluster(c)
        .open()
        .unwrap()
}

#[test]
fn changes_through_one_node_reach_the_others_in_order() {
    let (da, db_dir) = (common::tempdir(), common::tempdir());
    let a = node(da.path(), "catalog");
    bundle::load_catalog(&a);
    let keys = bundle::item_keys();

    // A node opened afterwards, from an empty directory, applies the log when it opens.
    let b = node(db_dir.path(), "catalog");
    assert_eq!(b.stats().unwrap().items, keys.len() as u64);
    for key in [&keys[0], &keys[700], &keys[keys.len() - 1]] {
        assert_eq!(a.item_id(key).unwrap(), b.item_id(key).unwrap(), "{key}");
        assert_eq!(a.sid(key).unwrap(), b.sid(key).unwrap(), "{key}");
    }
    assert_eq!(
        a.sid_info().unwrap().fingerprint,
        b.sid_info().unwrap().fingerprint
    );

    // Changes through b reach a (sync_catalog, or within FOLLOW_EVERY on its own).
    let ids = b
        .put_items(&[Item::new("new-item").title("added through b")])
        .unwrap();
    assert_eq!(b.delete_items(&[keys[3].as_str()]).unwrap(), 1);
    assert!(a.sync_catalog().unwrap() >= 2);
    assert_eq!(a.item_id("new-item").unwrap(), Some(ids[0]));
    assert_eq!(
        a.get_item("new-item").unwrap().unwrap().title,
        "added through b"
    );
    assert!(a.get_item(&keys[3]).unwrap().is_none());
    assert_eq!(
        a.stats().unwrap().catalog_version,
        b.stats().unwrap().catalog_version
    );

    // A change refused by its state is refused on every node, and applied by none.
    let before = a.stats().unwrap().catalog_version;
    assert!(matches!(
        a.insert_items(&[Item::new("new-item")]),
        Err(Error::ItemExists { .. })
    ));
    assert!(matches!(
        a.delete_items(&[keys[3].as_str()]),
        Err(Error::DeletedItem { .. })
    ));
    b.sync_catalog().unwrap();
    assert_eq!(b.stats().unwrap().catalog_version, before);
    // Bad input never reaches the log.
    assert!(matches!(
        b.put_items(&[Item::new("")]),
        Err(Error::EmptyKey { .. })
    ));
    assert_eq!(a.sync_catalog().unwrap(), 0);

    // A model attached through a runs on b too (same path on this host).
    let info = a
        .attach_model(bundle::bundle(), ModelOptions::new())
        .unwrap();
    b.sync_catalog().unwrap();
    assert_eq!(b.model_info().unwrap().model_id, info.model_id);

    // Training a tokenization is refused on a cluster node, with the way to do it.
    let e = b
        .tokenize(&convergedb::TokenizeOptions::new("none"), None)
        .unwrap_err();
    assert!(
        e.to_string().contains("import it through the cluster node"),
        "{e}"
    );

    // The node-local part survives a reopen: b continues from the entry it applied last.
    drop(b);
    a.put_items(&[Item::new("after-reopen")]).unwrap();
    let b = node(db_dir.path(), "catalog");
    assert_eq!(
        b.item_id("after-reopen").unwrap(),
        a.item_id("after-reopen").unwrap()
    );
    common::assert_clean(&a);
    common::assert_clean(&b);
}

#[test]
fn a_node_with_another_catalog_is_told_it_diverged() {
    let (da, dc) = (common::tempdir(), common::tempdir());
    let a = node(da.path(), "diverge");
    // c starts from a directory of its own with one item a does not have: ids shift.
    {
        let c = Config::new(dc.path()).open().unwrap();
        c.put_items(&[Item::new("only-on-c")]).unwrap();
    }
    bundle::load_catalog(&a);
    let e = Config::new(dc.path())
        .refresh_workers(0)
        .cluster({
            let mut c = ClusterConfig::new(common::cluster::urls());
            c.namespace = common::cluster::namespace("diverge");
            c
        })
        .open()
        .unwrap_err();
    assert!(e.to_string().contains("diverged"), "{e}");
    // a is unaffected.
    a.put_items(&[Item::new("still-fine")]).unwrap();
    common::assert_clean(&a);
}
