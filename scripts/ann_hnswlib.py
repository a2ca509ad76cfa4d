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
        best, best_cpu = 0.0, 0.0
        # Warm up, then as many timed passes as the Rust bench ran (best kept); one query per
        # call like recommend_by_vector. CPU: time of this thread (hnswlib runs a single query
        # inline when num_threads is 1), steadier than wall time on a shared machine.
        for attempt in range(1 + ours.get("rounds", 1)):
            t, cpu = time.perf_counter(), time.thread_time()
            hits = 0
            for qi in range(len(queries)):
                labels, _ = index.knn_query(queries[qi : qi + 1], k=k)
                hits += len(set(labels[0].tolist()) & set(truth[qi].tolist()))
            secs, cpu = time.perf_counter() - t, time.thread_time() - cpu
            if attempt > 0:
                best = max(best, len(queries) / secs)
                best_cpu = max(best_cpu, len(queries) / cpu)
        sweep.append({"ef_search": ef, "recall": hits / (len(queries) * k), "qps": best,
                      "cpu_qps": best_cpu})

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

    def at_recall(s, key):
        ok = [r for r in s if r["recall"] >= 0.95]
        return max(ok, key=lambda r: r[key]) if ok else None

    print(f"n = {n}, dim = {dim}, M = {m}, ef_construction = {ef_c}, k = {k}, 1 query thread")
    print("q/s: queries per wall-clock second; cpu: queries per CPU second of the query thread")
    print(f"{'ef_search':>9} | {'convergedb recall':>17} {'q/s':>8} {'cpu':>8} | "
          f"{'hnswlib recall':>14} {'q/s':>8} {'cpu':>8} | ratio q/s, cpu")
    for a, b in zip(ours["sweep"], sweep):
        print(f"{a['ef_search']:>9} | {a['recall']:>17.4f} {a['qps']:>8.0f} {a['cpu_qps']:>8.0f} | "
              f"{b['recall']:>14.4f} {b['qps']:>8.0f} {b['cpu_qps']:>8.0f} | "
              f"{a['qps'] / b['qps']:.2f}, {a['cpu_qps'] / b['cpu_qps']:.2f}")
    for key in ("qps", "cpu_qps"):
        a, b = at_recall(ours["sweep"], key), at_recall(sweep, key)
        if a and b:
            print(f"best {key} at recall >= 0.95: convergedb {a[key]:.0f} (ef {a['ef_search']}), "
                  f"hnswlib {b[key]:.0f} (ef {b['ef_search']}): ratio {a[key] / b[key]:.2f}")
        else:
            print(f"recall >= 0.95 not reached: convergedb {a}, hnswlib {b}")
    default = next((r for r in ours["sweep"] if r["ef_search"] == ours.get("default_ef_search")), None)
    if default:
        print(f"recall@{k} at the default ef_search {default['ef_search']}: {default['recall']:.4f} "
              f"({'meets' if default['recall'] >= 0.95 else 'misses'} >= 0.95)")
    print(f"build: convergedb {ours['build_s']:.1f} s (scan + build + dump), hnswlib {build_s:.1f} s")
    print(f"reload: convergedb {ours['reload_s']:.2f} s (verify + load) vs its rebuild {ours['build_s']:.1f} s "
          f"({ours['build_s'] / max(ours['reload_s'], 1e-9):.1f}x); hnswlib load {reload_s:.2f} s")
    print(f"memory per vector: convergedb {ours['rss_per_vector_bytes']:.0f} B resident "
          f"({ours['index_bytes_per_vector']:.0f} B held by the index), hnswlib {rss_per_vector:.0f} B, "
          f"4*dim + 2M*4 = {ours['reference_bytes_per_vector']} B "
          f"(convergedb {ours['rss_per_vector_bytes'] / ours['reference_bytes_per_vector']:.2f}x)")


if __name__ == "__main__":
    main()
