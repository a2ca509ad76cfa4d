"""The convergedb tokenization file v1 (docs/model-bundle.md): greedy residual assignment,
fingerprint, reading and writing (including LC-Rec/LETTER `*.index.json`)."""
from __future__ import annotations

import hashlib
import json
import re
import struct

import numpy as np

MAGIC = b"convergedb-sid-fingerprint-v1"


def f32_list(a):
    """float32 values as Python floats whose shortest repr parses back to the same float32."""
    return [float(str(v)) for v in np.asarray(a, dtype=np.float32).ravel()]


def apply_encoder(layers, x):
    """y = W x + b per layer, ReLU between layers (not after the last), in float32."""
    h = np.asarray(x, dtype=np.float32)
    for i, l in enumerate(layers):
        W = np.asarray(l["weight"], dtype=np.float32).reshape(l["output"], l["input"])
        b = np.asarray(l["bias"], dtype=np.float32)
        h = (h @ W.T + b).astype(np.float32)
        if i + 1 < len(layers):
            h = np.maximum(h, np.float32(0))
    return h


def greedy_codes(z, codebooks):
    """Residual argmin per level; ties go to the lowest code (np.argmin keeps the first)."""
    z = np.asarray(z, dtype=np.float32)
    cb = np.asarray(codebooks, dtype=np.float32)  # [L, C, d]
    r = z.copy()
    codes = np.zeros((len(z), cb.shape[0]), dtype=np.int64)
    for l in range(cb.shape[0]):
        d = ((r[:, None, :] - cb[l][None, :, :]) ** 2).sum(-1, dtype=np.float32)
        c = np.argmin(d, axis=1)
        codes[:, l] = c
        r = (r - cb[l][c]).astype(np.float32)
    return codes


def fingerprint(tok):
    """Lowercase hex SHA-256 over the byte layout of docs/model-bundle.md."""
    L, C = int(tok["levels"]), int(tok["codes"])
    h = hashlib.sha256()
    h.update(MAGIC)
    h.update(struct.pack("<II", L, C))
    v = (tok.get("vector") or "").encode()
    h.update(struct.pack("<I", len(v)) + v)
    enc = tok.get("encoder")
    if enc:
        h.update(b"\x01" + struct.pack("<I", len(enc["layers"])))
        for l in enc["layers"]:
            h.update(struct.pack("<II", int(l["input"]), int(l["output"])))
            h.update(np.asarray(l["weight"], dtype="<f4").tobytes())
            h.update(np.asarray(l["bias"], dtype="<f4").tobytes())
    else:
        h.update(b"\x00")
    if tok.get("codebooks") is not None:
        h.update(b"\x01" + struct.pack("<I", int(tok["dim"])))
        h.update(np.asarray(tok["codebooks"], dtype="<f4").tobytes())
    else:
        h.update(b"\x00")
    items = sorted(tok["items"].items(), key=lambda kv: kv[0].encode("utf-8"))
    h.update(struct.pack("<Q", len(items)))
    for k, codes in items:
        kb = k.encode("utf-8")
        if len(codes) != L:
            raise ValueError(f"item {k!r} has {len(codes)} codes, expected {L}")
        h.update(struct.pack("<I", len(kb)) + kb + struct.pack(f"<{L}H", *[int(c) for c in codes]))
    return h.hexdigest()


def make(levels, codes, items, vector=None, encoder_layers=None, codebooks=None, source=None,
         balance_last_level=False):
    """A tokenization dict with every float rounded to float32 and the fingerprint set."""
    t = {"format": "convergedb.tokenization", "format_version": 1, "levels": int(levels), "codes": int(codes)}
    if vector is not None:
        t["vector"] = vector
    if codebooks is not None:
        cb = np.asarray(codebooks, dtype=np.float32)
        t["dim"] = int(cb.shape[-1])
        t["codebooks"] = f32_list(cb)
    if encoder_layers is not None:
        t["encoder"] = {"layers": [{"input": int(W.shape[1]), "output": int(W.shape[0]),
                                    "weight": f32_list(W), "bias": f32_list(b)} for W, b in encoder_layers]}
    t["balance_last_level"] = bool(balance_last_level)
    if source:
        t["source"] = source
    t["items"] = {k: [int(c) for c in v] for k, v in sorted(items.items(), key=lambda kv: kv[0].encode())}
    t["fingerprint"] = fingerprint(t)
    return t


def write(path, tok):
    with open(path, "w") as f:
        json.dump(tok, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")


_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")


def read(path):
    """A convergedb tokenization file or an LC-Rec/LETTER index.json; checks it and its fingerprint."""
    with open(path) as f:
        t = json.load(f)
    if t.get("format") == "convergedb.tokenization":
        if t.get("format_version") != 1:
            raise ValueError(f"{path}: unsupported format_version {t.get('format_version')}")
        L, C = t["levels"], t["codes"]
        for k, v in t["items"].items():
            if len(v) != L or any(not (0 <= c < C) for c in v):
                raise ValueError(f"{path}: item {k!r} has bad codes {v}")
        fp = fingerprint(t)
        if t.get("fingerprint") not in (None, fp):
            raise ValueError(f"{path}: fingerprint {t['fingerprint']} does not match the content ({fp})")
        t["fingerprint"] = fp
        return t
    # LC-Rec/LETTER index: {"item": ["<a_128>", ...]}
    items, top, L = {}, 0, None
    for k, toks in t.items():
        codes = []
        for l, s in enumerate(toks):
            m = _TOKEN.match(s)
            if not m or ord(m.group(1)) - ord("a") != l:
                raise ValueError(f"{path}: item {k!r}: token {s!r} at position {l}")
            codes.append(int(m.group(2)))
        L = L or len(codes)
        if len(codes) != L:
            raise ValueError(f"{path}: item {k!r} has {len(codes)} codes, expected {L}")
        top = max(top, max(codes))
        items[k] = codes
    C = 1
    while C <= top:
        C *= 2
    C = max(C, 2)
    return make(L, C, items, source=f"imported from LC-Rec index {path}")


def check_greedy(tok, vectors):
    """True when the stored codes equal the greedy assignment of `vectors` (key -> float array)."""
    keys = sorted(tok["items"])
    x = np.stack([np.asarray(vectors[k], dtype=np.float32) for k in keys])
    z = apply_encoder(tok["encoder"]["layers"], x) if tok.get("encoder") else x
    cb = np.asarray(tok["codebooks"], dtype=np.float32).reshape(tok["levels"], tok["codes"], tok["dim"])
    codes = greedy_codes(z, cb)
    return all(list(codes[i]) == list(tok["items"][k]) for i, k in enumerate(keys))
