"""A sink MX for benchmarks: accepts everything and appends `{"id", "t"}` per message to a file.

    python bench/sink.py HOST PORT RESULTS.jsonl
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any

from aiosmtpd.smtp import SMTP

BENCH_ID = re.compile(rb"^X-Bench-Id: (\d+)", re.MULTILINE)


class Recorder:
    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1)  # noqa: SIM115 (lives as long as the process)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        match = BENCH_ID.search(envelope.content)
        if match:
            self.out.write(json.dumps({"id": int(match.group(1)), "t": time.time()}) + "\n")
        return "250 2.0.0 Ok"


async def serve(host: str, port: int, path: str) -> None:
    handler = Recorder(path)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.bench", data_size_limit=None), host, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    from mailcloak.mail.eventloop import run

    run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]), kind="uvloop")  # the harness's CPU
