"""The wheel's smoke test (make wheel-smoke): run by the python of a fresh
virtualenv that has only the built wheel installed, from a directory
outside the source tree, so that `import shmkit` can only find the wheel.

It checks that the installed package is whole: the C extension loads, a
segment holds a dict and a queue that round-trip values, another process
sees them, and the `shmkit` console script answers --help and ls."""
import os
import shutil
import subprocess
import sys
import sysconfig

import shmkit

site = sysconfig.get_paths()["purelib"]
platsite = sysconfig.get_paths()["platlib"]
where = os.path.realpath(shmkit.__file__)
assert where.startswith((os.path.realpath(site), os.path.realpath(platsite))), (
    f"shmkit was imported from {where}, not from this virtualenv's site-packages")
print(f"shmkit {shmkit.__version__} from {os.path.dirname(where)}")

name = f"shmkit-wheel-smoke-{os.getpid()}"
seg = shmkit.Segment(name, create=True, size=1 << 20)
try:
    d = seg.dict("d")
    d["key"] = {"n": 1, "s": "text"}
    d[b"raw"] = b"\x00\x01"
    assert d["key"] == {"n": 1, "s": "text"}, d["key"]
    assert d[b"raw"] == b"\x00\x01"
    assert len(d) == 2

    q = seg.queue("q")
    for i in range(3):
        q.put(("item", i))
    assert [q.get() for _ in range(3)] == [("item", 0), ("item", 1), ("item", 2)]

    # Another interpreter attaches by name and sees the same dict.
    code = (f"import shmkit; s = shmkit.Segment({name!r}, create=False); "
            f"print(s.dict('d')['key']['s'])")
    out = subprocess.run([sys.executable, "-c", code], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == "text", out

    cli = shutil.which("shmkit", path=os.path.dirname(sys.executable))
    assert cli, "the shmkit console script is not installed next to python"
    help_text = subprocess.run([cli, "--help"], check=True, capture_output=True,
                               text=True).stdout
    assert "usage" in help_text.lower(), help_text
    listing = subprocess.run([cli, "ls"], check=True, capture_output=True,
                             text=True).stdout
    assert name in listing, listing
finally:
    seg.close()
    shmkit.unlink(name)
print("wheel smoke: OK")
