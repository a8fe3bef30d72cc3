"""VERP bounce addresses: signed, case-insensitive, refused when forged or damaged."""

from __future__ import annotations

import re

import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.queue import new_queue_id
from mailcloak.mail.verp import (
    BounceAddress,
    is_bounce_local_part,
    make_bounce_address,
    parse_bounce_address,
)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_SECRET_KEY", "verp-test-secret-" + "k" * 32)
    mailcloak_settings.reset()


def test_round_trip() -> None:
    queue_id = new_queue_id()
    address = make_bounce_address("Alias.Test.", alias_id=42, queue_id=queue_id)
    assert re.fullmatch(r"bounce\+[0-9a-f]{16}\.42\.[a-z2-7]{16}@alias\.test", address)
    assert parse_bounce_address(address) == BounceAddress(alias_id=42, queue_id=queue_id,
                                                          domain="alias.test")


def test_mail_without_alias() -> None:
    address = make_bounce_address("alias.test", alias_id=None, queue_id="ABC123")
    assert ".0." in address
    assert parse_bounce_address(address) == BounceAddress(None, "ABC123", "alias.test")


def test_parse_ignores_case_and_angle_brackets() -> None:
    address = make_bounce_address("alias.test", alias_id=7, queue_id="ABC123")
    assert parse_bounce_address(f" <{address.upper()}> ") == BounceAddress(7, "ABC123",
                                                                         "alias.test")


def _tampered(address: str) -> list[str]:
    local, domain = address.split("@")
    match = re.fullmatch(r"(bounce\+)(\w+)\.(\d+)\.(\w+)", local)
    assert match is not None
    prefix, queue, alias, tag = match.groups()
    flipped = ("b" if tag[0] == "a" else "a") + tag[1:]
    return [
        f"{prefix}{queue}.{alias}.{flipped}@{domain}",  # damaged tag
        f"{prefix}{queue}.{int(alias) + 1}.{tag}@{domain}",  # someone else's alias
        f"{prefix}{queue}0.{alias}.{tag}@{domain}",  # another message
        f"{prefix}{queue}.{alias}.{tag}@second.test",  # another domain
        f"{prefix}{queue}.0{alias}.{tag}@{domain}",  # not the canonical number
        f"{prefix}{queue}.{alias}.{tag[:-1]}@{domain}",  # truncated tag
        f"{prefix}{queue}.{alias}.{tag}",  # no domain
    ]


def test_forged_or_damaged_addresses_are_refused() -> None:
    address = make_bounce_address("alias.test", alias_id=42, queue_id="ABC123")
    for forged in _tampered(address):
        assert parse_bounce_address(forged) is None, forged


def test_another_secret_key_makes_other_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    address = make_bounce_address("alias.test", alias_id=42, queue_id="ABC123")
    monkeypatch.setenv("MAILCLOAK_SECRET_KEY", "another-secret-" + "z" * 32)
    mailcloak_settings.reset()
    assert parse_bounce_address(address) is None
    assert make_bounce_address("alias.test", alias_id=42, queue_id="ABC123") != address


@pytest.mark.parametrize("address", [
    "", "@", "bounce@alias.test", "bounce+@alias.test", "someone@alias.test",
    "bounce+abc.1@alias.test", "bounce+abc.x.aaaaaaaaaaaaaaaa@alias.test",
    "bounce+ab-c.1.aaaaaaaaaaaaaaaa@alias.test", "bounce+abc.1.aaaaaaaaaaaaaaa1@alias.test",
])
def test_other_shapes_are_not_bounce_addresses(address: str) -> None:
    assert parse_bounce_address(address) is None


def test_local_part_shape_check_for_rcpt_time() -> None:
    local = make_bounce_address("alias.test", alias_id=3, queue_id="ABC").split("@")[0]
    assert is_bounce_local_part(local)
    assert is_bounce_local_part(local.upper())
    assert not is_bounce_local_part("bounce")
    assert not is_bounce_local_part("k3v9x2q7m1p0a8zt")
    assert not is_bounce_local_part("bounce+abc")


@pytest.mark.parametrize(("queue_id", "alias_id"), [
    ("", 1), ("ab.cd", 1), ("x" * 33, 1), ("ABC", 0), ("ABC", -5),
])
def test_make_refuses_what_could_not_be_parsed_back(queue_id: str, alias_id: int) -> None:
    with pytest.raises(ValueError):
        make_bounce_address("alias.test", alias_id=alias_id, queue_id=queue_id)
