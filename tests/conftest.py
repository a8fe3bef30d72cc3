"""Shared fixtures: users with verified mailboxes, aliases, logged-in clients."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.accounts.services import create_user_with_mailbox
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fresh_config() -> None:
    """Each test sees settings loaded from the environment as it is now."""
    mailcloak_settings.reset()


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(email: str = "owner@mailbox.test", password: str = PASSWORD) -> User:
        return create_user_with_mailbox(email, password=password)

    return make


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def other_user(make_user: Callable[..., User]) -> User:
    return make_user("intruder@elsewhere.test")


@pytest.fixture
def alias(user: User) -> Alias:
    return create_alias(user, title="shopping")


@pytest.fixture
def logged_in(client: Client, user: User) -> Client:
    client.force_login(user)
    return client
