"""Running Mailcloak's services (web app, SMTP server, delivery workers) in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import eventloop
from mailcloak.observability.logsetup import configure_logging

log = logging.getLogger("mailcloak.services")


class StartError(Exception):
    """A service cannot start (its address is taken, say); str() is a one-line reason."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn sharing the loop with the other services: signals are handled by `_main`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def web_config() -> uvicorn.Config:
    from mailcloak.project.asgi import application

    listen = mailcloak_settings.get().web_listen
    # log_config=None: uvicorn's lines go through Mailcloak's logging setup like all others.
    return uvicorn.Config(application, host=listen.host, port=listen.port, lifespan="off",
                          log_config=None, log_level="warning", access_log=False,
                          server_header=False)


async def _serve_web() -> None:
    listen = mailcloak_settings.get().web_listen
    server = _EmbeddedServer(web_config())
    log.info("web app on http://%s", listen)
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot start, after logging why
        raise StartError(f"the web app cannot start on {listen}") from None


async def _serve_smtp(stop: asyncio.Event) -> None:
    from mailcloak.mail.smtpd import start_smtp_server

    config = mailcloak_settings.get()
    listen = config.smtp_listen
    try:
        server = await start_smtp_server(config, host=listen.host, port=listen.port)
    except OSError as exc:
        raise StartError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    log.info("SMTP server on %s (%s event loop)", listen, eventloop.running_loop_name())
    try:
        await stop.wait()
    finally:
        await server.stop()


async def _serve_worker(stop: asyncio.Event) -> None:
    from mailcloak.mail.worker import run_worker
    from mailcloak.maintenance import run_maintenance

    await asyncio.gather(run_worker(stop), run_maintenance(stop))


async def _main(web: bool, smtp: bool, worker: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    if smtp:
        tasks.append(asyncio.create_task(_serve_smtp(stop), name="smtp"))
    if worker:
        tasks.append(asyncio.create_task(_serve_worker(stop), name="worker"))
    if web:
        tasks.append(asyncio.create_task(_serve_web(), name="web"))
    waiter = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    # One service ending (or a signal) stops them all; SMTP and worker finish what is in hand.
    stop.set()
    for task in tasks:
        if task.get_name() == "web":
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    status = 0
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, StartError):
            log.error("%s", result)
            status = 1
        elif isinstance(result, BaseException) and not isinstance(result,
                                                                  asyncio.CancelledError):
            log.error("%s stopped by an unexpected error", task.get_name(), exc_info=result)
            status = 1
    return status


def run_services(*, web: bool, smtp: bool, worker: bool, migrate: bool = False) -> int:
    configure_logging(mailcloak_settings.get())
    if migrate:
        from mailcloak.project.database import migrate_database

        migrate_database()
    return eventloop.serve(_main(web, smtp, worker))
