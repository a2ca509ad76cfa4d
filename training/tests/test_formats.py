"""Goal: a dataset is read by its format and path, whatever its name (docs/training.md "Data").
Method: tiny hand-made files in each layout (LC-Rec/LETTER JSON, RecBole atomic, GroupLens
MovieLens 100K / 1M / latest), loaded through data.load with the format given and detected."""
import json
import os

import pytest

from convergedb_train import data as D

# three users; u2 has 2 interactions only (skipped); item 7 has no text where text exists
HIST = {"10": ["3", "1", "2", "3"], "2": ["1", "7"], "5": ["2", "3", "1"]}


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def test_lcrec_any_name_with_item_text_and_index(tmp_path):
    write(tmp_path / "Toys.inter.json", json.dumps(HIST))
    write(tmp_path / "Toys.item.json", json.dumps({"1": {"title": "Ball", "description": "round", "categories": "Toys Balls"},
                                                   "2": {"title": "Kite"}, "3": {"title": "Doll", "brand": "Acme"}}))
    write(tmp_path / "Toys.index.json", json.dumps({k: ["<a_1>", "<b_2>", "<c_3>", "<d_0>"] for k in "1237"}))
    for fmt, path in (("lcrec", tmp_path), ("auto", tmp_path), ("auto", tmp_path / "Toys.inter.json")):
        ds = D.load(fmt, str(path))
        assert ds.name == "toys" and ds.domain == "item"
        assert ds.index_path == str(tmp_path / "Toys.index.json")
        assert ds.item_keys == ["1", "2", "3"]  # numeric order; 7 has no text -> skipped
        assert ds.report["skipped_items_without_text"] == ["7"] and ds.report["skipped_users_too_few"] == ["2"]
        assert ds.user_keys == ["5", "10"]  # numeric user order
        key = lambda s: [ds.item_keys[i] for i in s]
        assert key(ds.histories[1]) == ["3", "1", "2", "3"]  # the file's order is the chronology
        assert ds.item_text(0) == "Ball - Toys Balls" and ds.attributes[2] == {"brand": "Acme"}


def test_lcrec_without_item_file_keeps_every_item(tmp_path):
    write(tmp_path / "x.inter.json", json.dumps(HIST))
    ds = D.load("lcrec", str(tmp_path))
    assert ds.item_keys == ["1", "2", "3", "7"] and ds.index_path is None and ds.report["users"] == 2


def test_folder_with_several_datasets_needs_a_name(tmp_path):
    write(tmp_path / "a.inter.json", json.dumps(HIST))
    write(tmp_path / "b.inter.json", json.dumps(HIST))
    with pytest.raises(SystemExit, match="several datasets"):
        D.load("lcrec", str(tmp_path))
    assert D.load("lcrec", str(tmp_path), "b").name == "b"


def test_recbole_atomic(tmp_path):
    rows = [("10", "3", 5), ("10", "1", 7), ("2", "1", 1), ("10", "2", 7), ("5", "2", 1), ("10", "3", 9),
            ("5", "3", 2), ("2", "7", 3), ("5", "1", 3)]
    write(tmp_path / "Shop.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          + "".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in rows))
    write(tmp_path / "Shop.item", "item_id:token\ttitle:token_seq\tcategories:token_seq\tprice:float\tbrand:token\n"
          "1\tBall\tToys Balls\t3.5\tAcme\n2\tKite\t\t1\t\n3\tDoll\tToys\t2\t\n7\t\t\t\t\n")
    ds = D.load("auto", str(tmp_path))
    assert ds.name == "shop" and ds.domain == "item"
    assert ds.item_keys == ["1", "2", "3"] and ds.report["skipped_items_without_text"] == ["7"]
    assert ds.user_keys == ["10", "5"]  # first-seen order
    key = lambda s: [ds.item_keys[i] for i in s]
    assert key(ds.histories[0]) == ["3", "1", "2", "3"]  # ties (t=7) in file order
    assert ds.attributes[0] == {"genres": "Toys Balls", "brand": "Acme"}  # float fields are not attributes
    assert ds.item_text(0) == "Ball - Toys Balls"


def test_recbole_without_timestamp_or_item_file(tmp_path):
    write(tmp_path / "t.inter", "user_id:token\titem_id:token\n" + "".join(f"u\t{i}\n" for i in "abcab"))
    ds = D.load("recbole", str(tmp_path / "t.inter"))
    assert [ds.item_keys[i] for i in ds.histories[0]] == list("abcab") and ds.titles == [None] * 3


def test_recbole_movielens_fields(tmp_path):
    write(tmp_path / "ml-mini.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          "1\t1\t3\t30\n1\t2\t3\t10\n1\t3\t3\t20\n")
    write(tmp_path / "ml-mini.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
          "1\tToy Story\t1995\tAnimation Comedy\n2\tHeat\t1995\tAction\n3\tunknown\t\t\n")
    ds = D.load("auto", str(tmp_path))
    assert ds.domain == "movie" and ds.item_keys == ["1", "2"]  # "unknown" title: skipped
    assert ds.item_text(0) == "Toy Story (1995) - Animation Comedy"
    assert D.load("movielens", str(tmp_path)).item_keys == ["1", "2"]


def test_grouplens_movielens_layouts(tmp_path):
    a = tmp_path / "ml-100k"
    a.mkdir()
    write(a / "u.genre", "unknown|0\nAction|1\nComedy|2\n\n")
    write(a / "u.item", "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n2|Heat (1995)|01-Jan-1995||http://x|0|1|1\n")
    write(a / "u.data", "7\t2\t3\t20\n7\t1\t4\t10\n7\t2\t5\t30\n")
    ds = D.load("auto", str(a))
    assert ds.name == "ml-100k" and ds.domain == "movie"
    assert ds.item_text(1) == "Heat (1995) - Action Comedy"
    assert [ds.item_keys[i] for i in ds.histories[0]] == ["1", "2", "2"]
    b = tmp_path / "ml-1m"
    b.mkdir()
    write(b / "movies.dat", "1::Toy Story (1995)::Animation|Comedy\n2::Heat (1995)::Action\n")
    write(b / "ratings.dat", "3::1::5::10\n3::2::5::5\n3::1::5::20\n")
    ds = D.load("movielens", str(b))
    assert ds.item_text(0) == "Toy Story (1995) - Animation Comedy" and ds.report["interactions"] == 3
    c = tmp_path / "ml-latest-small"
    c.mkdir()
    write(c / "movies.csv", 'movieId,title,genres\n1,"Toy Story (1995)",Animation|Comedy\n2,Heat (1995),(no genres listed)\n')
    write(c / "ratings.csv", "userId,movieId,rating,timestamp\n3,1,5,10\n3,2,5,5\n3,1,5,20\n")
    ds = D.load("auto", str(c))
    assert ds.name == "ml-latest-small" and ds.item_text(1) == "Heat (1995)"


def test_unknown_layout_is_refused(tmp_path):
    write(tmp_path / "readme.txt", "nothing")
    with pytest.raises(SystemExit, match="cannot tell"):
        D.load("auto", str(tmp_path))
