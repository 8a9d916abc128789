"""The shmkit demo (`make demo`): two processes share one segment and its
allocators, then the benchmark suite runs against the standard library and
the peer packages, ending with its table."""
import multiprocessing as mp
import os
import sys
import time

import shmkit

NAME = f"shmkit-demo-{os.getpid()}"


def worker(name: str, report) -> None:
    # A fresh process attaches by name alone; nothing is registered for
    # removal at its exit.
    with shmkit.Segment(name, create=False) as seg:
        heap = seg.open("heap")
        slots = seg.open("slots")
        msg_off = int(report.recv())
        text = heap.read(msg_off, 64).rstrip(b"\0").decode()
        reply = f"pid {os.getpid()} read {text!r}; replying in shared memory".encode()
        off = heap.allocate(len(reply))
        heap.write(off, reply)
        slot = slots.allocate()
        slots.write(slot, os.getpid().to_bytes(8, "little"))
        report.send((off, len(reply), slot))


def _show_cli(name: str) -> None:
    """What `shmkit ls` / `shmkit inspect` say about the demo's segment."""
    try:
        from shmkit import cli
    except ImportError:
        return
    if not hasattr(cli, "read_segment"):
        return
    info = cli.read_segment(name, with_stats=True)
    objs = ", ".join(f"{o['type']}:{o['name']}" for o in info["objects"])
    print(f"  `shmkit inspect {name}`: {info['file_size'] >> 10} KiB backed, "
          f"{info['heap_used'] >> 10} KiB of heap used, objects {objs}, "
          f"creator pid {info['creator_pid']}")


def main() -> int:
    print(f"shmkit {shmkit.__version__}: two processes, one segment")
    with shmkit.Segment(NAME, create=True, unlink_on_exit=True) as seg:
        heap = seg.allocator("heap", kind="freelist", capacity=1 << 20)
        slots = seg.allocator("slots", kind="slab", capacity=64 * 1024, slab_size=64)
        bump = seg.allocator("scratch", kind="bump", capacity=8 << 20)
        msg = f"hello from pid {os.getpid()}".encode()
        off = heap.allocate(64)
        heap.write(off, msg.ljust(64, b"\0"))
        print(f"  parent {os.getpid()}: wrote {msg.decode()!r} at offset {off} "
              f"(free-list block of {heap.usable_size(off)} bytes)")

        ctx = mp.get_context("spawn")
        here, there = ctx.Pipe()
        p = ctx.Process(target=worker, args=(NAME, there))
        p.start()
        here.send(str(off))
        roff, n, slot = here.recv()
        p.join()
        print(f"  child:  {heap.read(roff, n).decode()}")
        print(f"  child took slab slot at offset {slot}, holding its pid "
              f"{int.from_bytes(slots.read(slot, 8), 'little')}")
        view = heap.view(roff, n)          # zero-copy: the shared bytes themselves
        print(f"  parent sees the reply zero-copy: {bytes(view[:14])!r}...")
        view.release()

        t = time.perf_counter()
        for _ in range(100_000):
            heap.free(heap.allocate(64))
        dt = time.perf_counter() - t
        t2 = time.perf_counter()
        for _ in range(100_000):
            bump.allocate(64)
        dt2 = time.perf_counter() - t2
        print(f"  free-list allocate+free: {100_000 / dt / 1e6:.1f}M pairs/s; "
              f"bump: {100_000 / dt2 / 1e6:.1f}M allocations/s (from Python)")
        for o in (off, roff):
            heap.free(o)
        slots.free(slot)
        print(f"  heap check: {heap.check()}")
        print(f"  segment: {seg}")
        _show_cli(NAME)

    try:
        from shmkit import cli
    except ImportError:
        return 0
    if hasattr(cli, "bench_main"):
        print("\nshmkit bench --quick: shmkit side by side with the standard library "
              "and every peer package installed (about 1-2 minutes)\n")
        sys.stdout.flush()
        return cli.bench_main(["--quick"] + sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
