"""The `mailcloak` command: user and alias management, migrate, settings, and its errors
(one line on stderr, a non-zero exit status, never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailcloak import cli
from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, Domain
from mailcloak.aliases.services import create_alias

MAILCLOAK = Path(sys.executable).with_name("mailcloak")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err: str, fragment: str) -> None:
    assert err.startswith("mailcloak: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert fragment in err and "Traceback" not in err


# --- in-process ---------------------------------------------------------------------------------


def test_user_add(db: None, capsys: pytest.CaptureFixture[str]):
    status, out, err = run(capsys, "user", "add", "New@Mailbox.TEST", "--password", "a long pass")
    assert (status, out, err) == (0, "created user new@mailbox.test (mailbox verified)\n", "")
    user = User.objects.get(email="new@mailbox.test")
    assert user.check_password("a long pass") and not user.is_staff
    assert user.mailboxes.get().is_verified


def test_user_add_without_password_cannot_log_in(db: None, capsys: pytest.CaptureFixture[str]):
    assert run(capsys, "user", "add", "bot@mailbox.test")[0] == 0
    assert not User.objects.get(email="bot@mailbox.test").has_usable_password()


@pytest.mark.parametrize(("email", "fragment"), [
    ("owner@mailbox.test", "a user owner@mailbox.test already exists"),
    ("not-an-address", "'not-an-address' is not a valid email address"),
])
def test_user_add_refused(user: User, capsys: pytest.CaptureFixture[str], email: str,
                          fragment: str):
    status, out, err = run(capsys, "user", "add", email)
    assert (status, out) == (1, "")
    assert_one_line_error(err, fragment)
    assert User.objects.count() == 1


def test_alias_add_prints_the_address_last(user: User, capsys: pytest.CaptureFixture[str]):
    status, out, _ = run(capsys, "alias", "add", "owner@mailbox.test", "--prefix", "shop",
                         "--domain", "second.test")
    address = out.splitlines()[-1]
    assert status == 0 and address.startswith("shop.") and address.endswith("@second.test")
    assert Alias.objects.get(address=address).user == user


def test_alias_add_random_on_the_default_domain(user: User, capsys: pytest.CaptureFixture[str]):
    status, out, _ = run(capsys, "alias", "add", "OWNER@mailbox.test", "--title", "news")
    local, _, domain = out.splitlines()[-1].partition("@")
    assert (status, domain, len(local)) == (0, "alias.test", 16)
    assert Alias.objects.get(user=user).title == "news"


@pytest.mark.parametrize(("argv", "fragment"), [
    (["nobody@mailbox.test"], "no user nobody@mailbox.test"),
    (["owner@mailbox.test", "--domain", "elsewhere.test"],
     "elsewhere.test is not one of your alias domains"),
    (["owner@mailbox.test", "--prefix=-shop"], "a prefix is 1-40 characters"),
    (["owner@mailbox.test", "--prefix", "shop!"], "a prefix is 1-40 characters"),
    (["owner@mailbox.test", "--prefix", "x" * 41], "a prefix is 1-40 characters"),
])
def test_alias_add_refused(user: User, capsys: pytest.CaptureFixture[str], argv: list[str],
                           fragment: str):
    status, out, err = run(capsys, "alias", "add", *argv)
    assert (status, out) == (1, "")
    assert_one_line_error(err, fragment)
    assert not Alias.objects.exists()


def test_alias_list(user: User, capsys: pytest.CaptureFixture[str]):
    first = create_alias(user, title="shop")
    second = create_alias(user, prefix="bank")
    second.enabled = False
    second.save()
    status, out, _ = run(capsys, "alias", "list", "owner@mailbox.test")
    assert status == 0
    assert out.splitlines() == [f"{first.address}\tenabled\tshop",
                                f"{second.address}\tdisabled\t"]


def test_alias_list_of_unknown_user(db: None, capsys: pytest.CaptureFixture[str]):
    status, _, err = run(capsys, "alias", "list", "nobody@mailbox.test")
    assert status == 1
    assert_one_line_error(err, "no user nobody@mailbox.test")


def test_migrate_creates_the_configured_domains(db: None, capsys: pytest.CaptureFixture[str]):
    Domain.objects.all().delete()
    assert run(capsys, "migrate") == (0, "database is up to date\n", "")
    assert set(Domain.objects.values_list("name", flat=True)) == {"alias.test", "second.test"}


def test_settings_markdown_is_the_readme_table(capsys: pytest.CaptureFixture[str]):
    status, out, _ = run(capsys, "settings", "--markdown")
    assert status == 0 and out == mailcloak_settings.markdown_table() + "\n"


def test_settings_hide_secrets(capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAILCLOAK_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("MAILCLOAK_RELAYHOST_PASSWORD", "hunter2")
    status, out, _ = run(capsys, "settings")
    lines = out.splitlines()
    assert status == 0 and len(lines) == len(mailcloak_settings.SETTINGS)
    assert "MAILCLOAK_SECRET_KEY=(set)" in lines and "MAILCLOAK_RELAYHOST_PASSWORD=(set)" in lines
    assert "MAILCLOAK_DOMAINS=('alias.test', 'second.test')" in lines
    assert "hunter2" not in out and "s" * 40 not in out


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("MODE", "staging", "MAILCLOAK_MODE='staging': expected local or production"),
    ("SMTP_LISTNE", "x", "MAILCLOAK_SMTP_LISTNE: unknown setting"),
])
def test_bad_setting(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                     name: str, value: str, fragment: str):
    monkeypatch.setenv(f"MAILCLOAK_{name}", value)
    status, out, err = run(capsys, "settings")
    assert (status, out) == (2, "")
    assert_one_line_error(err, f"configuration error: {fragment}")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["alias", "add"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: email" in capsys.readouterr().err


# --- the installed console script, on a fresh SQLite database ---------------------------------


def mailcloak(data_dir: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console script as an operator would, with only the given settings."""
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith("MAILCLOAK_") and key != "DJANGO_SETTINGS_MODULE"}
    environ |= {"MAILCLOAK_DATA_DIR": str(data_dir)} | {f"MAILCLOAK_{k}": v
                                                        for k, v in env.items()}
    return subprocess.run([str(MAILCLOAK), *argv], env=environ, capture_output=True, text=True,
                          timeout=120, check=False)


def test_console_script_end_to_end(tmp_path: Path):
    not_ready = mailcloak(tmp_path, "alias", "add", "me@example.org")
    assert not_ready.returncode == 1
    assert_one_line_error(not_ready.stderr, "database not ready: no such table")
    assert "run `mailcloak migrate`" in not_ready.stderr

    migrated = mailcloak(tmp_path, "migrate")
    assert (migrated.returncode, migrated.stdout) == (0, "database is up to date\n")
    assert (tmp_path / "mailcloak.sqlite3").is_file()

    added = mailcloak(tmp_path, "user", "add", "me@example.org", "--password", "a long pass")
    assert added.returncode == 0, added.stderr

    alias = mailcloak(tmp_path, "alias", "add", "me@example.org", "--prefix", "shop")
    assert alias.returncode == 0, alias.stderr
    address = alias.stdout.splitlines()[-1]
    assert address.startswith("shop.") and address.endswith("@alias.localhost")

    listed = mailcloak(tmp_path, "alias", "list", "me@example.org")
    assert listed.stdout.splitlines() == [f"{address}\tenabled\t"]


def test_console_script_bad_setting(tmp_path: Path):
    for argv in (["settings"], ["alias", "list", "me@example.org"]):
        result = mailcloak(tmp_path, *argv, MODE="staging")
        assert (result.returncode, result.stdout) == (2, "")
        assert_one_line_error(result.stderr, "MAILCLOAK_MODE='staging': expected local or "
                                             "production")
