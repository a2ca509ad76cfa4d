"""Where one user's refresh spends its time inside ONNX Runtime: per-node profiling of the
bundle's graphs over a batch of the bundle's test-vector users, aggregated by phase (prefill,
each decoding level) and by operator type.

    python -m convergedb_train.profile BUNDLE_DIR [--batch 16] [--threads 1] [--users 64]

Prints JSON: per phase the milliseconds per user, and the top operators."""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time

import onnxruntime as ort

from .serve_ref import Bundle


def profiled_bundle(folder, threads, tmp):
    """A Bundle whose sessions write ONNX Runtime profiles into `tmp`."""
    real = ort.InferenceSession

    def session(path, so=None, providers=None):
        so = so or ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, os.path.basename(path))
        if threads:
            so.intra_op_num_threads = threads
        return real(path, so, providers=providers)

    ort.InferenceSession = session
    try:
        return Bundle(folder, threads)
    finally:
        ort.InferenceSession = real


def sessions_of(b):
    if b.format == 1:
        return {"model": b.scorer.sess}
    return {"prefill": b.sessions.pre, "decode": b.sessions.dec}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--strategy", default="shared_prefix", choices=["shared_prefix", "per_beam"])
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    b = profiled_bundle(a.bundle, a.threads, tmp)
    b.strategy = a.strategy
    with open(os.path.join(a.bundle, b.manifest["files"]["test_vectors"])) as f:
        hs = [r["history"] for r in json.load(f)["recommendations"]]
    hs = (hs * (a.users // len(hs) + 1))[:a.users]
    b.recommend(hs[:a.batch], 10, 20)  # warm-up (its runs are dropped below)
    skip = {n: 1 if n != "decode" else b.L - 1 for n in sessions_of(b)}
    if b.format == 1:
        skip["model"] = b.L
    t = time.perf_counter()
    for s in range(0, len(hs), a.batch):
        b.recommend(hs[s:s + a.batch], 10, 20)
    wall = time.perf_counter() - t
    phases = collections.defaultdict(float)
    ops = collections.defaultdict(float)
    for name, sess in sessions_of(b).items():
        with open(sess.end_profiling()) as f:
            events = json.load(f)
        runs = [e for e in events if e.get("name") == "model_run"]
        runs = runs[skip[name]:]
        levels = b.L if name == "model" else (1 if name == "prefill" else b.L - 1)
        for i, r in enumerate(runs):
            lvl = i % levels
            phase = {"prefill": "prefill", "decode": f"decode level {lvl + 1}"}.get(name) or (
                "prefill" if lvl == 0 else f"decode level {lvl}")
            phases[phase] += r["dur"]
        start = runs[0]["ts"] if runs else 0
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
                ops[f"{name}:{e['args'].get('op_name', '?')}"] += e["dur"]
    n = len(hs)
    inside = sum(phases.values()) / 1e3
    out = {"bundle": a.bundle, "format_version": b.format, "strategy": a.strategy if b.format == 2 else "per_beam",
           "batch": a.batch, "threads": a.threads, "users": n,
           "wall_ms_per_user": round(wall * 1e3 / n, 3),
           "onnxruntime_ms_per_user": round(inside / n, 3),
           "python_search_and_copies_ms_per_user": round(wall * 1e3 / n - inside / n, 3),
           "phases_ms_per_user": {k: round(v / 1e3 / n, 3) for k, v in sorted(phases.items())},
           "top_ops_ms_per_user": {k: round(v / 1e3 / n, 3) for k, v in
                                   sorted(ops.items(), key=lambda kv: -kv[1])[:12]}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
