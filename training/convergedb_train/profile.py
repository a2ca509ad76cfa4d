"""Where one user's refresh spends its time inside ONNX Runtime: per-node profiling of the
bundle's graphs over a batch of the bundle's test-vector users, aggregated by phase (prefill,
each decoding level) and by operator type.

    python -m convergedb_train.profile BUNDLE_DIR [--batch 16] [--threads 1] [--users 64]

Prints JSON: per phase the milliseconds per user, the top operators, and the compute-bound
limit: the MatMul/Gemm FLOPs per user counted from the shapes the profiled nodes ran with,
divided by the GFLOP/s of one ONNX Runtime MatMul (the shape of the graph's most expensive
MatMul node) timed in the same process at the same thread count."""
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
    flops, mm_time = 0.0, collections.defaultdict(float)  # MatMul FLOPs; time per (M, K, N)
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
                op = e["args"].get("op_name", "?")
                ops[f"{name}:{op}"] += e["dur"]
                f, shape = matmul_flops(op, e["args"])
                if f:
                    flops += f
                    mm_time[shape] += e["dur"]
    n = len(hs)
    inside = sum(phases.values()) / 1e3
    limit = {}
    if mm_time:
        shape = max(mm_time, key=mm_time.get)
        gflop_s = matmul_gflop_s(*shape, a.threads)
        limit = {"matmul_mflop_per_user": round(flops / n / 1e6, 2), "bench_matmul_shape_mkn": list(shape),
                 "bench_matmul_gflop_s": round(gflop_s, 2),
                 "compute_bound_users_per_s": round(gflop_s * 1e9 / (flops / n), 1),
                 "share_of_limit": round((n / wall) / (gflop_s * 1e9 / (flops / n)), 3)}
    out = {"bundle": a.bundle, "format_version": b.format, "strategy": a.strategy if b.format >= 2 else "per_beam",
           "batch": a.batch, "threads": a.threads, "users": n,
           "wall_ms_per_user": round(wall * 1e3 / n, 3),
           "onnxruntime_ms_per_user": round(inside / n, 3),
           "python_search_and_copies_ms_per_user": round(wall * 1e3 / n - inside / n, 3),
           "phases_ms_per_user": {k: round(v / 1e3 / n, 3) for k, v in sorted(phases.items())},
           "top_ops_ms_per_user": {k: round(v / 1e3 / n, 3) for k, v in
                                   sorted(ops.items(), key=lambda kv: -kv[1])[:12]},
           "compute_bound_limit": limit}
    print(json.dumps(out, indent=1))


MATMULS = ("MatMul", "Gemm", "FusedMatMul")


def matmul_flops(op, args):
    """(2 * M * K * N summed over the batch dimensions, (M, K, N)) of one profiled MatMul/Gemm
    node from the shapes it ran with; (0, None) for other nodes or missing shapes."""
    if op not in MATMULS:
        return 0, None
    try:
        a = list(args["input_type_shape"][0].values())[0]
        y = list(args["output_type_shape"][0].values())[0]
    except (KeyError, IndexError, AttributeError):
        return 0, None
    if not a or not y:
        return 0, None
    k = a[-1]  # the profile records shapes, not Gemm's transA: the exported Gemms do not transpose A
    size = 1
    for d in y:
        size *= d
    m = size // y[-1]
    return 2 * size * k, (m, k, y[-1])


def matmul_gflop_s(m, k, n, threads, seconds=1.0):
    """GFLOP/s of one ONNX Runtime MatMul [m, k] x [k, n] (float32, CPU) at `threads`."""
    import numpy as np
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "mm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 0
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.standard_normal((m, k), np.float32), "b": rng.standard_normal((k, n), np.float32)}
    sess.run(None, feed)
    runs, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        sess.run(None, feed)
        runs += 1
    return 2.0 * m * k * n * runs / (time.perf_counter() - t) / 1e9


if __name__ == "__main__":
    main()
