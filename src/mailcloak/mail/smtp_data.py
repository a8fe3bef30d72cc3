"""Reading the message after DATA: dot-unstuffing, the size limit, and the framing rules that
make SMTP smuggling impossible."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mailcloak.mail import replies
from mailcloak.mail.replies import Reply


async def read_data(reader: asyncio.StreamReader, *, max_size: int,
                    keep_alive: Callable[[], None] = lambda: None) -> bytes | Reply:
    """The message after DATA, dot-unstuffed, or the Reply refusing it.

    Only a line `.` preceded and ended by CRLF ends the data: `\\n.\\n`, `\\r.\\r`, `\\n.\\r\\n`
    and `\\r\\n.\\n` are data, and since a bare CR or LF is refused (550 5.6.0) after reading
    to the real end, what a smuggler puts after them is never read as commands. Lines of any
    length are accepted; the size limit counts the whole message.
    """
    content = bytearray()
    size = 0
    line_start = after_crlf = True  # the DATA command line ended with CRLF
    tail = b""  # the last two bytes read
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:  # a long line: take it in pieces
            raw = await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("connection closed during DATA") from exc
        keep_alive()
        if line_start and after_crlf and raw == b".\r\n":
            break
        chunk = raw[1:] if line_start and raw.startswith(b".") else raw
        size += len(chunk)
        if size <= max_size:
            content += chunk
        tail = raw[-2:] if len(raw) >= 2 else (tail + raw)[-2:]
        line_start = raw.endswith(b"\n")
        if line_start:
            after_crlf = tail == b"\r\n"
    if size > max_size:
        return replies.MESSAGE_TOO_BIG
    if has_bare_line_ending(content):
        return replies.BARE_LINEFEED
    return bytes(content)


def has_bare_line_ending(data: bytes | bytearray) -> bool:
    """Whether some CR is not followed by LF, or some LF not preceded by CR."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf
