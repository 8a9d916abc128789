"""Whose segment an open accepts (``trust=``): a segment another user made
under a predictable name, or one that others may write, is refused by
default (``ForeignSegmentError``) before anything in it is read; ``trust=``
opts in, for every constructor, and pickled handles keep it.

The tests run as root: a forked child drops to uid/gid 65534 ("nobody") to
create a segment as another user would, and ``os.chown`` sets other owners.
"""
import json
import os
import pickle
import subprocess
import sys

import pytest

import shmkit

NOBODY = 65534
SHM = "/dev/shm"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown and setuid")


def _path(name):
    return os.path.join(SHM, name)


def _as_nobody(fn):
    """Run fn() in a forked child whose uid and gid are 65534."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not create its segment"


@needs_root
def test_a_segment_another_user_planted_is_refused_not_unpickled(shm_name, tmp_path):
    marker = tmp_path / "pwned"
    attack = type("Attack", (), {"__reduce__": lambda self: (open, (str(marker), "w"))})

    def plant():
        with shmkit.SharedDict(shm_name, create=True, mode=0o644) as d:
            d["config"] = attack()

    _as_nobody(plant)
    assert os.stat(_path(shm_name)).st_uid == NOBODY
    for create in (None, False):     # attach, and open-or-create finding the name taken
        with pytest.raises(shmkit.ForeignSegmentError) as e:
            shmkit.SharedDict(shm_name, create=create)
        msg = str(e.value)
        assert "uid 65534 (nobody)" in msg and "mode 0o644" in msg
        assert "another user" in msg and 'trust="any"' in msg
    assert isinstance(e.value, PermissionError) and isinstance(e.value, shmkit.Error)
    with pytest.raises(shmkit.ForeignSegmentError, match="group is not one of"):
        shmkit.SharedDict(shm_name, trust="group")
    assert not marker.exists()
    # the opt-in attaches; with allow_pickle=False it still never unpickles
    with shmkit.SharedDict(shm_name, trust="any", allow_pickle=False) as d:
        assert d.trust == "any" and len(d) == 1
        with pytest.raises(TypeError):
            d["config"]
    assert not marker.exists()


def _make(kind, name, **kw):
    """Open structure `kind` standalone in segment `name` (creating it when
    kw says create=True)."""
    if kind == "Segment":
        return shmkit.Segment(name, **kw)
    if kind == "SharedDict":
        return shmkit.SharedDict(name, **kw)
    if kind == "Queue":
        return shmkit.Queue(name, **kw)
    if kind == "Stack":
        return shmkit.Stack(name, **kw)
    if kind == "Counter":
        return shmkit.Counter(name, **kw)
    create = kw.get("create") is True
    if kind == "Bitset":
        return shmkit.Bitset(name, 64 if create else None, **kw)
    if kind == "Array":
        return shmkit.Array(name, "int64" if create else None, 4 if create else None, **kw)
    cls = {"FreeListAllocator": shmkit.FreeListAllocator, "BumpAllocator": shmkit.BumpAllocator,
           "SlabAllocator": shmkit.SlabAllocator}[kind]
    return cls(name, 4096 if create else None, **kw)


KINDS = ["Segment", "SharedDict", "Queue", "Stack", "Bitset", "Array", "Counter",
         "FreeListAllocator", "BumpAllocator", "SlabAllocator"]


@needs_root
@pytest.mark.parametrize("kind", KINDS)
def test_every_constructor_refuses_by_default_and_takes_trust(shm_name, kind):
    _make(kind, shm_name, create=True).close()
    mine = _make(kind, shm_name, create=False)
    assert mine.trust == "owner"
    mine.close()
    os.chown(_path(shm_name), NOBODY, NOBODY)
    with pytest.raises(shmkit.ForeignSegmentError):
        _make(kind, shm_name, create=False)
    with pytest.raises(shmkit.ForeignSegmentError):
        _make(kind, shm_name)
    h = _make(kind, shm_name, create=False, trust="any")
    assert h.trust == "any"
    # a pickled handle (e.g. sent to a worker) re-attaches with its trust
    again = pickle.loads(pickle.dumps(h))
    assert again.trust == "any"
    again.close()
    h.close()
    # shared on purpose: another owner, group one of ours (root: gid 0), 0660
    os.chown(_path(shm_name), NOBODY, 0)
    os.chmod(_path(shm_name), 0o660)
    with pytest.raises(shmkit.ForeignSegmentError):
        _make(kind, shm_name, create=False)
    h = _make(kind, shm_name, create=False, trust="group")
    assert h.trust == "group" and pickle.loads(pickle.dumps(h)).trust == "group"
    h.close()


@needs_root
@pytest.mark.parametrize("owner, mode, accepted_by", [
    ((0, 0), 0o600, {"owner", "group", "any"}),
    ((0, 0), 0o640, {"owner", "group", "any"}),
    ((0, 0), 0o620, {"group", "any"}),             # group-writable, our group
    ((0, 0), 0o660, {"group", "any"}),
    ((0, NOBODY), 0o660, {"any"}),                 # group-writable, not our group
    ((0, 0), 0o602, {"any"}),                      # world-writable
    ((0, 0), 0o666, {"any"}),
    ((NOBODY, 0), 0o640, {"group", "any"}),        # another owner, our group
    ((NOBODY, 0), 0o662, {"any"}),
    ((NOBODY, NOBODY), 0o600, {"any"}),
])
def test_owner_and_mode_decide(shm_name, owner, mode, accepted_by):
    shmkit.Segment(shm_name, create=True).close()
    os.chown(_path(shm_name), *owner)
    os.chmod(_path(shm_name), mode)
    for trust in ("owner", "group", "any"):
        if trust in accepted_by:
            with shmkit.Segment(shm_name, create=False, trust=trust) as seg:
                info = seg.info()
                assert (info["owner_uid"], info["owner_gid"], info["mode"]) == (*owner, mode)
        else:
            with pytest.raises(shmkit.ForeignSegmentError, match=f"mode 0o{mode:03o}"):
                shmkit.Segment(shm_name, create=False, trust=trust)


def test_trust_argument_is_checked(shm_name):
    with pytest.raises(ValueError, match="trust must be"):
        shmkit.Segment(shm_name, trust="everyone")
    with pytest.raises(TypeError, match="trust must be"):
        shmkit.Segment(shm_name, trust=True)
    assert not os.path.exists(_path(shm_name))


def test_create_sets_exactly_the_mode_whatever_the_umask(shm_name):
    old = os.umask(0o077)
    try:
        with shmkit.Segment(shm_name, create=True, mode=0o660) as seg:
            st = os.stat(_path(shm_name))
            assert st.st_mode & 0o7777 == 0o660
            assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
            assert seg.info()["mode"] == 0o660
        shmkit.unlink(shm_name)
        os.umask(0)
        shmkit.Segment(shm_name, create=True).close()
        assert os.stat(_path(shm_name)).st_mode & 0o7777 == 0o600
    finally:
        os.umask(old)


def _put_from_worker(q):
    q.put(b"from the worker")


@needs_root
def test_a_handle_sent_to_a_worker_keeps_its_trust(shm_name, mp_context):
    shmkit.Queue(shm_name, create=True).close()
    os.chown(_path(shm_name), NOBODY, NOBODY)
    q = shmkit.Queue(shm_name, create=False, trust="any")
    p = mp_context.Process(target=_put_from_worker, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert q.get(timeout=10) == b"from the worker"
    q.close()


@needs_root
def test_cli_shows_owner_and_mode_and_marks_foreign(shm_name):
    shmkit.Segment(shm_name, create=True).close()
    mine = shm_name + "-mine"
    shmkit.Segment(mine, create=True).close()
    try:
        os.chown(_path(shm_name), NOBODY, NOBODY)
        os.chmod(_path(shm_name), 0o666)
        run = [sys.executable, "-m", "shmkit"]
        p = subprocess.run(run + ["ls", shm_name + "*", "--json"], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        got = {s["name"]: s for s in json.loads(p.stdout)}
        assert got[shm_name]["owner"] == "nobody" and got[shm_name]["mode_octal"] == "0o666"
        assert got[shm_name]["foreign"] and got[shm_name]["writable_by_others"]
        assert got[mine]["owner"] == "root" and got[mine]["mode_octal"] == "0o600"
        assert not got[mine]["foreign"] and not got[mine]["writable_by_others"]

        p = subprocess.run(run + ["ls", shm_name + "*"], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].split()[4:6] == ["OWNER", "MODE"]
        theirs = next(ln for ln in lines if ln.startswith(shm_name + " "))
        ours = next(ln for ln in lines if ln.startswith(mine))
        assert "!nobody" in theirs and "!0o666" in theirs
        assert " root " in ours and " 0o600 " in ours and "!" not in ours
        assert any(ln.startswith("! owned by another user") for ln in lines)

        p = subprocess.run(run + ["inspect", shm_name], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        assert "warning: owned by nobody (uid 65534)" in p.stdout
        assert "mode: 0o666" in p.stdout
    finally:
        shmkit.unlink(mine)
