"""Tests of the ctypes wrapper (run: python3 -m pytest -q bindings/python/tests)."""

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import convergedb  # noqa: E402
from convergedb import ConvergedbError, Database  # noqa: E402

ITEMS = [
    {"key": "m1", "title": "Toy Story", "attributes": {"year": "1995"}, "vectors": {"v": [1, 0, 0]}},
    {"key": "m2", "title": "Heat", "vectors": {"v": [0.9, 0.1, 0]}},
    {"key": "m3", "title": "Casino", "vectors": {"v": [0, 1, 0]}},
    {"key": "m4", "title": "Fargo", "vectors": {"v": [0, 0, 1]}},
]


@pytest.fixture
def db(tmp_path):
    with Database(tmp_path / "db", durability="sync") as d:
        d.put_items(ITEMS)
        d.record_many([
            {"user": "bob", "item": "m2", "timestamp": 1},
            {"user": "carol", "item": "m2", "timestamp": 2},
            {"user": "carol", "item": "m3", "timestamp": 3},
        ])
        yield d


def test_version():
    assert convergedb.version() == "0.1.0"


def test_put_record_recommend_history(db):
    db.put_item("m5", "Alien", "in space", attributes={"year": "1979"}, vectors={"v": [1, 1, 0]})
    assert db.get_item("m5")["attributes"] == {"year": "1979"}
    db.record("alice", "m1", 10, kind="view")
    db.record("alice", "m3", 11)
    rec = db.recommend("alice", 2)
    assert rec.source == "popularity"
    assert rec.keys == ["m2", "m4"] or rec.keys[0] == "m2"
    assert rec.items[0] == ("m2", 2.0)
    assert "m1" not in rec.keys and "m3" not in rec.keys
    hist = db.history("alice")
    assert [e["item"] for e in hist["entries"]] == ["m1", "m3"]
    assert hist["entries"][0]["kind"] == "view"


def test_stats_and_check(db):
    stats = db.stats()
    assert stats["items"] == 4
    assert stats["interactions"] == 3
    assert stats["durability"] == "sync"
    report = db.check()
    assert report["clean"] and report["problems"] == []


def test_delete(db):
    db.delete_item("m2")
    assert "m2" not in db.recommend("zoe", 10).keys
    with pytest.raises(convergedb.DeletedItemError):
        db.delete_item("m2")
    with pytest.raises(convergedb.UnknownItemError):
        db.get_item("m2")


def test_semantic_ids(db, tmp_path):
    db.tokenize("v", levels=2, codes=2, seed=7)
    codes = db.sid("m1")
    assert len(codes) == 2
    assert codes[0] in db.allowed_next()
    assert codes[1] in db.allowed_next(codes[:1])
    assert db.allowed_next(codes) == []
    path = tmp_path / "sid.json"
    db.sid_export(path)
    db.sid_import(path)
    with pytest.raises(convergedb.UnknownItemError):
        db.sid("nope")


def test_errors(db):
    with pytest.raises(convergedb.InvalidKError) as e:
        db.recommend("alice", 0)
    assert e.value.status == 14 and e.value.name == "INVALID_K"
    assert "k = 0" in e.value.message
    with pytest.raises(convergedb.InvalidKError):
        db.recommend("alice", 2**64 - 1)
    with pytest.raises(convergedb.EmptyKeyError):
        db.put_item("")
    with pytest.raises(convergedb.TooLongError):
        db.put_item("x" * 600)
    with pytest.raises(convergedb.InvalidUtf8Error):
        db.put_item(b"\xff\xfe")
    with pytest.raises(convergedb.UnknownUserError):
        db.history("nobody")
    with pytest.raises(convergedb.UnknownItemError):
        db.record("alice", "nope", 1)
    with pytest.raises(convergedb.VectorDimensionError):
        db.put_item("m9", vectors={"v": [1.0]})
    with pytest.raises(convergedb.DuplicateInBatchError):
        db.put_items([{"key": "a"}, {"key": "a"}])
    with pytest.raises(convergedb.InvalidTokenizationError):
        db.tokenize("nope")
    with pytest.raises(convergedb.InvalidArgumentError):
        db.record("alice", "m1", 1, weight=float("nan"))
    assert issubclass(convergedb.ClosedError, ConvergedbError)


def test_use_after_close(tmp_path):
    db = Database(tmp_path / "db")
    db.put_item("a")
    db.close()
    db.close()  # idempotent in Python
    for call in (lambda: db.recommend("u", 5), lambda: db.stats(), lambda: db.put_item("b"),
                 lambda: db.history("u"), lambda: db.flush(), lambda: db.sid("a")):
        with pytest.raises(convergedb.ClosedError):
            call()


def test_in_use_and_reopen(tmp_path):
    path = tmp_path / "db"
    with Database(path) as db:
        db.put_item("a", "A")
        with pytest.raises(convergedb.InUseError):
            Database(path)
    with Database(path, create_if_missing=False) as db:
        assert db.get_item("a")["title"] == "A"
    with pytest.raises(convergedb.NotADatabaseError):
        Database(tmp_path / "missing", create_if_missing=False)


def test_threads(db):
    errors = []

    def work(t):
        try:
            for i in range(20):
                db.record("t%d" % t, "m%d" % (1 + (t + i) % 4), i)
                db.recommend("t%d" % t, 3)
        except ConvergedbError as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert db.stats()["interactions"] == 3 + 8 * 20
    assert db.check()["clean"]


def test_open_edges_and_lost_writes(tmp_path):
    with pytest.raises(convergedb.InvalidArgumentError):
        Database("")
    with pytest.raises(convergedb.InvalidArgumentError) as e:
        Database(tmp_path / "small", cache_capacity_bytes=0)
    assert "cache_capacity_bytes" in e.value.message
    # Storage files from before two acknowledged writes beside the newer acknowledgement record.
    a, b = tmp_path / "a", tmp_path / "b"
    with Database(a, durability="sync") as db:
        db.put_item("early")
    import shutil
    shutil.copytree(a, b)
    with Database(a, durability="sync") as db:
        db.put_item("late1")
        db.put_item("late2")
    shutil.copy(a / "convergedb.ack", b / "convergedb.ack")
    with pytest.raises(convergedb.LostWritesError) as e:
        Database(b)
    assert e.value.status == 28 and "accept_lost_writes" in e.value.message
    with Database(b, accept_lost_writes=True) as db:
        assert db.get_item("early")["key"] == "early"
        with pytest.raises(convergedb.UnknownItemError):
            db.get_item("late1")
    with Database(b) as db:
        db.put_item("after")


CLUSTER = __import__("os").environ.get("CONVERGEDB_REDIS_CLUSTER")


@pytest.mark.skipif(not CLUSTER, reason="needs CONVERGEDB_REDIS_CLUSTER (./scripts/test starts one)")
def test_cluster_backend_shares_users_between_two_databases(tmp_path):
    ns = "py%d" % __import__("os").getpid()
    with Database(tmp_path / "a", cluster=CLUSTER, namespace=ns) as a, \
            Database(tmp_path / "b", cluster=CLUSTER, namespace=ns) as b:
        a.put_items(ITEMS)
        b.put_items(ITEMS)
        a.record("dave", "m1", 1, kind="click")
        a.record("dave", "m3", 2)
        h = b.history("dave")
        assert [e["item"] for e in h["entries"]] == ["m1", "m3"]
        assert h["entries"][0]["kind"] == "click"
        rec = b.recommend("dave", 2)
        assert rec.source == "popularity" and len(rec) == 2
        assert not set(rec.keys) & {"m1", "m3"}


def test_unreachable_cluster_is_a_cluster_error(tmp_path):
    with pytest.raises(convergedb.ClusterError) as e:
        Database(tmp_path / "db", cluster="redis://127.0.0.1:1")
    assert e.value.name == "CLUSTER"
