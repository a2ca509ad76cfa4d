"""Re-exports a bundle in another format without retraining: format 1 (one graph, a KV cache
per beam) to format 2 (shared-prefix decoding: `prefill.onnx` + `decode.onnx`), the upgrade, or
back to format 1 (to measure or test the old decoding on the same weights). The weights are
read back from the bundle's graph, the new graph(s) exported and checked against the old one on
the bundle's own test prompts, and a new manifest written. A format-3 bundle (format 2 and the
hybrid re-rank) re-exported as format 1 loses the re-rank: its test vectors' recommendations
are recomputed by the reference search of the new bundle (the beam alone).

    python -m convergedb_train.reexport OLD_BUNDLE NEW_BUNDLE [--format 2|1]"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil

import numpy as np
import torch

from . import bundle_id
from . import export as E
from .lm import GPT


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def gpt_from_onnx(path, graph):
    """The GPT whose weights a format-1 graph (exported by `export.export`) holds."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    vocab, d = init["m.tok.weight"].shape
    max_pos = init["m.pos.weight"].shape[0]
    layers, heads = graph["num_layers"], graph["num_heads"]
    if heads * graph["head_dim"] != d:
        raise ValueError(f"graph: {heads} heads x {graph['head_dim']} != d_model {d}")
    model = GPT(vocab, d=d, layers=layers, heads=heads, max_pos=max_pos, dropout=0.0).eval()
    # The linear layers' weights are the exporter's transposed MatMul initializers, in the order
    # the graph uses them: per block qkv, proj, fc1, fc2; then the tied head (skipped).
    matmuls = []
    for node in m.graph.node:
        if node.op_type == "MatMul":
            for name in node.input:
                if name in init and name not in matmuls and not name.startswith("m."):
                    matmuls.append(name)
    if len(matmuls) < 4 * layers:
        raise ValueError(f"{path}: {len(matmuls)} weight matrices, expected {4 * layers} (+ head)")
    sd = model.state_dict()
    for k in sd:
        if k in ("tok.weight", "pos.weight") or k.startswith("ln_f") or ".ln" in k or k.endswith(".bias"):
            sd[k] = torch.from_numpy(init["m." + k].copy())
    for b in range(layers):
        for j, lin in enumerate(("qkv", "proj", "fc1", "fc2")):
            sd[f"blocks.{b}.{lin}.weight"] = torch.from_numpy(init[matmuls[4 * b + j]].T.copy())
    if "m.out_bias" in init:  # a model trained with its output restricted to the ID tokens
        sd["out_bias"] = torch.from_numpy(init["m.out_bias"].copy())
    model.load_state_dict(sd)
    return model


def check_against_graph(model, path, fmt, prompts, pad, id_start, id_count):
    """Max |log-prob difference| of the ID tokens at the prompts' last position between the
    rebuilt torch model and the bundle's (prefill) graph."""
    import onnxruntime as ort

    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ids, mask = E.left_pad(prompts, pad)
    c = model.cfg
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": E.positions(mask, ids.shape[1])}
    if fmt == 1:
        for n in E.names(c["layers"])[0][3:]:
            feeds[n] = np.zeros((len(prompts), c["heads"], 0, c["d"] // c["heads"]), np.float32)
        logits = s.run(None, feeds)[0][:, -1].astype(np.float64)
        want = (logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
                - logits.max(-1, keepdims=True))[:, id_start:id_start + id_count]
    else:
        idl, lse = s.run(None, feeds)[:2]
        want = idl.astype(np.float64) - lse.astype(np.float64)[:, None]
    with torch.no_grad():
        got, _ = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(feeds["position_ids"]))
    got = torch.log_softmax(got[:, -1].double(), -1).numpy()[:, id_start:id_start + id_count]
    return float(np.abs(want - got).max())


def reexport(old, new, fmt=2):
    with open(os.path.join(old, "manifest.json")) as f:
        m = json.load(f)
    src_fmt = m.get("format_version")
    if src_fmt not in (1, 2, 3) or fmt not in (1, 2) or (src_fmt == 3 and fmt != 1):
        raise SystemExit(f"{old}: format_version {src_fmt} -> {fmt}: this tool converts between formats 1 and 2, "
                         "and from 3 to 1 (dropping the re-rank)")
    src = os.path.join(old, m["files"]["onnx"])
    model = gpt_from_onnx(src, m["graph"])
    with open(os.path.join(old, m["files"]["test_vectors"])) as f:
        tv = json.load(f)
    prompts = [p["input_ids"] for p in tv["prompts"] if p["input_ids"]][:8]
    pad = m["special_tokens"]["pad"]
    first, L, C = m["sid"]["first_token_id"], m["sid"]["levels"], m["sid"]["codes"]
    diff = check_against_graph(model, src, src_fmt, prompts, pad, first, L * C)
    if diff > 1e-4:
        raise SystemExit(f"the weights read back from {src} do not reproduce it (max |log-prob diff| {diff})")
    os.makedirs(new, exist_ok=True)
    if fmt == 2:
        pre, dec = os.path.join(new, "prefill.onnx"), os.path.join(new, "decode.onnx")
        E.export_v2(model, pre, dec, first, L * C)
        par = E.parity_v2(model, pre, dec, prompts, pad, first, L * C, beams=4, steps=L - 1)
    else:
        path = os.path.join(new, "model.onnx")
        E.export(model, path)
        par = E.parity(model, path, prompts, pad, steps=L - 1)
    if max(par.values()) > 1e-4:
        raise SystemExit(f"the exported graphs differ from the model: {par}")
    same = os.path.abspath(old) == os.path.abspath(new)
    for k in ("tokenizer", "tokenization", "items", "test_vectors") + (("user",) if fmt != 1 else ()):
        if m["files"].get(k) and not same:
            shutil.copyfile(os.path.join(old, m["files"][k]), os.path.join(new, m["files"][k]))
    written = {"prefill.onnx", "decode.onnx"} if fmt == 2 else {"model.onnx"}
    if same:
        for k in ("onnx", "decode"):
            if m["files"].get(k) and m["files"][k] not in written:
                os.remove(os.path.join(old, m["files"][k]))
    dropped = m.pop("rerank", None) is not None
    if dropped:
        m["files"].pop("user", None)
    set_format(m, new, fmt, first, L * C)
    if dropped and m["files"].get("test_vectors"):
        recompute_recommendations(new, m)
        set_format(m, new, fmt, first, L * C)
    return par


def recompute_recommendations(folder, m):
    """The test vectors' expected lists and scores from this bundle's own reference search."""
    from .serve_ref import Bundle
    b = Bundle(folder, verify=False)
    path = os.path.join(folder, m["files"]["test_vectors"])
    with open(path) as f:
        tv = json.load(f)
    for r in tv["recommendations"]:
        res = b.recommend([r["history"]], r["k"], r["beam_width"], r["exclude_history"])[0]
        r["expected"], r["scores"] = [k for k, _ in res], [s for _, s in res]
    with open(path, "w") as f:
        json.dump(tv, f, indent=1)
        f.write("\n")


def set_format(m, folder, fmt, id_start, id_count):
    """The manifest fields of format `fmt`; new checksums; a model id naming the (prefill)
    graph's hash (the lists a database caches are stamped with it, so a database recomputes them
    once with the new graphs)."""
    m["format_version"] = fmt
    if fmt == 2:
        m["files"]["onnx"] = "prefill.onnx"
        m["files"]["decode"] = "decode.onnx"
        m["graph"]["decoding"] = "shared_prefix"
        m["graph"]["id_logits"] = {"start": id_start, "count": id_count}
    else:
        m["files"]["onnx"] = "model.onnx"
        m["files"].pop("decode", None)
        m["graph"].pop("decoding", None)
        m["graph"].pop("id_logits", None)
    m["model_id"] = bundle_id.model_id(folder, m)
    bundle_id.stamp_test_vectors(folder, m)
    names = [m["files"][k] for k in ("onnx", "decode", "user", "tokenizer", "tokenization", "items", "test_vectors")
             if m["files"].get(k)]
    m["sha256"] = {n: sha(os.path.join(folder, n)) for n in names}
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(m, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--format", type=int, default=2, choices=[1, 2])
    a = ap.parse_args()
    par = reexport(a.old, a.new, a.format)
    print(json.dumps({"bundle": a.new, "format_version": a.format, "parity_max_abs_diff": par}))


if __name__ == "__main__":
    main()
