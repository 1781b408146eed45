"""Real servers for the collector's tests: a mosquitto broker and a throwaway PostgreSQL cluster."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def broker(mosquitto):
    """The shared mosquitto fixture (tests/conftest.py) under the collector tests' name."""
    return mosquitto


@pytest.fixture(scope="session")
def postgres_url():
    """``postgresql://`` URL of a throwaway cluster (initdb + pg_ctl, trust auth, 127.0.0.1, free port).

    Skips with the reason where the PostgreSQL server binaries or psycopg are absent. Started as the
    ``postgres`` user when the tests run as root (the server refuses to run as root).
    """
    pytest.importorskip("psycopg")
    from scripts.fixtures.mosquitto import free_port

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.skip("PostgreSQL server not installed (/usr/lib/postgresql/*/bin; .ci/run installs postgresql)")
    bindir = Path(found[-1]).parent
    prefix = []
    work = Path(tempfile.mkdtemp(prefix="edge-pg-"))  # in /tmp: reachable by the postgres user
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(work, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*cmd):
        r = subprocess.run(prefix + [str(c) for c in cmd], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {r.stdout[-800:]} {r.stderr[-800:]}")

    data = work / "data"
    run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    run(bindir / "pg_ctl", "-D", data, "-l", work / "log", "-w", "-t", "60", "-o",
        f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)
