"""`mailcloak smtpd`: MAILCLOAK_SMTP_PROCESSES SMTP server processes sharing one port.

With one process the server runs here. With more, a parent forks them (each binds the port with
SO_REUSEPORT, so the kernel spreads connections), forwards SIGTERM/SIGINT, kills any that do
not stop in time, and stops them all and fails if one dies on its own.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Sequence

from django.db import DatabaseError, connections

from mailcloak.mail import eventloop
from mailcloak.mail.intake import describe
from mailcloak.mail.smtpd import ServerOptions, start_smtp_server
from mailcloak.settings import Config, ConfigError

log = logging.getLogger("mailcloak.smtpd")

STOP_TIMEOUT = 30.0  # seconds a server process gets to finish before it is killed


class ListenError(Exception):
    """The server cannot listen on its address; str() is a one-line reason."""


def serve(config: Config) -> int:
    """Run MAILCLOAK_SMTP_PROCESSES server processes on MAILCLOAK_SMTP_LISTEN until SIGTERM."""
    from mailcloak.aliases.services import sync_configured_domains
    from mailcloak.mail.auth import prepare as prepare_authentication

    ServerOptions.from_config(config)  # settle TLS (and make the local certificate) once, first
    sync_configured_domains()  # fails here, once and clearly, when the database is not ready
    prepare_authentication()  # once, here: the forked processes share what it read
    connections.close_all()  # no connection may be shared with the processes forked below
    processes = max(1, config.smtp_processes)
    if processes == 1:
        return eventloop.serve(_serve_until_stopped(config, reuse_port=False),
                               kind=config.event_loop)
    _check_can_listen(config)
    return _supervise(processes)


async def _serve_until_stopped(config: Config, *, reuse_port: bool) -> int:
    listen = config.smtp_listen
    try:
        server = await start_smtp_server(config, host=listen.host, port=listen.port,
                                         reuse_port=reuse_port)
    except OSError as exc:
        raise ListenError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("SMTP server on %s (%s event loop, process %d)", listen,
             eventloop.running_loop_name(), os.getpid())
    await stop.wait()
    await server.stop()
    log.info("SMTP server on %s stopped (process %d)", listen, os.getpid())
    return 0


def _check_can_listen(config: Config) -> None:
    listen = config.smtp_listen
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((listen.host, listen.port))
        except OSError as exc:
            raise ListenError(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def _supervise(count: int) -> int:
    """Start `count` server processes and watch them: SIGTERM/SIGINT stop them all (those not
    gone after STOP_TIMEOUT are killed); if one dies on its own, stop the others and fail."""
    # fork: each child starts from this process's Django setup, which has not yet opened a
    # database connection or started a thread.
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_child_main, name=f"smtpd-{n + 1}")
                for n in range(count)]
    deadline: float | None = None  # set once stopping

    def stop_children(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal deadline
        deadline = deadline or time.monotonic() + STOP_TIMEOUT
        for child in children:
            if child.exitcode is None:
                child.terminate()

    for child in children:
        child.start()
    signal.signal(signal.SIGTERM, stop_children)  # after the forks: children keep the defaults
    signal.signal(signal.SIGINT, stop_children)
    failed = False
    killed: set[int | None] = set()
    while alive := [child for child in children if child.exitcode is None]:
        if deadline is None and len(alive) < count:  # one died on its own
            _log_exits(children)
            failed = True
            stop_children()
            continue
        timeout = None if deadline is None else max(0.05, deadline - time.monotonic())
        multiprocessing.connection.wait([child.sentinel for child in alive], timeout)
        if deadline is not None and time.monotonic() >= deadline:
            for child in alive:
                if child.pid not in killed:
                    log.error("%s did not stop in time; killing it", child.name)
                    child.kill()
                    killed.add(child.pid)
    if deadline is None:  # all of them died before anyone asked
        _log_exits(children)
        failed = True
    return 1 if failed else 0


def _log_exits(children: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for child in children:
        if child.exitcode is not None:
            log.error("%s exited with status %s; stopping", child.name, child.exitcode)


def _child_main() -> None:
    from mailcloak import settings as mailcloak_settings

    try:
        config = mailcloak_settings.get()
        code = eventloop.serve(_serve_until_stopped(config, reuse_port=True),
                               kind=config.event_loop)
    except (ListenError, ConfigError) as exc:
        log.error("%s", exc)
        code = 1
    except DatabaseError as exc:
        log.error("database error: %s", describe(exc))
        code = 1
    raise SystemExit(code)
