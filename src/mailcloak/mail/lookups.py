"""The alias and contact lookups every message makes, written out in SQL once.

The ORM builds and compiles a query's SQL anew at every call: about 0.4 ms of CPU, several
times what the database spends answering these. The RCPT decision and the end of DATA run
them for every recipient of every message, so they are written here by hand, in SQL that
SQLite and PostgreSQL both speak, with the table names taken from the models.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from mailcloak.accounts.models import Mailbox, User, normalize_address
from mailcloak.aliases.models import Alias, BlockedSender, Contact, Domain
from mailcloak.aliases.services import domain_and_parents
from mailcloak.mail.sql import placeholders, table


@dataclass(frozen=True)
class RcptAlias:
    """What the RCPT decision needs to know of the alias a recipient names."""

    pk: int
    user_id: int
    enabled: bool
    disabled_action: str
    domain_takes_mail: bool  # active, and verified when it is a user's own domain
    sender_blocked: bool  # its owner blocks the envelope sender (or its domain)


def rcpt_alias(address: str, sender: str) -> RcptAlias | None:
    """The alias at `address`, and whether its owner blocks `sender` ("" for the null sender):
    one query (aliases.services.is_sender_blocked says what a block covers)."""
    sender = normalize_address(sender)
    parents = domain_and_parents(sender) if "@" in sender else []
    alias, domain, blocked = (table(Alias), table(Domain), table(BlockedSender))
    if parents:
        domains = placeholders(parents)
        # Only table names and placeholders are formatted into these strings (S608).
        blocked_sql = (
            f"EXISTS (SELECT 1 FROM {blocked} b WHERE b.user_id = a.user_id"  # noqa: S608
            " AND (b.alias_id = a.id OR b.alias_id IS NULL)"
            f" AND ((b.kind = %s AND b.value = %s) OR (b.kind = %s AND b.value IN ({domains}))))")
        params: list[str] = [BlockedSender.Kind.ADDRESS, sender, BlockedSender.Kind.DOMAIN,
                             *parents]
    else:
        blocked_sql, params = "0 = 1", []
    sql = (f"SELECT a.id, a.user_id, a.enabled, a.disabled_action, d.active,"  # noqa: S608
           f" d.owner_id IS NULL OR d.verified_at IS NOT NULL, {blocked_sql}"
           f" FROM {alias} a JOIN {domain} d ON d.id = a.domain_id WHERE a.address = %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, address])
        row = cursor.fetchone()
    if row is None:
        return None
    pk, user_id, enabled, disabled_action, active, verified, sender_blocked = row
    return RcptAlias(pk, user_id, bool(enabled), disabled_action,
                     domain_takes_mail=bool(active) and bool(verified),
                     sender_blocked=bool(sender_blocked))


def aliases_to_forward(ids: list[int]) -> dict[int, Alias]:
    """The aliases `ids` (those that still exist) with the fields forwarding reads: address,
    domain name, mailbox address and the owner's spam sensitivity. Any other field is loaded
    when first used, as with the ORM's `only()`."""
    if not ids:
        return {}
    alias, domain, mailbox, user = (table(Alias), table(Domain), table(Mailbox),
                                    table(User))
    sql = ("SELECT a.id, a.address, a.domain_id, a.user_id, a.mailbox_id, d.name, m.email,"  # noqa: S608
           f" u.spam_sensitivity FROM {alias} a JOIN {domain} d ON d.id = a.domain_id"
           f" JOIN {mailbox} m ON m.id = a.mailbox_id JOIN {user} u ON u.id = a.user_id"
           f" WHERE a.id IN ({placeholders(ids)})")
    using = connection.alias
    with connection.cursor() as cursor:
        cursor.execute(sql, ids)
        rows = cursor.fetchall()
    found = {}
    for pk, address, domain_id, user_id, mailbox_id, name, email, sensitivity in rows:
        one = Alias.from_db(using, ["id", "address", "domain_id", "user_id", "mailbox_id"],
                            [pk, address, domain_id, user_id, mailbox_id])
        one.domain = Domain.from_db(using, ["id", "name"], [domain_id, name])
        one.mailbox = Mailbox.from_db(using, ["id", "email"], [mailbox_id, email])
        one.user = User.from_db(using, ["id", "spam_sensitivity"], [user_id, sensitivity])
        found[pk] = one
    return found


def contact_of(alias_id: int, email: str) -> Contact | None:
    """The contact `email` (normalised) of the alias, with the fields forwarding reads."""
    sql = ("SELECT id, display_name, reverse_address"  # noqa: S608
           f" FROM {table(Contact)} WHERE alias_id = %s AND email = %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [alias_id, email])
        row = cursor.fetchone()
    if row is None:
        return None
    return Contact.from_db(connection.alias,
                           ["id", "alias_id", "email", "display_name", "reverse_address"],
                           [row[0], alias_id, email, row[1], row[2]])
