"""A seeded generator of malformed MIME messages, for fuzzing the message path.

    for case in cases(seed=8, count=300):
        case.name, case.content        # "deep_nesting#17", b"From: ...\\r\\n..."

Each case is built by one named kind (broken boundaries, bad transfer encodings, unknown
charsets, deep nesting, header injection, gigantic headers, many parts, nested message/rfc822,
NUL and 8-bit bytes, broken DKIM signatures and ARC sets, random byte mutations of a sound
message) from its own random generator
seeded by (seed, index): case 5123 of seed 8 is the same bytes on every machine, so a failure
is reproduced from its name alone. Line ends are CRLF, as after SMTP's DATA (a bare CR or LF
is refused before any parsing), and no case is larger than a few megabytes.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

CRLF = b"\r\n"


@dataclass(frozen=True)
class FuzzCase:
    name: str  # kind#index: which builder made it, and from which seed
    content: bytes


def cases(seed: int, count: int, *, start: int = 0) -> Iterator[FuzzCase]:
    """`count` cases, cycling through every kind so that any sample covers them all."""
    names = sorted(KINDS)
    for index in range(start, start + count):
        kind = names[index % len(names)]
        rng = random.Random(f"{seed}:{index}")
        yield FuzzCase(f"{kind}#{index}", crlf(KINDS[kind](rng)))


def crlf(data: bytes) -> bytes:
    """Every line end made CRLF, as the SMTP server's framing guarantees."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", CRLF)


# --- pieces ----------------------------------------------------------------------------------

SENDERS = [b"Friend <friend@sender.test>", b"friend@sender.test",
           b"=?utf-8?q?Fr=C3=A9d?= <f@s.test>", b'"Quoted, Name" <q@sender.test>',
           b"undisclosed-recipients:;", b"<>", b"no address", b"a@b@c",
           b"Group: a@x.test, b@y.test;", b"\"unterminated <x@y.test>"]
CHARSETS = [b"utf-8", b"us-ascii", b"iso-8859-1", b"x-unknown-8", b"utf-7", b"base64", b"idna",
            b"\"utf-8", b"utf-16", b"", b"cp1252;", b"koi8-r", b"utf-8\x00evil", b"gb2312"]
ENCODINGS = [b"7bit", b"8bit", b"binary", b"base64", b"quoted-printable", b"x-uuencode",
             b"BASE64", b"quoted-printable; junk", b"", b"gzip", b"base64 quoted-printable"]
TEXT_TYPES = [b"text/plain", b"text/html", b"text/enriched", b"application/octet-stream",
              b"image/png", b"text/calendar", b"message/delivery-status", b"text"]
WORDS = ["offer", "meeting", "invoice", "hello", "free", "money", "urgent", "garden", "report",
         "http://example.test/x?y=1", "caf\u00e9", "\u65e5\u672c", "\u0416\u0438\u0437\u043d\u044c"]


def _text(rng: random.Random, words: int = 30) -> bytes:
    return " ".join(rng.choice(WORDS) for _ in range(words)).encode("utf-8")


def _junk(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def _headers(rng: random.Random, *extra: bytes) -> bytes:
    fields = [b"From: " + rng.choice(SENDERS), b"To: someone@alias.test",
              b"Subject: " + _text(rng, rng.randint(0, 8)),
              b"Message-ID: <" + str(rng.getrandbits(40)).encode() + b"@sender.test>",
              b"Date: Fri, 4 Dec 2026 10:00:00 +0000", *extra]
    if rng.random() < 0.2:
        rng.shuffle(fields)
    return CRLF.join(fields) + CRLF


def _leaf(rng: random.Random) -> bytes:
    """One body part with a random (and often wrong) type, charset and transfer encoding."""
    ctype, charset = rng.choice(TEXT_TYPES), rng.choice(CHARSETS)
    encoding = rng.choice(ENCODINGS)
    body = _text(rng, rng.randint(0, 60))
    if encoding.lower().startswith(b"base64") and rng.random() < 0.7:
        body = base64.encodebytes(body)
        if rng.random() < 0.4:  # broken padding, stray characters, truncated
            body = body[: rng.randint(0, len(body))] + rng.choice([b"!!", b"=", b"====", b"\x00"])
    elif encoding.startswith(b"quoted") and rng.random() < 0.6:
        body = body + rng.choice([b"=ZZ", b"=", b"=0", b"=\r\n=\r\n", b"=C3", b"=00"])
    return (b"Content-Type: " + ctype + b"; charset=" + charset + CRLF
            + b"Content-Transfer-Encoding: " + encoding + CRLF + CRLF + body + CRLF)


def _multipart(parts: list[bytes], boundary: bytes, subtype: bytes = b"mixed", *,
               close: bool = True) -> bytes:
    head = b'Content-Type: multipart/' + subtype + b'; boundary="' + boundary + b'"' + CRLF
    body = b"".join(b"--" + boundary + CRLF + part for part in parts)
    return head + CRLF + b"preamble" + CRLF + body + (b"--" + boundary + b"--" + CRLF if close
                                                       else b"")


# --- kinds -----------------------------------------------------------------------------------


def broken_boundaries(rng: random.Random) -> bytes:
    parts = [_leaf(rng) for _ in range(rng.randint(1, 6))]
    choice = rng.randrange(6)
    if choice == 0:  # declared one boundary, used another
        body = _multipart(parts, b"used").replace(b'boundary="used"', b'boundary="declared"')
    elif choice == 1:  # no boundary parameter at all
        body = _multipart(parts, b"b1").replace(b'; boundary="b1"', b"")
    elif choice == 2:  # never closed
        body = _multipart(parts, b"b2", close=False)
    elif choice == 3:  # two boundary parameters, and an empty one
        body = _multipart(parts, b"b3").replace(b'boundary="b3"', b'boundary=""; boundary="b3"')
    elif choice == 4:  # a boundary that is a prefix of a line in the body, and 200 characters
        long = b"x" * 200
        body = _multipart([*parts, b"--" + long + b"y" + CRLF], long)
    else:  # the closing delimiter first, then parts
        body = _multipart(parts, b"b5").replace(b"preamble", b"--b5--")
    return _headers(rng, b"MIME-Version: 1.0") + body


def bad_encodings(rng: random.Random) -> bytes:
    parts = [_leaf(rng) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.5:
        return _headers(rng, b"MIME-Version: 1.0") + _multipart(parts, b"enc")
    return _headers(rng, b"MIME-Version: 1.0") + parts[0]


def invalid_charsets(rng: random.Random) -> bytes:
    charset = rng.choice(CHARSETS).decode("ascii", "replace")
    texts = ["SGVsbG8", "=FF=FE", "a_b", "!!!", ""]
    words = [f"=?{charset}?{rng.choice('bqBQx')}?{rng.choice(texts)}?="
             for _ in range(rng.randint(1, 6))]
    subject = " ".join(words).encode("utf-8", "surrogateescape")
    name = (b"From: " + words[0].encode() + b" <friend@sender.test>")
    return (CRLF.join([name, b"Subject: " + subject, b"To: " + subject + b" <x@alias.test>",
                       b"MIME-Version: 1.0"]) + CRLF + _leaf(rng))


def deep_nesting(rng: random.Random) -> bytes:
    depth = rng.choice([50, 150, 300, 600])
    inner = _leaf(rng)
    for level in range(depth):
        inner = _multipart([inner], f"n{level}".encode(), rng.choice([b"mixed", b"alternative"]),
                           close=rng.random() < 0.9)
    return _headers(rng, b"MIME-Version: 1.0") + inner


def nested_messages(rng: random.Random) -> bytes:
    """message/rfc822 inside message/rfc822, plainly or base64-encoded at each level."""
    inner = _headers(rng) + CRLF + _text(rng) + CRLF
    for _ in range(rng.choice([10, 60, 200])):
        if rng.random() < 0.3:
            body = base64.encodebytes(inner)
            head = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
        else:
            body = inner
            head = b"Content-Type: message/rfc822\r\n"
        inner = _headers(rng, b"MIME-Version: 1.0") + head + CRLF + body
        if len(inner) > 3_000_000:
            break
    return inner


def header_injection(rng: random.Random) -> bytes:
    attacks = [
        b"=?utf-8?q?Boss=0D=0ABcc:_victim@elsewhere.test?=",
        b"=?utf-8?b?" + base64.b64encode(b"Boss\r\nBcc: victim@elsewhere.test\r\n\r\nbody") + b"?=",
        b"=?utf-8?q?a=0Ab?= =?utf-8?q?=0D=0AReply-To:_x@evil.test?=",
        b"Name\rBcc: victim@elsewhere.test",
        b"=?utf-8?q?x=00y=0D?=",
        b"\"=?utf-8?q?evil=22_<evil@evil.test>,?=\"",
        b"=?utf-8?q?=3Cowner@mailbox.test=3E?=",
    ]
    attack = rng.choice(attacks)
    fields = [b"From: " + attack + b" <friend@sender.test>", b"Subject: " + rng.choice(attacks),
              b"Reply-To: " + attack + b" <r@sender.test>", b"To: " + attack + b" <t@alias.test>",
              b"Cc: " + attack + b" <c@sender.test>"]
    return CRLF.join(fields) + CRLF + CRLF + _text(rng) + CRLF


def gigantic_headers(rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:  # one unfolded line of 100 KB to 1 MB
        return (_headers(rng, b"X-Long: " + b"a" * rng.choice([100_000, 1_000_000]))
                + CRLF + b"body" + CRLF)
    if choice == 1:  # thousands of fields
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(rng.choice([2000, 10_000])))
        return _headers(rng) + fields + CRLF + b"body" + CRLF
    if choice == 2:  # a To with thousands of addresses, folded
        many = b",\r\n ".join(b"u%d@d%d.test" % (i, i) for i in range(rng.choice([1000, 5000])))
        return _headers(rng, b"Cc: " + many) + CRLF + b"body" + CRLF
    # thousands of continuation lines of one field
    return _headers(rng, b"Subject: s" + b"\r\n x" * 20_000) + CRLF + b"body" + CRLF


def many_parts(rng: random.Random) -> bytes:
    count = rng.choice([200, 1000, 3000])
    parts = [_leaf(rng) if rng.random() < 0.1 else b"Content-Type: text/plain\r\n\r\nx\r\n"
             for _ in range(count)]
    return _headers(rng, b"MIME-Version: 1.0") + _multipart(parts, b"many")


def nul_bytes(rng: random.Random) -> bytes:
    message = _headers(rng, b"MIME-Version: 1.0") + _multipart([_leaf(rng), _leaf(rng)], b"nul")
    positions = sorted(rng.randrange(len(message)) for _ in range(rng.randint(1, 20)))
    for position in reversed(positions):
        message = message[:position] + b"\x00" + message[position:]
    return message


def eight_bit_headers(rng: random.Random) -> bytes:
    raw = [_junk(rng, rng.randint(1, 40)).replace(b"\r", b"").replace(b"\n", b"")
           for _ in range(4)]
    fields = [b"From: " + raw[0] + b" <friend@sender.test>", b"Subject: " + raw[1],
              b"To: " + raw[2] + b" <x@alias.test>", raw[3].replace(b":", b"") + b": value",
              b"Content-Type: text/plain; charset=" + raw[0][:10]]
    return CRLF.join(fields) + CRLF + CRLF + _junk(rng, 200) + CRLF


def odd_structure(rng: random.Random) -> bytes:
    """No header, no body, no From, several Froms, a header never ended, only whitespace."""
    choices = [b"", b"\r\n", b"\r\n\r\n\r\n", b"body only, no header at all\r\n",
               b"From: a@sender.test", b"From: a@sender.test\r\nFrom: b@sender.test\r\n\r\nx",
               b" continuation first\r\nFrom: a@sender.test\r\n\r\nx",
               b"From friend@sender.test Fri Dec  4 10:00:00 2026\r\nSubject: mbox\r\n\r\nx",
               b"Subject: no from\r\n\r\nbody", b":\r\n\r\n", b"From:\r\n\r\n",
               b"From: <>\r\n\r\nx", b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n"]
    return rng.choice(choices)


def broken_signatures(rng: random.Random) -> bytes:
    """DKIM signatures and ARC sets that are incomplete, repeated or out of shape."""
    instance = rng.choice([b"1", b"0", b"2", b"50", b"-1", b"x", b""])
    tags = [b"a=rsa-sha256", b"d=sender.test", b"s=sel", b"h=from:subject", b"bh=AAAA",
            b"b=" + base64.b64encode(_junk(rng, rng.randint(0, 40))), b"c=relaxed/relaxed",
            b"i=" + instance, b"cv=" + rng.choice([b"none", b"pass", b"fail", b"x"]),
            b"t=" + rng.choice([b"1700000000", b"-5", b"99999999999999999999"]), b"=", b";;"]
    fields = []
    for name in rng.sample([b"DKIM-Signature", b"ARC-Seal", b"ARC-Message-Signature",
                            b"ARC-Authentication-Results", b"ARC-Seal"], rng.randint(1, 5)):
        chosen = rng.sample(tags, rng.randint(0, len(tags)))
        fields.append(name + rng.choice([b":", b": ", b" : "]) + b"; ".join(chosen))
    return CRLF.join(fields) + CRLF + _headers(rng) + CRLF + _text(rng) + CRLF


def mutated(rng: random.Random) -> bytes:
    """A sound multipart message with random bytes flipped, inserted and cut out."""
    message = bytearray(_headers(rng, b"MIME-Version: 1.0")
                        + _multipart([_leaf(rng) for _ in range(3)], b"sound"))
    for _ in range(rng.randint(1, 30)):
        position = rng.randrange(len(message))
        action = rng.randrange(3)
        if action == 0:
            message[position] = rng.getrandbits(8)
        elif action == 1:
            message[position:position] = _junk(rng, rng.randint(1, 8))
        else:
            del message[position : position + rng.randint(1, 16)]
    return bytes(message)


KINDS: dict[str, Callable[[random.Random], bytes]] = {
    builder.__name__: builder
    for builder in (broken_boundaries, bad_encodings, invalid_charsets, deep_nesting,
                    nested_messages, header_injection, gigantic_headers, many_parts, nul_bytes,
                    eight_bit_headers, odd_structure, broken_signatures, mutated)
}
