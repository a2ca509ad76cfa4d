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
    domain: str = "item"  # "movie" or "item": the wording of the prompt templates
    index_path: str = None  # an LC-Rec/LETTER NAME.index.json beside the data, if any

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


# --- loaders: a dataset is named by its format and path, never by a built-in name ---
#
# Every loader takes PATH (a folder, or one of the dataset's files) and an optional NAME (the
# file stem, needed only when a folder holds several datasets) and returns a `Dataset` whose
# `name` is NAME in lower case, `domain` "movie" or "item" (it picks the prompt wording), and
# `index_path` the LC-Rec/LETTER tokenization file beside the data (or None).

FORMATS = ("movielens", "recbole", "lcrec")
TITLE_FIELDS = ("title", "movie_title", "name", "item_name", "book_title")
YEAR_FIELDS = ("year", "release_year")
GENRE_FIELDS = ("genres", "genre", "class", "categories", "category")


def _find(path, suffix, name=None):
    """(folder, NAME) of the dataset file NAME + suffix under PATH (a folder or that file)."""
    if os.path.isfile(path):
        base = os.path.basename(path)
        if not base.endswith(suffix):
            raise SystemExit(f"{path}: expected a file ending in {suffix}")
        return os.path.dirname(path) or ".", base[: -len(suffix)]
    if not os.path.isdir(path):
        raise SystemExit(f"{path}: no such file or folder")
    if name is not None:
        if not os.path.exists(os.path.join(path, name + suffix)):
            raise SystemExit(f"{path}: no {name}{suffix}")
        return path, name
    found = sorted(f[: -len(suffix)] for f in os.listdir(path) if f.endswith(suffix))
    if not found:
        raise SystemExit(f"{path}: no *{suffix} file")
    if len(found) > 1:
        raise SystemExit(f"{path}: several datasets ({', '.join(found)}): name one with --name")
    return path, found[0]


def detect_format(path):
    """movielens | recbole | lcrec from the files under PATH."""
    files = [os.path.basename(path)] if os.path.isfile(path) else os.listdir(path)
    if any(f.endswith(".inter.json") for f in files):
        return "lcrec"
    if any(f.endswith(".inter") for f in files):
        return "recbole"
    if any(f in ("u.data", "ratings.dat", "ratings.csv") for f in files):
        return "movielens"
    raise SystemExit(f"{path}: cannot tell the dataset format (no *.inter.json, *.inter, u.data, "
                     "ratings.dat or ratings.csv); pass --format")


def load(fmt, path, name=None):
    """The dataset at PATH in format FMT ("auto" detects it)."""
    if fmt in (None, "auto"):
        fmt = detect_format(path)
    if fmt == "lcrec":
        return load_lcrec(path, name)
    if fmt == "recbole":
        return load_recbole(path, name)
    if fmt == "movielens":
        return load_movielens(path, name)
    raise SystemExit(f"unknown dataset format {fmt!r} (one of {', '.join(FORMATS)}, auto)")


def _split_attrs(fields, row):
    """(title, attributes) of an item row: the first title-like field is the title; year- and
    genre-like fields become "year" and "genres"; other non-empty text fields keep their name."""
    title, a = None, {}
    for f in TITLE_FIELDS:
        if f in row and (row[f] or "").strip():
            title = row[f].strip()
            break
    for f, typ in fields:
        v = (row.get(f) or "").strip()
        if not v or v.lower() in UNKNOWN_TITLES or f == "item_id" or f in TITLE_FIELDS:
            continue
        if f in YEAR_FIELDS:
            a.setdefault("year", v)
        elif f in GENRE_FIELDS:
            a.setdefault("genres", v)
        elif typ in ("token", "token_seq"):
            a[f] = v
    return title, a


def _atomic_fields(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\n").split("\t")
    return [(h.split(":")[0], h.split(":")[1] if ":" in h else "token") for h in header]


def load_recbole(path, name=None):
    """RecBole atomic files: NAME.inter (user_id, item_id, optional timestamp) and an optional
    NAME.item (item_id and text fields). Without a timestamp, the file order is the order."""
    folder, name = _find(path, ".inter", name)
    inter_path = os.path.join(folder, name + ".inter")
    fields = dict(_atomic_fields(inter_path))
    for need in ("user_id", "item_id"):
        if need not in fields:
            raise SystemExit(f"{inter_path}: no {need} column (RecBole atomic header: user_id:token ...)")
    inter = []
    for pos, r in enumerate(_atomic(inter_path)):
        ts = r.get("timestamp")
        inter.append((r["user_id"].strip(), r["item_id"].strip(), float(ts) if ts not in (None, "") else pos))
    item_path = os.path.join(folder, name + ".item")
    items, domain = [], "item"
    if os.path.exists(item_path):
        ifields = _atomic_fields(item_path)
        domain = "movie" if any(f == "movie_title" for f, _ in ifields) else "item"
        for r in _atomic(item_path):
            title, a = _split_attrs(ifields, r)
            items.append((r["item_id"].strip(), title, a))
    known = {k for k, _, _ in items}
    seen = []
    for _, it, _ in inter:
        if it not in known:
            known.add(it)
            seen.append((it, None, {}))
    items += seen  # items only named by interactions: no text
    ds = build(name.lower(), items, inter, require_text=any(t for _, t, _ in items))
    ds.domain = domain
    return ds


def load_ml100k(directory):
    """MovieLens-100K as RecBole ships it (ml-100k.inter, ml-100k.item)."""
    return load_recbole(directory, "ml-100k")


def _year_title(t):
    t = t.strip()
    if len(t) > 7 and t.endswith(")") and t[-6] == "(" and t[-5:-1].isdigit():
        return t[:-6].strip(), t[-5:-1]
    return t, None


def load_movielens(path, name=None):
    """GroupLens MovieLens files: ml-100k (u.data, u.item, u.genre), ml-1m/10m (ratings.dat,
    movies.dat with '::'), ml-latest (ratings.csv, movies.csv); or RecBole's packaging of
    MovieLens (a folder with NAME.inter). Titles "Name (1995)" are split into title and year."""
    import csv
    folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
    files = set(os.listdir(folder))
    if any(f.endswith(".inter") for f in files) and not {"u.data", "ratings.dat", "ratings.csv"} & files:
        ds = load_recbole(path, name)
        ds.domain = "movie"
        return ds
    name = name or os.path.basename(os.path.abspath(folder))
    items, inter = [], []
    if "u.data" in files:
        genres = []
        if "u.genre" in files:
            with open(os.path.join(folder, "u.genre"), encoding="latin-1") as f:
                genres = [l.split("|")[0] for l in f if l.strip()]
        with open(os.path.join(folder, "u.item"), encoding="latin-1") as f:
            for line in f:
                p = line.rstrip("\n").split("|")
                if len(p) < 2:
                    continue
                title, year = _year_title(p[1])
                a = {}
                if year:
                    a["year"] = year
                g = [genres[j] for j, flag in enumerate(p[5:]) if flag == "1" and j < len(genres)]
                if g:
                    a["genres"] = " ".join(g)
                items.append((p[0], title, a))
        with open(os.path.join(folder, "u.data")) as f:
            for line in f:
                p = line.split()
                if len(p) >= 4:
                    inter.append((p[0], p[1], int(p[3])))
    elif "ratings.dat" in files:
        with open(os.path.join(folder, "movies.dat"), encoding="latin-1") as f:
            for line in f:
                p = line.rstrip("\n").split("::")
                if len(p) >= 3:
                    title, year = _year_title(p[1])
                    a = {"year": year} if year else {}
                    if p[2] and p[2] != "(no genres listed)":
                        a["genres"] = p[2].replace("|", " ")
                    items.append((p[0], title, a))
        with open(os.path.join(folder, "ratings.dat")) as f:
            for line in f:
                p = line.strip().split("::")
                if len(p) >= 4:
                    inter.append((p[0], p[1], int(p[3])))
    elif "ratings.csv" in files:
        with open(os.path.join(folder, "movies.csv"), encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                title, year = _year_title(r["title"])
                a = {"year": year} if year else {}
                if r.get("genres") and r["genres"] != "(no genres listed)":
                    a["genres"] = r["genres"].replace("|", " ")
                items.append((r["movieId"], title, a))
        with open(os.path.join(folder, "ratings.csv"), encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                inter.append((r["userId"], r["movieId"], int(float(r["timestamp"]))))
    else:
        raise SystemExit(f"{folder}: no MovieLens files (u.data, ratings.dat, ratings.csv or RecBole *.inter)")
    ds = build(name.lower(), items, inter, require_text=True)
    ds.domain = "movie"
    return ds


def _int_or_str(keys):
    keys = list(keys)
    return sorted(keys, key=int) if all(k.lstrip("-").isdigit() for k in keys) else keys


def load_lcrec(path, name=None):
    """LC-Rec/LETTER JSON: NAME.inter.json ({user: [item, ...]} in chronological order), an
    optional NAME.item.json ({item: {"title", "description", ...}}), an optional NAME.index.json
    (the LETTER tokenization, `Dataset.index_path`). Users and items in numeric key order when
    every key is a number, else in file order; the timestamp of an interaction is its position."""
    folder, name = _find(path, ".inter.json", name)
    with open(os.path.join(folder, name + ".inter.json")) as f:
        inter_json = json.load(f)
    item_keys, inter = {}, []
    for u in _int_or_str(inter_json):
        for pos, it in enumerate(inter_json[u]):
            item_keys.setdefault(str(it), None)
            inter.append((str(u), str(it), pos))
    meta = {}
    ipath = os.path.join(folder, name + ".item.json")
    if os.path.exists(ipath):
        with open(ipath) as f:
            meta = {str(k): v for k, v in json.load(f).items()}
    for k in meta:
        item_keys.setdefault(k, None)
    items = []
    for k in _int_or_str(item_keys):
        m = meta.get(k) or {}
        title = m.get("title") if isinstance(m.get("title"), str) and m.get("title").strip() else None
        a = {}
        for kk, v in m.items():
            if kk in ("title", "description") or not isinstance(v, str) or not v.strip():
                continue
            a["genres" if kk in GENRE_FIELDS else "year" if kk in YEAR_FIELDS else kk] = v.strip()
        items.append((k, title, a))
    ds = build(name.lower(), items, inter, require_text=any(t for _, t, _ in items))
    ds.domain = "item"
    xpath = os.path.join(folder, name + ".index.json")
    ds.index_path = xpath if os.path.exists(xpath) else None
    return ds


def load_instruments(directory, name="Instruments"):
    """Amazon Instruments in the LC-Rec layout; None when the folder lacks it."""
    if not os.path.exists(os.path.join(directory, f"{name}.inter.json")):
        return None
    return load_lcrec(directory, name)


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
