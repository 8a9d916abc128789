"""The call graph between the C core's files, from their objects' symbols.

    python3 tests/c/layers.py build/obj        (make layers)

For each object file, which other files it calls (an undefined symbol that
another object defines), then every cycle: files that call each other, in
one step or around a loop.  The core is layered (mapping.c under
alloc_freelist.c under segment.c, sync.c and the small helpers under
everything), so a cycle is an error.
"""
import os
import subprocess
import sys

def graph(objdir):
    defs, undef = {}, {}
    for f in sorted(os.listdir(objdir)):
        if not f.endswith(".o"):
            continue
        out = subprocess.run(["nm", os.path.join(objdir, f)], capture_output=True,
                             text=True, check=True).stdout
        d, u = set(), set()
        for line in out.splitlines():
            p = line.split()
            if len(p) == 2 and p[0] == "U":
                u.add(p[1])
            elif len(p) == 3 and p[1] in "TDBRC":
                d.add(p[2])
        defs[f[:-2]], undef[f[:-2]] = d, u
    owner = {s: n for n, d in defs.items() for s in d}
    return {n: sorted({owner[s] for s in undef[n] if owner.get(s, n) != n}) for n in defs}


def cycles(edges):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    edges = graph(sys.argv[1] if len(sys.argv) > 1 else "build/obj")
    for n, calls in edges.items():
        print(f"{n:22} -> {' '.join(calls)}")
    bad = 0
    for c in cycles(edges):
        print(f"cycle: {' <-> '.join(sorted(c))}")
        bad += 1
    if bad:
        print("files that call each other: move the shared part into a layer below both")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
