"""The three allocators: shared-allocator API, errors, zero-copy views, real
processes, and a hypothesis model of the free list."""
import os
import pickle

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

import shmkit
from conftest import busy_workers, unique_name


def test_shared_allocator_readme_freelist(shm_name):
    # The shared-allocator README example with only the import changed.
    allocator = shmkit.FreeListAllocator(name=shm_name, capacity=10 * 1024 * 1024, create=True)
    offset = allocator.allocate(256)
    allocator.write(offset, b"Hello from shared memory!")
    assert allocator.read(offset, 25) == b"Hello from shared memory!"
    allocator.free(offset)
    allocator.close()
    allocator.unlink()
    assert not os.path.exists(f"/dev/shm/{shm_name}")


def test_shared_allocator_readme_bump(shm_name):
    allocator = shmkit.BumpAllocator(name=shm_name, capacity=10 * 1024 * 1024, create=True)
    for i in range(1000):
        offset = allocator.allocate(128)
        allocator.write(offset, f"Record {i}".encode())
    assert allocator.available_bytes() == 10 * 1024 * 1024 - 128 * 1000
    allocator.reset()
    assert allocator.available_bytes() == 10 * 1024 * 1024
    allocator.close()
    allocator.unlink()


def test_slab(shm_name):
    with shmkit.SlabAllocator(shm_name, capacity=64 * 10, slab_size=64, create=True) as s:
        assert s.slab_size == 64 and s.slot_count == 10
        offs = [s.allocate() for _ in range(10)]
        assert len(set(offs)) == 10
        with pytest.raises(shmkit.OutOfMemoryError):
            s.allocate()
        with pytest.raises(ValueError, match="exceeds the slab size"):
            s.allocate(65)
        s.free(offs[3])
        with pytest.raises(ValueError, match="double free"):
            s.free(offs[3])
        assert s.allocate(64) == offs[3]
        s.write(offs[0], b"x" * 64)
        assert s.read(offs[0], 64) == b"x" * 64


@pytest.mark.parametrize("cls", [shmkit.FreeListAllocator, shmkit.BumpAllocator, shmkit.SlabAllocator])
def test_bad_input_leaves_allocator_unchanged(shm_name, cls):
    a = cls(shm_name, capacity=1 << 16, create=True)
    off = a.allocate(16)
    avail = a.available_bytes()
    for bad in (-1, 1 << 64, 2 ** 63):
        with pytest.raises((ValueError, OverflowError)):
            a.allocate(bad) if cls is not shmkit.SlabAllocator else a.allocate(bad)
    for bad in ("16", 1.5, None):
        with pytest.raises(TypeError):
            a.allocate(bad)
    if cls is not shmkit.SlabAllocator:
        with pytest.raises(ValueError):
            a.allocate(0)
        with pytest.raises(shmkit.OutOfMemoryError, match="no room"):
            a.allocate(1 << 20)
    with pytest.raises(ValueError, match="outside"):
        a.read(off, 1 << 20)
    with pytest.raises(ValueError, match="outside"):
        a.write(0, b"x")
    with pytest.raises(ValueError, match="outside"):
        a.view(off + (1 << 20), 1)
    with pytest.raises(TypeError):
        a.write(off, "text")
    if hasattr(a, "free"):
        for bad in (off + 1, 3, 1 << 40):
            with pytest.raises(ValueError):
                a.free(bad)
    assert a.available_bytes() == avail
    a.close()
    with pytest.raises(ValueError, match="closed"):
        a.allocate(16)
    with pytest.raises(ValueError, match="closed"):
        a.read(off, 1)
    a.unlink()


def test_creation_arguments(shm_name):
    with pytest.raises(ValueError, match="capacity"):
        shmkit.FreeListAllocator(shm_name, create=True)
    with pytest.raises(ValueError, match="capacity"):
        shmkit.FreeListAllocator(shm_name, capacity=-5)
    with pytest.raises(FileNotFoundError):
        shmkit.FreeListAllocator(shm_name, create=False)
    a = shmkit.FreeListAllocator(shm_name, capacity=4096, create=True)
    b = shmkit.FreeListAllocator(shm_name)          # attach by name alone
    assert b.capacity == 4096 and not b.created
    with pytest.raises(FileExistsError):
        shmkit.FreeListAllocator(shm_name, capacity=4096, create=True)
    with pytest.raises(TypeError):
        shmkit.BumpAllocator(shm_name)                # exists as a free list
    a.close()
    b.close()


def test_view_is_zero_copy_and_outlives_close(shm_name):
    a = shmkit.FreeListAllocator(shm_name, capacity=1 << 16, create=True)
    b = shmkit.FreeListAllocator(shm_name)
    off = a.allocate(100)
    v = a.view(off, 100)
    assert not v.readonly and len(v) == 100
    v[:5] = b"hello"
    assert b.read(off, 5) == b"hello"
    a.close()
    b.close()
    # the view keeps the mapping alive: no crash, still shared memory
    v[5:10] = b"world"
    with shmkit.FreeListAllocator(shm_name) as c:
        assert c.read(off, 10) == b"helloworld"
    v.release()


def test_pickle_reattaches(shm_name):
    with shmkit.FreeListAllocator(shm_name, capacity=1 << 16, create=True) as a:
        off = a.allocate(10)
        a.write(off, b"0123456789")
        b = pickle.loads(pickle.dumps(a))
        assert b.read(off, 10) == b"0123456789" and not b.created
        b.close()
    assert "closed" in repr(a)


def test_in_segment_offsets_are_segment_offsets(shm_name):
    with shmkit.Segment(shm_name, create=True) as seg:
        fl = seg.allocator("fl", capacity=1 << 16)
        bump = seg.allocator("bump", kind="bump", capacity=1 << 16)
        o1, o2 = fl.allocate(32), bump.allocate(32)
        fl.write(o1, b"a" * 32)
        bump.write(o2, b"b" * 32)
        with pytest.raises(ValueError):
            fl.read(o2, 32)              # belongs to the other allocator
        with pytest.raises(ValueError):
            fl.free(o2)
        assert fl.read(o1, 32) == b"a" * 32


# ---------------------------------------------------------------- processes

BLOCKS_PER_PROCESS = 50_000


def _hammer(name, kind, seed, q):
    try:
        q.put(_hammer_body(name, kind, seed))
    except BaseException as e:  # report, so the parent never waits in vain
        q.put(repr(e))


def _hammer_body(name, kind, seed):
    import random

    rng = random.Random(seed)
    a = {"freelist": shmkit.FreeListAllocator, "slab": shmkit.SlabAllocator}[kind](name)
    live = []
    errors = 0
    total = 0
    while total < BLOCKS_PER_PROCESS or live:
        if live and (total >= BLOCKS_PER_PROCESS or rng.random() < 0.45):
            off, n, pat = live.pop(rng.randrange(len(live)))
            if a.read(off, n) != pat:
                errors += 1
            a.free(off)
        else:
            n = rng.randint(1, 300) if kind == "freelist" else 64
            off = a.allocate(n)
            pat = bytes([(seed + total) % 251]) * n
            a.write(off, pat)
            live.append((off, n, pat))
            total += 1
    a.close()
    return errors


@pytest.mark.parametrize("kind", ["freelist", "slab"])
def test_four_processes_allocate_and_free(shm_name, mp_context, kind):
    if kind == "freelist":
        a = shmkit.FreeListAllocator(shm_name, capacity=32 << 20, create=True)
    else:
        a = shmkit.SlabAllocator(shm_name, capacity=64 * 40_000, slab_size=64, create=True)
    start = a.available_bytes()
    q = mp_context.Queue()
    procs = [mp_context.Process(target=_hammer, args=(shm_name, kind, i * 7919 + 1, q))
             for i in range(4)]
    for p in procs:
        p.start()
    errors = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert errors == [0, 0, 0, 0]     # no two live blocks ever overlapped
    assert a.available_bytes() == start
    if kind == "freelist":
        assert a.check()["live_blocks"] == 0
    a.close()


def _churn(name, stop, wid):
    a = shmkit.FreeListAllocator(name)
    held, i = [], 0
    while not stop.is_set():
        held.append(a.allocate(16 + i % 300))
        if len(held) > 50:
            a.free(held.pop(0))
        i += 1
    for off in held:
        a.free(off)
    a.close()


def test_check_while_other_processes_allocate(shm_name):
    # check() walks lists that other processes pop and push meanwhile: a
    # node popped and reused under the walk looks like a LIVE block on a
    # list.  That must never be reported as corruption, and once they stop
    # the check is exact.
    a = shmkit.FreeListAllocator(shm_name, capacity=1 << 20, create=True)
    with busy_workers(_churn, shm_name) as procs:
        # until they are at work (or one died: busy_workers then reports it)
        while a.available_bytes() == a.capacity and all(p.is_alive() for p in procs):
            pass
        for _ in range(2000):
            a.check()
    st_ = a.check()
    assert st_["live_blocks"] == 0 and st_["leaked_blocks"] == 0
    assert st_["unverified_lists"] == 0
    a.close()


# ---------------------------------------------------------------- hypothesis

class FreeListModel(RuleBasedStateMachine):
    """The free list against a model: live blocks never overlap, contents
    survive, freed memory comes back, failures change nothing."""

    blocks = Bundle("blocks")

    def __init__(self):
        super().__init__()
        self.name = unique_name("hyp")
        self.a = shmkit.FreeListAllocator(self.name, capacity=1 << 16, create=True)
        self.start = self.a.available_bytes()
        self.live = {}

    @rule(target=blocks, n=st.integers(1, 5000), fill=st.integers(0, 255))
    def allocate(self, n, fill):
        before = self.a.available_bytes()
        try:
            off = self.a.allocate(n)
        except shmkit.OutOfMemoryError:
            assert self.a.available_bytes() == before
            return -1
        assert self.a.usable_size(off) >= n
        for o, (m, _) in self.live.items():
            assert off + n <= o or o + m <= off
        self.a.write(off, bytes([fill]) * n)
        self.live[off] = (n, fill)
        return off

    @rule(off=consumes(blocks))
    def free(self, off):
        if off < 0:
            return
        n, fill = self.live.pop(off)
        assert self.a.read(off, n) == bytes([fill]) * n
        self.a.free(off)
        with pytest.raises(ValueError):
            self.a.free(off)

    @invariant()
    def consistent(self):
        stats = self.a.check()
        assert stats["live_blocks"] == len(self.live)

    def teardown(self):
        for off in list(self.live):
            self.a.free(off)
        assert self.a.available_bytes() == self.start
        self.a.close()
        shmkit.unlink(self.name)


TestFreeListModel = FreeListModel.TestCase
TestFreeListModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# ------------------------------------------------------------ check / stats

def _poke(name, at, data):
    """Overwrite bytes of segment `name` at file offset `at` (the mapping
    of every open handle sees it)."""
    with open(f"/dev/shm/{name}", "r+b") as f:
        f.seek(at)
        f.write(data)


def test_every_allocator_has_check_and_stats(shm_name):
    with shmkit.Segment(shm_name, create=True, size=1 << 20) as seg:
        fl = seg.allocator("f", kind="freelist", capacity=1 << 16)
        fl.allocate(100)
        assert fl.check() == fl.stats() and fl.check()["live_blocks"] == 1
        b = seg.allocator("b", kind="bump", capacity=4096)
        b.allocate(10)
        b.allocate(17)
        assert b.check() == b.stats() == {"capacity": 4096, "used_bytes": 48,
                                          "available_bytes": 4096 - 48}
        s = seg.allocator("s", kind="slab", capacity=64 * 70, slab_size=64)
        offs = [s.allocate() for _ in range(5)]
        s.free(offs[2])
        assert s.check() == s.stats() == {"capacity": 64 * 70, "slab_size": 64,
                                          "slot_count": 70, "live_slots": 4,
                                          "free_slots": 66,
                                          "available_bytes": 66 * 64}
        for a in (fl, b, s):
            a.close()
            with pytest.raises(ValueError, match="closed"):
                a.check()


# (kind, byte offset from the header, bytes written): each one damage that
# check() must report.  Bump header: magic 0, start 16, limit 24, top 64.
# Slab header: magic 0, slot_size 16, nslots 24, free_slots 48, hint 56,
# bitmap from 64 (70 slots: the last word's bits 6..63 are always set).
DAMAGE = [
    ("bump", 0, b"X"),
    ("bump", 24, b"\x01"),
    ("bump", 64, b"\x03"),
    ("bump", 71, b"\x7f"),
    ("slab", 0, b"X"),
    ("slab", 16, b"\x50"),
    ("slab", 48, b"\xff\xff"),
    ("slab", 56, b"\x09"),
    ("slab", 64 + 8 + 7, b"\x00"),
]


@pytest.mark.parametrize("kind,at,data", DAMAGE)
def test_check_reports_a_corrupt_byte(shm_name, kind, at, data):
    with shmkit.Segment(shm_name, create=True, size=1 << 20) as seg:
        a = seg.allocator("a", kind=kind, capacity=64 * 70, slab_size=64) if kind == "slab" \
            else seg.allocator("a", kind=kind, capacity=4096)
        a.allocate(32)
        a.check()
        off = seg.lookup("a")["offset"]
        _poke(shm_name, off + at, data)
        with pytest.raises(shmkit.CorruptSegmentError):
            a.check()
        with pytest.raises(shmkit.CorruptSegmentError):
            a.stats()
        a.close()


# ------------------------------------------------------ per-process caches

def _cache_user(name, n):
    a = shmkit.FreeListAllocator(name)
    offs = [a.allocate(64) for _ in range(n)]
    for off in offs:
        a.free(off)
    os.kill(os.getpid(), 9)   # dies holding its cache


def test_cache_of_killed_process_is_reclaimed(shm_name):
    # An allocator of 16 MiB or more gives each process a cache of freed
    # blocks; a process killed with blocks in it gives them back on
    # reclaim(), and check() counts them as cached meanwhile, not leaked.
    import multiprocessing as mp

    a = shmkit.FreeListAllocator(shm_name, capacity=32 << 20, create=True)
    avail = a.available_bytes()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_cache_user, args=(shm_name, 200)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == -9
    st_ = a.check()
    assert st_["cached_blocks"] > 0 and st_["cached_bytes"] > 0
    assert st_["live_blocks"] == 0 and st_["leaked_blocks"] == 0
    assert a.available_bytes() == avail   # cached bytes are not lost
    assert a.reclaim() == st_["cached_blocks"]
    st2 = a.check()
    assert st2["cached_blocks"] == 0 and st2["live_blocks"] == 0
    assert st2["free_blocks"] == st_["free_blocks"] + st_["cached_blocks"]
    assert a.reclaim() == 0
    a.close()
