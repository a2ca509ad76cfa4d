"""The LM's tokenizer: MiniLM's WordPiece pruned to the tokens the corpus uses, plus the
semantic-ID tokens `<a_0>`... as added tokens at `first_token_id + l * C + c`."""
from __future__ import annotations

import json

import numpy as np
from tokenizers import Tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def sid_token(l, c):
    return f"<{chr(ord('a') + l)}_{c}>"


def build(minilm_tokenizer_path, corpus, levels, codes):
    """Returns (tokenizer json str, new->original id array, info dict)."""
    with open(minilm_tokenizer_path) as f:
        spec = json.load(f)
    orig = Tokenizer.from_str(json.dumps(spec))
    orig.no_padding()
    orig.no_truncation()
    vocab = spec["model"]["vocab"]
    used = set(vocab[s] for s in SPECIALS)
    for enc in orig.encode_batch(list(corpus), add_special_tokens=False):
        used.update(enc.ids)
    inv = {v: k for k, v in vocab.items()}
    keep = sorted(used)  # original id order: [PAD]=0 stays 0, then [UNK], [CLS], [SEP], words
    new_vocab = {inv[o]: i for i, o in enumerate(keep)}
    spec["model"]["vocab"] = new_vocab
    spec["truncation"] = None
    spec["padding"] = None
    first = len(new_vocab)
    added = [{"id": new_vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s in SPECIALS]
    for l in range(levels):
        for c in range(codes):
            added.append({"id": first + l * codes + c, "content": sid_token(l, c), "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False, "special": False})
    spec["added_tokens"] = added
    pp = spec.get("post_processor")
    if pp and pp.get("special_tokens"):
        for s, v in pp["special_tokens"].items():
            v["ids"] = [new_vocab[s]]
    text = json.dumps(spec, ensure_ascii=False)
    tok = Tokenizer.from_str(text)
    # the pruned tokenizer must reproduce the original tokenization of the corpus
    for s in list(corpus)[:2000]:
        a = [inv[i] for i in orig.encode(s, add_special_tokens=False).ids]
        b = tok.encode(s, add_special_tokens=False).tokens
        if a != b:
            raise AssertionError(f"pruned tokenizer differs on {s!r}: {a} vs {b}")
    for l in range(levels):
        for c in (0, codes - 1):
            ids = tok.encode(sid_token(l, c), add_special_tokens=False).ids
            assert ids == [first + l * codes + c], (sid_token(l, c), ids)
    info = {"text_vocab": first, "vocab_size": first + levels * codes, "first_token_id": first,
            "bos": new_vocab["[CLS]"], "eos": new_vocab["[SEP]"], "pad": new_vocab["[PAD]"],
            "unk": new_vocab["[UNK]"]}
    return text, np.asarray(keep, dtype=np.int64), info
