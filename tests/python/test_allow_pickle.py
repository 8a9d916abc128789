"""allow_pickle=False: no operation of any structure ever unpickles.

A peer that may write the segment stores values whose unpickling runs code
(here: os.mkdir of a path the test owns).  A reader opened with
allow_pickle=False must refuse every operation that would decode such a
value with a TypeError naming allow_pickle, run no code (the directory is
never made) and change nothing."""
from __future__ import annotations

import multiprocessing as mp
import os

import pytest

import shmkit
from shmkit import Queue, SharedDict, Stack


class Planted:
    """Pickles to a call of os.mkdir(path): what a hostile peer stores."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.fixture
def marker(tmp_path):
    path = str(tmp_path / "unpickled")
    yield path
    assert not os.path.exists(path), "a value was unpickled (its code ran)"


def _plant_dict(name: str, marker: str) -> None:
    """The peer: a process that allows pickle stores the planted value."""
    with SharedDict(name, create=False) as w:
        w["evil"] = Planted(marker)


@pytest.fixture
def planted(shm_name, marker):
    """(reader with allow_pickle=False, state()) over a dict holding the
    plain key "ok" and the planted key "evil", planted by another process."""
    with SharedDict(shm_name, create=True) as d:
        d["ok"] = 1
    p = mp.get_context("spawn").Process(target=_plant_dict, args=(shm_name, marker))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    reader = SharedDict(shm_name, create=False, allow_pickle=False)
    assert reader.allow_pickle is False

    def state():
        # nothing here decodes a pickled value
        c = reader.check()
        return sorted(reader.keys()), len(reader), reader["ok"], c["entries"], c["value_bytes"]

    before = state()
    yield reader, state
    assert state() == before, "a refused operation changed the dict"
    reader.close()


REFUSED = {
    "getitem": lambda d: d["evil"],
    "get": lambda d: d.get("evil"),
    "get_default": lambda d: d.get("evil", 0),
    "values": lambda d: list(d.values()),
    "items": lambda d: list(d.items()),
    "copy": lambda d: d.copy(),
    "dict": lambda d: dict(d),
    "repr": lambda d: repr(d),
    "eq": lambda d: d == {"ok": 1},
    "ne": lambda d: d != {"ok": 1},
    "pop": lambda d: d.pop("evil"),
    "pop_default": lambda d: d.pop("evil", None),
    "compare_and_swap": lambda d: d.compare_and_swap("evil", None, 1),
    "setdefault": lambda d: d.setdefault("evil", 1),
    "incr": lambda d: d.incr("evil"),
    "update_from": lambda d: SharedDict.update(d, d),
}


@pytest.mark.parametrize("op", sorted(REFUSED))
def test_dict_refuses_to_unpickle(planted, op):
    reader, _ = planted
    with pytest.raises(TypeError, match="allow_pickle=False"):
        REFUSED[op](reader)


def test_dict_popitem_refuses_to_unpickle(shm_name, marker):
    with SharedDict(shm_name, create=True) as w, \
            SharedDict(shm_name, create=False, allow_pickle=False) as r:
        w["evil"] = Planted(marker)
        with pytest.raises(TypeError, match="allow_pickle=False"):
            r.popitem()
        assert list(r.keys()) == ["evil"]


def test_dict_operations_that_need_no_value_still_work(planted):
    reader, _ = planted
    assert "evil" in reader and "nokey" not in reader
    assert sorted(reader) == ["evil", "ok"]
    assert reader["ok"] == 1 and reader.get("ok") == 1
    with pytest.raises(TypeError, match="get_view"):
        reader.get_view("evil")
    assert reader.check()["entries"] == 2


def test_dict_delete_and_overwrite_of_a_pickled_value_decode_nothing(shm_name, marker):
    with SharedDict(shm_name, create=True) as w, \
            SharedDict(shm_name, create=False, allow_pickle=False) as r:
        w["a"] = Planted(marker)
        w["b"] = Planted(marker)
        del r["a"]                  # a delete does not read the value
        r["b"] = "plain"            # nor does an overwrite
        assert r.copy() == {"b": "plain"}


def test_queue_refuses_to_unpickle(shm_name, marker):
    with Queue(shm_name, create=True) as w, \
            Queue(shm_name, create=False, allow_pickle=False) as r:
        w.put(Planted(marker))
        with pytest.raises(TypeError, match="allow_pickle=False"):
            r.get_nowait()
        with pytest.raises(TypeError, match="allow_pickle=False"):
            r.get_many(5)
        assert r.qsize() == 1


def test_queue_batch_stops_at_a_pickle_without_unpickling(shm_name, marker):
    """get_many takes the bytes items before a pickle and leaves the pickle:
    the batch path refuses like get(), and nothing runs."""
    with Queue(shm_name, create=True) as w, \
            Queue(shm_name, create=False, allow_pickle=False) as r:
        w.put(b"first")
        w.put(Planted(marker))
        w.put(b"after")
        assert r.get_many(5) == [b"first"]
        with pytest.raises(TypeError, match="allow_pickle=False"):
            r.get_many(5)
        assert r.qsize() == 2


def test_queue_and_stack_items_use_the_dict_tags():
    """One encoding: the Redis backend's codec writes queue/stack items with
    the dict's value tags, as the extension does in shared memory."""
    from shmkit import _codec
    assert _codec.encode_item(b"x", False, "Queue")[:1] == b"b"
    assert _codec.encode_item(("x", 1), True, "Queue")[:1] == b"p"
    assert _codec.encode_value(b"x")[:1] == b"b"
    assert _codec.encode_value(("x", 1))[:1] == b"p"


def test_stack_refuses_to_unpickle(shm_name, marker):
    with Stack(shm_name, create=True) as w, \
            Stack(shm_name, create=False, allow_pickle=False) as r:
        w.push(Planted(marker))
        with pytest.raises(TypeError, match="allow_pickle=False"):
            r.pop()
        with pytest.raises(TypeError, match="allow_pickle=False"):
            r.peek()
        assert len(r) == 1


def test_structures_without_pickle_have_no_allow_pickle():
    """Bitset, Array and the allocators store numbers and raw bytes only:
    nothing in them is ever unpickled, so they take no allow_pickle."""
    for cls in (shmkit.Bitset, shmkit.Array, shmkit.FreeListAllocator):
        assert not hasattr(cls, "allow_pickle")
