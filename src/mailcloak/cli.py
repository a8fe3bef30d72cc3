"""The `mailcloak` command: run the services and manage users and aliases.

Every command reports problems as one line on stderr and a non-zero exit status, never a
traceback: 2 for bad settings or arguments, 1 for a request that could not be carried out.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from django.db import DatabaseError

from mailcloak import doctor
from mailcloak import settings as mailcloak_settings
from mailcloak.mail import dns_cli
from mailcloak.mail.spam import cli as spam_cli

if TYPE_CHECKING:
    from mailcloak.accounts.models import User

Handler = Callable[[argparse.Namespace], int]
SECRET_SETTINGS = {"SECRET_KEY", "RELAYHOST_PASSWORD", "QUARANTINE_KEY", "QUARANTINE_OLD_KEYS",
                   "METRICS_TOKEN"}


class CommandError(Exception):
    """A command could not do what was asked; str() is the one-line reason."""


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailcloak.project.settings")
    import django

    django.setup()


# --- commands -------------------------------------------------------------------------------


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(mailcloak_settings.markdown_table())
        return 0
    config = mailcloak_settings.get()
    for setting in mailcloak_settings.SETTINGS:
        value = config.values[setting.name]
        if setting.name in SECRET_SETTINGS and value:
            value = "(set)"
        print(f"{setting.env}={value}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.project.database import migrate_database

    migrate_database(verbose=args.verbose)
    print("database is up to date")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.accounts.services import AccountError, create_user_with_mailbox

    try:
        user = create_user_with_mailbox(args.email, password=args.password, staff=args.admin)
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    print(f"created user {user.email} (mailbox verified)")
    return 0


def cmd_alias_add(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.aliases.services import AliasError, create_alias

    user = _find_user(args.email)
    try:
        alias = create_alias(user, domain=args.domain, prefix=args.prefix, title=args.title or "")
    except AliasError as exc:
        raise CommandError(str(exc)) from None
    print(alias.address)
    return 0


def cmd_alias_list(args: argparse.Namespace) -> int:
    setup_django()
    user = _find_user(args.email)
    for alias in user.aliases.order_by("created_at", "id"):
        state = "enabled" if alias.enabled else "disabled"
        print(f"{alias.address}\t{state}\t{alias.title}")
    return 0


def _find_user(email: str) -> User:
    from mailcloak.accounts.models import User, normalize_address

    user = User.objects.filter(email=normalize_address(email)).first()
    if user is None:
        raise CommandError(f"no user {email}")
    return user


def cmd_web(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.services import run_services

    return run_services(web=True, smtp=False, worker=False)


def cmd_run(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.services import run_services

    return run_services(web=True, smtp=True, worker=True, migrate=True)


def cmd_smtpd(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.mail.smtpd_processes import ListenError, serve

    try:
        return serve(mailcloak_settings.get())
    except ListenError as exc:
        raise CommandError(str(exc)) from None


def cmd_worker(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.mail.worker import serve

    return serve()


def cmd_dkim_init(args: argparse.Namespace) -> int:
    from mailcloak.mail.dkimkeys import DkimKeyError, init_command

    try:
        print(init_command())
    except DkimKeyError as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_quarantine_sweep(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.quarantine.sweep import sweep_expired

    print(f"deleted {sweep_expired()} expired quarantine entries")
    return 0


def cmd_quarantine_rekey(args: argparse.Namespace) -> int:
    setup_django()
    from mailcloak.quarantine.crypto import QuarantineKeyError
    from mailcloak.quarantine.store import reseal_with_current_key

    try:
        print(f"re-encrypted {reseal_with_current_key()} held messages with the current key")
    except QuarantineKeyError as exc:
        raise CommandError(str(exc)) from None
    return 0


_ip_address = dns_cli.ip_address_argument  # the --ip type of `mailcloak check` too


# --- argument parsing -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailcloak", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    add("run", cmd_run, "migrate, then run the web app, SMTP server and workers in one process")
    add("web", cmd_web, "run the web app only")
    add("smtpd", cmd_smtpd, "run the SMTP server only (MAILCLOAK_SMTP_PROCESSES processes)")
    migrate = add("migrate", cmd_migrate, "create or upgrade the database")
    migrate.add_argument("-v", "--verbose", action="store_true")
    settings_cmd = add("settings", cmd_settings, "show the effective settings")
    settings_cmd.add_argument("--markdown", action="store_true",
                              help="print the README's configuration table")

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", help="add a user whose mailbox EMAIL is already verified")
    user_add.add_argument("email")
    user_add.add_argument("--password", help="login password (no web login when omitted)")
    user_add.add_argument("--admin", action="store_true", help="give access to the admin")
    user_add.set_defaults(handler=cmd_user_add)

    alias = sub.add_parser("alias", help="manage aliases").add_subparsers(dest="action",
                                                                          required=True)
    alias_add = alias.add_parser("add", help="create an alias for user EMAIL; prints its address")
    alias_add.add_argument("email")
    alias_add.add_argument("--prefix", help="custom prefix (a random suffix is appended)")
    alias_add.add_argument("--domain", help="alias domain (default: the first configured)")
    alias_add.add_argument("--title", help="a note to remember what the alias is for")
    alias_add.set_defaults(handler=cmd_alias_add)
    alias_list = alias.add_parser("list", help="list user EMAIL's aliases")
    alias_list.add_argument("email")
    alias_list.set_defaults(handler=cmd_alias_list)

    add("worker", cmd_worker, "run the delivery workers only")
    dkim = sub.add_parser("dkim", help="manage DKIM keys").add_subparsers(dest="action",
                                                                         required=True)
    dkim.add_parser("init", help="create the DKIM signing keys (existing keys are kept)"
                    ).set_defaults(handler=cmd_dkim_init)
    quarantine = sub.add_parser("quarantine", help="manage held mail").add_subparsers(
        dest="action", required=True)
    quarantine.add_parser("sweep", help="delete held mail and logs past their retention now"
                          ).set_defaults(handler=cmd_quarantine_sweep)
    quarantine.add_parser("rekey", help="re-encrypt held mail with MAILCLOAK_QUARANTINE_KEY "
                          "(after a key rotation)").set_defaults(handler=cmd_quarantine_rekey)
    dns_cli.add_commands(sub)
    spam_cli.add_commands(sub)
    doctor.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except mailcloak_settings.ConfigError as exc:
        print(f"mailcloak: configuration error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"mailcloak: {exc}", file=sys.stderr)
        return 1
    except DatabaseError as exc:
        reason = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        print(f"mailcloak: database not ready: {reason} (check MAILCLOAK_DATABASE_URL, "
              "then run `mailcloak migrate`)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
