"""DATA framing: only <CRLF>.<CRLF> ends a message, and bare CR or LF is refused (no smuggling)."""

import asyncio

import pytest

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
