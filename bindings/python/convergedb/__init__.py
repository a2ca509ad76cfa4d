"""convergedb for Python: a ctypes wrapper over the C API (bindings/c/include/convergedb.h).

The shared library is found through the environment variable CONVERGEDB_LIB (a path to
libconvergedb.so), else in target/debug or target/release of the repository holding this
package (build it with `cargo build --lib`).

    from convergedb import Database
    with Database("/tmp/my-db", durability="sync") as db:
        db.put_items([{"key": "m1", "title": "Toy Story"}, {"key": "m2", "title": "Heat"}])
        db.record("alice", "m1", 1_700_000_000, kind="view")
        print(db.recommend("alice", 10).items)   # [("m2", 0.0)]

Every failing call raises a subclass of ConvergedbError named after the C status (e.g.
InvalidKError for CONVERGEDB_INVALID_K), carrying the status and the library's message.
A Database may be shared between threads, like the C handle.
"""

import ctypes
import json
import os
from pathlib import Path

__all__ = ["Database", "Recommendation", "ConvergedbError", "load_library"]

# ---- status codes (the values of convergedb_status; stable) ----
_STATUS_NAMES = [
    "OK", "NULL_ARGUMENT", "INVALID_UTF8", "INVALID_ARGUMENT", "EMPTY_KEY", "TOO_LONG",
    "VECTOR_DIMENSION", "INVALID_VECTOR", "UNKNOWN_ITEM", "DELETED_ITEM", "UNKNOWN_USER",
    "ITEM_EXISTS", "DUPLICATE_IN_BATCH", "BATCH_TOO_LARGE", "INVALID_K", "NOT_A_DATABASE",
    "UNSUPPORTED_FORMAT", "CORRUPTION", "STORAGE", "IO", "IN_USE", "POISONED",
    "INVALID_TOKENIZATION", "IMPORT", "CLOSED", "PANIC", "BUFFER_TOO_SMALL", "OTHER",
    "LOST_WRITES", "NO_MODEL", "FOREIGN_TOKENIZATION", "CONFLICT", "NO_ANN_INDEX",
    "UNKNOWN_VECTOR", "CLUSTER",
]
OK = 0
BUFFER_TOO_SMALL = _STATUS_NAMES.index("BUFFER_TOO_SMALL")


class ConvergedbError(Exception):
    """A convergedb call failed. `status` is the C status code, `name` its name (e.g.
    "INVALID_K"), `message` the library's explanation."""

    status = -1
    name = "UNKNOWN_STATUS"

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


def _class_name(status_name):
    return "".join(part.capitalize() for part in status_name.split("_")) + "Error"


_ERRORS = {}
for _code, _name in enumerate(_STATUS_NAMES):
    if _code == OK:
        continue
    _cls = type(_class_name(_name), (ConvergedbError,), {"status": _code, "name": _name})
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)
    _ERRORS[_code] = _cls


# ---- the library ----
class _Db(ctypes.Structure):
    pass


class _Rec(ctypes.Structure):
    pass


class _Options(ctypes.Structure):
    _fields_ = [
        ("durability", ctypes.c_uint32),
        ("create_if_missing", ctypes.c_bool),
        ("flush_every_ms", ctypes.c_uint64),
        ("cache_capacity_bytes", ctypes.c_uint64),
        ("refresh_workers", ctypes.c_uint32),
        ("accept_lost_writes", ctypes.c_bool),
        ("cluster_urls", ctypes.c_char_p),
        ("cluster_namespace", ctypes.c_char_p),
    ]


_P = ctypes.c_char_p
_DB = ctypes.POINTER(_Db)
_REC = ctypes.POINTER(_Rec)
_OUT_STR = ctypes.POINTER(ctypes.c_void_p)
_U16P = ctypes.POINTER(ctypes.c_uint16)
_SIZEP = ctypes.POINTER(ctypes.c_size_t)
_S = ctypes.c_int32

_SIGNATURES = {
    "convergedb_last_error_message": (_P, []),
    "convergedb_status_name": (_P, [ctypes.c_int32]),
    "convergedb_version": (_P, []),
    "convergedb_string_free": (None, [ctypes.c_void_p]),
    "convergedb_options_default": (_Options, []),
    "convergedb_db_open": (_S, [_P, ctypes.POINTER(_Options), ctypes.POINTER(_DB)]),
    "convergedb_db_close": (_S, [_DB]),
    "convergedb_db_free": (None, [_DB]),
    "convergedb_db_flush": (_S, [_DB]),
    "convergedb_stats_json": (_S, [_DB, _OUT_STR]),
    "convergedb_check_json": (_S, [_DB, _OUT_STR]),
    "convergedb_item_put": (_S, [_DB, _P, _P, _P, _P, _P]),
    "convergedb_items_put_jsonl": (_S, [_DB, _P]),
    "convergedb_item_get_json": (_S, [_DB, _P, _OUT_STR]),
    "convergedb_item_delete": (_S, [_DB, _P]),
    "convergedb_interaction_record": (_S, [_DB, _P, _P, ctypes.c_int64, _P, ctypes.c_float]),
    "convergedb_interactions_record_jsonl": (_S, [_DB, _P]),
    "convergedb_history_json": (_S, [_DB, _P, _OUT_STR]),
    "convergedb_recommend": (_S, [_DB, _P, ctypes.c_size_t, ctypes.POINTER(_REC)]),
    "convergedb_recommendation_len": (ctypes.c_size_t, [_REC]),
    "convergedb_recommendation_item_key": (_P, [_REC, ctypes.c_size_t]),
    "convergedb_recommendation_item_score": (ctypes.c_double, [_REC, ctypes.c_size_t]),
    "convergedb_recommendation_source": (_P, [_REC]),
    "convergedb_recommendation_free": (None, [_REC]),
    "convergedb_tokenize": (_S, [_DB, _P, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_uint64]),
    "convergedb_sid": (_S, [_DB, _P, _U16P, ctypes.c_size_t, _SIZEP]),
    "convergedb_allowed_next": (_S, [_DB, _U16P, ctypes.c_size_t, _U16P, ctypes.c_size_t, _SIZEP]),
    "convergedb_sid_import": (_S, [_DB, _P]),
    "convergedb_sid_export": (_S, [_DB, _P]),
}

_lib = None


def _library_candidates():
    env = os.environ.get("CONVERGEDB_LIB")
    if env:
        return [Path(env)]
    root = Path(__file__).resolve().parents[3]  # convergedb/ -> python/ -> bindings/ -> repo
    return [root / "target" / profile / "libconvergedb.so" for profile in ("debug", "release")]


def load_library():
    """Loads libconvergedb once and declares every function's signature."""
    global _lib
    if _lib is not None:
        return _lib
    candidates = _library_candidates()
    for path in candidates:
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            break
    else:
        raise OSError(
            "libconvergedb.so not found (tried %s): run `cargo build --lib` or set CONVERGEDB_LIB"
            % ", ".join(str(p) for p in candidates)
        )
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = lib
    return lib


def version():
    """The library version, e.g. "0.1.0"."""
    return load_library().convergedb_version().decode()


def _check(status):
    if status == OK:
        return
    message = (_lib.convergedb_last_error_message() or b"").decode("utf-8", "replace")
    raise _ERRORS.get(status, ConvergedbError)(message, status)


def _bytes(value, name):
    if value is None:
        return None
    if isinstance(value, bytes):  # passed through unchanged (the C side checks UTF-8)
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    raise TypeError("%s must be str or bytes, not %s" % (name, type(value).__name__))


def _take_string(ptr):
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        _lib.convergedb_string_free(ptr)


def _jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records)


class Recommendation:
    """A ranked list: `items` is [(key, score)], best first; `source` names what produced it."""

    def __init__(self, source, items):
        self.source = source
        self.items = items

    @property
    def keys(self):
        return [k for k, _ in self.items]

    def __len__(self):
        return len(self.items)

    def __repr__(self):
        return "Recommendation(source=%r, items=%r)" % (self.source, self.items)


class Database:
    """An open convergedb database (the C `convergedb_db` handle).

    `durability` is "buffered" (default; flushed every `flush_every_ms`) or "sync". Use it as a
    context manager, or call close(). After close() every method raises ClosedError.
    Opening a database whose acknowledged writes are missing after recovery raises
    LostWritesError; `accept_lost_writes=True` opens it anyway with what was recovered.
    `cluster` ("redis://host:port,...") keeps the per-user tier in a Redis Cluster under key
    namespace `namespace` (docs/cluster.md).
    """

    def __init__(self, path, durability="buffered", create_if_missing=True,
                 flush_every_ms=500, cache_capacity_bytes=64 * 1024 * 1024,
                 accept_lost_writes=False, cluster=None, namespace=None):
        lib = load_library()
        opts = lib.convergedb_options_default()
        if durability == "buffered":
            opts.durability = 0
        elif durability == "sync":
            opts.durability = 1
        else:
            raise InvalidArgumentError(  # noqa: F821 (made above)
                "durability must be 'buffered' or 'sync', not %r" % (durability,), 3)
        opts.create_if_missing = bool(create_if_missing)
        opts.flush_every_ms = flush_every_ms
        opts.cache_capacity_bytes = cache_capacity_bytes
        opts.accept_lost_writes = bool(accept_lost_writes)
        if cluster is not None:
            opts.cluster_urls = _bytes(cluster, "cluster")
        if namespace is not None:
            opts.cluster_namespace = _bytes(namespace, "namespace")
        self._handle = _DB()
        _check(lib.convergedb_db_open(_bytes(os.fspath(path), "path"), ctypes.byref(opts),
                                      ctypes.byref(self._handle)))
        self._closed = False

    # ---- lifecycle ----
    def close(self):
        """Flushes and closes the database. Calling it again does nothing."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        _check(_lib.convergedb_db_close(self._handle))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle and _lib is not None:
            _lib.convergedb_db_free(handle)
            self._handle = None

    def flush(self):
        _check(_lib.convergedb_db_flush(self._handle))

    def _json_out(self, fn, *args):
        out = ctypes.c_void_p()
        _check(fn(self._handle, *args, ctypes.byref(out)))
        return json.loads(_take_string(out))

    def stats(self):
        """Counts and settings (dict)."""
        return self._json_out(_lib.convergedb_stats_json)

    def check(self):
        """Verifies every invariant; returns the report (dict), consistent when report["clean"]."""
        return self._json_out(_lib.convergedb_check_json)

    # ---- items ----
    def put_item(self, key, title="", description="", attributes=None, vectors=None):
        attrs = None if attributes is None else json.dumps(attributes).encode()
        vecs = None if vectors is None else json.dumps(vectors).encode()
        _check(_lib.convergedb_item_put(self._handle, _bytes(key, "key"), _bytes(title, "title"),
                                        _bytes(description, "description"), attrs, vecs))

    def put_items(self, items):
        """Puts a list of item dicts (the JSONL importer's schema) in one atomic batch."""
        _check(_lib.convergedb_items_put_jsonl(self._handle, _jsonl(items).encode()))

    def get_item(self, key):
        return self._json_out(_lib.convergedb_item_get_json, _bytes(key, "key"))

    def delete_item(self, key):
        _check(_lib.convergedb_item_delete(self._handle, _bytes(key, "key")))

    # ---- interactions ----
    def record(self, user, item, timestamp, kind=None, weight=1.0):
        _check(_lib.convergedb_interaction_record(self._handle, _bytes(user, "user"),
                                                  _bytes(item, "item"), timestamp,
                                                  _bytes(kind, "kind"), weight))

    def record_many(self, events):
        """Records a list of interaction dicts ({"user", "item", "timestamp", ...}) atomically."""
        _check(_lib.convergedb_interactions_record_jsonl(self._handle, _jsonl(events).encode()))

    def history(self, user):
        return self._json_out(_lib.convergedb_history_json, _bytes(user, "user"))

    # ---- recommendations ----
    def recommend(self, user, k=10):
        if k < 0:
            raise InvalidKError("k = %d is out of range" % k, 14)  # noqa: F821
        rec = _REC()
        _check(_lib.convergedb_recommend(self._handle, _bytes(user, "user"), k, ctypes.byref(rec)))
        try:
            n = _lib.convergedb_recommendation_len(rec)
            items = [(_lib.convergedb_recommendation_item_key(rec, i).decode(),
                      _lib.convergedb_recommendation_item_score(rec, i)) for i in range(n)]
            return Recommendation(_lib.convergedb_recommendation_source(rec).decode(), items)
        finally:
            _lib.convergedb_recommendation_free(rec)

    # ---- semantic IDs ----
    def tokenize(self, vector, levels=4, codes=256, seed=42):
        _check(_lib.convergedb_tokenize(self._handle, _bytes(vector, "vector"), levels, codes,
                                        seed))

    def _codes(self, call):
        n = ctypes.c_size_t(0)
        status = call(None, 0, ctypes.byref(n))
        if status == OK:
            return []
        if status != BUFFER_TOO_SMALL:
            _check(status)
        buf = (ctypes.c_uint16 * n.value)()
        _check(call(buf, n.value, ctypes.byref(n)))
        return list(buf[: n.value])

    def sid(self, key):
        """The semantic-ID codes of an item ([] when it has none)."""
        key = _bytes(key, "key")
        return self._codes(lambda out, cap, n: _lib.convergedb_sid(self._handle, key, out, cap, n))

    def allowed_next(self, prefix=()):
        """Codes that may follow `prefix` in a live semantic ID, ascending."""
        arr = (ctypes.c_uint16 * len(prefix))(*prefix)
        return self._codes(lambda out, cap, n: _lib.convergedb_allowed_next(
            self._handle, arr, len(prefix), out, cap, n))

    def sid_import(self, path):
        _check(_lib.convergedb_sid_import(self._handle, _bytes(os.fspath(path), "path")))

    def sid_export(self, path):
        _check(_lib.convergedb_sid_export(self._handle, _bytes(os.fspath(path), "path")))
