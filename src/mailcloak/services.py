"""Running Mailcloak's services (web app, SMTP server, delivery workers) in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from mailcloak import settings as mailcloak_settings

log = logging.getLogger("mailcloak.services")


async def _serve_web() -> None:
    import uvicorn

    from mailcloak.project.asgi import application

    listen = mailcloak_settings.get().web_listen
    config = uvicorn.Config(application, host=listen.host, port=listen.port, lifespan="off",
                            log_level="warning", access_log=False, server_header=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    log.info("web app on http://%s", listen)
    await server.serve()


async def _main(web: bool, smtp: bool, worker: bool) -> None:
    tasks: list[asyncio.Task[None]] = []
    if web:
        tasks.append(asyncio.create_task(_serve_web(), name="web"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    for task in [*tasks, waiter]:
        task.cancel()
    for task in done:
        if task is not waiter and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def run_services(*, web: bool, smtp: bool, worker: bool, migrate: bool = False) -> int:
    logging.basicConfig(level=mailcloak_settings.get().log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if migrate:
        from django.core.management import call_command

        from mailcloak.aliases.services import sync_configured_domains

        call_command("migrate", interactive=False, verbosity=0)
        sync_configured_domains()
    asyncio.run(_main(web, smtp, worker))
    return 0
