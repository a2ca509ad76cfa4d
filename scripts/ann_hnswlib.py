#!/usr/bin/env python3
"""hnswlib on the vectors `cargo bench --bench ann` wrote, with the same M, ef_construction,
ef_search sweep, k and query thread count; prints both engines side by side with ratios.

usage: ann_hnswlib.py .cache/ann-bench/<n>x<dim>   (the stem the Rust bench printed)
"""
import json
import os
import sys
import tempfile
import time

import hnswlib
import numpy as np


def read_f32(path):
    with open(path, "rb") as f:
        n, dim = np.frombuffer(f.read(8), dtype="<u4")
        data = np.frombuffer(f.read(), dtype="<f4")
    return data.reshape(int(n), int(dim))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main():
    stem = sys.argv[1]
    ours = json.load(open(stem + ".convergedb.json"))
    base = read_f32(stem + ".base.f32")
    queries = read_f32(stem + ".query.f32")
    k = ours["k"]
    truth = np.fromfile(stem + ".truth.u32", dtype="<u4").reshape(len(queries), k)
    n, dim = base.shape
    m, ef_c = ours["m"], ours["ef_construction"]

    rss0 = rss_bytes()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=m, ef_construction=ef_c, random_seed=100)
    index.set_num_threads(2)  # the Rust build uses rayon on the same 2 cores
    t = time.perf_counter()
    index.add_items(base, np.arange(n))
    build_s = time.perf_counter() - t
    rss_per_vector = (rss_bytes() - rss0) / n

    index.set_num_threads(1)
    sweep = []
    for row in ours["sweep"]:
        ef = row["ef_search"]
        index.set_ef(ef)
        for _ in range(2):  # warm up, then measure; one query per call like recommend_by_vector
            t = time.perf_counter()
            hits = 0
            for qi in range(len(queries)):
                labels, _ = index.knn_query(queries[qi : qi + 1], k=k)
                hits += len(set(labels[0].tolist()) & set(truth[qi].tolist()))
            secs = time.perf_counter() - t
        sweep.append({"ef_search": ef, "recall": hits / (len(queries) * k), "qps": len(queries) / secs})

    with tempfile.TemporaryDirectory(dir=os.path.dirname(stem)) as tmp:
        path = os.path.join(tmp, "index.bin")
        index.save_index(path)
        t = time.perf_counter()
        again = hnswlib.Index(space="ip", dim=dim)
        again.load_index(path, max_elements=n)
        reload_s = time.perf_counter() - t

    theirs = {
        "engine": "hnswlib " + getattr(hnswlib, "__version__", "0.8.0"),
        "build_s": build_s,
        "reload_s": reload_s,
        "rss_per_vector_bytes": rss_per_vector,
        "sweep": sweep,
    }
    json.dump(theirs, open(stem + ".hnswlib.json", "w"), indent=2)

    def at_recall(s):
        ok = [r for r in s if r["recall"] >= 0.95]
        return max(ok, key=lambda r: r["qps"]) if ok else None

    print(f"n = {n}, dim = {dim}, M = {m}, ef_construction = {ef_c}, k = {k}, 1 query thread")
    print(f"{'ef_search':>9} | {'convergedb recall':>17} {'q/s':>8} | {'hnswlib recall':>14} {'q/s':>8} | ratio")
    for a, b in zip(ours["sweep"], sweep):
        print(f"{a['ef_search']:>9} | {a['recall']:>17.4f} {a['qps']:>8.0f} | {b['recall']:>14.4f} {b['qps']:>8.0f} | {a['qps'] / b['qps']:.2f}")
    a, b = at_recall(ours["sweep"]), at_recall(sweep)
    if a and b:
        print(f"best q/s at recall >= 0.95: convergedb {a['qps']:.0f} (ef {a['ef_search']}), "
              f"hnswlib {b['qps']:.0f} (ef {b['ef_search']}): ratio {a['qps'] / b['qps']:.2f}")
    else:
        print(f"recall >= 0.95 not reached: convergedb {a}, hnswlib {b}")
    print(f"build: convergedb {ours['build_s']:.1f} s (scan + build + dump), hnswlib {build_s:.1f} s")
    print(f"reload: convergedb {ours['reload_s']:.2f} s (verify + load) vs its rebuild {ours['build_s']:.1f} s "
          f"({ours['build_s'] / max(ours['reload_s'], 1e-9):.1f}x); hnswlib load {reload_s:.2f} s")
    print(f"memory per vector: convergedb {ours['rss_per_vector_bytes']:.0f} B, hnswlib {rss_per_vector:.0f} B, "
          f"4*dim + 2M*4 = {ours['reference_bytes_per_vector']} B "
          f"(convergedb {ours['rss_per_vector_bytes'] / ours['reference_bytes_per_vector']:.2f}x)")


if __name__ == "__main__":
    main()
