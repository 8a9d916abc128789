"""shmkit.compat.shared_allocator against the shared_allocator README
(/work/shared/seeds/004_*: FreeListAllocator and BumpAllocator quick
starts, the three allocators' methods, process safety)."""
import pytest

import shmkit
from shmkit.compat.shared_allocator import BumpAllocator, FreeListAllocator, SlabAllocator

KINDS = [FreeListAllocator, BumpAllocator, SlabAllocator]

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
    a = cls(shm_name, 1 << 16)                         # create=True by default
    with pytest.raises(FileExistsError):
        cls(shm_name, 1 << 16, create=True)
    off = a.allocate(64)
    a.write(off, b"x" * 64)
    b = cls(shm_name, 1 << 16, create=False)
    assert b.read(off, 64) == b"x" * 64
    b.close()
    a.close()
    a.unlink()
    with pytest.raises(FileNotFoundError):
        cls(shm_name, 1 << 16, create=False)


@pytest.mark.parametrize("cls", KINDS)
def test_allocate_until_full(shm_name, cls):
    a = cls(shm_name, 4096)
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
    a = FreeListAllocator(shm_name, 4096)
    off = a.allocate(10)
    a.free(off)
    with pytest.raises(ValueError):
        a.free(off)                                    # a second free changes nothing
    a.close()
    a.unlink()


def test_slab_slot_size(shm_name):
    a = SlabAllocator(shm_name, 4096, slab_size=128)
    assert a.slab_size == 128 and a.slot_count == 32
    a.close()
    a.unlink()


def _fill(name, w, n, out):
    a = FreeListAllocator(name, 1 << 20, create=False)
    offs = []
    for i in range(n):
        off = a.allocate(32)
        a.write(off, bytes([w]) * 32)
        offs.append(off)
    assert all(a.read(off, 32) == bytes([w]) * 32 for off in offs)
    out.put(offs)


def test_processes_allocate_without_overlap(shm_name, mp_context):
    a = FreeListAllocator(shm_name, 1 << 20)
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
