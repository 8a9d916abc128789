"""Sequential models of the shmkit structures, and the random workloads the
runners (and the checker's self-tests) drive them with.

Each model states what the real Python API returns (python/shmkit/*.py and
python/shmkit/_ext/py_*.c): an exception is recorded as ``Raised(<class
name>)``.  Each workload is a generator per process: it yields ``(name,
args)`` and is sent the result, so it can react (compare_and_swap on the value
it last saw, free the blocks it allocated).
"""
from __future__ import annotations

import bisect
import random
from typing import Any, Dict, Generator, Hashable, List, Sequence, Tuple

from lincheck_core import Model, Op, Raised, partition_by_first_arg

Workload = Generator[Tuple[str, tuple], Any, None]

KEY_ERROR = Raised("KeyError")
EMPTY = Raised("Empty")              # queue.Empty
INDEX_ERROR = Raised("IndexError")   # Stack.pop/peek on an empty stack


def _no_op(name: str) -> NotImplementedError:
    return NotImplementedError(f"the model has no operation {name!r}")


# ---------------------------------------------------------------- SharedDict

class DictModel(Model):
    """One key of a SharedDict: its value, or None while absent (the
    workloads never store None).  Partitioned by key."""

    name = "SharedDict"

    def init(self):
        return None

    def apply(self, v, name, args):
        if name == "get":                       # d.get(k)
            return v, v
        if name == "getitem":                   # d[k]
            return (KEY_ERROR if v is None else v), v
        if name == "contains":                  # k in d
            return v is not None, v
        if name == "set":                       # d[k] = x
            return None, args[1]
        if name == "delete":                    # del d[k]
            return (KEY_ERROR, v) if v is None else (None, None)
        if name == "incr":                      # incr(k, delta) -> new value
            nv = (0 if v is None else v) + args[1]
            return nv, nv
        if name == "compare_and_swap":           # -> whether it stored
            if v is not None and v == args[1]:
                return True, args[2]
            return False, v
        if name == "setdefault":                # -> the value now there
            return (args[1], args[1]) if v is None else (v, v)
        if name == "pop":                       # pop(k[, default])
            if v is not None:
                return v, None
            return (args[1] if len(args) > 1 else KEY_ERROR), None
        raise _no_op(name)

    def partition(self, history):
        return partition_by_first_arg(history)

    def describe(self, v):
        return "absent" if v is None else f"value {v!r}"


DICT_READ_OPS = ["get", "getitem", "contains"]
DICT_STABLE_WRITES = ["set", "incr", "compare_and_swap", "setdefault"]
DICT_ALL_WRITES = DICT_STABLE_WRITES + ["delete", "pop"]


def dict_workload(rng: random.Random, pid: int, nops: int, keys: Sequence) -> Workload:
    """Every SharedDict key operation on ``keys``.  Keys whose name starts
    with "s" (stable) are never deleted, so once a write to one completed
    it must be found by every later read."""
    seen: Dict[Any, int] = {}
    for _ in range(nops):
        k = rng.choice(keys)
        if rng.random() < 0.6:                  # read-mostly, like the usual use
            name = rng.choice(DICT_READ_OPS)
        else:
            name = rng.choice(DICT_STABLE_WRITES if str(k).startswith("s") else DICT_ALL_WRITES)
        if name == "set":
            args = (k, rng.randrange(4))
        elif name == "incr":
            args = (k, rng.randrange(1, 3))
        elif name == "compare_and_swap":
            args = (k, seen.get(k, 0), rng.randrange(4))
        elif name == "setdefault":
            args = (k, rng.randrange(4))
        elif name == "pop":
            args = (k, -1) if rng.random() < 0.5 else (k,)
        else:
            args = (k,)
        r = yield name, args
        if isinstance(r, int) and not isinstance(r, bool) and name != "pop":
            seen[k] = r
        elif name == "set":
            seen[k] = args[1]


# ---------------------------------------------------------------- Queue, Stack

class QueueModel(Model):
    """FIFO: put_nowait(x) -> None; get_nowait() -> oldest item or Empty."""

    name = "Queue"

    def init(self):
        return ()

    def apply(self, q, name, args):
        if name == "put":
            return None, q + (args[0],)
        if name == "get":
            return (q[0], q[1:]) if q else (EMPTY, q)
        raise _no_op(name)

    def describe(self, q):
        return f"{len(q)} items, oldest first: {list(q[:6])}{' ...' if len(q) > 6 else ''}"

    def for_partition(self, ops):
        return _QueuePartition(ops)


class _QueuePartition(QueueModel):
    """The queue model for one history whose items are all distinct, using
    what the history shows (which get returned each item) to cut the
    search, which is otherwise exponential in the number of concurrent puts:

    * put(x) must come after put(a) for every item a whose get returned
      before the get of x was called (FIFO), and after the put of every
      item some get returns when no get returns x;
    * items no get returns are kept as a count (their order can matter to no
      result in the history), and nothing a get returns may be put behind
      them.

    Items a get returns are ranked by that get's return; the state is
    (those in the queue, oldest first; how many other items are behind
    them; P, the number of first-ranked items all put; a bit mask of the
    items ranked P or later that are put).  Repeated items fall back to the
    plain queue model."""

    def __init__(self, ops):
        self.plain = False
        items = [op.args[0] for op in ops if op.name == "put"]
        deq: Dict[Any, Op] = {}
        for op in ops:
            if op.name == "get" and not isinstance(op.result, Raised):
                if op.result in deq:        # delivered twice: rejected without pruning
                    self.plain = True
                deq[op.result] = op
        if len(set(items)) != len(items):
            self.plain = True
        ranked = sorted(deq, key=lambda x: deq[x].ret)
        rets = [deq[x].ret for x in ranked]
        self.rank = {x: r for r, x in enumerate(ranked)}
        # how many ranked items must be put before x
        self.need = {x: bisect.bisect_left(rets, deq[x].call) for x in ranked}

    def init(self):
        return () if self.plain else ((), 0, 0, 0)

    def _put(self, st, x):
        q, tail, p, rel = st
        r = self.rank.get(x)
        if r is None:
            return (q, tail + 1, p, rel)
        rel |= 1 << (r - p)
        k = (~rel & (rel + 1)).bit_length() - 1      # trailing ones: prefix grows
        return (q + (x,), tail, p + k, rel >> k)

    def apply(self, st, name, args):
        if self.plain:
            return QueueModel.apply(self, st, name, args)
        q, tail, p, rel = st
        if name == "put":
            return None, self._put(st, args[0])
        if name == "get":
            if q:
                return q[0], (q[1:], tail, p, rel)
            return (EMPTY if not tail else Raised("<an item no get returns>")), st
        raise _no_op(name)

    def step(self, st, op):
        if not self.plain and op.name == "put":
            need = self.need.get(op.args[0])
            if need is not None and (st[1] or need > st[2]):
                return False, st
        return QueueModel.step(self, st, op)

    def describe(self, st):
        if self.plain:
            return QueueModel.describe(self, st)
        q, tail = st[0], st[1]
        return (f"{len(q) + tail} items; the ones some get returns, oldest first: "
                f"{list(q[:6])}{' ...' if len(q) > 6 else ''}; {tail} more behind them")


class StackModel(Model):
    """LIFO: push(x) -> None; pop() / peek() -> top item or IndexError."""

    name = "Stack"

    def init(self):
        return ()

    def apply(self, s, name, args):
        if name == "push":
            return None, s + (args[0],)
        if name == "pop":
            return (s[-1], s[:-1]) if s else (INDEX_ERROR, s)
        if name == "peek":
            return (s[-1] if s else INDEX_ERROR), s
        raise _no_op(name)

    def describe(self, s):
        return f"{len(s)} items, top first: {list(s[::-1][:6])}{' ...' if len(s) > 6 else ''}"

    def for_partition(self, ops):
        return _StackPartition(ops)


class _Node:
    """A stack of items as a hash-consed list: one node per distinct
    (top item, rest), so equal stacks are the same object and hash and
    compare in O(1) (the memo holds many states).  ``deadline``: the
    earliest return of the pops of the items in it (inf if none is popped)."""

    __slots__ = ("item", "below", "depth", "deadline")

    def __init__(self, item, below, depth, deadline):
        self.item, self.below, self.depth, self.deadline = item, below, depth, deadline


_INF = float("inf")


class _StackPartition(StackModel):
    """The stack model for one history whose items are all distinct, with
    states as hash-consed lists (None: empty), using what the history shows
    (which pop returned each item) to cut the search, which is otherwise
    quadratic or worse in the length of a long-preempted push's interval:
    push(x) onto items one of which is popped before the pop of x is called
    (or onto any item that is ever popped, when x never is) cannot lead to a
    linearization, since x would have to leave first.  Repeated items fall
    back to the plain model."""

    def __init__(self, ops):
        self.nodes: Dict[Tuple[Any, int], _Node] = {}
        self.popped: Dict[Any, Op] = {}
        self.plain = False
        pushed = [op.args[0] for op in ops if op.name == "push"]
        if len(set(pushed)) != len(pushed):
            self.plain = True
        for op in ops:
            if op.name == "pop" and not isinstance(op.result, Raised):
                if op.result in self.popped:
                    self.plain = True
                self.popped[op.result] = op

    def init(self):
        return () if self.plain else None

    def apply(self, s, name, args):
        if self.plain:
            return StackModel.apply(self, s, name, args)
        if name == "push":
            key = (args[0], id(s))
            node = self.nodes.get(key)
            if node is None:
                pop = self.popped.get(args[0])
                dl = pop.ret if pop is not None else _INF
                if s is not None:
                    dl = min(dl, s.deadline)
                node = self.nodes[key] = _Node(args[0], s, 1 + (s.depth if s else 0), dl)
            return None, node
        if name == "pop":
            return (s.item, s.below) if s is not None else (INDEX_ERROR, s)
        if name == "peek":
            return (s.item if s is not None else INDEX_ERROR), s
        raise _no_op(name)

    def step(self, s, op):
        if not self.plain and op.name == "push" and s is not None:
            pop = self.popped.get(op.args[0])
            if s.deadline < (pop.call if pop is not None else _INF):
                return False, s
        return StackModel.step(self, s, op)

    def describe(self, s):
        if self.plain:
            return StackModel.describe(self, s)
        top = []
        node = s
        while node is not None and len(top) < 6:
            top.append(node.item)
            node = node.below
        depth = s.depth if s is not None else 0
        return f"{depth} items, top first: {top}{' ...' if depth > 6 else ''}"


def _item(pid: int, seq: int) -> bytes:
    return b"%d:%d" % (pid, seq)


def queue_workload(rng: random.Random, pid: int, nops: int, keys: Sequence) -> Workload:
    """Puts of unique items and gets, about half each."""
    for seq in range(nops):
        if rng.random() < 0.5:
            yield "put", (_item(pid, seq),)
        else:
            yield "get", ()


def stack_workload(rng: random.Random, pid: int, nops: int, keys: Sequence) -> Workload:
    """Pushes of unique items, pops and peeks."""
    for seq in range(nops):
        x = rng.random()
        if x < 0.45:
            yield "push", (_item(pid, seq),)
        elif x < 0.85:
            yield "pop", ()
        else:
            yield "peek", ()


# ---------------------------------------------------------------- Bitset, Array

class BitsetModel(Model):
    """One bit: set/clear/flip/test return the previous value; b[i] = v
    (``assign``) returns None.  Partitioned by bit."""

    name = "Bitset"

    def init(self):
        return False

    def apply(self, b, name, args):
        if name == "set":
            return b, True
        if name == "clear":
            return b, False
        if name == "flip":
            return b, not b
        if name == "test":
            return b, b
        if name == "assign":
            return None, bool(args[1])
        raise _no_op(name)

    def partition(self, history):
        return partition_by_first_arg(history)


def bitset_workload(rng: random.Random, pid: int, nops: int, keys: Sequence) -> Workload:
    for _ in range(nops):
        i = rng.choice(keys)
        name = rng.choice(["set", "clear", "flip", "flip", "test", "test", "assign"])
        yield name, ((i, rng.random() < 0.5) if name == "assign" else (i,))


class ArrayModel(Model):
    """One int64 element: add(i, d) and exchange(i, v) return the previous
    value, compare_and_swap(i, e, n) whether it stored, a[i] (``get``) the
    value, a[i] = v (``set``) None.  Partitioned by index."""

    name = "Array"

    def init(self):
        return 0

    def apply(self, v, name, args):
        if name == "add":
            return v, v + args[1]
        if name == "exchange":
            return v, args[1]
        if name == "compare_and_swap":
            return (True, args[2]) if v == args[1] else (False, v)
        if name == "get":
            return v, v
        if name == "set":
            return None, args[1]
        raise _no_op(name)

    def partition(self, history):
        return partition_by_first_arg(history)


def array_workload(rng: random.Random, pid: int, nops: int, keys: Sequence) -> Workload:
    seen: Dict[int, int] = {}
    for _ in range(nops):
        i = rng.choice(keys)
        name = rng.choice(["add", "add", "exchange", "compare_and_swap", "compare_and_swap",
                           "get", "set"])
        if name == "add":
            args = (i, rng.randrange(-3, 4))
        elif name in ("exchange", "set"):
            args = (i, rng.randrange(8))
        elif name == "compare_and_swap":
            args = (i, seen.get(i, 0), rng.randrange(8))
        else:
            args = (i,)
        r = yield name, args
        if name == "get" or name in ("add", "exchange"):
            seen[i] = r if name == "get" else (r + args[1] if name == "add" else args[1])


# ---------------------------------------------------------------- allocators

OOM = Raised("OutOfMemoryError")


class AllocatorModel(Model):
    """The blocks live at once, each ``(offset, size, content)``:

    * ``allocate(size) -> offset``: allowed only if [offset, offset+size)
      overlaps no live block (no block live twice); OutOfMemoryError is
      always allowed (the model does not track capacity);
    * ``write(offset, size, data)`` / ``read(offset, size) -> bytes``: on a
      live block; a read returns what was last written to it;
    * ``free(offset, size)``: a live block (ValueError if not live).

    ``size`` is recorded with read/write/free so the history partitions by
    address: sets of blocks whose ranges overlap are independent."""

    name = "allocator"

    def init(self):
        return frozenset()

    @staticmethod
    def _find(live, off, size):
        for blk in live:
            if blk[0] == off and blk[1] == size:
                return blk
        return None

    def step(self, live, op):
        name, args, r = op.name, op.args, op.result
        if name == "allocate":
            if r == OOM:
                return True, live
            if not isinstance(r, int):
                return False, live
            size = args[0]
            for off, sz, _ in live:
                if off < r + size and r < off + sz:
                    return False, live
            return True, live | {(r, size, None)}
        blk = self._find(live, args[0], args[1])
        if name == "free":
            if blk is None:
                return r == Raised("ValueError"), live
            return r is None, live - {blk}
        if blk is None:
            return False, live
        if name == "write":
            return r is None, (live - {blk}) | {(blk[0], blk[1], args[2])}
        if name == "read":
            return blk[2] is None or blk[2] == r, live
        raise _no_op(name)

    def expected(self, live, op):
        if op.name == "allocate":
            clash = [b[:2] for b in live if isinstance(op.result, int)
                     and b[0] < op.result + op.args[0] and op.result < b[0] + b[1]]
            return f"overlaps live block(s) {clash}" if clash else "allowed"
        blk = self._find(live, op.args[0], op.args[1])
        if blk is None:
            return "block not live"
        if op.name == "read":
            return f"reads {blk[2]!r}"
        return "allowed"

    def partition(self, history):
        spans = []
        for op in history:
            if op.name == "allocate":
                if isinstance(op.result, int):
                    spans.append((op.result, op.result + op.args[0]))
            else:
                spans.append((op.args[0], op.args[0] + op.args[1]))
        spans.sort()
        starts: List[int] = []         # merged address ranges: [start, end)
        ends: List[int] = []
        for a, b in spans:
            if ends and a < ends[-1]:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        parts: Dict[Hashable, List[Op]] = {}
        for op in history:
            off = op.result if op.name == "allocate" else op.args[0]
            if not isinstance(off, int) or isinstance(off, bool):
                label: Hashable = "no block"
            else:
                j = bisect.bisect_right(starts, off) - 1
                label = (starts[j], ends[j])
            parts.setdefault(label, []).append(op)
        return parts

    def describe(self, live):
        return "live blocks " + (", ".join(f"[{o}, +{s}) holding {c!r:.40}"
                                           for o, s, c in sorted(live, key=lambda b: b[0]))
                                 or "none")


def pattern(pid: int, seq: int, size: int) -> bytes:
    """The content a process writes into its block ``seq``."""
    tag = b"<%d.%d>" % (pid, seq)
    return (tag * (size // len(tag) + 1))[:size]


def allocator_workload(rng: random.Random, pid: int, nops: int, keys: Sequence,
                       sizes: Sequence[int] = (16, 24, 48, 64, 100, 200)) -> Workload:
    """Allocate, fill with this process's pattern, read back, free; at most
    four blocks held at once, all freed at the end.  ``keys`` is unused;
    ``sizes`` are the sizes asked for."""
    held: List[Tuple[int, int]] = []
    for seq in range(nops):
        x = rng.random()
        if held and (x < 0.3 or len(held) >= 4):
            off, size = held.pop(rng.randrange(len(held)))
            yield "read", (off, size)
            yield "free", (off, size)
        elif held and x < 0.5:
            off, size = rng.choice(held)
            yield "read", (off, size)
        else:
            size = rng.choice(sizes)
            off = yield "allocate", (size,)
            if isinstance(off, int):
                yield "write", (off, size, pattern(pid, seq, size))
                held.append((off, size))
    for off, size in held:
        yield "read", (off, size)
        yield "free", (off, size)


# ---------------------------------------------------------------- registry

MODELS = {
    "dict": DictModel(),
    "queue": QueueModel(),
    "stack": StackModel(),
    "bitset": BitsetModel(),
    "array": ArrayModel(),
    "freelist": AllocatorModel(),
    "slab": AllocatorModel(),
}

WORKLOADS = {
    "dict": dict_workload,
    "queue": queue_workload,
    "stack": stack_workload,
    "bitset": bitset_workload,
    "array": array_workload,
    "freelist": allocator_workload,
    "slab": lambda rng, pid, nops, keys: allocator_workload(rng, pid, nops, keys, sizes=(64,)),
}


def keys_for(structure: str, hot: bool) -> List:
    """The keys / indices a run's processes share: a handful every process
    hammers (hot) or many (spread)."""
    if structure == "dict":
        n = 4 if hot else 8192
        return [f"{'s' if j % 2 else 'v'}{j}" for j in range(n)]
    if structure in ("bitset", "array"):
        # hot: bits of one word / elements of one cache line
        return list(range(4)) if hot else list(range(0, 4096, 7))
    return []


class SequentialAllocator:
    """Stands in for the real allocator when a workload runs against the
    model alone (the checker's self-tests): first fit over a flat range."""

    def __init__(self) -> None:
        self.live: Dict[int, int] = {}
        self.data: Dict[int, bytes] = {}

    def allocate(self, size: int) -> int:
        off = 0
        for o in sorted(self.live):
            if off + size <= o:
                break
            off = max(off, o + self.live[o])
        self.live[off] = size
        return off


def run_sequential(structure: str, seed: int, nprocs: int = 3, nops: int = 30,
                   hot: bool = True) -> List[Op]:
    """A history of the workload run one operation at a time against the
    model (interleaving the processes at random): linearizable by construction."""
    model = MODELS[structure]
    rng = random.Random(seed)
    keys = keys_for(structure, hot)
    gens = {p: WORKLOADS[structure](random.Random(rng.random()), p, nops, keys)
            for p in range(nprocs)}
    pending = {p: next(g, None) for p, g in gens.items()}
    per_key = isinstance(model, (DictModel, BitsetModel, ArrayModel))
    states: Dict[Hashable, Hashable] = {}
    alloc = SequentialAllocator()
    history: List[Op] = []
    t = 0
    while pending:
        p = rng.choice(sorted(pending))
        name, args = pending[p]
        if isinstance(model, AllocatorModel):
            if name == "allocate":
                result: Any = alloc.allocate(args[0])
            elif name == "read":
                result = alloc.data[args[0]]
            elif name == "write":
                alloc.data[args[0]] = args[2]
                result = None
            else:
                del alloc.live[args[0]]
                result = None
        else:
            part = args[0] if per_key else None
            result, states[part] = model.apply(states.get(part, model.init()), name, args)
        history.append(Op(p, name, args, result, t, t + 1))
        t += 2
        try:
            pending[p] = gens[p].send(result)
        except StopIteration:
            del pending[p]
    return history
