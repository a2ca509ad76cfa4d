"""Datasets and the leave-one-out split.

Every loader returns a `Dataset`: the item catalogue in file order (that order is also the
order in which `items.jsonl` lists them, hence the order of database item ids), each user's
chronological history as item indices, and a report of what was skipped and why.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

UNKNOWN_TITLES = {"", "unknown", "unkonwn"}  # ML-100K item 267 is titled "unkonwn"


@dataclass
class Dataset:
    name: str
    item_keys: list  # catalogue order
    titles: list  # str or None
    attributes: list  # dict per item (str -> str)
    user_keys: list
    histories: list  # per user: list of item indices, chronological
    report: dict = field(default_factory=dict)

    @property
    def num_items(self):
        return len(self.item_keys)

    def item_text(self, i):
        """The text the alignment uses: title, year, genres (None when the item has no title)."""
        t = self.titles[i]
        if t is None:
            return None
        a = self.attributes[i]
        parts = [t]
        if a.get("year"):
            parts.append(f"({a['year']})")
        if a.get("genres"):
            parts.append("- " + a["genres"])
        return " ".join(parts)


def _atomic(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\n").split("\t")
        names = [h.split(":")[0] for h in header]
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            yield dict(zip(names, line.split("\t")))


def build(name, items, interactions, require_text, min_interactions=3):
    """items: [(key, title|None, attrs)] in file order; interactions: [(user, item, ts)] in file order.

    Skips, and counts in `report`: items without text (when `require_text`), interactions naming
    unknown or skipped items, users with fewer than `min_interactions` interactions left.
    Histories are sorted by (timestamp, position in the interaction file) - a stable sort.
    """
    report = {"items_in_file": len(items), "interactions_in_file": len(interactions),
              "skipped_items_without_text": [], "skipped_interactions_unknown_item": 0,
              "skipped_interactions_item_without_text": 0, "skipped_users_too_few": [],
              "duplicate_item_keys": 0}
    keys, titles, attrs, index = [], [], [], {}
    dropped = set()
    for key, title, a in items:
        if key in index or key in dropped:
            report["duplicate_item_keys"] += 1
            continue
        if title is not None and title.strip().lower() in UNKNOWN_TITLES:
            title = None
        if require_text and title is None:
            report["skipped_items_without_text"].append(key)
            dropped.add(key)
            continue
        index[key] = len(keys)
        keys.append(key)
        titles.append(title)
        attrs.append(a)
    per_user = {}
    order = []
    for pos, (u, it, ts) in enumerate(interactions):
        if it in dropped:
            report["skipped_interactions_item_without_text"] += 1
            continue
        if it not in index:
            report["skipped_interactions_unknown_item"] += 1
            continue
        if u not in per_user:
            per_user[u] = []
            order.append(u)
        per_user[u].append((ts, pos, index[it]))
    user_keys, histories = [], []
    for u in order:
        h = sorted(per_user[u])
        if len(h) < min_interactions:
            report["skipped_users_too_few"].append(u)
            continue
        user_keys.append(u)
        histories.append([i for _, _, i in h])
    report["users"] = len(user_keys)
    report["items"] = len(keys)
    report["interactions"] = sum(len(h) for h in histories)
    return Dataset(name, keys, titles, attrs, user_keys, histories, report)


def load_ml100k(directory):
    items = []
    for r in _atomic(os.path.join(directory, "ml-100k.item")):
        a = {}
        y = (r.get("release_year") or "").strip()
        if y and y.lower() not in UNKNOWN_TITLES:
            a["year"] = y
        g = (r.get("class") or "").strip()
        if g and g.lower() not in UNKNOWN_TITLES:
            a["genres"] = g
        items.append((r["item_id"].strip(), (r.get("movie_title") or "").strip(), a))
    inter = [(r["user_id"].strip(), r["item_id"].strip(), int(float(r["timestamp"])))
             for r in _atomic(os.path.join(directory, "ml-100k.inter"))]
    return build("ml-100k", items, inter, require_text=True)


def load_instruments(directory, name="Instruments"):
    """LC-Rec/LETTER format; returns None when the folder is absent."""
    path = os.path.join(directory, f"{name}.inter.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        inter_json = json.load(f)
    item_keys = set()
    inter = []
    for u in sorted(inter_json, key=int):
        for pos, it in enumerate(inter_json[u]):
            item_keys.add(str(it))
            inter.append((u, str(it), pos))
    meta = {}
    ipath = os.path.join(directory, f"{name}.item.json")
    if os.path.exists(ipath):
        with open(ipath) as f:
            meta = json.load(f)
    items = []
    for k in sorted(item_keys | set(meta), key=int):
        m = meta.get(k, {})
        items.append((k, m.get("title"), {kk: v for kk, v in m.items()
                                          if kk not in ("title", "description") and isinstance(v, str)}))
    return build(name.lower(), items, inter, require_text=False)


@dataclass
class Split:
    """Leave-one-out: last item = test target, second-to-last = validation target, rest = train."""
    train: list  # per user: training sequence (all but the last two)
    valid_target: list
    test_target: list
    valid_history: list  # the last `max_history` items before the validation target
    test_history: list  # the last `max_history` items before the test target


def split_loo(histories, max_history=20):
    tr, vt, tt, vh, th = [], [], [], [], []
    for h in histories:
        assert len(h) >= 3
        tr.append(h[:-2])
        vt.append(h[-2])
        tt.append(h[-1])
        vh.append(h[:-2][-max_history:])
        th.append(h[:-1][-max_history:])
    return Split(tr, vt, tt, vh, th)


def write_split(path, ds, split):
    """Per user: the validation and test item keys (the Rust side checks its split against it)."""
    rows = {u: {"valid": ds.item_keys[v], "test": ds.item_keys[t]}
            for u, v, t in zip(ds.user_keys, split.valid_target, split.test_target)}
    with open(path, "w") as f:
        json.dump({"dataset": ds.name, "definition": "leave-one-out, chronological (timestamp, then "
                   "order in the interaction file); test = last, valid = second-to-last; "
                   "interactions of skipped items removed first",
                   "users": dict(sorted(rows.items(), key=lambda kv: kv[0].encode()))},
                  f, indent=0, sort_keys=False)
        f.write("\n")


def report_text(ds):
    r = ds.report
    lines = [f"{ds.name}: {r['users']} users, {r['items']} items, {r['interactions']} interactions kept",
             f"  skipped items without text: {len(r['skipped_items_without_text'])} "
             f"{r['skipped_items_without_text'][:10]}",
             f"  skipped interactions naming an item without text: {r['skipped_interactions_item_without_text']}",
             f"  skipped interactions naming an unknown item: {r['skipped_interactions_unknown_item']}",
             f"  skipped users with < 3 interactions: {len(r['skipped_users_too_few'])}",
             f"  duplicate item keys ignored: {r['duplicate_item_keys']}"]
    return "\n".join(lines)
