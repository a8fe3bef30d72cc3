"""VERP bounce addresses: the envelope sender of mail we send, so its bounces find their way back.

`bounce+<queue id>.<alias id>.<tag>@<alias domain>`: the tag is a truncated HMAC-SHA256 of the
rest, keyed with a sub-key of MAILCLOAK_SECRET_KEY, so only addresses we made are accepted and
nobody can file bounces against an alias by guessing. Everything is lower case (mail systems
fold the case of addresses); the tag is base32. Alias id 0 marks mail sent for no alias.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from mailcloak import settings as mailcloak_settings

PREFIX = "bounce+"
TAG_BYTES = 10  # 80 bits, 16 base32 characters
_KEY_PURPOSE = b"mailcloak/verp/v1"
_QUEUE_ID = re.compile(r"[a-z0-9]{1,32}")
_LOCAL_PART = re.compile(
    r"bounce\+(?P<queue>[a-z0-9]{1,32})\.(?P<alias>0|[1-9][0-9]{0,18})\.(?P<tag>[a-z2-7]{16})"
)


@dataclass(frozen=True)
class BounceAddress:
    alias_id: int | None
    queue_id: str  # upper case, as mail.queue makes queue ids
    domain: str


def make_bounce_address(domain: str, *, alias_id: int | None, queue_id: str) -> str:
    queue = queue_id.lower()
    if not _QUEUE_ID.fullmatch(queue):
        raise ValueError(f"queue id {queue_id!r} is not 1-32 letters and digits")
    if alias_id is not None and alias_id <= 0:
        raise ValueError(f"alias id {alias_id} is not a database id")
    domain = domain.strip().lower().rstrip(".")
    alias_part = str(alias_id or 0)
    return f"{PREFIX}{queue}.{alias_part}.{_tag(queue, alias_part, domain)}@{domain}"


def parse_bounce_address(address: str) -> BounceAddress | None:
    """The parts of a bounce address we made; None for anything else (unknown shape, forged
    or damaged tag)."""
    local, _, domain = address.strip().removeprefix("<").removesuffix(">").lower().rpartition("@")
    match = _LOCAL_PART.fullmatch(local)
    domain = domain.rstrip(".")
    if match is None or not domain:
        return None
    queue, alias_part = match.group("queue"), match.group("alias")
    if not hmac.compare_digest(match.group("tag"), _tag(queue, alias_part, domain)):
        return None
    return BounceAddress(alias_id=int(alias_part) or None, queue_id=queue.upper(), domain=domain)


def is_bounce_local_part(local: str) -> bool:
    """Cheap shape check for RCPT time; the tag is verified by parse_bounce_address."""
    return _LOCAL_PART.fullmatch(local.lower()) is not None


def _tag(queue: str, alias_part: str, domain: str) -> str:
    message = f"{queue}.{alias_part}@{domain}".encode()
    digest = hmac.new(_subkey(), message, hashlib.sha256).digest()[:TAG_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def _subkey() -> bytes:
    """A key for this purpose only: a VERP tag never doubles as any other signature."""
    secret = mailcloak_settings.get().secret_key.encode()
    return hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest()
