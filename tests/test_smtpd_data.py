"""DATA framing: only <CRLF>.<CRLF> ends a message, and bare CR or LF is refused (no smuggling)."""

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcloak.mail import replies
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.smtp_data import has_bare_line_ending, read_data
from tests.support.smtp_client import RawClient, RunningServer

pytestmark = pytest.mark.usefixtures("lenient_spam_thresholds")


def read(stream: bytes, max_size: int = 10_000, limit: int = 1001):
    """read_data over `stream` as a client would send it after DATA; also what is left unread."""

    async def run():
        reader = asyncio.StreamReader(limit=limit)
        reader.feed_data(stream)
        reader.feed_eof()
        result = await read_data(reader, max_size=max_size)
        return result, await reader.read()

    return asyncio.run(run())


def test_plain_message_and_what_follows_it():
    content, rest = read(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert content == b"Subject: x\r\n\r\nbody\r\n"
    assert rest == b"QUIT\r\n"


def test_empty_message():
    assert read(b".\r\nNOOP\r\n") == (b"", b"NOOP\r\n")


def test_dot_stuffing_is_undone():
    content, _ = read(b"a\r\n..\r\n..b\r\n.c\r\n.\r\n")
    assert content == b"a\r\n.\r\n.b\r\nc\r\n"


def test_long_lines_are_kept_whole():
    line = b"." + b"x" * 5000 + b"\r\n"
    content, rest = read(b"a\r\n" + line + b".\r\nQUIT\r\n", limit=100)
    assert content == b"a\r\n" + line[1:]
    assert rest == b"QUIT\r\n"


def test_crlf_split_across_long_line_pieces_is_not_bare():
    content, _ = read(b"x" * 99 + b"\r\n.\r\n", limit=50)
    assert content == b"x" * 99 + b"\r\n"


SMUGGLED = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@x.test>\r\nDATA\r\nforged\r\n"


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r",
                                      b"\r.\r\n", b"\n.\r", b"\r\n\r.\r\n"])
def test_fake_ends_are_data_and_refused(fake_end):
    stream = b"Subject: x\r\n\r\nbody" + fake_end + SMUGGLED + b".\r\nQUIT\r\n"
    result, rest = read(stream)
    assert result == replies.BARE_LINEFEED
    assert rest == b"QUIT\r\n"  # nothing before the real end was taken for a command


@pytest.mark.parametrize("body", [b"a\nb\r\n", b"a\rb\r\n", b"a\r\r\n", b"\n\r\n", b"\r\r\n"])
def test_any_bare_cr_or_lf_is_refused(body):
    assert read(body + b".\r\n")[0] == replies.BARE_LINEFEED


def test_too_big_is_refused_after_reading_to_the_end():
    result, rest = read(b"x" * 50 + b"\r\n" + b"y" * 50 + b"\r\n.\r\nQUIT\r\n", max_size=60)
    assert result == replies.MESSAGE_TOO_BIG
    assert rest == b"QUIT\r\n"


def test_exactly_the_limit_is_accepted():
    assert read(b"x" * 8 + b"\r\n.\r\n", max_size=10)[0] == b"x" * 8 + b"\r\n"


def test_connection_closed_mid_data():
    with pytest.raises(ConnectionResetError):
        read(b"Subject: x\r\n\r\nunfinished")


async def line_by_line(reader: asyncio.StreamReader, *, max_size: int) -> bytes | replies.Reply:
    """The reader read_data replaced, kept as the model it must agree with: a line at a time."""
    content, size = bytearray(), 0
    line_start = after_crlf = True
    tail = b""
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            raw = await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("connection closed during DATA") from exc
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


PIECES = [b"\r\n", b"\n", b"\r", b".", b"..", b"x", b"text", b"\r\n.\r\n", b"\r\n..",
          b"\n.", b".\r\n", b"y" * 70, b"QUIT\r\n"]


async def outcome(reader_function, stream: bytes, pieces: list[int], limit: int, max_size: int):
    """What `reader_function` makes of `stream` arriving in pieces of the given sizes: its
    result (or that the connection closed) and the bytes left for the next command."""
    reader = asyncio.StreamReader(limit=limit)

    async def arrive() -> None:
        position = 0
        for size in pieces:
            reader.feed_data(stream[position:position + size])
            position += size
            await asyncio.sleep(0)
        reader.feed_data(stream[position:])
        reader.feed_eof()

    arriving = asyncio.create_task(arrive())
    try:
        result = await reader_function(reader, max_size=max_size)
    except ConnectionResetError:
        result = "closed"
    await arriving
    return result, await reader.read()


@settings(max_examples=1500, deadline=None)
@given(parts=st.lists(st.sampled_from(PIECES), max_size=40),
       pieces=st.lists(st.integers(1, 40), max_size=10),
       limit=st.sampled_from([3, 7, 16, 64, 2**16]), max_size=st.sampled_from([20, 200, 10**6]))
def test_read_data_agrees_with_reading_line_by_line(parts, pieces, limit, max_size):
    """Same message, same refusal, same bytes left unread, for any mix of line ends, dots and
    stuffing, however the bytes arrive and however small the reader's limit."""
    stream = b"".join(parts)
    expected = asyncio.run(outcome(line_by_line, stream, pieces, limit, max_size))
    assert asyncio.run(outcome(read_data, stream, pieces, limit, max_size)) == expected


def test_read_data_agrees_on_random_long_streams():
    generator = random.Random(2026)
    for _ in range(200):
        stream = b"".join(generator.choice(PIECES) for _ in range(generator.randint(0, 400)))
        pieces = [generator.randint(1, 300) for _ in range(generator.randint(0, 20))]
        limit = generator.choice([5, 100, 2**16])
        expected = asyncio.run(outcome(line_by_line, stream, pieces, limit, 3000))
        assert asyncio.run(outcome(read_data, stream, pieces, limit, 3000)) == expected


def test_has_bare_line_ending():
    assert not has_bare_line_ending(b"a\r\nb\r\n")
    assert has_bare_line_ending(b"a\nb")
    assert has_bare_line_ending(b"a\rb")
    assert has_bare_line_ending(b"\n\r")


# --- over the wire -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"])
def test_smuggling_attempt_is_refused_whole(alias, fake_end):
    target = alias.address.encode()
    with RunningServer() as server, RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.command("EHLO client.test")
        raw.send(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<" + target + b">\r\nDATA\r\n")
        assert [r[:3] for r in raw.replies(3)] == ["250", "250", "354"]
        # What a vulnerable server would take for a second, forged transaction:
        raw.send(b"From: a@sender.test\r\n\r\nfirst" + fake_end
                 + b"MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<" + target + b">\r\nDATA\r\n"
                 + b"From: ceo@bank.test\r\n\r\nforged\r\n.\r\n")
        assert raw.reply() == replies.BARE_LINEFEED.line
        assert raw.command("NOOP") == "250 2.0.0 OK"  # one reply only: nothing else ran
    assert not QueuedMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_data_split_in_small_packets(alias):
    with RunningServer() as server, RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.command("EHLO client.test")
        raw.command("MAIL FROM:<a@sender.test>")
        raw.command(f"RCPT TO:<{alias.address}>")
        assert raw.command("DATA").startswith("354 ")
        for piece in (b"From: a@sender.test\r", b"\n\r\nbody\r", b"\n.", b"\r", b"\n"):
            raw.send(piece)
        assert raw.reply().startswith("250 2.0.0 Ok: queued as ")
    assert QueuedMessage.objects.count() == 1
