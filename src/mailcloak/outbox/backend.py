"""Django email backend for system mail (verification, password reset, notices).

Everything Mailcloak sends leaves through its own outbound queue, like forwarded mail; in local
mode, mail with no route ends in the local outbox page instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import parseaddr

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.queue import enqueue


class OutboundEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        for message in email_messages:
            recipients = message.recipients()
            if not recipients:
                continue
            enqueue(kind=QueuedMessage.Kind.SYSTEM, mail_from=parseaddr(message.from_email)[1],
                    recipients=recipients, content=message.message().as_bytes(linesep="\r\n"))
            sent += 1
        return sent
