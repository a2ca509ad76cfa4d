"""The model id of a format-3 bundle names everything that changes a score (bundle_id.py)."""
import json
import os

from convergedb_train import bundle_id


def _bundle(tmp_path, fmt=3):
    files = {"onnx": "prefill.onnx", "decode": "decode.onnx", "user": "user.onnx",
             "items": "items.jsonl", "tokenizer": "tokenizer.json",
             "tokenization": "tokenization.json", "test_vectors": "test_vectors.json"}
    for name in files.values():
        (tmp_path / name).write_text(name)
    m = {"format_version": fmt, "model_id": "toy-00000000", "files": files, "sha256": {},
         "rerank": {"weight": 5.0, "candidates": 100} if fmt == 3 else None}
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    return m


def test_a_rerank_or_dense_change_changes_the_id_and_test_vectors_do_not(tmp_path):
    m = _bundle(tmp_path)
    first = bundle_id.suffix(tmp_path, m)
    (tmp_path / "test_vectors.json").write_text("other vectors")
    assert bundle_id.suffix(tmp_path, m) == first
    m["rerank"]["weight"] = 2.0
    by_weight = bundle_id.suffix(tmp_path, m)
    assert by_weight != first
    (tmp_path / "user.onnx").write_text("another user encoder")
    assert bundle_id.suffix(tmp_path, m) not in (first, by_weight)


def test_restamp_writes_the_id_into_the_manifest_and_the_test_vectors(tmp_path):
    _bundle(tmp_path)
    (tmp_path / "test_vectors.json").write_text(json.dumps({"model_id": "toy-00000000"}))
    new = bundle_id.restamp(str(tmp_path))
    m = json.loads((tmp_path / "manifest.json").read_text())
    tv = json.loads((tmp_path / "test_vectors.json").read_text())
    assert new.startswith("toy-") and new != "toy-00000000"
    assert m["model_id"] == tv["model_id"] == new
    assert m["sha256"]["test_vectors.json"] == bundle_id._sha(os.path.join(tmp_path, "test_vectors.json"))


def test_formats_1_and_2_keep_the_prefill_digest(tmp_path):
    m = _bundle(tmp_path, fmt=2)
    assert bundle_id.suffix(tmp_path, m) == bundle_id._sha(os.path.join(tmp_path, "prefill.onnx"))[:8]
