#!/usr/bin/env python3
"""Report files that depend on a file that depends back on them.

Two graphs, one node per file:

* C (``--c-objects OBJ...``): an object file depends on the object file that
  defines a global symbol it leaves undefined, as ``nm`` lists them.  Pass
  the library's objects and the extension's together (``make cycles`` does).
* Python (``--python DIR``): a module depends on each module of the package
  under DIR that it imports, at module level or inside a function alike
  (``ast``).  ``from X import y`` depends on X and on the submodule X.y if
  there is one; when X is the importer's own package or an ancestor
  (``from . import y``), only on X.y, or on X's ``__init__`` when that binds
  y (else y is outside the graph: the C extension).  A module is not
  counted as depending on the ``__init__`` of the packages above it unless
  it names them.  Imports under ``if TYPE_CHECKING:`` are for annotations
  only and do not count.

Every cycle is printed with the reasons of its edges (the symbols, or the
import lines), and the exit status is 1 when there is any, 0 otherwise:

    tools/check_cycles.py --c-objects build/obj/*.o --python python/shmkit
"""
from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from collections import defaultdict
from typing import Dict, Iterable, List, Set, Tuple

# (from, to) -> the reasons for that edge (symbol names, import lines)
Edges = Dict[Tuple[str, str], List[str]]

MAX_CYCLES_PER_GROUP = 20
MAX_REASONS_SHOWN = 8


# --------------------------------------------------------------------- graph

def strongly_connected(nodes: Iterable[str], edges: Edges) -> List[List[str]]:
    """The groups of two or more nodes that all reach each other (Tarjan),
    each sorted, in sorted order."""
    succ: Dict[str, List[str]] = defaultdict(list)
    for a, b in edges:
        if a != b:
            succ[a].append(b)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    groups: List[List[str]] = []
    counter = 0

    for root in sorted(set(nodes) | {n for e in edges for n in e}):
        if root in index:
            continue
        # iterative DFS: (node, iterator over its successors)
        work = [(root, iter(sorted(succ[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(succ[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    n = stack.pop()
                    on_stack.discard(n)
                    group.append(n)
                    if n == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def cycles_in(group: List[str], edges: Edges, limit: int = MAX_CYCLES_PER_GROUP) -> List[List[str]]:
    """The elementary cycles inside one strongly connected group, shortest
    first, each starting at its smallest node; at most `limit`."""
    members = set(group)
    succ: Dict[str, List[str]] = defaultdict(list)
    for a, b in edges:
        if a != b and a in members and b in members:
            succ[a].append(b)
    found: List[List[str]] = []
    for start in sorted(members):
        # only nodes after `start`, so each cycle is found once, from its smallest node
        path = [start]

        def walk(node: str) -> None:
            for nxt in sorted(succ[node]):
                if len(found) >= limit * 4:
                    return
                if nxt == start:
                    found.append(list(path))
                elif nxt > start and nxt not in path:
                    path.append(nxt)
                    walk(nxt)
                    path.pop()

        walk(start)
    found.sort(key=lambda c: (len(c), c))
    return found[:limit]


def report(title: str, nodes: Iterable[str], edges: Edges, out=None) -> int:
    """Print the cycles of one graph; return how many were printed."""
    out = out or sys.stdout
    groups = strongly_connected(nodes, edges)
    if not groups:
        print(f"{title}: no cycles", file=out)
        return 0
    total = 0
    print(f"{title}: {len(groups)} group(s) of files that depend on each other", file=out)
    for g, group in enumerate(groups, 1):
        cycles = cycles_in(group, edges)
        print(f"  group {g}: {', '.join(group)}", file=out)
        for cycle in cycles:
            total += 1
            print(f"    cycle: {' -> '.join(cycle + [cycle[0]])}", file=out)
            for a, b in zip(cycle, cycle[1:] + cycle[:1]):
                reasons = sorted(set(edges[(a, b)]))
                shown = ", ".join(reasons[:MAX_REASONS_SHOWN])
                more = len(reasons) - MAX_REASONS_SHOWN
                if more > 0:
                    shown += f", ... (+{more} more)"
                print(f"      {a} -> {b}: {shown}", file=out)
        if len(cycles) == MAX_CYCLES_PER_GROUP:
            print(f"    (only the first {MAX_CYCLES_PER_GROUP} cycles of this group)", file=out)
    return total


# ------------------------------------------------------------------------- C

def nm_symbols(obj: str) -> Tuple[Set[str], Set[str]]:
    """(defined global symbols, undefined symbols) of one object file."""
    try:
        text = subprocess.run(["nm", "-P", obj], check=True, capture_output=True,
                              text=True).stdout
    except FileNotFoundError:
        sys.exit("check_cycles: nm not found (install binutils)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"check_cycles: nm {obj} failed: {e.stderr.strip()}")
    defined, undefined = set(), set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind in ("U", "w", "v"):
            undefined.add(name)
        elif kind.isupper():          # lowercase: local to the object
            defined.add(name)
    return defined, undefined


def c_graph(symbols: Dict[str, Tuple[Set[str], Set[str]]]) -> Edges:
    """Edges from object -> object that defines a symbol it uses."""
    owner: Dict[str, str] = {}
    for obj, (defined, _) in sorted(symbols.items()):
        for s in defined:
            owner.setdefault(s, obj)
    edges: Edges = defaultdict(list)
    for obj, (_, undefined) in symbols.items():
        for s in undefined:
            dep = owner.get(s)
            if dep is not None and dep != obj:
                edges[(obj, dep)].append(s)
    return edges


# -------------------------------------------------------------------- Python

def python_modules(root: str) -> Dict[str, str]:
    """Dotted module name -> path, for every .py under the package `root`."""
    root = os.path.normpath(root)
    top = os.path.basename(root)
    mods: Dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, root)
        parts = [top] + ([] if rel == "." else rel.split(os.sep))
        for f in sorted(filenames):
            if not f.endswith(".py"):
                continue
            name = parts if f == "__init__.py" else parts + [f[:-3]]
            mods[".".join(name)] = os.path.join(dirpath, f)
    return mods


def _top_level_names(tree: ast.Module) -> Set[str]:
    names: Set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                names.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names.add(t.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _scopes(tree: ast.Module) -> Dict[ast.AST, str]:
    """Each import node -> 'module level' or 'in F' (the enclosing def)."""
    where: Dict[ast.AST, str] = {}

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                # imports for annotations only: not run, not a dependency
                for other in child.orelse:
                    visit(other, scope)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = child.name if scope == "module level" else f"{scope}.{child.name}"
                visit(child, inner)
            else:
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    where[child] = scope
                visit(child, scope)

    visit(tree, "module level")
    return {n: (s if s == "module level" else f"in {s}") for n, s in where.items()}


def python_graph(root: str) -> Tuple[List[str], Edges]:
    mods = python_modules(root)
    trees = {m: ast.parse(open(p, encoding="utf-8").read(), filename=p) for m, p in mods.items()}
    packages = {m for m, p in mods.items() if p.endswith("__init__.py")}
    bound = {m: _top_level_names(trees[m]) for m in packages}
    edges: Edges = defaultdict(list)
    for mod, tree in trees.items():
        pkg = mod if mod in packages else mod.rpartition(".")[0]
        for node, scope in _scopes(tree).items():
            targets: List[str] = []
            if isinstance(node, ast.Import):
                for a in node.names:
                    targets.append(a.name)
                text = "import " + ", ".join(a.name for a in node.names)
            else:
                if node.level:
                    base = pkg.split(".")
                    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from X import y` runs X, unless X is this module's own
                # package or an ancestor (`from . import y`), which is being
                # imported already: then only a submodule y, or a y that
                # X's __init__ binds, is a dependency.
                ancestor = mod == source or mod.startswith(source + ".")
                if source in mods and not ancestor:
                    targets.append(source)
                for a in node.names:
                    sub = f"{source}.{a.name}"
                    if sub in mods:
                        targets.append(sub)
                    elif ancestor and source in mods and (a.name in bound.get(source, ())
                                                          or a.name == "*"):
                        targets.append(source)
                text = ("from " + "." * node.level + (node.module or "") + " import "
                        + ", ".join(a.name for a in node.names))
            for t in targets:
                # `import a.b.c` needs a.b.c itself; names outside the package are ignored
                if t in mods and t != mod:
                    edges[(mod, t)].append(f"line {node.lineno} ({scope}): {text}")
    return sorted(mods), edges


# ---------------------------------------------------------------------- main

def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--c-objects", nargs="+", action="extend", default=[],
                    metavar="OBJ", help="object files of one program or library")
    ap.add_argument("--python", action="append", default=[], metavar="DIR",
                    help="a Python package directory")
    args = ap.parse_args(argv)
    if not args.c_objects and not args.python:
        ap.error("nothing to check: give --c-objects and/or --python")
    cycles = 0
    if args.c_objects:
        symbols = {o: nm_symbols(o) for o in args.c_objects}
        cycles += report("C (object files, by symbol)", symbols, c_graph(symbols))
    for root in args.python:
        nodes, edges = python_graph(root)
        cycles += report(f"Python ({root}, by import)", nodes, edges)
    if cycles:
        print(f"check_cycles: {cycles} cycle(s): break each by moving what both "
              f"files need into a file that neither depends back on")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
