"""A linearizability checker for histories of concurrent operations.

A *history* is a list of :class:`Op`: who ran it (``pid``), what it was
(``name``, ``args``), what it returned (``result``, or a :class:`Raised`), and
when it was invoked and when it returned (``call``, ``ret``: nanoseconds of
one system-wide monotonic clock, ``time.monotonic_ns()``, so times taken in
different processes compare).

A history is *linearizable* against a sequential *model* when every operation
can be given an instant inside its own [call, ret] interval such that running
the operations one by one in that order on the model gives exactly the
results that were observed.

The search is Wing & Gong's, with Lowe's just-in-time linearization and
Porcupine's memoization: walk the history's call/return events in time
order; try to linearize a pending call next (the model must agree with its
result); on reaching a return whose call is not linearized yet, backtrack.
A (set of linearized operations, model state) pair already explored is not
explored again.  The search is exponential in the worst case, so it takes a
step budget and answers ``unknown`` (never ``ok``) when the budget runs out.

Histories are first split into independent partitions where the model
allows it (P-compositionality: each key of a dict, each bit of a bitset,
each element of an array, each set of overlapping blocks of an allocator is
an object of its own), which keeps each search small.

Equal timestamps are treated as overlapping (calls sort before returns), so
clock granularity can only make the checker more permissive, never raise a
false alarm.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Hashable, Iterable, List, Sequence, Tuple

__all__ = ["Op", "Raised", "Model", "CheckResult", "check", "check_partition",
           "DEFAULT_BUDGET"]

#: search steps allowed per partition before the answer is "unknown"
DEFAULT_BUDGET = 2_000_000


@dataclasses.dataclass(frozen=True)
class Raised:
    """The result of an operation that raised: the exception's class name."""

    name: str

    def __repr__(self) -> str:
        return f"raise {self.name}"


@dataclasses.dataclass
class Op:
    pid: int
    name: str
    args: tuple
    result: Any
    call: int
    ret: int

    def __post_init__(self) -> None:
        if self.ret < self.call:
            raise ValueError(f"operation returns before it is called: {self}")

    def describe(self, t0: int = 0) -> str:
        args = ", ".join(repr(a) for a in self.args)
        return (f"[{(self.call - t0) / 1000:10.1f} .. {(self.ret - t0) / 1000:10.1f} us] "
                f"p{self.pid:<3} {self.name}({args}) -> {self.result!r}")


class Model:
    """A sequential specification.

    A deterministic model overrides :meth:`apply` (the result the operation
    returns in ``state`` and the state after it); a model whose results are
    not determined by the state (an allocator choosing an offset) overrides
    :meth:`step` instead.  States must be hashable and compare by value.
    """

    name = "model"

    def init(self) -> Hashable:
        raise NotImplementedError

    def apply(self, state: Hashable, name: str, args: tuple) -> Tuple[Any, Hashable]:
        raise NotImplementedError

    def step(self, state: Hashable, op: Op) -> Tuple[bool, Hashable]:
        """May ``op`` (with its observed result) run in ``state``; the state after."""
        result, new = self.apply(state, op.name, op.args)
        return result == op.result and type(result) is type(op.result), new

    def expected(self, state: Hashable, op: Op) -> str:
        """What the model says ``op`` returns in ``state`` (for witnesses)."""
        try:
            result, _ = self.apply(state, op.name, op.args)
        except NotImplementedError:
            return "not allowed here"
        return repr(result)

    def for_partition(self, ops: Sequence[Op]) -> "Model":
        """The model to check ``ops`` (one partition) with: ``self``, or one
        that uses what the whole partition shows to prune the search (only
        ever rejecting steps that could not lead to a linearization)."""
        return self

    def partition(self, history: Sequence[Op]) -> Dict[Hashable, List[Op]]:
        """Independent sub-histories (default: the whole history)."""
        return {None: list(history)}

    def describe(self, state: Hashable) -> str:
        return repr(state)


@dataclasses.dataclass
class CheckResult:
    status: str                 # "ok", "fail" or "unknown"
    ops: int = 0                # operations checked
    partitions: int = 0
    steps: int = 0              # search steps, all partitions
    overlapping: int = 0        # operations concurrent with another in their partition
    witness: str = ""           # for "fail" / "unknown": where and why

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        head = (f"{self.status}: {self.ops} ops in {self.partitions} partitions, "
                f"{self.overlapping} overlapping, {self.steps} search steps")
        return head + ("\n" + self.witness if self.witness else "")


def _overlapping(ops: Sequence[Op]) -> int:
    """How many operations overlap at least one other (a sweep by call time)."""
    order = sorted(range(len(ops)), key=lambda i: ops[i].call)
    flag = [False] * len(ops)
    last, last_ret = -1, -1
    for i in order:
        if last >= 0 and ops[i].call <= last_ret:
            flag[i] = True
            flag[last] = True
        if ops[i].ret > last_ret:
            last, last_ret = i, ops[i].ret
    return sum(flag)


def check_partition(model: Model, ops: Sequence[Op], budget: int = DEFAULT_BUDGET,
                    label: Any = None) -> CheckResult:
    """Check one partition.  See the module docstring for the algorithm."""
    n = len(ops)
    res = CheckResult("ok", ops=n, partitions=1, overlapping=_overlapping(ops))
    if n == 0:
        return res
    # Numbered in call order, the linearized set is "the first k operations"
    # plus a few after them: the memo stores it as (k, the rest >> k), small
    # whatever the history's length.
    ops = sorted(ops, key=lambda op: (op.call, op.ret))
    model = model.for_partition(ops)
    # Events: node 2i+1 is op i's call, 2i+2 its return; node 0 is the head.
    # Ties: calls first (an equal timestamp counts as overlapping).
    events = [(op.call, 0, 2 * i + 1) for i, op in enumerate(ops)]
    events += [(op.ret, 1, 2 * i + 2) for i, op in enumerate(ops)]
    events.sort()
    END = 2 * n + 1
    nxt = [END] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    p = 0
    for _, _, node in events:
        nxt[p] = node
        prv[node] = p
        p = node
    nxt[p] = END
    prv[END] = p

    state = model.init()
    linearized = 0
    seen = set()
    stack: List[Tuple[int, Hashable]] = []       # (call node, state before it)
    best: List[int] = []                        # the longest linearization seen
    best_len, best_saved, best_state = 0, True, state
    steps = 0
    entry = nxt[0]
    while nxt[0] != END:
        steps += 1
        if steps > budget:
            res.status = "unknown"
            res.steps = steps
            res.witness = (f"partition {label!r}: search budget of {budget} steps exhausted "
                           f"after linearizing {best_len} of {n} operations; "
                           f"make the histories shorter or less concurrent")
            return res
        if entry & 1:                           # a call
            i = entry >> 1
            ok, new = model.step(state, ops[i])
            if ok:
                mask = linearized | (1 << i)
                k = (~mask & (mask + 1)).bit_length() - 1      # trailing ones
                key = (k, mask >> k, new)
                if key not in seen:
                    seen.add(key)
                    stack.append((entry, state))
                    state, linearized = new, mask
                    # lift the call and its return out of the list
                    r = entry + 1
                    nxt[prv[entry]] = nxt[entry]
                    prv[nxt[entry]] = prv[entry]
                    nxt[prv[r]] = nxt[r]
                    prv[nxt[r]] = prv[r]
                    if len(stack) > best_len:      # copied only if we back out of it
                        best_len, best_saved, best_state = len(stack), False, state
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:                                   # a return whose call is pending
            if not stack:
                res.status = "fail"
                res.steps = steps
                res.witness = _witness(model, ops, best, best_state, label)
                return res
            if not best_saved and len(stack) == best_len:
                best = [e >> 1 for e, _ in stack]
                best_saved = True
            entry, state = stack.pop()
            linearized &= ~(1 << (entry >> 1))
            r = entry + 1                       # unlift: the return, then the call
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
    res.steps = steps
    return res


def _witness(model: Model, ops: Sequence[Op], best: List[int], state: Hashable,
             label: Any, context: int = 8) -> str:
    """The deepest partial linearization found, and why no pending operation
    can come next."""
    t0 = min(op.call for op in ops)
    done = set(best)
    rest = [i for i in range(len(ops)) if i not in done]
    # the operations that could have been linearized next: called before the
    # first return among the rest
    first_ret = min(ops[i].ret for i in rest)
    frontier = sorted((i for i in rest if ops[i].call <= first_ret), key=lambda i: ops[i].call)
    lines = [f"NOT LINEARIZABLE ({model.name}, partition {label!r}): "
             f"{len(best)} of {len(ops)} operations linearize, then none can.",
             "  last operations of the longest linearization (times from the partition's first call):"]
    for i in best[-context:]:
        lines.append("    " + ops[i].describe(t0))
    lines.append(f"  model state after them: {model.describe(state)}")
    lines.append("  operations that could come next, none of which the model allows:")
    for i in frontier[:2 * context]:
        lines.append("    " + ops[i].describe(t0) + f"   (model: {model.expected(state, ops[i])})")
    if len(frontier) > 2 * context:
        lines.append(f"    ... and {len(frontier) - 2 * context} more")
    return "\n".join(lines)


def check(model: Model, history: Iterable[Op], budget: int = DEFAULT_BUDGET) -> CheckResult:
    """Check a whole history: each partition of ``model.partition`` on its own.
    ``fail`` if any partition fails (its witness is reported), else ``unknown``
    if any ran out of budget, else ``ok``."""
    history = list(history)
    total = CheckResult("ok")
    unknown = None
    for label, ops in sorted(model.partition(history).items(), key=lambda kv: repr(kv[0])):
        r = check_partition(model, ops, budget, label)
        total.ops += r.ops
        total.partitions += 1
        total.steps += r.steps
        total.overlapping += r.overlapping
        if r.status == "fail":
            total.status = "fail"
            total.witness = r.witness
            return total
        if r.status == "unknown" and unknown is None:
            unknown = r.witness
    if unknown is not None:
        total.status = "unknown"
        total.witness = unknown
    return total


def partition_by_first_arg(history: Sequence[Op]) -> Dict[Hashable, List[Op]]:
    """Partition for models whose operations each touch the object named by
    their first argument (a dict key, a bit, an array element)."""
    parts: Dict[Hashable, List[Op]] = {}
    for op in history:
        parts.setdefault(op.args[0], []).append(op)
    return parts
