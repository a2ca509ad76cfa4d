"""Checks a model bundle against docs/model-bundle.md and its own test vectors.

    python -m convergedb_train.validate BUNDLE_DIR [--vectors N]"""
from __future__ import annotations

import argparse
import hashlib
import json
import os

import numpy as np
import onnxruntime as ort

from . import bundle_id
from . import tokenization as tkz
from .serve_ref import Bundle
from .vocab import sid_token


def check_graph_v1(folder, m, g, sp, first, L, C):
    sess = ort.InferenceSession(os.path.join(folder, m["files"]["onnx"]), providers=["CPUExecutionProvider"])
    ins = [i.name for i in sess.get_inputs()]
    exp = ["input_ids", "attention_mask", "position_ids"]
    for i in range(g["num_layers"]):
        exp += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
    assert ins == exp, ins
    out = sess.run(None, {"input_ids": np.array([[sp["bos"]]]), "attention_mask": np.array([[1]]),
                          "position_ids": np.array([[0]]),
                          **{n: np.zeros((1, g["num_heads"], 0, g["head_dim"]), np.float32) for n in exp[3:]}})
    assert out[0].shape == (1, 1, g["vocab_size"]) and g["vocab_size"] == first + L * C


def check_graphs_v2(folder, m, g, sp, first, L, C):
    from .export import names_v2
    assert g["decoding"] == "shared_prefix" and g["id_logits"] == {"start": first, "count": L * C}, g
    pre_in, pre_out, dec_in, dec_out = names_v2(g["num_layers"])
    pre = ort.InferenceSession(os.path.join(folder, m["files"]["onnx"]), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(os.path.join(folder, m["files"]["decode"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in pre.get_inputs()] == pre_in and [o.name for o in pre.get_outputs()] == pre_out
    assert [i.name for i in dec.get_inputs()] == dec_in and [o.name for o in dec.get_outputs()] == dec_out
    out = pre.run(None, {"input_ids": np.array([[sp["bos"]]]), "attention_mask": np.array([[1]]),
                         "position_ids": np.array([[0]])})
    assert out[0].shape == (1, L * C) and out[1].shape == (1,) and g["vocab_size"] == first + L * C


def check_user_encoder(folder, m):
    """Format 3: user.onnx's contract (dense.py) and a rerank block the database accepts."""
    import onnxruntime as ort
    r = m["rerank"]
    assert set(r) >= {"vector", "weight", "candidates", "max_history"}, r
    assert np.isfinite(r["weight"]) and 1 <= r["candidates"] <= 4096 and 1 <= r["max_history"] <= 4096
    s = ort.InferenceSession(os.path.join(folder, m["files"]["user"]), providers=["CPUExecutionProvider"])
    ins = {i.name: i.shape for i in s.get_inputs()}
    assert set(ins) == {"history_vectors", "history_mask"}, ins
    assert ins["history_vectors"][1] == r["max_history"] == ins["history_mask"][1], ins
    d = ins["history_vectors"][2]
    out = s.run(None, {"history_vectors": np.zeros((1, r["max_history"], d), np.float32),
                       "history_mask": np.zeros((1, r["max_history"]), np.float32)})[0]
    assert out.shape == (1, d) and s.get_outputs()[0].name == "user_vector"


def validate(folder, n_vectors=None):
    with open(os.path.join(folder, "manifest.json")) as f:
        m = json.load(f)
    assert m["format"] == "convergedb.bundle" and m["format_version"] in (1, 2, 3)
    for name, h in m["sha256"].items():
        with open(os.path.join(folder, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == h, f"{name}: sha256 mismatch"
    graphs = [m["files"]["onnx"]] + ([m["files"]["decode"]] if m["format_version"] >= 2 else [])
    graphs += [m["files"]["user"]] if m["format_version"] == 3 else []
    for req in graphs + [m["files"]["tokenizer"], m["files"]["tokenization"]]:
        assert req in m["sha256"], f"manifest.sha256 lacks {req}"
    want = bundle_id.suffix(folder, m)
    assert m["model_id"].endswith("-" + want), (
        f"model_id {m['model_id']!r} must end with -{want} (the digest of what changes a score, "
        f"docs/model-bundle.md): re-stamp it with python -m convergedb_train.bundle_id {folder}")
    tok = tkz.read(os.path.join(folder, m["files"]["tokenization"]))
    with open(os.path.join(folder, m["files"]["tokenization"])) as f:
        raw = json.load(f)
    assert raw.get("fingerprint") == tok["fingerprint"] == m["sid"]["fingerprint"], "fingerprint"
    L, C, first = m["sid"]["levels"], m["sid"]["codes"], m["sid"]["first_token_id"]
    assert (tok["levels"], tok["codes"]) == (L, C)
    if tok.get("codebooks") is not None and m["files"].get("items"):
        vecs = {}
        with open(os.path.join(folder, m["files"]["items"])) as f:
            for line in f:
                o = json.loads(line)
                assert set(o) <= {"key", "title", "description", "attributes", "vectors"}, o.keys()
                if tok["vector"] in o.get("vectors", {}):
                    vecs[o["key"]] = o["vectors"][tok["vector"]]
        assert tkz.check_greedy(tok, vecs), "codes differ from the greedy assignment of the exported weights"
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(os.path.join(folder, m["files"]["tokenizer"]))
    spec = json.load(open(os.path.join(folder, m["files"]["tokenizer"])))
    assert spec["truncation"] is None and spec["padding"] is None
    for l in range(L):
        for c in range(C):
            assert t.token_to_id(sid_token(l, c)) == first + l * C + c
    assert t.encode("".join(sid_token(l, C - 1) for l in range(L)), add_special_tokens=False).ids == \
        [first + l * C + C - 1 for l in range(L)]
    sp = m["special_tokens"]
    assert (t.id_to_token(sp["bos"]), t.id_to_token(sp["eos"]), t.id_to_token(sp["pad"])) == ("[CLS]", "[SEP]", "[PAD]")
    g = m["graph"]
    if m["format_version"] == 1:
        check_graph_v1(folder, m, g, sp, first, L, C)
    else:
        check_graphs_v2(folder, m, g, sp, first, L, C)
    if m["format_version"] == 3:
        check_user_encoder(folder, m)
    for tmpl in m["prompt"]["templates"].values():
        assert tmpl.count("{") == 1
    assert m["prompt"]["templates"][m["prompt"]["serving_template"]].count("{history}") == 1
    # test vectors
    b = Bundle(folder)
    with open(os.path.join(folder, m["files"]["test_vectors"])) as f:
        tv = json.load(f)
    for p in tv["prompts"]:
        assert b.render(p["history"]) == p["prompt"]
        assert b.prompt_ids(p["history"]) == p["input_ids"]
    recs = tv["recommendations"][:n_vectors] if n_vectors else tv["recommendations"]
    worst = 0.0
    for r in recs:
        got = b.recommend([r["history"]], r["k"], r["beam_width"], r["exclude_history"])[0]
        assert [k for k, _ in got] == r["expected"], (r["user"], got, r["expected"])
        worst = max([worst] + [abs(s - e) for (_, s), e in zip(got, r["scores"])])
    # batched with left padding must agree too
    got = b.recommend([r["history"] for r in recs], 10, 20, True)
    assert [[k for k, _ in g] for g in got] == [r["expected"] for r in recs]
    return {"model_id": m["model_id"], "checked_recommendations": len(recs), "max_score_diff": worst}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--vectors", type=int, default=None)
    a = ap.parse_args()
    print(json.dumps(validate(a.bundle, a.vectors)))


if __name__ == "__main__":
    main()
