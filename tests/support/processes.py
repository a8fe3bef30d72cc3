"""Run Mailcloak as real processes (`mailcloak smtpd`, `mailcloak worker`) for system tests.

Each test gets its own data directory and its own database: a fresh SQLite file, or, when the
suite runs against PostgreSQL (MAILCLOAK_DATABASE_URL is a postgresql:// URL), a fresh database
created on that server and dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

MAILCLOAK = str(Path(sys.executable).with_name("mailcloak"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


def mailcloak(env: dict[str, str], *args: str) -> str:
    """Run `mailcloak ARGS` to completion; its last line of output."""
    done = subprocess.run([MAILCLOAK, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def started(env: dict[str, str], command: str) -> Iterator[subprocess.Popen[str]]:
    """`mailcloak COMMAND` in its own process group, which is killed whatever happens."""
    process = subprocess.Popen([MAILCLOAK, command], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


@contextmanager
def fresh_database(data_dir: Path) -> Iterator[str]:
    """A database URL nobody else uses: SQLite in `data_dir`, or a new PostgreSQL database."""
    base = os.environ.get("MAILCLOAK_DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{data_dir / 'mailcloak.sqlite3'}"
        return
    import psycopg

    name = "mc_system_" + secrets.token_hex(4)
    parts = urlsplit(base)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Deployment:
    """A Mailcloak installation in a temporary directory, driven through its command line."""

    def __init__(self, data_dir: Path, database_url: str, *, host: str = "127.0.0.1",
                 **settings: str) -> None:
        self.data_dir = data_dir
        self.host = host  # where `mailcloak smtpd` listens (a node of several: 127.0.0.21...)
        self.smtp_port = free_port(host)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCLOAK_")}
        self.env |= {
            "MAILCLOAK_DATA_DIR": str(data_dir),
            "MAILCLOAK_DATABASE_URL": database_url,
            "MAILCLOAK_DOMAINS": "alias.test",
            "MAILCLOAK_SMTP_LISTEN": f"{host}:{self.smtp_port}",
            "MAILCLOAK_LOG_LEVEL": "warning",
            # The suite's loopback DNS server (tests/conftest.py), never the machine's resolver.
            "MAILCLOAK_DNS_SERVERS": os.environ.get("MAILCLOAK_DNS_SERVERS", "127.0.0.1:9"),
        }
        self.env |= {f"MAILCLOAK_{key.upper()}": value for key, value in settings.items()}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def cli(self, *args: str) -> str:
        done = subprocess.run([MAILCLOAK, *args], env=self.env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"mailcloak {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.data_dir / f"{name}.log").open("ab")
        process = subprocess.Popen([MAILCLOAK, *args], env=self.env, stdout=log, stderr=log)
        self.processes[name] = process
        if args[0] in {"smtpd", "run"}:
            wait_for_port(self.host, self.smtp_port)
        return process

    def kill(self, name: str) -> None:
        """SIGKILL, the way a crash or the OOM killer ends a process (children too)."""
        process = self.processes.pop(name)
        for child in _children(process.pid):
            os.kill(child, signal.SIGKILL)
        process.kill()
        process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def log(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except FileNotFoundError:
        return []
