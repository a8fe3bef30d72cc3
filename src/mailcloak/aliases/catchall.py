"""Catch-all on a user's verified domain: mail to an unknown address creates its alias.

The alias belongs to the domain's owner and forwards to their first verified mailbox, like any
other; from then on it is an ordinary alias they can disable or delete. Creation is limited
per domain (MAILCLOAK_CATCH_ALL_CREATIONS_PER_DOMAIN, counted in the database across nodes) so
a dictionary attack cannot fill the owner's account: over it the sender is told to try again
later. A deleted address stays deleted: catch-all never brings it back.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.domains import LOCAL_PART
from mailcloak.aliases.models import Alias, DeletedAlias, Domain
from mailcloak.aliases.services import default_mailbox
from mailcloak.mail import replies
from mailcloak.mail.ratelimit import Charge, RateLimited, charge
from mailcloak.mail.replies import Reply

log = logging.getLogger(__name__)

CREATED_TITLE = "Created by catch-all"


def alias_on_first_mail(domain: Domain, local_part: str) -> Alias | Reply:
    """The alias LOCAL_PART@DOMAIN, created now; or the reply refusing the recipient."""
    address = f"{local_part}@{domain.name}"
    if not LOCAL_PART.match(local_part) or domain.owner is None:
        return replies.UNKNOWN_RECIPIENT
    if DeletedAlias.objects.filter(address=address).exists():
        return replies.UNKNOWN_RECIPIENT
    mailbox = default_mailbox(domain.owner)
    if mailbox is None:
        return replies.UNKNOWN_RECIPIENT
    rates = mailcloak_settings.get().catch_all_creations_per_domain
    try:
        charge([Charge("catch-all-creations", str(domain.pk), 1, rates)])
    except RateLimited:
        log.info("catch-all limit reached for domain %s", domain.pk)
        return replies.CATCH_ALL_LIMIT
    try:
        with transaction.atomic():
            alias = Alias.objects.create(address=address, domain=domain, user=domain.owner,
                                         mailbox=mailbox, title=CREATED_TITLE)
    except IntegrityError:  # another session created it a moment ago
        existing = Alias.objects.filter(address=address).first()
        return existing or replies.UNKNOWN_RECIPIENT
    log.info("catch-all created alias %s on domain %s", alias.pk, domain.pk)
    return alias
