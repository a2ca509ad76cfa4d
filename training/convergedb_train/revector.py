"""Recompute the recommendation vectors of a bundle's test_vectors.json with the current
reference rules (serve_ref.py), and update the manifest's checksum of the file.

Run after a change to the reference search that the database mirrors (for example the rule that
a prefix whose every item is excluded is not a candidate at any level):

    python -m convergedb_train.revector models/ml100k
"""
import argparse
import hashlib
import json
import os

from .serve_ref import Bundle


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    args = ap.parse_args()
    path = os.path.join(args.bundle, "test_vectors.json")
    with open(path) as f:
        tv = json.load(f)
    bundle = Bundle(args.bundle, threads=1, verify=False)
    changed = 0
    for rec in tv["recommendations"]:
        res = bundle.recommend([rec["history"]], rec["k"], rec["beam_width"], rec["exclude_history"])[0]
        expected = [k for k, _ in res]
        changed += expected != rec["expected"]
        rec["expected"], rec["scores"] = expected, [s for _, s in res]
    with open(path, "w") as f:
        json.dump(tv, f, indent=1)
        f.write("\n")
    manifest_path = os.path.join(args.bundle, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    with open(path, "rb") as f:
        manifest["sha256"]["test_vectors.json"] = hashlib.sha256(f.read()).hexdigest()
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"{changed} of {len(tv['recommendations'])} recommendation vectors changed")


if __name__ == "__main__":
    main()
