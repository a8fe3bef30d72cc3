"""The log of forwarded mail: what reached the owner in the retention period, so that spam the
filter let through can still be reported, and the filter taught, after the content is gone.

Each forwarded copy leaves one row of metadata (sender, subject, score) and, when the engine
is the builtin one, the message's digest and hashed word features sealed with the quarantine
key. The content itself is deleted from the queue once delivered, as always.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.mail.rows import insert
from mailcloak.mail.spam.verdict import Verdict
from mailcloak.quarantine.activity import record
from mailcloak.quarantine.crypto import keyring
from mailcloak.quarantine.learning import teach_features
from mailcloak.quarantine.models import Activity, ForwardedMail
from mailcloak.quarantine.store import ADDRESS_LIMIT, retention_end, summarise

_DIGEST_SIZE = 32  # SHA-256


@dataclass(frozen=True)
class Report:
    mail: ForwardedMail
    first: bool  # False: the owner had already reported it
    learned: bool  # False: reported before, or the engine cannot learn without the content


def record_forward(*, raw: bytes, alias: Alias, queue_id: str, mail_from: str,
                   verdict: Verdict | None) -> ForwardedMail:
    """Remember that `raw` was forwarded to `alias`'s owner (the caller's transaction)."""
    summary = summarise(raw)
    features = b""
    key_id = ""
    if verdict is not None and verdict.features:
        ring = keyring()
        features, key_id = ring.seal(_pack(raw, verdict.features)), ring.current_id
    now = timezone.now()
    mail = ForwardedMail(
        user_id=alias.user_id, alias=alias, queue_id=queue_id,
        mail_from=mail_from.strip().strip("<>").lower()[:ADDRESS_LIMIT],
        header_from=summary.header_from, sender_address=summary.sender_address,
        subject=summary.subject, score=verdict.score if verdict else 0.0,
        key_id=key_id, features=features, created_at=now, expires_at=retention_end(now))
    insert([mail])
    return mail


def report_spam(user: User, mail: ForwardedMail, *,
                via: Activity.Via = Activity.Via.WEB) -> Report:
    """The owner says `mail` was spam: the filter learns it (once) and the report is logged."""
    with transaction.atomic():
        locked = ForwardedMail.objects.select_for_update().get(pk=mail.pk, user=user)
        if locked.reported_spam_at is not None:
            return Report(locked, first=False, learned=False)
        locked.reported_spam_at = timezone.now()
        locked.save(update_fields=["reported_spam_at"])
        record(user, Activity.Action.SPAM, via=via, alias_address=locked.alias.address,
               target=locked.sender_address or locked.mail_from)
    learned = False
    if locked.key_id:
        digest, features = _unpack(keyring().open(bytes(locked.features)))
        learned = teach_features(features, digest=digest, is_spam=True)
    return Report(locked, first=True, learned=learned)


def _pack(raw: bytes, features: tuple[int, ...]) -> bytes:
    return hashlib.sha256(raw).digest() + struct.pack(f"<{len(features)}I", *features)


def _unpack(data: bytes) -> tuple[str, list[int]]:
    digest, packed = data[:_DIGEST_SIZE], data[_DIGEST_SIZE:]
    return digest.hex(), list(struct.unpack(f"<{len(packed) // 4}I", packed))
