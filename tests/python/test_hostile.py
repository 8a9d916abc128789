"""Hostile and corrupt segment contents: an error, never a crash, a hang or a
wrong verdict.

For each structure, each region of its layout (headers, tables, entries,
rings, lock words, heap block headers) is corrupted in a controlled way (a
bit flip, an all-ones or huge word, random bytes, an odd version) in the
segment file, and then a forked child attaches and runs every operation,
each under a watchdog.  Pass:

* no signal death and no operation over OP_TIMEOUT seconds;
* only CorruptSegmentError or the exceptions an operation documents
  (KeyError, MemoryError, queue Empty/Full, IndexError, ...);
* check() agrees: if any operation called the segment corrupt, the
  structure's check() or the segment's heap_check() does too.

Region offsets come from the structures' own layouts (the LAYOUT comments at
the top of src/<structure>.c; the constants below name which) and from what
the segment records (its directory, heap offset, the dict's table words, the
stack's head), each validated against a magic number before use, so a
layout change fails here loudly instead of corrupting the wrong bytes.

Seeded: SHMKIT_HOSTILE_SEED (default 1) picks the corruptions.  Short mode
(in `make test`) runs a few corruptions per region; SHMKIT_TORTURE=long
(`make torture`) runs many."""
from __future__ import annotations

import faulthandler
import json
import os
import random
import select
import signal
import struct
import time

import pytest

import shmkit
from conftest import unique_name

LONG = os.environ.get("SHMKIT_TORTURE") == "long"
SEED = int(os.environ.get("SHMKIT_HOSTILE_SEED", "1"))
TRIALS = 12 if LONG else 1        # seeds per (structure, region, corruption)
OP_TIMEOUT = 5                    # seconds, each operation
CASE_TIMEOUT = 60

# ---- layout facts (src/*.c LAYOUT comments), checked against magics ----

SEG_MAGIC = 0x011A54494B4D4853            # src/segment.c: "SHMKIT\x1a\x01"
SEG_HEAP_OFF = 72                         # seg_header.heap_off
SEG_LOCKS = (128, 128)                    # grow_lock, dir_lock
SEG_DIR, SEG_DIR_ENTRY = 256, 96          # dir[64], 96 B each
BLOCK_HDR = 16                            # src/alloc_freelist.c: block +0..+16

DICT_MAGIC = b"SHKDICT1"                  # src/dict_internal.h LAYOUT
DICT_SHARDS_AT, DICT_SHARD, DICT_LANE = 128, 192, 384
TABLE_MAGIC, TABLE_HDR, ENTRY_HDR = b"SHKDTABL", 16, 32
Q_MAGIC = b"SHKQUEUE"                     # src/queue_internal.h LAYOUT (q_shared)
Q_LOCK, Q_POS, Q_RING_OFF, Q_RING_SIZE = 64, 128, 16, 24
S_MAGIC = b"SHKSTACK"                     # src/stack.c LAYOUT (s_shared)
S_HEAD, S_NODE_HDR = 16, 24
BS_MAGIC, AR_MAGIC = b"SHKBITS\x01", b"SHKARRY\x01"   # src/bitset.c, src/array.c
CT_MAGIC = b"SHKCNTR\x01"                 # src/counter.c
OBJ_HDR = 64                              # bitset/array/counter header size
CT_CELL = 128                             # src/counter.c: cells from align_up(off + 64, 128)


def u64(buf, off):
    return struct.unpack_from("<Q", buf, off)[0]


def expect_magic(buf, off, magic, what):
    got = bytes(buf[off:off + len(magic)])
    assert got == magic, f"{what}: expected {magic!r} at {off}, found {got!r} (layout changed?)"


# ---- building each structure, and its regions -------------------------------------
#
# build(seg) fills the structure; regions(buf, off) maps region name to a
# list of (offset, length) spans in the segment file.

def build_dict(seg):
    d = seg.dict("obj")
    for i in range(40):
        d[f"key{i}"] = f"value {i}" if i % 3 else i
    d[("t", 1)] = b"\x00" * 40
    for i in range(0, 40, 7):
        del d[f"key{i}"]


def regions_dict(buf, off):
    expect_magic(buf, off, DICT_MAGIC, "dict header")
    shards = off + DICT_SHARDS_AT
    nshards = struct.unpack_from("<I", buf, off + 16)[0]   # magic | version | size | nshards
    assert 1 <= nshards <= 256, f"dict nshards {nshards} (layout changed?)"
    lanes = shards + nshards * DICT_SHARD
    tables, entries, heads = [], [], []
    for s in range(nshards):
        tw = u64(buf, shards + s * DICT_SHARD)
        toff = (tw & 0xFFFFFFFF) * 16
        expect_magic(buf, toff, TABLE_MAGIC, "dict table")
        cap = 1 << struct.unpack_from("<I", buf, toff + 8)[0]
        tables.append((toff, TABLE_HDR + 8 * cap))
        for i in range(cap):
            w = u64(buf, toff + TABLE_HDR + 8 * i)
            lo = w & 0xFFFFFFFF
            if lo and lo < 0xFFFFFFFE:
                e = lo * 16
                klen, vlen = struct.unpack_from("<I", buf, e + 16)[0], u64(buf, e + 24)
                entries.append((e, ENTRY_HDR + klen + vlen))
                heads.append((e - BLOCK_HDR, BLOCK_HDR))
    assert entries, "no entries found"
    return {"dict_header": [(off, DICT_SHARDS_AT)],
            "dict_shard_tables": [(shards + s * DICT_SHARD, 64) for s in range(nshards)],
            "dict_shard_locks": [(shards + s * DICT_SHARD + 128, 64) for s in range(nshards)],
            "dict_lanes": [(lanes, 16 * DICT_LANE)],
            "dict_tables": tables, "dict_entries": entries, "dict_entry_heap_headers": heads}


def ops_dict(seg):
    d = seg.open("obj")
    return d, [
        ("len", lambda: len(d)), ("keys", lambda: list(d.keys())),
        ("items", lambda: list(d.items())), ("getitem", lambda: d["key1"]),
        ("get_missing", lambda: d.get("nope")), ("contains", lambda: ("key2" in d)),
        ("stats", lambda: d.stats()), ("get_view", lambda: d.get_view(("t", 1))),
        ("set_new", lambda: d.__setitem__("new", 1)),
        ("set_existing", lambda: d.__setitem__("key2", "x")),
        ("delete", lambda: d.__delitem__("key4")), ("incr", lambda: d.incr("key3")),
        ("pop", lambda: d.pop("key5", None)), ("setdefault", lambda: d.setdefault("key6", 0)),
        ("compare_and_swap", lambda: d.compare_and_swap("key8", "value 8", "y")),
        ("popitem", lambda: d.popitem()), ("clear", lambda: d.clear()),
    ]


def build_queue(seg):
    q = seg.queue("obj", ring_bytes=4096)
    for i in range(10):
        q.put(b"item %d" % i)
    q.put(b"x" * 2000)             # out of line
    for _ in range(3):
        q.get()


def regions_queue(buf, off):
    expect_magic(buf, off, Q_MAGIC, "queue header")
    ring, size = u64(buf, off + Q_RING_OFF), u64(buf, off + Q_RING_SIZE)
    return {"queue_header": [(off, Q_LOCK)], "queue_lock": [(off + Q_LOCK, 64)],
            "queue_positions": [(off + Q_POS, 64)], "queue_futex_words": [(off + 192, 16)],
            "queue_ring": [(ring, size)], "queue_ring_heap_header": [(ring - BLOCK_HDR, BLOCK_HDR)]}


def ops_queue(seg):
    q = seg.open("obj")
    return q, [
        ("qsize", lambda: q.qsize()), ("empty", lambda: q.empty()),
        ("get_nowait", lambda: q.get_nowait()), ("get_timeout", lambda: q.get(True, 0.2)),
        ("get_many", lambda: q.get_many(20)), ("put_nowait", lambda: q.put_nowait(b"new")),
        ("put_big", lambda: q.put(b"y" * 3000, True, 0.2)),
        ("put_many", lambda: q.put_many([b"a", b"b"])),
    ]


def build_stack(seg):
    s = seg.stack("obj")
    for i in range(12):
        s.push(b"node %d" % i)
    s.pop()


def regions_stack(buf, off):
    expect_magic(buf, off, S_MAGIC, "stack header")
    nodes, heads, n = [], [], (u64(buf, off + S_HEAD) & 0xFFFFFFFF) * 16
    while n and len(nodes) < 100:
        nodes.append((n, S_NODE_HDR + u64(buf, n + 8)))
        heads.append((n - BLOCK_HDR, BLOCK_HDR))
        n = u64(buf, n)            # link: the next node's raw offset (src/internal.h)
    assert nodes, "no stack nodes found"
    return {"stack_header": [(off, 64)], "stack_nodes": nodes, "stack_node_heap_headers": heads}


def ops_stack(seg):
    s = seg.open("obj")
    return s, [("len", lambda: len(s)), ("peek", lambda: s.peek()),
               ("pop", lambda: s.pop()), ("push", lambda: s.push(b"new")),
               ("pop_all", lambda: [s.pop() for _ in range(20)])]


def build_bitset(seg):
    b = seg.bitset("obj", 1000)
    for i in range(0, 1000, 7):
        b.set(i)


def regions_bitset(buf, off):
    expect_magic(buf, off, BS_MAGIC, "bitset header")
    return {"bitset_header": [(off, OBJ_HDR)], "bitset_words": [(off + OBJ_HDR, 128)],
            "bitset_heap_header": [(off - BLOCK_HDR, BLOCK_HDR)]}


def ops_bitset(seg):
    b = seg.open("obj")
    return b, [("count", lambda: b.count()), ("test", lambda: b.test(7)),
               ("set", lambda: b.set(999)), ("flip", lambda: b.flip(1)),
               ("find", lambda: b.find_first_clear()), ("iter", lambda: list(b.iter_set())),
               ("all", lambda: b.all()), ("set_all", lambda: b.set_all())]


def build_array(seg):
    a = seg.array("obj", "int64", 100)
    for i in range(100):
        a[i] = i * i


def regions_array(buf, off):
    expect_magic(buf, off, AR_MAGIC, "array header")
    return {"array_header": [(off, OBJ_HDR)], "array_elements": [(off + OBJ_HDR, 800)],
            "array_heap_header": [(off - BLOCK_HDR, BLOCK_HDR)]}


def ops_array(seg):
    a = seg.open("obj")
    return a, [("len", lambda: len(a)), ("getitem", lambda: a[5]),
               ("tolist", lambda: a.tolist()), ("add", lambda: a.add(3, 1)),
               ("cas", lambda: a.compare_and_swap(4, 16, 0)), ("fill", lambda: a.fill(1))]


def build_counter(seg):
    c = seg.counter("obj", cells=4)
    c.add(5)


def regions_counter(buf, off):
    expect_magic(buf, off, CT_MAGIC, "counter header")
    cells = (off + OBJ_HDR + CT_CELL - 1) // CT_CELL * CT_CELL
    return {"counter_header": [(off, OBJ_HDR)], "counter_cells": [(cells, 4 * CT_CELL)],
            "counter_heap_header": [(off - BLOCK_HDR, BLOCK_HDR)]}


def ops_counter(seg):
    c = seg.open("obj")
    return c, [("value", lambda: c.value), ("add", lambda: c.add(1)),
               ("stats", lambda: c.stats()), ("reset", lambda: c.reset())]


def build_segment(seg):
    seg.bitset("b", 64).set(3)
    seg.dict("d")["k"] = "v"
    seg.stack("s").push(b"p")


def regions_segment(buf, off):
    assert u64(buf, 0) == SEG_MAGIC, "segment magic (layout changed?)"
    heap = u64(buf, SEG_HEAP_OFF)
    return {"segment_header": [(0, 128)], "segment_locks": [SEG_LOCKS],
            "segment_directory": [(SEG_DIR, 4 * SEG_DIR_ENTRY)], "segment_heap_header": [(heap, 128)]}


def ops_segment(seg):
    def each():
        out = []
        for o in seg.objects():
            h = seg.open(o["name"])
            out.append(h.check())
        return out
    return None, [("objects", lambda: seg.objects()), ("info", lambda: seg.info()),
                  ("check_each", each), ("new_object", lambda: seg.bitset("new", 10)),
                  ("dict_set", lambda: seg.dict("d").__setitem__("k2", "w"))]


STRUCTURES = {
    "dict": (build_dict, regions_dict, ops_dict),
    "queue": (build_queue, regions_queue, ops_queue),
    "stack": (build_stack, regions_stack, ops_stack),
    "bitset": (build_bitset, regions_bitset, ops_bitset),
    "array": (build_array, regions_array, ops_array),
    "counter": (build_counter, regions_counter, ops_counter),
    "segment": (build_segment, regions_segment, ops_segment),
}

# Regions whose corruption the hardening still misses, each naming the
# finding that covers it.  {(structure, region): reason}; a region missing
# here must pass.
KNOWN: dict = {}

CORRUPTIONS = ("flip", "ones", "huge", "random", "version")

# documented exceptions an operation on a damaged segment may raise (besides
# CorruptSegmentError): lookups of what is no longer there, full/empty
# structures, out of room, a timed-out wait, a directory entry of another type
DOCUMENTED = (shmkit.CorruptSegmentError, KeyError, IndexError, MemoryError, shmkit.Empty,
              shmkit.Full, TimeoutError, FileNotFoundError)
DOCUMENTED_ATTACH = DOCUMENTED + (TypeError,)


def corrupt(path, spans, how, rng):
    off, length = rng.choice(spans)
    with open(path, "r+b") as f:
        def word_at():
            return off + 8 * rng.randrange(max(1, length // 8))
        if how == "flip":
            at = off + rng.randrange(length)
            f.seek(at)
            b = f.read(1)[0]
            f.seek(at)
            f.write(bytes([b ^ (1 << rng.randrange(8))]))
        elif how in ("ones", "huge"):
            at = word_at()
            v = (1 << 64) - 1 if how == "ones" else rng.randrange(1 << 32, 1 << 63)
            f.seek(at)
            f.write(struct.pack("<Q", v))
        elif how == "random":
            n = rng.randrange(1, min(length, 64) + 1)
            at = off + rng.randrange(length - n + 1)
            f.seek(at)
            f.write(bytes(rng.randrange(256) for _ in range(n)))
        elif how == "version":      # the u32 after an 8-byte magic, or any u32
            at = off + 8 if length >= 12 else off
            f.seek(at)
            v = struct.unpack("<I", f.read(4))[0]
            f.seek(at)
            f.write(struct.pack("<I", (v + 1 + 2 * rng.randrange(1 << 20)) & 0xFFFFFFFF))
    return off, length


def child(name, kind, wfd):
    """Attach, run every operation under a watchdog, report each result as
    one JSON line as soon as it is known (so a hang names its operation)."""
    def report(op, exc=None):
        rec = {"op": op, "exc": None if exc is None else type(exc).__name__,
               "msg": None if exc is None else str(exc)[:300],
               "documented": exc is None or isinstance(
                   exc, DOCUMENTED_ATTACH if op == "attach" else DOCUMENTED),
               "corrupt": isinstance(exc, shmkit.CorruptSegmentError)}
        os.write(wfd, (json.dumps(rec) + "\n").encode())

    def run(op, fn):
        faulthandler.dump_traceback_later(OP_TIMEOUT, exit=True)
        try:
            fn()
        except BaseException as e:   # noqa: BLE001 -- classified by report()
            report(op, e)
            return False
        finally:
            faulthandler.cancel_dump_traceback_later()
        report(op)
        return True

    box = {}

    def attach():
        box["seg"] = shmkit.Segment(name, create=False)
        box["h"], box["ops"] = STRUCTURES[kind][2](box["seg"])

    if run("attach", attach):
        seg, h = box["seg"], box["h"]
        verdict = [("check", h.check)] if h is not None else [("check", seg.check)]
        verdict.append(("heap_check", seg.heap_check))
        for op, fn in verdict + box["ops"] + verdict:
            run(op, fn)
    os._exit(0)


# Where each lock region keeps its robust mutexes' lock words (glibc: the
# first 32 bits of pthread_mutex_t, the owner's thread id in the low 30).
LOCK_WORDS_AT = {
    "dict_shard_locks": lambda spans: [off for off, _ in spans],
    "dict_lanes": lambda spans: [spans[0][0] + k * DICT_LANE for k in range(16)],
    "queue_lock": lambda spans: [spans[0][0]],
    "segment_locks": lambda spans: [SEG_LOCKS[0], SEG_LOCKS[0] + 64],
}
TID_MASK = 0x3FFFFFFF


def disarm_live_owners(path, region, spans):
    """A lock word that names a live thread stalls lockers for as long as it
    lives, by design (docs/SECURITY.md: what a same-user writer can do); a
    damaged word that happens to name one (pid 1, say) is moved out of the
    thread-id range, as the fuzzer does, so that the case tests validation."""
    if region not in LOCK_WORDS_AT:
        return
    with open(path, "r+b") as f:
        for at in LOCK_WORDS_AT[region](spans):
            f.seek(at)
            w = struct.unpack("<I", f.read(4))[0]
            tid = w & TID_MASK
            if tid == 0:
                continue
            try:
                os.kill(tid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            f.seek(at)
            f.write(struct.pack("<I", w | TID_MASK))


def run_case(kind, region, how, seed):
    build, regions, _ = STRUCTURES[kind]
    name = unique_name(f"hostile-{kind}")
    path = f"/dev/shm/{name}"
    try:
        with shmkit.Segment(name, create=True, size=1 << 20) as seg:
            build(seg)
            off = seg.lookup("obj")["offset"] if kind != "segment" else 0
        with open(path, "rb") as f:
            buf = f.read()
        spans = regions(buf, off)[region]
        rng = random.Random(f"{SEED}/{kind}/{region}/{how}/{seed}")
        where = corrupt(path, spans, how, rng)
        disarm_live_owners(path, region, spans)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                child(name, kind, w)
            finally:
                os._exit(3)
        os.close(w)
        out, deadline, status = b"", time.monotonic() + CASE_TIMEOUT, None
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            out += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        results = [json.loads(line) for line in out.decode().splitlines()]
        return where, status, results
    finally:
        try:
            shmkit.unlink(name)
        except FileNotFoundError:
            pass


def verdict_of(status, results):
    """'' if the case passed, else what went wrong."""
    if os.WIFSIGNALED(status):
        last = results[-1]["op"] if results else "attach"
        return f"killed by signal {os.WTERMSIG(status)} after {last!r}"
    if os.WEXITSTATUS(status) != 0:
        last = results[-1]["op"] if results else "(none)"
        return f"an operation ran over {OP_TIMEOUT} s (watchdog) after {last!r}"
    bad = [f"{r['op']}: {r['exc']}: {r['msg']}" for r in results if not r["documented"]]
    if bad:
        return "undocumented exceptions: " + "; ".join(bad)
    if results and results[0]["op"] == "attach" and results[0]["exc"]:
        return ""
    verdicts = ("check", "heap_check", "check_each")   # check_each: every object's check()
    said_corrupt = [r["op"] for r in results if r["corrupt"] and r["op"] not in verdicts]
    if said_corrupt and not any(r["corrupt"] for r in results if r["op"] in verdicts):
        return f"{said_corrupt} raised CorruptSegmentError but check()/heap_check() passed"
    return ""


def cases():
    out = []
    for kind, (build, regions, _) in STRUCTURES.items():
        # region names, from a healthy build
        name = unique_name(f"hostile-probe-{kind}")
        try:
            with shmkit.Segment(name, create=True, size=1 << 20) as seg:
                build(seg)
                off = seg.lookup("obj")["offset"] if kind != "segment" else 0
            with open(f"/dev/shm/{name}", "rb") as f:
                names = list(regions(f.read(), off))
        finally:
            shmkit.unlink(name)
        for region in names:
            for how in CORRUPTIONS:
                for seed in range(TRIALS):
                    marks = []
                    if (kind, region) in KNOWN or (kind, region, how) in KNOWN:
                        reason = KNOWN.get((kind, region, how), KNOWN.get((kind, region)))
                        marks.append(pytest.mark.xfail(strict=False, reason=reason))
                    out.append(pytest.param(kind, region, how, seed, marks=marks,
                                            id=f"{kind}-{region}-{how}-{seed}"))
    return out


@pytest.mark.parametrize("kind, region, how, seed", cases())
def test_corrupt_region(kind, region, how, seed):
    where, status, results = run_case(kind, region, how, seed)
    problem = verdict_of(status, results)
    assert not problem, (f"{kind}: {how} at {where[0]}+{where[1]} in {region} "
                         f"(SHMKIT_HOSTILE_SEED={SEED}, trial {seed}): {problem}")
