"""shmkit.compat.shared_allocator against the shared_allocator README
(/work/shared/seeds/004_*: FreeListAllocator and BumpAllocator quick
starts, the three allocators' methods, process safety)."""
import pytest

from shmkit.compat.shared_allocator import BumpAllocator, FreeListAllocator, SlabAllocator

KINDS = [FreeListAllocator, BumpAllocator, SlabAllocator]
SIZES = {FreeListAllocator: {"capacity": 4096}, BumpAllocator: {"capacity": 4096},
         SlabAllocator: {"slab_size": 64, "num_slabs": 64}}

# ---- the README's examples, run as scripts ----


def test_example_freelist(run_example):
    out = run_example("shared_allocator_freelist.py", ["my_allocator"])
    assert out == "b'Hello from shared memory!'\n"


def test_example_bump(run_example):
    out = run_example("shared_allocator_bump.py", ["fast_allocator"])
    assert out == f"Available: {10 * 1024 * 1024} bytes\n"


# ---- the API ----


@pytest.mark.parametrize("cls", KINDS)
def test_create_attach_close_unlink(shm_name, cls):
    a = cls(shm_name, **SIZES[cls])                    # create=True by default
    with pytest.raises(FileExistsError):
        cls(shm_name, **SIZES[cls], create=True)
    off = a.allocate(64)
    a.write(off, b"x" * 64)
    b = cls(shm_name, create=False)
    assert b.read(off, 64) == b"x" * 64
    b.close()
    a.close()
    a.unlink()
    with pytest.raises(FileNotFoundError):
        cls(shm_name, create=False)


@pytest.mark.parametrize("cls", KINDS)
def test_allocate_until_full(shm_name, cls):
    a = cls(shm_name, **SIZES[cls])
    start = a.available_bytes()
    assert 0 < start <= 4096
    offs = []
    with pytest.raises(MemoryError):
        while True:
            offs.append(a.allocate(64))
    assert len(set(offs)) == len(offs) and a.available_bytes() < 64 + 64
    if cls is BumpAllocator:
        a.reset()
    else:
        for off in offs:
            a.free(off)
    assert a.available_bytes() == start
    a.close()
    a.unlink()


def test_free_errors(shm_name):
    a = FreeListAllocator(shm_name, capacity=4096)
    off = a.allocate(10)
    a.free(off)
    with pytest.raises(ValueError):
        a.free(off)                                    # a second free changes nothing
    a.close()
    a.unlink()


def test_signatures_of_the_package(shm_name):
    """The installed package's signatures: positional arguments land where
    they would there."""
    a = FreeListAllocator(shm_name, 4096, 64, 64, True)   # slot_size, num_slots: not limits
    assert a.capacity == 4096 and a.free(a.allocate(1000)) is None
    a.close()
    a.unlink()
    s = SlabAllocator(shm_name, 128, 32)
    assert s.slab_size == 128 and s.slot_count == 32
    assert (s.available_slabs(), s.used_slabs()) == (32, 0)
    s.allocate(100)
    assert (s.available_slabs(), s.used_slabs()) == (31, 1)
    s.close()
    s.unlink()
    b = BumpAllocator(shm_name)                              # capacity=1 MiB
    assert b.capacity == 1 << 20 and b.used_bytes() == 0
    b.allocate(100)
    assert b.used_bytes() >= 100
    b.reset()
    assert b.used_bytes() == 0
    b.close()
    b.unlink()
    for bad in ({"capacity": 0}, {"slot_size": -1}, {"num_slots": 0}):
        with pytest.raises(ValueError):
            FreeListAllocator(shm_name, **bad)


def _fill(name, w, n, out):
    a = FreeListAllocator(name, create=False)
    offs = []
    for _ in range(n):
        off = a.allocate(32)
        a.write(off, bytes([w]) * 32)
        offs.append(off)
    assert all(a.read(off, 32) == bytes([w]) * 32 for off in offs)
    out.put(offs)


def test_processes_allocate_without_overlap(shm_name, mp_context):
    a = FreeListAllocator(shm_name, capacity=1 << 20)
    out = mp_context.Queue()
    procs = [mp_context.Process(target=_fill, args=(shm_name, w, 1000, out)) for w in range(3)]
    for p in procs:
        p.start()
    offs = [off for _ in procs for off in out.get(timeout=120)]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(set(offs)) == 3000
    a.close()
    a.unlink()
