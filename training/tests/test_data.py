"""Goal: the leave-one-out split and the skip report are what docs/training.md says.
Method: a toy catalogue with timestamp ties, an item without text, an unknown item and a short user."""
from convergedb_train import data as D


def toy():
    items = [("m1", "One", {}), ("m2", "Two", {"year": "1999"}), ("m3", "unknown", {}),
             ("m4", "Four", {}), ("m5", "Five", {})]
    inter = [("u1", "m2", 10), ("u1", "m1", 5), ("u1", "m4", 10), ("u1", "m5", 20), ("u1", "m3", 1),
             ("u2", "m1", 1), ("u2", "zz", 2), ("u2", "m2", 3),  # zz unknown -> u2 keeps 2 < 3
             ("u3", "m5", 3), ("u3", "m4", 2), ("u3", "m1", 1), ("u3", "m2", 4)]
    return D.build("toy", items, inter, require_text=True)


def test_skips_are_counted_with_reasons():
    ds = toy()
    r = ds.report
    assert r["skipped_items_without_text"] == ["m3"]
    assert r["skipped_interactions_item_without_text"] == 1
    assert r["skipped_interactions_unknown_item"] == 1
    assert r["skipped_users_too_few"] == ["u2"]
    assert ds.user_keys == ["u1", "u3"] and r["users"] == 2 and r["items"] == 4
    assert "skipped users with < 3 interactions: 1" in D.report_text(ds)


def test_chronological_with_ties_in_file_order_and_leave_one_out():
    ds = toy()
    key = lambda seq: [ds.item_keys[i] for i in seq]
    # u1: m1(5), m2(10, earlier in file), m4(10), m5(20)
    assert key(ds.histories[0]) == ["m1", "m2", "m4", "m5"]
    sp = D.split_loo(ds.histories, max_history=2)
    assert key(sp.train[0]) == ["m1", "m2"]
    assert ds.item_keys[sp.valid_target[0]] == "m4" and ds.item_keys[sp.test_target[0]] == "m5"
    assert key(sp.test_history[0]) == ["m2", "m4"]  # last 2 before the test item
    assert key(sp.valid_history[1]) == ["m1", "m4"]
    assert key(sp.test_history[1]) == ["m4", "m5"]


def test_item_text():
    ds = toy()
    assert ds.item_text(ds.item_keys.index("m2")) == "Two (1999)"
