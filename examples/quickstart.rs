//! The README's example, run by `./scripts/test`: open, put items, record an interaction,
//! read the history, recommend, check, close.

use convergedb::{Config, Durability, Interaction, Item};

fn main() -> Result<(), convergedb::Error> {
    let path = std::env::temp_dir().join("convergedb-quickstart");
    let _ = std::fs::remove_dir_all(&path);

    let db = Config::new(&path).durability(Durability::Sync).open()?; // Send + Sync, cheap to clone
    db.put_items(&[
        Item::new("m1")
            .title("Toy Story")
            .attribute("year", "1995")
            .vector("text", vec![0.1, 0.3]),
        Item::new("m2").title("Heat").vector("text", vec![0.7, 0.2]),
    ])?; // one atomic batch
    db.record_interactions(&[Interaction::new("alice", "m1", 1_700_000_000).kind("view")])?;
    let history = db.history("alice")?; // oldest first, versioned
    let rec = db.recommend("alice", 10)?; // names its source
    assert_eq!(rec.items[0].key, "m2");
    assert!(db.check()?.is_clean()); // every invariant verified
    println!(
        "alice saw {:?}; recommended {:?} from {:?}",
        history.entries.iter().map(|e| &e.item).collect::<Vec<_>>(),
        rec.items.iter().map(|i| &i.key).collect::<Vec<_>>(),
        rec.source
    );
    db.close()?;
    let _ = std::fs::remove_dir_all(&path);
    Ok(())
}
