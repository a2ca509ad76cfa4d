"""SASRec (Kang & McAuley 2018): behavioural item embeddings and a baseline.

2 self-attention blocks, hidden 64, full-softmax cross-entropy over the catalogue, trained on
the training part of the leave-one-out split only; early stopping on validation NDCG@10."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn

from .metrics import rank_metrics, windows


class SASRec(nn.Module):
    def __init__(self, num_items, hidden=64, blocks=2, heads=1, max_len=20, dropout=0.2):
        super().__init__()
        self.item = nn.Embedding(num_items + 1, hidden, padding_idx=0)  # 0 = padding
        self.pos = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, heads, hidden * 4, dropout, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, blocks)
        self.ln = nn.LayerNorm(hidden)
        self.max_len = max_len
        nn.init.normal_(self.item.weight, std=0.05)

    def forward(self, seq):  # seq [B, T] right-aligned, 0 = pad
        T = seq.shape[1]
        x = self.item(seq) * (self.item.embedding_dim ** 0.5) + self.pos(torch.arange(T, device=seq.device))[None]
        x = self.drop(x) * (seq > 0)[..., None]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=seq.device), 1)
        h = self.enc(x, mask=causal, src_key_padding_mask=None)
        return self.ln(h)

    def scores(self, seq):
        h = self.forward(seq)[:, -1]
        return h @ self.item.weight[1:].T


def _pad(seqs, T):
    a = np.zeros((len(seqs), T), np.int64)
    for i, s in enumerate(seqs):
        s = s[-T:]
        if len(s):
            a[i, T - len(s):] = np.asarray(s) + 1
    return torch.from_numpy(a)


@torch.no_grad()
def topk(model, histories, k=10, batch=256, exclude=None):
    model.eval()
    dev = model.item.weight.device
    out = []
    for s in range(0, len(histories), batch):
        sc = model.scores(_pad(histories[s:s + batch], model.max_len).to(dev))
        if exclude is not None:
            for j, h in enumerate(exclude[s:s + batch]):
                sc[j, list(h)] = -1e9
        out.extend(torch.topk(sc, k, dim=1).indices.cpu().tolist())
    return out


def train(num_items, train_seqs, valid_hist, valid_tgt, cfg, log=print, device="cpu"):
    torch.manual_seed(cfg.get("seed", 0))
    rng = np.random.default_rng(cfg.get("seed", 0))
    T = cfg.get("max_len", 20)
    m = SASRec(num_items, cfg.get("hidden", 64), cfg.get("blocks", 2), cfg.get("heads", 1), T, cfg.get("dropout", 0.2))
    m.to(device)
    opt = torch.optim.Adam(m.parameters(), lr=cfg.get("lr", 1e-3))
    curve = []
    best, best_state, bad, epoch_times, best_epoch = -1, None, 0, [], 0
    t0 = time.time()
    for ep in range(cfg.get("epochs", 200)):
        te = time.time()
        m.train()
        win = windows(train_seqs, T + 1, rng)
        perm = rng.permutation(len(win))
        tot = 0.0
        for s in range(0, len(win), cfg.get("batch", 128)):
            b = [win[i] for i in perm[s:s + cfg.get("batch", 128)]]
            x = _pad([w[:-1] for w in b], T).to(device)
            y = _pad([w[1:] for w in b], T).to(device)
            h = m(x)
            logits = h @ m.item.weight[1:].T
            mask = y > 0
            loss = nn.functional.cross_entropy(logits[mask], y[mask] - 1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item()
        epoch_times.append(time.time() - te)
        if (ep + 1) % cfg.get("eval_every", 5) == 0:
            met = rank_metrics(topk(m, valid_hist), valid_tgt)
            log(f"sasrec epoch {ep + 1} loss {tot:.1f} valid ndcg@10 {met['ndcg@10']:.4f} ({time.time() - t0:.0f}s)")
            curve.append({"epoch": ep + 1, "loss": tot, "valid_ndcg@10": met["ndcg@10"], "valid_recall@10": met["recall@10"]})
            if met["ndcg@10"] > best:
                best, bad = met["ndcg@10"], 0
                best_state = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
                best_epoch = ep + 1
            else:
                bad += 1
                if bad >= cfg.get("patience", 4):
                    break
    m = m.cpu()
    if best_state is not None:
        m.load_state_dict(best_state)
    info = {"epochs": ep + 1, "seconds": time.time() - t0, "seconds_per_epoch": float(np.mean(epoch_times)),
            "best_valid_ndcg@10": best, "best_epoch": best_epoch, "params": sum(p.numel() for p in m.parameters()),
            "curve": curve}
    return m, info


def item_vectors(model):
    return model.item.weight[1:].detach().numpy().astype(np.float32)
