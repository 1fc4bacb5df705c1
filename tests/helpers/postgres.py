"""A throwaway PostgreSQL server for tests: ``initdb`` into a temporary folder, ``pg_ctl start`` on
a free loopback port, one fresh database per test, ``pg_ctl stop`` at the end of the session.

The server refuses to run as root, so under root the server's commands run as the ``postgres``
user (which the Debian package creates) on a folder that user owns. Where the server binaries
(Debian package ``postgresql``) or the driver (``pip install -e '.[postgres]'``) are missing, the
tests that need them are skipped with that reason; ``.ci/run`` installs both.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where Debian's ``postgresql`` package installs the server's programs, one folder per version.
BIN_GLOB = "/usr/lib/postgresql/*/bin"


def server_bin_dir() -> Path | None:
    """The newest installed server's ``bin`` folder (with ``initdb`` and ``pg_ctl``), if any."""
    found = [Path(d) for d in glob.glob(BIN_GLOB) if (Path(d) / "initdb").is_file()]
    if not found:
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One server in its own data folder; ``url(database)`` gives SQLAlchemy URLs to it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="vae-postgres-"))  # not under pytest's 0700 tmp folders
        self.data_dir = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # the server refuses root
        self._databases = itertools.count()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"test_{next(self._databases)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (skipped where the server or driver is missing)."""
    bin_dir = server_bin_dir()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL server binaries not found ({BIN_GLOB}/initdb; Debian package postgresql)")
    pytest.importorskip("psycopg", reason="PostgreSQL driver missing: pip install -e '.[postgres]'")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()
