#!/usr/bin/env python3
"""Install the benchmark peers of requirements-bench.txt one at a time,
tolerating failures, and record what failed and why in
``<sys.prefix>/shmkit-peers.json`` (``shmkit bench`` quotes that reason when
it skips a peer).

`make demo` runs this only when ``pip install -r requirements-bench.txt``
fails as a whole (pip installs nothing if any one requirement cannot be
met).  A package whose only problem is its declared ``Requires-Python`` is
retried with ``--ignore-requires-python`` (shared-allocator 0.1.0 declares
>=3.13.7 but runs on older CPython); that is reported too.

Always exits 0: a missing peer must not fail `make demo`.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REQS = os.path.join(os.path.dirname(HERE), "requirements-bench.txt")


def requirements(path=REQS):
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out


def pip_install(req, *extra):
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           *extra, req]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in (p.stderr + p.stdout).splitlines()
             if ln.strip() and not ln.startswith("WARNING: Location")]
    return p.returncode, lines


def main():
    print("install_peers: installing the benchmark peers one by one "
          "(a failed peer is skipped by `shmkit bench`, with the reason)")
    installed, failed, notes = [], {}, {}
    log_path = os.path.join(sys.prefix, "shmkit-peers.json")
    try:  # a re-run finds peers already installed: keep what we learnt then
        with open(log_path) as f:
            old_notes = json.load(f).get("notes", {})
    except (OSError, ValueError, AttributeError):
        old_notes = {}
    for req in requirements():
        rc, lines = pip_install(req)
        why = [ln for ln in lines if "Requires-Python" in ln or "require a different python" in ln]
        if rc != 0 and why:
            rc2, lines2 = pip_install(req, "--ignore-requires-python")
            if rc2 == 0:
                installed.append(req)
                detail = why[0].replace("ERROR: ", "").strip()
                notes[req] = f"installed with --ignore-requires-python ({detail})"
                print(f"install_peers: {req}: installed ignoring its Requires-Python")
                continue
            lines = lines2
        if rc == 0:
            installed.append(req)
            if req in old_notes:
                notes[req] = old_notes[req]
            print(f"install_peers: {req}: ok")
        else:
            errs = [ln for ln in lines if "ERROR" in ln] or lines[-1:] or ["pip failed"]
            reason = errs[-1].replace("ERROR: ", "")[:300]
            name = req.split("=")[0].split(">")[0].split("<")[0].split(";")[0].strip()
            failed[name] = reason
            print(f"install_peers: {req}: FAILED ({reason})")
    report = {"installed": installed, "failed": failed, "notes": notes}
    try:
        with open(log_path, "w") as f:
            json.dump(report, f, indent=1)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
