"""Bringing the database up to date: migrations, the cache table, the configured domains."""

from __future__ import annotations

from django.core.management import call_command


def migrate_database(*, verbose: bool = False) -> None:
    from mailcloak.aliases.services import sync_configured_domains

    call_command("migrate", interactive=False, verbosity=1 if verbose else 0)
    call_command("createcachetable", verbosity=0)
    sync_configured_domains()
