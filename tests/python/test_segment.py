"""Segments: create/attach, names, errors, directory, pickling, lifetimes."""
import os
import pickle

import pytest

import shmkit
from conftest import busy_workers


def test_create_attach_close_unlink(shm_name):
    with shmkit.Segment(shm_name, create=True) as seg:
        assert seg.created and not seg.closed
        assert seg.name == shm_name
        other = shmkit.Segment(shm_name, create=False)
        assert not other.created
        other.close()
        assert other.closed
    assert seg.closed
    # closing never unlinks: the segment is still there
    again = shmkit.Segment(shm_name)
    assert not again.created
    again.unlink()
    again.close()
    with pytest.raises(FileNotFoundError):
        shmkit.Segment(shm_name, create=False)


def test_unlink_on_exit_only_for_creator(shm_name):
    with shmkit.Segment(shm_name, create=True) as creator:
        with shmkit.Segment(shm_name, create=False, unlink_on_exit=True):
            pass
        assert os.path.exists(f"/dev/shm/{shm_name}")
    with shmkit.Segment(shm_name, create=False):
        pass
    with shmkit.Segment(shm_name, unlink_on_exit=True) as s:
        assert not s.created
    assert os.path.exists(f"/dev/shm/{shm_name}")
    shmkit.unlink(shm_name)
    with shmkit.Segment(shm_name, create=True, unlink_on_exit=True):
        pass
    assert not os.path.exists(f"/dev/shm/{shm_name}")
    del creator


def test_create_existing_and_attach_missing(shm_name):
    with shmkit.Segment(shm_name, create=True):
        with pytest.raises(FileExistsError, match="already exists"):
            shmkit.Segment(shm_name, create=True)
    shmkit.unlink(shm_name)
    with pytest.raises(FileNotFoundError):
        shmkit.Segment(shm_name, create=False)
    with pytest.raises(FileNotFoundError):
        shmkit.unlink(shm_name)


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 201, "a\0b", "..", "//x"])
def test_bad_names(bad):
    with pytest.raises(ValueError, match="invalid segment name"):
        shmkit.Segment(bad)
    assert not shmkit.name_valid(bad)


@pytest.mark.parametrize("bad", [None, 3, b"abc"])
def test_name_type(bad):
    with pytest.raises(TypeError):
        shmkit.Segment(bad)


def test_bad_arguments(shm_name):
    with pytest.raises(TypeError):
        shmkit.Segment(shm_name, create="yes")
    with pytest.raises(ValueError):
        shmkit.Segment(shm_name, mode=0o7777)
    with pytest.raises(ValueError):
        shmkit.Segment(shm_name, size=1 << 30, max_size=1 << 20)
    with pytest.raises(ValueError):
        shmkit.Segment(shm_name, max_size=1 << 40)
    assert not os.path.exists(f"/dev/shm/{shm_name}")


def test_mode_is_applied(shm_name):
    with shmkit.Segment(shm_name, create=True):
        assert os.stat(f"/dev/shm/{shm_name}").st_mode & 0o777 == 0o600
    shmkit.unlink(shm_name)
    with shmkit.Segment(shm_name, create=True, mode=0o640):
        assert os.stat(f"/dev/shm/{shm_name}").st_mode & 0o777 == 0o640


def _write_shm(name, data):
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(data)


@pytest.mark.parametrize("content", [b"", b"x" * 10, os.urandom(4096), os.urandom(65536),
                                     b"\0" * 65536])
def test_foreign_files_are_corrupt(shm_name, content):
    _write_shm(shm_name, content)
    with pytest.raises((shmkit.CorruptSegmentError)):
        shmkit.Segment(shm_name, create=False)


def test_truncated_and_bitflipped_segments(shm_name):
    with shmkit.Segment(shm_name, create=True, size=4 << 20):
        pass
    path = f"/dev/shm/{shm_name}"
    good = open(path, "rb").read(1 << 16)
    # truncated below the size recorded in its header
    os.truncate(path, 1 << 20)
    with pytest.raises(shmkit.CorruptSegmentError):
        shmkit.Segment(shm_name, create=False)
    os.truncate(path, 100)
    with pytest.raises(shmkit.CorruptSegmentError):
        shmkit.Segment(shm_name, create=False)
    # another layout version
    bad = bytearray(good)
    bad[8] ^= 0xFF
    _write_shm(shm_name, bytes(bad) + b"\0" * (4 << 20))
    with pytest.raises(shmkit.CorruptSegmentError, match="layout version"):
        shmkit.Segment(shm_name, create=False)


def test_random_header_corruption_never_crashes(shm_name):
    import random

    with shmkit.Segment(shm_name, create=True, size=1 << 20) as seg:
        seg.allocator("a", capacity=4096)
    path = f"/dev/shm/{shm_name}"
    good = open(path, "rb").read()
    rng = random.Random(7)
    outcomes = set()
    for _ in range(300):
        bad = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            bad[rng.randrange(0, 8192 + 9000)] = rng.randrange(256)
        _write_shm(shm_name, bytes(bad))
        try:
            with shmkit.Segment(shm_name, create=False) as s:
                s.objects()
            outcomes.add("ok")
        except shmkit.CorruptSegmentError:
            outcomes.add("corrupt")
    assert "corrupt" in outcomes


def test_directory_and_info(shm_name):
    with shmkit.Segment(shm_name, create=True) as seg:
        assert seg.objects() == []
        seg.allocator("heap", capacity=4096)
        seg.allocator("slots", kind="slab", capacity=4096, slab_size=64)
        names = [(o["name"], o["type"]) for o in seg.objects()]
        assert names == [("heap", "freelist"), ("slots", "slab")]
        info = seg.info()
        assert info["creator_pid"] == os.getpid()
        assert info["file_size"] == seg.size <= info["max_size"] == seg.max_size
        assert info["heap_used"] > 8192
        assert seg.lookup("heap")["type"] == "freelist"
        with pytest.raises(KeyError):
            seg.lookup("nope")
        with pytest.raises(TypeError):
            seg.allocator("heap", kind="bump")       # exists with another type
        with pytest.raises(FileNotFoundError):
            seg.allocator("nope")                     # absent and no capacity
        with pytest.raises(ValueError):
            seg.allocator("x" * 64, capacity=10)
        with pytest.raises(ValueError):
            seg.allocator("y", kind="buddy", capacity=10)
        assert type(seg.open("slots")).__name__ == "SlabAllocator"
        assert seg.heap_check()["live_blocks"] == 2
        assert "objects=2" in repr(seg)


def test_closed_segment_raises(shm_name):
    seg = shmkit.Segment(shm_name, create=True)
    seg.close()
    seg.close()  # idempotent
    for call in (seg.objects, seg.info, lambda: seg.size, lambda: seg.allocator("a", capacity=1)):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert "closed" in repr(seg)


def test_pickle_attaches(shm_name):
    with shmkit.Segment(shm_name, create=True) as seg:
        seg.allocator("a", capacity=4096)
        clone = pickle.loads(pickle.dumps(seg))
        assert clone.name == shm_name and not clone.created
        assert [o["name"] for o in clone.objects()] == ["a"]
        clone.close()


def _child_sees(name, q):
    with shmkit.Segment(name, create=False) as seg:
        q.put([o["name"] for o in seg.objects()])


def test_other_process_sees_objects(shm_name, mp_context):
    with shmkit.Segment(shm_name, create=True) as seg:
        seg.allocator("shared", capacity=4096)
        q = mp_context.Queue()
        p = mp_context.Process(target=_child_sees, args=(shm_name, q))
        p.start()
        assert q.get(timeout=60) == ["shared"]
        p.join(60)
        assert p.exitcode == 0
    # the child's attach and exit did not remove the segment
    assert os.path.exists(f"/dev/shm/{shm_name}")


def test_growth_is_seen_everywhere(shm_name):
    with shmkit.Segment(shm_name, create=True, size=1 << 20) as a:
        b = shmkit.Segment(shm_name, create=False)
        heap = a.allocator("h", capacity=64 << 20)       # forces growth
        assert a.size >= 64 << 20 and b.size == a.size
        off = heap.allocate(1 << 20)
        heap.write(off, b"z" * (1 << 20))
        assert b.open("h").read(off, 3) == b"zzz"
        b.close()


def _grow_and_churn(name, stop, wid):
    # grows the segment and changes its heap header without pause (keys of
    # its own: another writer's delete must not take them)
    with shmkit.Segment(name, create=False) as seg:
        d = seg.dict("d")
        i = 0
        while not stop.is_set():
            d[f"w{wid}k{i}"] = b"x" * (64 + i % 4000)
            if i % 3 == 0:
                del d[f"w{wid}k{i}"]
            i += 1


def test_attach_while_another_process_grows_the_segment(shm_name):
    # An attacher copies the header while a writer grows the file and
    # carves heap space: a copy taken mid-change must not fail validation
    # (CorruptSegmentError for a healthy segment).  Every attach must
    # succeed.
    with shmkit.Segment(shm_name, create=True, size=1 << 20) as seg:
        seg.dict("d")
        with busy_workers(_grow_and_churn, shm_name):
            for _ in range(1500):
                shmkit.Segment(shm_name, create=False).close()
        assert seg.size > 1 << 20       # it did grow meanwhile


def _use_everything(name, stop, wid):
    # every kind of object in use at once, and the segment growing
    with shmkit.Segment(name, create=False) as seg:
        d, q, st = seg.dict("d"), seg.queue("q"), seg.stack("s")
        fl, bits, arr = seg.allocator("fl"), seg.bitset("b"), seg.array("a")
        i = 0
        while not stop.is_set():
            d[f"w{wid}k{i}"] = b"x" * (64 + i % 2000)
            if i % 2:
                d.pop(f"w{wid}k{i}", None)   # the other worker's clear() may have taken it
            if i % 500 == 499 and wid == 0:
                d.clear()
            q.put_nowait(i) if q.qsize() < 1000 else q.get_nowait()
            st.push(i)
            if i % 3:
                st.pop()
            fl.free(fl.allocate(32 + i % 200))
            bits.flip(i % 1024)
            arr[i % 64] = i
            i += 1
        for h in (d, q, st, fl, bits, arr):
            h.close()


def test_attach_and_open_everything_while_others_use_it(shm_name):
    # Attaching and opening check live headers that other processes change
    # meanwhile (heap top and file size, dict tables, queue positions):
    # every check must hold for a healthy segment at any instant, whatever
    # order it reads in.  Two of them did not (attach vs a growing heap,
    # dict open vs a clear).
    with shmkit.Segment(shm_name, create=True, size=1 << 20) as seg:
        seg.dict("d"), seg.queue("q"), seg.stack("s")
        seg.allocator("fl", capacity=1 << 16), seg.bitset("b", 1024), seg.array("a", "int64", 64)
        with busy_workers(_use_everything, shm_name):
            for _ in range(1000):
                with shmkit.Segment(shm_name, create=False) as other:
                    for info in other.objects():
                        other.open(info["name"]).close()


def test_out_of_memory_at_max_size(shm_name):
    with shmkit.Segment(shm_name, create=True, size=1 << 20, max_size=4 << 20) as seg:
        with pytest.raises(shmkit.OutOfMemoryError):
            seg.allocator("big", capacity=8 << 20)
        with pytest.raises(MemoryError):               # also a MemoryError
            seg.allocator("big", capacity=8 << 20)
        assert seg.objects() == []
        seg.allocator("ok", capacity=1 << 20)
