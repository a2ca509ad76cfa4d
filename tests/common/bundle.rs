//! The shipped ML-100K model bundle in a test database: its catalog (with the `sasrec`
//! vectors), its tokenization, synthetic histories over its items, and attaching the model.
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`, set by `./scripts/test`).

use std::path::{Path, PathBuf};

use convergedb::import::{self, ImportOptions};
use convergedb::{Config, Db, Interaction, ModelOptions};
use rand::{Rng, SeedableRng};

/// The shipped bundle, or `CONVERGEDB_TEST_BUNDLE` (to test a freshly trained one).
pub fn bundle() -> PathBuf {
    match std::env::var_os("CONVERGEDB_TEST_BUNDLE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ml100k"),
    }
}

/// Opens `config` and loads the bundle's items and tokenization into it.
pub fn open_with_catalog(config: Config) -> Db {
    let db = config.open().expect("open the database");
    load_catalog(&db);
    db
}

/// Loads the bundle's items and tokenization into `db`.
pub fn load_catalog(db: &Db) {
    import::items_jsonl(db, &bundle().join("items.jsonl"), &ImportOptions::default())
        .expect("import the bundle's items");
    db.import_tokenization(&bundle().join("tokenization.json"))
        .expect("import the bundle's tokenization");
}

/// The bundle's item keys, in file order.
pub fn item_keys() -> Vec<String> {
    let text = std::fs::read_to_string(bundle().join("items.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["key"].as_str().unwrap().to_string()
        })
        .collect()
}

pub fn attach(db: &Db) {
    if let Err(e) = db.attach_model(bundle(), ModelOptions::new()) {
        panic!("attaching the shipped bundle failed: {e}\n(run ./scripts/setup-ort or set ORT_DYLIB_PATH)");
    }
}

/// Random histories: `users` users ("u0", "u1", ...) with `len` interactions each over the
/// first 400 items (seeded), timestamps increasing.
pub fn synthetic_histories(users: usize, len: usize, seed: u64) -> Vec<Interaction> {
    let keys = item_keys();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for u in 0..users {
        for t in 0..len {
            let item = &keys[rng.gen_range(0..keys.len().min(400))];
            out.push(Interaction::new(format!("u{u}"), item.clone(), t as i64));
        }
    }
    out
}

/// A copy of the bundle in `dir` whose manifest names another model id (same weights): a
/// "new model" for model-swap tests.
pub fn renamed_bundle(dir: &Path, model_id: &str) -> PathBuf {
    let out = dir.join("bundle-copy");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(bundle()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
        }
    }
    let path = out.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["model_id"] = serde_json::Value::String(model_id.to_string());
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    out
}
