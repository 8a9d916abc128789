"""tools/check_cycles.py on tiny synthetic graphs: one with a cycle, one without,
for each of its two inputs (object files by nm, Python packages by import)."""
import importlib.util
import io
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "check_cycles.py"
spec = importlib.util.spec_from_file_location("check_cycles", TOOL)
cc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cc)


def test_graph_without_cycle():
    edges = {("a", "b"): ["f"], ("b", "c"): ["g"], ("a", "c"): ["h"]}
    assert cc.strongly_connected("abc", edges) == []
    out = io.StringIO()
    assert cc.report("t", "abc", edges, out) == 0
    assert "no cycles" in out.getvalue()


def test_graph_with_cycles_lists_each_with_its_reasons():
    # a <-> b, and b -> c -> d -> b; e hangs off the side
    edges = {("a", "b"): ["use_b"], ("b", "a"): ["use_a"], ("b", "c"): ["use_c"],
             ("c", "d"): ["use_d"], ("d", "b"): ["use_b2"], ("d", "e"): ["use_e"]}
    assert cc.strongly_connected("abcde", edges) == [["a", "b", "c", "d"]]
    assert cc.cycles_in(["a", "b", "c", "d"], edges) == [["a", "b"], ["b", "c", "d"]]
    out = io.StringIO()
    assert cc.report("t", "abcde", edges, out) == 2
    text = out.getvalue()
    assert "cycle: a -> b -> a" in text
    assert "cycle: b -> c -> d -> b" in text
    assert "a -> b: use_b" in text and "d -> b: use_b2" in text
    assert "e" not in text.split("group 1:")[1].splitlines()[0]


def test_self_edge_is_not_a_cycle():
    assert cc.strongly_connected("a", {("a", "a"): ["x"]}) == []


@pytest.mark.skipif(not (shutil.which("cc") and shutil.which("nm")), reason="needs cc and nm")
@pytest.mark.parametrize("cyclic", [False, True])
def test_object_files(tmp_path, cyclic):
    (tmp_path / "one.c").write_text("int two(void);\nint one(void) { return two() + 1; }\n")
    two = "int one(void);\nint two(void) { return one(); }\n" if cyclic else \
        "static int helper(void) { return 2; }\nint two(void) { return helper(); }\n"
    (tmp_path / "two.c").write_text(two)
    objs = []
    for name in ("one", "two"):
        obj = tmp_path / f"{name}.o"
        subprocess.run(["cc", "-c", str(tmp_path / f"{name}.c"), "-o", str(obj)], check=True)
        objs.append(str(obj))
    rc = cc.main(["--c-objects", *objs])
    assert rc == (1 if cyclic else 0)
    edges = cc.c_graph({o: cc.nm_symbols(o) for o in objs})
    assert edges[(objs[0], objs[1])] == ["two"]
    assert (edges.get((objs[1], objs[0])) == ["one"]) == cyclic


def _package(root: Path, files: dict) -> Path:
    pkg = root / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    return pkg


@pytest.mark.parametrize("cyclic", [False, True])
def test_python_imports(tmp_path, cyclic, capsys):
    # a imports b at module level; b imports a only inside a function when cyclic
    pkg = _package(tmp_path, {
        "__init__.py": "from .a import A\n",
        "a.py": "from .b import B\nclass A: pass\n",
        "b.py": ("class B:\n    def make(self):\n        from .a import A\n        return A()\n"
                 if cyclic else "class B: pass\n"),
        "sub/__init__.py": "",
        "sub/c.py": "from ..a import A\nfrom . import d\n",
        "sub/d.py": "import os\n",
    })
    rc = cc.main(["--python", str(pkg)])
    out = capsys.readouterr().out
    assert rc == (1 if cyclic else 0), out
    nodes, edges = cc.python_graph(str(pkg))
    assert ("pkg.sub.c", "pkg.a") in edges and ("pkg.sub.c", "pkg.sub.d") in edges
    # importing a submodule is not a dependency on the parent __init__
    assert ("pkg.sub.c", "pkg.sub") not in edges and ("pkg.a", "pkg") not in edges
    if cyclic:
        assert "cycle: pkg.a -> pkg.b -> pkg.a" in out
        assert "line 3 (in B.make): from .a import A" in out
