"""Throwaway PostgreSQL clusters for fault and several-node tests.

    with throwaway_cluster() as cluster:       # initdb + start on a free loopback port
        url = cluster.url
        cluster.stop(); cluster.start()        # the database goes away and comes back

    with shared_database(tmp_path) as url:     # a database several processes share

A test that needs PostgreSQL skips when it is not installed, except under
MAILCLOAK_TEST_REQUIRE_POSTGRES=1 (CI), where that is a failure. Run as root, the cluster runs
as the `postgres` system user (PostgreSQL refuses root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port, fresh_database


def bindir() -> Path | None:
    """Where the installed PostgreSQL's initdb and pg_ctl are, newest version first."""
    configured = os.environ.get("MAILCLOAK_TEST_POSTGRES_BINDIR")
    candidates = [Path(configured)] if configured else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: [int(part) for part in path.parent.name.split(".") if part.isdigit()],
        reverse=True)
    return next((path for path in candidates if (path / "initdb").exists()), None)


def skip_without_postgres() -> Path:
    """The binaries directory, or skip (fail under MAILCLOAK_TEST_REQUIRE_POSTGRES=1)."""
    found = bindir()
    if found is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("MAILCLOAK_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def on_postgres() -> bool:
    """Whether this test run's database (MAILCLOAK_DATABASE_URL) is PostgreSQL."""
    return os.environ.get("MAILCLOAK_DATABASE_URL", "").startswith(("postgres://",
                                                                     "postgresql://"))


@dataclass
class Cluster:
    bindir: Path
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://mailcloak@127.0.0.1:{self.port}/mailcloak"

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off "
                   f"-c unix_socket_directories={self.directory} -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-l",
                  str(self.directory / "log"), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: sessions are ended; `immediate`: as if the server crashed."""
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")

    def _run(self, program: str, *args: str) -> None:
        argv = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A new cluster with an empty `mailcloak` database, removed afterwards."""
    binaries = skip_without_postgres()
    directory = Path(tempfile.mkdtemp(prefix="mailcloak-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(binaries, directory, free_port())
    try:
        cluster._run("initdb", "-D", str(directory / "data"), "-U", "mailcloak",
                     "--auth=trust", "-E", "UTF8")
        cluster.start()
        cluster._run("createdb", "-h", "127.0.0.1", "-p", str(cluster.port), "-U",
                     "mailcloak", "mailcloak")
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def shared_database(data_dir: Path) -> Iterator[str]:
    """A PostgreSQL database for processes to share: a fresh one on the run's server when the
    suite runs on PostgreSQL, else on a throwaway cluster of its own."""
    if on_postgres():
        with fresh_database(data_dir) as url:
            yield url
        return
    with throwaway_cluster() as cluster:
        yield cluster.url
