"""A throwaway local mosquitto broker (Debian's ``mosquitto``) for tests and benchmarks.

It binds 127.0.0.1 only, at a free port, with a config file and persistence in a temporary folder.
Not for production: a plant runs its own broker (see the README's "plant" section).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional

from edge.errors import EdgeError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_mosquitto() -> Optional[str]:
    """Path of the mosquitto binary (PATH, then /usr/sbin), or None."""
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
                                              if os.access(p, os.X_OK)), None)


class Mosquitto:
    """One mosquitto process on 127.0.0.1.

    Args:
        workdir: Folder for the config, the log and the persistence file.
        ports: Listener ports (default: one free port).
        persistence: Keep sessions / queued messages in ``workdir`` across a graceful restart.
        tls: ``{"cafile", "certfile", "keyfile"}`` (and ``"require_certificate": True`` for client
            certificates): every listener speaks TLS.
    """

    def __init__(self, workdir: str | Path, ports: Optional[List[int]] = None, persistence: bool = False,
                 tls: Optional[dict] = None):
        exe = find_mosquitto()
        if exe is None:
            raise EdgeError("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = list(ports or [free_port()])
        self.persistence = persistence
        self.tls = dict(tls or {})
        self.proc: Optional[subprocess.Popen] = None

    @property
    def port(self) -> int:
        return self.ports[0]

    def _config(self, ports: List[int]) -> Path:
        lines = ["allow_anonymous true", "max_queued_messages 0", "max_inflight_messages 0",
                 f"persistence {'true' if self.persistence else 'false'}",
                 f"persistence_location {self.workdir}/", f"log_dest file {self.workdir / 'mosquitto.log'}",
                 "log_type error", "log_type warning"]
        if os.geteuid() == 0:  # mosquitto started as root drops to user "mosquitto", who cannot write workdir
            lines.append("user root")
        for p in ports:
            lines += [f"listener {p} 127.0.0.1"]
            for k in ("cafile", "certfile", "keyfile"):
                if self.tls.get(k):
                    lines.append(f"{k} {self.tls[k]}")
            if self.tls.get("require_certificate"):
                lines.append("require_certificate true")
        cfg = self.workdir / "mosquitto.conf"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    def start(self, ports: Optional[List[int]] = None, timeout: float = 10.0) -> "Mosquitto":
        """Start (on ``ports``, default all) and wait until every listener accepts connections."""
        ports = list(ports or self.ports)
        cfg = self._config(ports)
        self.proc = subprocess.Popen([self.exe, "-c", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "stderr.log", "ab"))
        deadline = time.monotonic() + timeout
        for p in ports:
            while True:
                if self.proc.poll() is not None:
                    raise EdgeError(f"mosquitto exited with {self.proc.returncode}: "
                                    f"{(self.workdir / 'stderr.log').read_text()[-500:]}")
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.kill()
                        raise EdgeError(f"mosquitto did not listen on 127.0.0.1:{p} within {timeout:g} s")
                    time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL (a broker crash: nothing saved)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM (graceful: mosquitto writes its persistence file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
