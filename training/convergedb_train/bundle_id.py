"""A bundle's model id (docs/model-bundle.md, "model_id"): `<prefix>-<8 hex digits>`.

The database stamps every cached list with the model id and serves a list as current only
while the attached model has the same id, so the id must change whenever anything that changes
a score changes. Format 3: the digits are the first 8 of the sha256 of the canonical JSON of
{every file of `files` except the test vectors: its sha256} and the `rerank` block (graphs,
tokenizer, tokenization, items with their vectors, the user encoder, the fusion weight).
Formats 1 and 2 (no re-rank): the first 8 of the prefill graph's sha256, as before.

    python -m convergedb_train.bundle_id FOLDER    # re-stamps a bundle whose parts changed
"""
from __future__ import annotations

import hashlib
import json
import os
import sys


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def suffix(folder, m):
    """The 8 hex digits the model id of manifest `m` (bundle in `folder`) must end with."""
    if m.get("format_version") != 3:
        return _sha(os.path.join(folder, m["files"]["onnx"]))[:8]
    parts = {name: _sha(os.path.join(folder, name))
             for key, name in sorted(m["files"].items()) if key != "test_vectors"}
    blob = json.dumps({"files": parts, "rerank": m.get("rerank")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def model_id(folder, m):
    """`m`'s model id with its prefix kept and the digits of this bundle's content."""
    return f"{m['model_id'].rsplit('-', 1)[0]}-{suffix(folder, m)}"


def stamp_test_vectors(folder, m):
    """Writes `m`'s model id into the bundle's test vectors, if it has them; returns their
    file name (None without)."""
    name = m["files"].get("test_vectors")
    if not name or not os.path.exists(os.path.join(folder, name)):
        return None
    path = os.path.join(folder, name)
    with open(path) as f:
        tv = json.load(f)
    tv["model_id"] = m["model_id"]
    with open(path, "w") as f:
        json.dump(tv, f, indent=1)
        f.write("\n")
    return name


def restamp(folder):
    """Re-computes the model id of the bundle in `folder` and writes it into the manifest and
    the test vectors (whose checksum is updated). Returns the new id."""
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        m = json.load(f)
    m["model_id"] = model_id(folder, m)
    tv_name = stamp_test_vectors(folder, m)
    if tv_name:
        m["sha256"][tv_name] = _sha(os.path.join(folder, tv_name))
    with open(path, "w") as f:
        json.dump(m, f, indent=1)
        f.write("\n")
    return m["model_id"]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(restamp(sys.argv[1]))
