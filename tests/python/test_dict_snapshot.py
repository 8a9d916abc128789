"""SharedDict.snapshot() (the whole dict at one instant) and
SharedDict.recommend_size(entries)."""
import numpy as np
import pytest

import shmkit
from conftest import busy_workers


def test_snapshot_contents(shm_name):
    d = shmkit.SharedDict(shm_name, create=True)
    data = {"s": "x" * 100, "b": b"\x00", 1: None, 2**80: 2**90, ("t", 1): 2.5,
            "p": {"nested": [1]}, "a": np.arange(4.0), "t": True}
    d.update(data)
    snap = d.snapshot()
    assert type(snap) is dict and snap.keys() == data.keys()
    assert np.array_equal(snap.pop("a"), data.pop("a")) and snap == data
    assert sorted(d._snapshot(False), key=repr) == sorted(d.keys(), key=repr)
    d.clear()
    assert d.snapshot() == {}
    d.close()
    with pytest.raises(ValueError):
        d.snapshot()


def _move_token(name, stop, _w):
    d = shmkit.SharedDict(name, create=False)
    i = 0
    while not stop.is_set():
        d[f"token-{i + 1}"] = i + 1          # the next token, then drop this one:
        del d[f"token-{i}"]                  # one or two tokens at every instant
        i += 1


def test_snapshot_is_consistent_across_shards(shm_name):
    """A walk shard by shard can miss both tokens; snapshot() cannot."""
    d = shmkit.SharedDict(shm_name, create=True)
    d.update({f"filler-{i}": i for i in range(2000)})
    d["token-0"] = 0
    with busy_workers(_move_token, shm_name, n=1):
        for _ in range(300):
            snap = d.snapshot()
            tokens = sorted(v for k, v in snap.items() if str(k).startswith("token-"))
            assert len(tokens) in (1, 2) and tokens == list(range(tokens[0], tokens[0] + len(tokens)))
            assert len(snap) == 2000 + len(tokens)
    d.close()


def test_recommend_size(shm_name):
    d = shmkit.SharedDict(shm_name, create=True)
    empty = d.recommend_size(1000)
    assert empty["key_size"] == 16 and empty["value_size"] == 16 and empty["current_entries"] == 0
    for i in range(100):
        d[f"k{i:05d}"] = "v" * 200
    adv = d.recommend_size(10_000)
    assert adv["key_size"] == 6 and adv["value_size"] == 200 and adv["current_entries"] == 100
    assert adv["size"] == shmkit.SharedDict.estimate_size(10_000, 6, 200) > 10_000 * 206
    assert d.recommend_size(0)["size"] < adv["size"]
    with pytest.raises(ValueError):
        d.recommend_size(-1)
    with pytest.raises(TypeError):
        d.recommend_size(1.5)
    d.close()
