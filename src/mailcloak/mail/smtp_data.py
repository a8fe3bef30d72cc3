"""Reading the message after DATA: dot-unstuffing, the size limit, and the framing rules that
make SMTP smuggling impossible."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable

from mailcloak.mail import replies
from mailcloak.mail.replies import Reply


class _At(enum.Enum):
    LINE_START = enum.auto()  # the next byte starts a line
    DOT = enum.auto()  # a line's first byte was a dot: stuffing, or the end of the data
    MID_LINE = enum.auto()


async def read_data(reader: asyncio.StreamReader, *, max_size: int,
                    keep_alive: Callable[[], None] = lambda: None) -> bytes | Reply:
    """The message after DATA, dot-unstuffed, or the Reply refusing it.

    Only a line `.` preceded and ended by CRLF ends the data: `\\n.\\n`, `\\r.\\r`, `\\n.\\r\\n`
    and `\\r\\n.\\n` are data, and since a bare CR or LF is refused (550 5.6.0) after reading
    to the real end, what a smuggler puts after them is never read as commands. Lines of any
    length are accepted; the size limit counts the whole message.

    The data is read in runs up to the next line that starts with a dot, not line by line:
    most messages take three reads, whatever their length.
    """
    content = bytearray()
    size = 0
    tail = b"\r\n"  # the last two bytes read (the DATA command line ended with CRLF)
    at = _At.LINE_START

    def keep(data: bytes, raw: bytes) -> None:
        nonlocal size, tail
        size += len(data)
        if size <= max_size:
            content.extend(data)
        tail = (tail + raw)[-2:]

    while True:
        if at is _At.LINE_START:
            byte = await _read(reader.readexactly(1))
            if byte == b".":
                at = _At.DOT
            else:
                keep(byte, byte)
                at = _At.LINE_START if byte == b"\n" else _At.MID_LINE
        elif at is _At.DOT:
            after_crlf = tail == b"\r\n"
            line = await _through(reader, b"\n")
            if after_crlf and line == b"\r\n":
                break
            keep(line, b"." + line)  # the stuffed dot dropped
            at = _At.LINE_START if line.endswith(b"\n") else _At.MID_LINE
        else:
            run = await _through(reader, b"\n.")
            if run.endswith(b"\n."):
                keep(run[:-1], run[:-1])
                at = _At.DOT
            else:  # a piece of a very long line
                keep(run, run)
                at = _At.LINE_START if run.endswith(b"\n") else _At.MID_LINE
        keep_alive()
    if size > max_size:
        return replies.MESSAGE_TOO_BIG
    if has_bare_line_ending(content):
        return replies.BARE_LINEFEED
    return bytes(content)


async def _through(reader: asyncio.StreamReader, separator: bytes) -> bytes:
    """The bytes up to and including `separator`, or as much as the reader's limit lets it
    hold when the separator is further away (then it ends elsewhere)."""
    try:
        return await _read(reader.readuntil(separator))
    except asyncio.LimitOverrunError as exc:
        return await _read(reader.readexactly(exc.consumed))


async def _read(reading: Awaitable[bytes]) -> bytes:
    try:
        return await reading
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError("connection closed during DATA") from exc


def has_bare_line_ending(data: bytes | bytearray) -> bool:
    """Whether some CR is not followed by LF, or some LF not preceded by CR."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf
