"""Goal: the tokenization file and fingerprint follow docs/model-bundle.md byte for byte.
Method: a hand-made table whose fingerprint bytes are spelled out here; greedy ties; LC-Rec import."""
import hashlib
import json
import struct

import numpy as np
import pytest

from convergedb_train import tokenization as tkz


def test_fingerprint_of_hand_made_table_without_codebooks():
    t = {"levels": 2, "codes": 4, "items": {"b": [1, 2], "a": [3, 0], "é": [0, 1]}}
    raw = (b"convergedb-sid-fingerprint-v1" + b"\x02\x00\x00\x00" + b"\x04\x00\x00\x00"
           + b"\x00\x00\x00\x00"  # no vector name
           + b"\x00" + b"\x00"  # no encoder, no codebooks
           + b"\x03\x00\x00\x00\x00\x00\x00\x00"
           + b"\x01\x00\x00\x00a" + b"\x03\x00\x00\x00"
           + b"\x01\x00\x00\x00b" + b"\x01\x00\x02\x00"
           + b"\x02\x00\x00\x00\xc3\xa9" + b"\x00\x00\x01\x00")
    assert tkz.fingerprint(t) == hashlib.sha256(raw).hexdigest()


def test_fingerprint_with_encoder_and_codebooks():
    t = tkz.make(1, 2, {"x": [1]}, vector="v", encoder_layers=[(np.array([[1.0, 2.0]]), np.array([0.5]))],
                 codebooks=np.array([[[0.0], [1.5]]]))
    raw = (b"convergedb-sid-fingerprint-v1" + struct.pack("<II", 1, 2) + struct.pack("<I", 1) + b"v"
           + b"\x01" + struct.pack("<I", 1) + struct.pack("<II", 2, 1) + struct.pack("<fff", 1.0, 2.0, 0.5)
           + b"\x01" + struct.pack("<I", 1) + struct.pack("<ff", 0.0, 1.5)
           + struct.pack("<Q", 1) + struct.pack("<I", 1) + b"x" + struct.pack("<H", 1))
    assert t["fingerprint"] == hashlib.sha256(raw).hexdigest()
    assert t["dim"] == 1 and t["encoder"]["layers"][0]["output"] == 1


def test_greedy_ties_go_to_lowest_code_and_encoder_relu_between_layers():
    cb = np.array([[[1.0], [-1.0], [3.0]], [[0.0], [2.0], [-2.0]]], np.float32)
    # 0 is equally far from 1 and -1 -> code 0; residual -1 equally far from 0 and -2 -> code 0
    assert tkz.greedy_codes(np.array([[0.0]]), cb).tolist() == [[0, 0]]
    layers = [{"input": 1, "output": 1, "weight": [1.0], "bias": [-5.0]},
              {"input": 1, "output": 1, "weight": [1.0], "bias": [-2.0]}]
    # relu(-4) = 0 between layers, none after the last: 0 - 2 = -2
    assert tkz.apply_encoder(layers, np.array([[1.0]])).tolist() == [[-2.0]]


def test_written_floats_round_trip_as_float32(tmp_path):
    w = np.array([[0.1, 1 / 3, -2.5e-7]], np.float32)
    t = tkz.make(1, 2, {"k": [0]}, vector="v", encoder_layers=[(w, np.zeros(1, np.float32))],
                 codebooks=np.zeros((1, 2, 1), np.float32))
    p = tmp_path / "t.json"
    tkz.write(p, t)
    back = tkz.read(p)
    assert np.array_equal(np.asarray(back["encoder"]["layers"][0]["weight"], np.float32), w.ravel())
    assert back["fingerprint"] == t["fingerprint"]
    assert json.loads(p.read_text())["items"] == {"k": [0]}


def test_tampered_file_is_refused(tmp_path):
    t = tkz.make(2, 4, {"a": [1, 2]})
    t["items"]["a"] = [1, 3]
    p = tmp_path / "t.json"
    p.write_text(json.dumps(t))
    with pytest.raises(ValueError, match="fingerprint"):
        tkz.read(p)


def test_lcrec_index_import(tmp_path):
    p = tmp_path / "x.index.json"
    p.write_text(json.dumps({"1": ["<a_3>", "<b_200>"], "2": ["<a_0>", "<b_1>"]}))
    t = tkz.read(p)
    assert (t["levels"], t["codes"]) == (2, 256)
    assert t["items"] == {"1": [3, 200], "2": [0, 1]}
    p.write_text(json.dumps({"1": ["<b_3>", "<a_1>"]}))
    with pytest.raises(ValueError):
        tkz.read(p)
