"""The ``shmkit`` command-line tool (also ``python -m shmkit``).

    shmkit ls [PATTERN] [--json]                 every shmkit segment on this machine
    shmkit inspect NAME [OBJECT] [--json] [--check]   stats of a segment or one object
    shmkit rm NAME... | --stale [--match PAT]    remove segments
    shmkit bench [--quick] [--out DIR]           the benchmark suite against stdlib and peers
    shmkit bench --scale [--procs 1,2,4]         ops/s against the number of processes
    shmkit bench --latency [--trips N]           queue round-trip percentiles

Exit codes: 0 success, 1 the operation failed (missing segment, failed
check...), 2 bad command line.  Every error is one line on stderr.

How a segment is recognised: every regular file of the shm directory
(``/dev/shm``) whose name is a valid segment name and whose first 8 bytes are
the segment magic is attached with ``shmkit.Segment(name, create=False,
trust="any")``; attaching validates the whole header (magic, layout version,
sizes), so a file that is not ours raises ``CorruptSegmentError`` and is
skipped, never crashed on.  ``ls`` and ``inspect`` only read: attaching
changes nothing in a segment (no reference count, no registration for
removal at exit), and they read no values, so nothing is unpickled.

Ownership: ``ls`` and ``inspect`` show each segment's owner and mode, and
mark (``!``) a segment owned by another user ("foreign") or writable by
others than its owner: a program attaching with the default
``trust="owner"`` refuses those (``ForeignSegmentError``).

How a segment is judged stale (``rm --stale``): its creator is gone -- no
process with ``creator_pid`` whose start time (``/proc/PID/stat`` field 22)
equals ``creator_start_ticks``, so a recycled pid does not count as the
creator -- *and* no process maps it (no ``/proc/*/maps`` line names
``/dev/shm/NAME``).  A segment its creator left behind but that another
process still uses is "orphan", and kept.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .bench import harness, latency, scale

SHM_DIR = os.environ.get("SHMKIT_SHM_DIR", "/dev/shm")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# The first 8 bytes of every segment (SEG_MAGIC in src/segment.c, stored
# little-endian).  Only a cheap pre-filter: attaching validates the whole
# header.  It spares `ls` the attach of foreign files, and in particular the
# 2 s attach waits on an empty file (which could be a segment being created).
SEGMENT_MAGIC = b"SHMKIT\x1a\x01"


class CliError(Exception):
    """An error reported as one line and exit code 1."""


# ---------------------------------------------------------------- processes


def _proc_start_ticks(pid: int) -> Optional[int]:
    """Start time of process ``pid`` in clock ticks since boot (field 22 of
    /proc/PID/stat), or None if there is no such live process.  Zombies count
    as gone: they run no code and hold no mapping."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # comm (field 2) is in parentheses and may itself hold spaces or ')':
    # the fields after the *last* ')' start with state (field 3).
    rest = stat[stat.rfind(")") + 2:].split()
    if len(rest) < 20 or rest[0] in ("Z", "X"):
        return None
    try:
        return int(rest[19])  # field 22 = rest[22 - 3]
    except ValueError:
        return None


def creator_alive(pid: int, start_ticks: int) -> bool:
    """True if the process that created a segment still runs.  A pid reused
    by another process has a different start time and does not count."""
    if pid <= 0:
        return False
    ticks = _proc_start_ticks(pid)
    if ticks is None:
        return False
    return start_ticks == 0 or ticks == start_ticks


def mapping_pids(names: Iterable[str],
                 exclude: Iterable[int] = ()) -> Dict[Optional[str], List[int]]:
    """For each segment name, the pids whose /proc/PID/maps map
    ``/dev/shm/NAME``.  The key ``None`` lists pids whose maps we may not
    read (other users' processes when we are not root)."""
    wanted = {os.path.join(SHM_DIR, n): n for n in names}
    found: Dict[Any, List[int]] = {n: [] for n in wanted.values()}
    found[None] = []
    skip = set(exclude)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) in skip:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{entry}/maps", "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except PermissionError:
            found[None].append(pid)
            continue
        except OSError:  # the process exited meanwhile
            continue
        seen = set()
        for line in data.splitlines():
            # "addr perms offset dev inode   path[ (deleted)]"
            parts = line.split(None, 5)
            if len(parts) < 6:
                continue
            path = parts[5]
            if path.endswith(" (deleted)"):
                path = path[: -len(" (deleted)")]
            name = wanted.get(path)
            if name is not None and name not in seen:
                seen.add(name)
                found[name].append(pid)
    return found


# ---------------------------------------------------------------- segments


def _human_bytes(size: Optional[int]) -> str:
    if size is None:
        return "-"
    n = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _human_age(seconds: float) -> str:
    if seconds < 0:
        return "-"
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"


def candidate_names(pattern: Optional[str] = None) -> List[str]:
    """Names of regular files in the shm directory that could be segments
    (and match the shell-style ``pattern``, if given)."""
    import fnmatch

    import shmkit

    try:
        entries = sorted(os.listdir(SHM_DIR))
    except OSError as e:
        raise CliError(f"cannot list {SHM_DIR}: {e.strerror}") from None
    out = []
    for name in entries:
        if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
            continue
        path = os.path.join(SHM_DIR, name)
        try:
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            if not shmkit.name_valid(name):
                continue
            with open(path, "rb") as f:
                if f.read(len(SEGMENT_MAGIC)) != SEGMENT_MAGIC:
                    continue
        except (OSError, ValueError, TypeError):
            continue
        out.append(name)
    return out


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def ownership(info: Dict[str, Any]) -> Dict[str, Any]:
    """The owner facts of a segment's info(): owner (user name), mode_octal,
    foreign (owned by another user than ours) and writable_by_others (group
    or world may write it).  Either of the last two makes a default
    (``trust="owner"``) attach refuse the segment."""
    uid, mode = int(info.get("owner_uid", -1)), int(info.get("mode", 0))
    return {
        "owner": _user_name(uid),
        "mode_octal": f"0o{mode:03o}",
        "foreign": uid != os.geteuid(),
        "writable_by_others": bool(mode & 0o022),
    }


def _marked(info: Dict[str, Any]) -> Tuple[str, str]:
    """The OWNER and MODE cells of ``ls``: a leading ``!`` marks a foreign
    owner or a mode that lets others write."""
    return (("!" if info.get("foreign") else "") + str(info.get("owner", "-")),
            ("!" if info.get("writable_by_others") else "") + str(info.get("mode_octal", "-")))


def _object_entries(handle: Any) -> Optional[int]:
    """Number of entries of an object handle (len()), None if it has none."""
    try:
        return len(handle)
    except Exception:  # allocators have no len(); any failure -> unknown
        return None


def _object_stats(handle: Any) -> Dict[str, Any]:
    stats: Dict[str, Any] = {}
    fn = getattr(handle, "stats", None)
    if callable(fn):
        stats.update(dict(fn()))
    for attr in ("capacity", "maxsize", "slab_size"):
        if attr not in stats:
            try:
                value = getattr(handle, attr)
            except Exception:
                continue
            if isinstance(value, (int, float)):
                stats[attr] = value
    fn = getattr(handle, "available_bytes", None)
    if callable(fn) and "available_bytes" not in stats:
        try:
            stats["available_bytes"] = fn()
        except Exception:
            pass
    n = _object_entries(handle)
    if n is not None and "entries" not in stats:
        stats["entries"] = n
    count = getattr(handle, "count", None)  # Bitset: bits set out of len()
    if callable(count) and "bits_set" not in stats:
        try:
            stats["bits_set"] = count()
        except Exception:
            pass
    return stats


def _close(handle: Any) -> None:
    fn = getattr(handle, "close", None)
    if callable(fn):
        try:
            fn()
        except Exception:
            pass


def read_segment(name: str, with_stats: bool = False, check: bool = False) -> Dict[str, Any]:
    """Attach ``name`` and describe it: Segment.info() plus, per object, the
    number of entries (and its stats / check result when asked) and the
    owner facts of ownership().  Any owner's segment is read (it is only
    looked at, no value is decoded).  Raises CorruptSegmentError for a file
    that is not ours, FileNotFoundError if missing."""
    import shmkit

    seg = shmkit.Segment(name, create=False, trust="any")
    try:
        info = dict(seg.info())
        info.update(ownership(info))
        if check:
            info["heap_check"] = _run_check(seg.heap_check)
        else:
            try:
                heap = dict(seg.heap_check()) if with_stats else None
            except Exception:
                heap = None
            if heap is not None:
                info["heap"] = heap
        if "heap" in info or "heap_check" in info:
            h = info.get("heap") or info["heap_check"].get("stats") or {}
            free_list = h.get("free_list_bytes")
            if free_list is not None:
                free_list += h.get("cached_bytes", 0)   # freed, in a process's cache
            untouched = h.get("untouched_bytes")
            if free_list is not None and untouched is not None and free_list + untouched:
                info["heap_fragmentation"] = round(free_list / (free_list + untouched), 4)
        objects = []
        for obj in info.get("objects", []):
            obj = dict(obj)
            handle = None
            try:
                handle = seg.open(obj["name"])
            except Exception as e:  # unknown type in this version, or damaged
                obj["error"] = f"{type(e).__name__}: {e}"
            if handle is None and check:
                obj["check"] = {"ok": False, "error": obj["error"]}
            if handle is not None:
                try:
                    n = _object_entries(handle)
                    if n is not None:
                        obj["entries"] = n
                    if with_stats:
                        try:
                            obj["stats"] = _object_stats(handle)
                        except Exception as e:
                            obj["error"] = f"{type(e).__name__}: {e}"
                    if check:
                        fn = getattr(handle, "check", None)
                        obj["check"] = (_run_check(fn) if callable(fn)
                                        else {"ok": True, "detail": "no check() for this type"})
                finally:
                    _close(handle)
            objects.append(obj)
        info["objects"] = objects
    finally:
        seg.close()
    return info


def _run_check(fn) -> Dict[str, Any]:
    try:
        result = fn()
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    out: Dict[str, Any] = {"ok": result is not False}
    if isinstance(result, dict):
        out["stats"] = result
    return out


def scan(with_status: bool = True, pattern: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every shmkit segment on this machine, with its status:
    "live" (creator runs), "orphan" (creator gone, still mapped) or "stale"
    (creator gone, mapped by nobody: ``rm --stale`` removes it)."""
    import shmkit

    segments = []
    for name in candidate_names(pattern):
        try:
            info = read_segment(name)
        except (shmkit.CorruptSegmentError, FileNotFoundError, PermissionError,
                ValueError, OSError):
            continue  # not ours, vanished meanwhile, or not ours to read
        segments.append(info)
    if with_status and segments:
        # our own handles are closed by now: a mapping in this process is
        # someone else's (e.g. the caller of main()), and counts
        maps = mapping_pids([s["name"] for s in segments])
        unreadable = maps.pop(None, [])
        for s in segments:
            s["mapped_by"] = maps.get(s["name"], [])
            alive = creator_alive(int(s.get("creator_pid", 0)),
                                  int(s.get("creator_start_ticks", 0)))
            s["creator_alive"] = alive
            if alive:
                s["status"] = "live"
            elif s["mapped_by"]:
                s["status"] = "orphan"
            elif unreadable and _shared_with_others(s["name"]):
                # someone we cannot inspect may map it: do not call it stale
                s["status"] = "unknown"
            else:
                s["status"] = "stale"
    return segments


def _shared_with_others(name: str) -> bool:
    try:
        st = os.stat(os.path.join(SHM_DIR, name))
    except OSError:
        return False
    return bool(st.st_mode & 0o066)


# ---------------------------------------------------------------- commands


def cmd_ls(args) -> int:
    segments = scan(pattern=args.pattern)
    if args.json:
        print(json.dumps(segments, indent=2, default=str))
        return EXIT_OK
    if not segments:
        print(f"no shmkit segments in {SHM_DIR}"
              + (f" matching {args.pattern!r}" if args.pattern else ""))
        return EXIT_OK
    now = time.time()
    rows = [("NAME", "SIZE", "USED", "OBJECTS", "OWNER", "MODE", "CREATOR", "AGE", "STATUS")]
    marked = False
    for s in segments:
        objs = []
        for o in s["objects"]:
            n = o.get("entries")
            objs.append(f"{o['type']}:{o['name']}" + (f"({n})" if n is not None else ""))
        created = s.get("created_unix_ns", 0) / 1e9
        owner, mode = _marked(s)
        marked = marked or bool(s.get("foreign") or s.get("writable_by_others"))
        rows.append((
            s["name"],
            _human_bytes(s.get("file_size")),
            _human_bytes(s.get("heap_used")),
            ", ".join(objs) or "-",
            owner,
            mode,
            str(s.get("creator_pid", "-")),
            _human_age(now - created) if created else "-",
            s.get("status", "-"),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    if marked:
        print(FOREIGN_NOTE)
    return EXIT_OK


TRUST_ADVICE = ("programs refuse it unless they open it with trust=\"any\", or "
                "trust=\"group\" when its group is one of theirs and it is not "
                "world-writable (see docs/SECURITY.md)")
FOREIGN_NOTE = "! owned by another user, or writable by others than its owner: " + TRUST_ADVICE


def _print_kv(d: Dict[str, Any], indent: str = "  ") -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            print(f"{indent}{k}:")
            _print_kv(v, indent + "  ")
        elif isinstance(v, float):
            print(f"{indent}{k}: {v:.4g}")
        elif k == "mode" and isinstance(v, int):
            print(f"{indent}{k}: 0o{v:03o}")
        elif isinstance(v, int) and k.endswith(("bytes", "size", "_used", "_free")) and v >= 1024:
            print(f"{indent}{k}: {v} ({_human_bytes(v)})")
        else:
            print(f"{indent}{k}: {v}")


# Offset of the recorded file size in the segment header (seg_header in
# src/segment.c: magic 8, version 4, header_size 4, state 4, dir_capacity 4,
# max_size 8, then file_size), a little-endian u64.
SEGMENT_FILE_SIZE_AT = 32


def truncation(name: str) -> Optional[str]:
    """A sentence if the file of segment ``name`` is shorter than the size its
    header records (a process truncated it), else None."""
    import struct

    try:
        with open(os.path.join("/dev/shm", name.lstrip("/")), "rb") as f:
            actual = os.fstat(f.fileno()).st_size
            head = f.read(SEGMENT_FILE_SIZE_AT + 8)
    except OSError:
        return None
    if len(head) < SEGMENT_FILE_SIZE_AT + 8 or not head.startswith(SEGMENT_MAGIC):
        return None
    # the rest of a real header's fixed fields: version 1, header size 8192,
    # state READY, and a recorded size within max_size
    version, header_size, state, _cap, max_size, recorded = struct.unpack_from(
        "<IIIIQQ", head, 8)
    if (version, header_size, state) != (1, 8192, 0x52454459):
        return None
    if not actual < recorded <= max_size:
        return None
    return (f"truncated: the file holds {actual} bytes but the segment records "
            f"{recorded}; processes that still map it die with SIGBUS when they touch "
            f"the missing part. Stop them and recreate the segment")


def cmd_inspect(args) -> int:
    import shmkit

    try:
        info = read_segment(args.name, with_stats=True, check=args.check)
    except FileNotFoundError:
        raise CliError(f"no segment named {args.name!r}") from None
    except shmkit.CorruptSegmentError as e:
        cut = truncation(args.name)
        if cut:
            raise CliError(f"{args.name!r} is {cut}") from None
        raise CliError(f"{args.name!r} is not a valid shmkit segment ({e})") from None
    except PermissionError:
        raise CliError(f"permission denied opening segment {args.name!r}") from None
    info["creator_alive"] = creator_alive(int(info.get("creator_pid", 0)),
                                          int(info.get("creator_start_ticks", 0)))
    if args.object is not None:
        matches = [o for o in info["objects"] if o["name"] == args.object]
        if not matches:
            raise CliError(f"segment {args.name!r} has no object named {args.object!r}")
        result: Dict[str, Any] = dict(matches[0], segment=args.name)
        checks = [result.get("check")]
    else:
        result = info
        checks = [info.get("heap_check")] + [o.get("check") for o in info["objects"]]
    failed = [c for c in checks if c is not None and not c.get("ok")]
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        if args.object is None:
            print(f"segment {info['name']}")
            why = []
            if info["foreign"]:
                why.append(f"owned by {info['owner']} (uid {info['owner_uid']}), not by "
                           f"this user (uid {os.geteuid()})")
            if info["writable_by_others"]:
                why.append(f"mode {info['mode_octal']} lets others than its owner write")
            if why:
                print(f"  warning: {'; '.join(why)}: {TRUST_ADVICE}")
            top = {k: v for k, v in info.items() if k not in ("objects", "name", "mode_octal")}
            _print_kv(top)
            for o in info["objects"]:
                print(f"  object {o['name']} ({o['type']})")
                _print_kv({k: v for k, v in o.items() if k not in ("name", "type")}, "    ")
        else:
            print(f"object {result['name']} ({result['type']}) in segment {args.name}")
            _print_kv({k: v for k, v in result.items() if k not in ("name", "type", "segment")})
        if args.check:
            print("check: " + ("FAILED" if failed else "ok"))
    if failed:
        first = failed[0].get("error", "check failed")
        print(f"shmkit: inspect: check failed: {first}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_rm(args) -> int:
    import shmkit

    if args.stale and args.names:
        raise CliError("give either names or --stale, not both")
    if args.match and not args.stale:
        raise CliError("--match only goes with --stale")
    if not args.stale and not args.names:
        raise CliError("nothing to remove: give segment names or --stale")
    status = EXIT_OK
    if args.stale:
        removed = 0
        for s in scan(pattern=args.match):
            if s["status"] != "stale":
                continue
            what = f"{s['name']} (creator pid {s.get('creator_pid')} gone, not mapped)"
            if args.dry_run:
                print(f"would remove {what}")
                removed += 1
                continue
            try:
                shmkit.unlink(s["name"])
            except FileNotFoundError:
                continue  # someone removed it meanwhile
            except OSError as e:
                print(f"shmkit: rm: cannot remove {s['name']!r}: {e.strerror or e}",
                      file=sys.stderr)
                status = EXIT_FAIL
                continue
            removed += 1
            print(f"removed {what}")
        if not removed:
            print("no stale segments" + (" would be removed" if args.dry_run else ""))
        return status
    for name in args.names:
        try:
            if not args.force:
                # refuse to remove files that are not shmkit segments
                seg = shmkit.Segment(name, create=False, trust="any")
                seg.close()
            if args.dry_run:
                print(f"would remove {name}")
                continue
            shmkit.unlink(name)
            print(f"removed {name}")
        except FileNotFoundError:
            print(f"shmkit: rm: no segment named {name!r}", file=sys.stderr)
            status = EXIT_FAIL
        except shmkit.CorruptSegmentError:
            print(f"shmkit: rm: {name!r} is not a shmkit segment (use --force to remove it anyway)",
                  file=sys.stderr)
            status = EXIT_FAIL
        except ValueError as e:
            print(f"shmkit: rm: invalid segment name {name!r}: {e}", file=sys.stderr)
            status = EXIT_FAIL
        except OSError as e:
            print(f"shmkit: rm: cannot remove {name!r}: {e.strerror or e}", file=sys.stderr)
            status = EXIT_FAIL
    return status


def cmd_bench(args) -> int:
    try:
        if args.latency:
            return latency.run_from_args(args)
        if args.scale:
            return scale.run_from_args(args)
        return EXIT_OK if harness.run_from_args(args) == 0 else EXIT_FAIL
    except ValueError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot write results to {args.out!r}: {e.strerror or e}") from None


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line (``shmkit: error: ...``), exit 2."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="shmkit",
        description="Inspect, clean up and benchmark shmkit shared-memory segments.",
        epilog="Exit codes: 0 success, 1 failure, 2 bad command line.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ls = sub.add_parser("ls", help="list every shmkit segment on this machine",
                        description="List every shmkit segment in the shm directory: name, "
                        "backed size, heap used, objects (type:name(entries)), creator pid, "
                        "age and status (live: creator runs; orphan: creator gone but still "
                        "mapped; stale: creator gone and mapped by nobody), owner and mode "
                        "('!' marks a segment owned by another user or writable by others). "
                        "Files that are not shmkit segments are skipped.")
    ls.add_argument("pattern", metavar="PATTERN", nargs="?",
                    help="only names matching this shell-style pattern (e.g. 'myapp-*')")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_ls)

    ins = sub.add_parser("inspect", help="show the stats of a segment or one object",
                         description="Show a segment's header facts, heap usage and "
                         "fragmentation and each object's stats (dict load factor, queue "
                         "depth, ...), or only those of OBJECT.")
    ins.add_argument("name", metavar="NAME", help="segment name (as in /dev/shm)")
    ins.add_argument("object", metavar="OBJECT", nargs="?", help="object inside the segment")
    ins.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    ins.add_argument("--check", action="store_true",
                     help="also walk the heap and each object verifying invariants; "
                     "exit 1 if any check fails (run it while the segment is quiet: "
                     "a walk racing with writers may see transient states)")
    ins.set_defaults(func=cmd_inspect)

    rm = sub.add_parser("rm", help="remove segments by name, or the stale ones",
                        description="Unlink segments. Processes that have them mapped keep "
                        "their mapping; the name is gone for new attachers. --stale removes "
                        "segments whose creating process is gone (pid and start time "
                        "checked, so a reused pid is not mistaken for it) and that no "
                        "process maps.")
    rm.add_argument("names", metavar="NAME", nargs="*", help="segment names to remove")
    rm.add_argument("--stale", action="store_true",
                    help="remove every segment whose creator is gone and nobody maps")
    rm.add_argument("--match", metavar="PATTERN",
                    help="with --stale: only names matching this shell-style pattern")
    rm.add_argument("-n", "--dry-run", action="store_true", help="only say what would be removed")
    rm.add_argument("-f", "--force", action="store_true",
                    help="remove NAME even if it is not a valid shmkit segment")
    rm.set_defaults(func=cmd_rm)

    b = sub.add_parser("bench", help="benchmark shmkit against the stdlib and peer packages",
                       description="Run the benchmark suites (alloc, dict, queue) side by side "
                       "against the standard library and every installed peer package "
                       "(shared-allocator, shared-hashmap, zero-copy-ipc, sharedbox, "
                       "UltraDict, shared-memory-dict, faster-fifo). Prints a table of ops/s "
                       "and ratios; writes results.json and PNG charts to DIR. Peers that "
                       "are missing are skipped and reported with the reason.")
    harness.add_arguments(b)
    b.add_argument("--scale", action="store_true",
                   help="instead: the scaling benchmark, ops/s against 1..32 processes, C and "
                   "Python, with the peers (scale.json, scale.png in DIR)")
    scale.add_arguments(b)
    b.add_argument("--latency", action="store_true",
                   help="instead: the latency benchmark, round trips of a 64-byte item between "
                   "two processes, percentiles and idle-waiter CPU, with the peers "
                   "(latency.json, latency.png in DIR)")
    latency.add_arguments(b)
    b.set_defaults(func=cmd_bench)
    return p


def bench_main(argv: Optional[List[str]] = None) -> int:
    """``shmkit bench ARGV...`` (what examples/demo.py calls)."""
    return main(["bench", *(argv or [])])


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except CliError as e:
        print(f"shmkit: {args.command}: {e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("shmkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
