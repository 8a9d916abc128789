"""The extension's binding files are layers: each calls only files below it
(python/shmkit/_ext/shmkit_py.h lists them), so no two files call each
other.  Read from the sources: every non-static shk_py_*/ShkPy* name a file
defines, and every one it uses."""
import re
from pathlib import Path

EXT = Path(__file__).resolve().parents[2] / "python" / "shmkit" / "_ext"

# Bottom first; a file may use what files of lower layers define.
LAYERS = [
    ["py_common.c"],
    ["py_segment.c"],
    ["py_codec.c"],
    ["py_handle.c"],
    ["py_dict_core.c"],
    ["py_dict_map.c", "py_dict_scan.c"],
    ["py_alloc.c", "py_array.c", "py_bitset.c", "py_counter.c", "py_dict.c",
     "py_queue.c", "py_stack.c"],
    ["module.c"],
]

NAME = r"(?:shk_py|ShkPy)\w+"
DEF = re.compile(r"^(?!static\b|extern\b|typedef\b|#)[A-Za-z_][\w \*]*?\b(" + NAME + r")\s*[(\[=;]",
                 re.M)


def _code(path):
    text = path.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def test_each_binding_file_calls_only_lower_layers():
    files = sorted(p.name for p in EXT.glob("*.c"))
    layer = {f: i for i, names in enumerate(LAYERS) for f in names}
    assert sorted(layer) == files, "a binding file is missing from LAYERS"
    code = {f: _code(EXT / f) for f in files}
    owner = {}
    for f, text in code.items():
        for name in DEF.findall(text):
            assert owner.setdefault(name, f) == f, f"{name} defined twice"
    wrong = []
    for f, text in code.items():
        for name in sorted(set(re.findall(r"\b" + NAME + r"\b", text))):
            g = owner.get(name)
            if g and g != f and layer[g] >= layer[f]:
                wrong.append(f"{f} uses {name} of {g}")
    assert not wrong, "\n".join(wrong)
    # the check sees the calls it is about
    assert owner["shk_py_raise"] == "py_common.c"
    assert owner["shk_py_unpickle"] == "py_codec.c"
    assert owner["shk_py_init_dict"] == "py_dict.c"
    assert owner["shk_py_dict_fetch"] == "py_dict_core.c"
    assert owner["shk_py_dict_incr"] == "py_dict_map.c"
    assert owner["shk_py_dict_get_view"] == "py_dict_scan.c"
