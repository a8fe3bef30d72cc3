"""Messages of many shapes for tests that compare our signers with dkimpy's: folded and
repeated fields, LF and mixed line ends, empty and odd bodies, 8-bit headers."""

from __future__ import annotations

from pathlib import Path

HEAD = (
    b"From: Someone <someone@alias.test>\r\n"
    b"To: Friend <friend@example.test>\r\n"
    b"Subject: Lunch on Friday?\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <abc123@alias.test>\r\n"
)
FOLDED_HEAD = (
    b"Received: from mx.example.test (mx.example.test [192.0.2.1])\r\n"
    b"\tby mail.alias.test with ESMTPS id 4Xyz\r\n"
    b"\tfor <k3v9x2q7m1p0a8zt@alias.test>; Fri, 04 Dec 2026 10:00:01 +0000\r\n"
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=alias.test; s=mcr1; t=1796385600;\r\n"
    b"        b=abcdefghijklmnopqrstuvwxyz0123456789\r\n"
    b"Authentication-Results: mail.alias.test; spf=pass smtp.mailfrom=example.test\r\n"
    b"From:   \"Someone,  Esq.\"\r\n <someone@alias.test>  \r\n"
    b"To: Friend <friend@example.test>,\r\n\t Other <other@example.test>\r\n"
    b"cc: first@example.test\r\n"
    b"CC:   second@example.test \t\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9?= and a subject folded\r\n"
    b"   over   three\r\n \t lines\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <abc123@alias.test>\r\n"
    b"In-Reply-To: <prev@example.test>\r\n"
    b"References: <a@example.test>\r\n <b@example.test>\r\n\t<c@example.test>\r\n"
    b"Reply-To: replies@alias.test\r\n"
    b"List-Id: The list <list.example.test>\r\n"
    b"List-Unsubscribe: <mailto:unsubscribe@alias.test>, <https://alias.test/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"X-Mailer: something\r\n"
)
WHITESPACE_BODY = (
    b"tabs\there\t\tand  there \t and trailing \r\n"
    b"   leading spaces\r\n"
    b"\t\r\n"
    b" \r\n"
    b"a lone\rCR and a lone\nLF\r\n"
    b"\r\n\r\n\r\n"
)
LONG_LINE_BODY = b"x" * 5000 + b"\r\n" + b"word " * 2000 + b"\r\n" + b"A" * 998 + b"\r\n"

MESSAGES = {
    "plain 8-bit": HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9 du coin.\r\n",
    "folded headers": FOLDED_HEAD + b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n",
    "lf line endings": (HEAD + b"\r\nShall we  meet?\r\n\r\n").replace(b"\r\n", b"\n"),
    "lf folded headers": (FOLDED_HEAD + b"\r\nbody\r\n").replace(b"\r\n", b"\n"),
    "empty body": HEAD + b"\r\n",
    "no body separator": HEAD,
    "only blank lines": HEAD + b"\r\n\r\n\r\n\r\n",
    "no final line break": HEAD + b"\r\nlast line without CRLF",
    "whitespace body": HEAD + b"\r\n" + WHITESPACE_BODY,
    "long lines": HEAD + b"Subject: " + b"very long subject " * 40 + b"\r\n\r\n"
                  + LONG_LINE_BODY,
    "8-bit header": HEAD.replace(b"Lunch on Friday?", b"D\xc3\xa9jeuner \xe2\x98\x95")
                    + b"\r\nok\r\n",
    "base64 body": HEAD + b"Content-Transfer-Encoding: base64\r\n\r\n"
                   + b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n" * 60,
    "mbox from line": b"From someone@alias.test Fri Dec  4 10:00:00 2026\r\n" + HEAD
                      + b"\r\nhi\r\n",
    "starts with a blank line": b"\r\nFrom: a@alias.test\r\n\r\nbody\r\n",
    "mixed line endings": HEAD + b"\r\nline one\nline two\r\n\n\r\n",
    "no signed header but from": b"From: a@alias.test\r\nX-Other: 1\r\n\r\nbody\r\n",
}
# The test messages: forwarded mail, replies, spam.
CORPUS = sorted((Path(__file__).parent.parent / "data").glob("**/*.eml"))
