"""Schema-driven tests: schemathesis generates requests for every operation in the OpenAPI
schema and checks that the API never fails with a 5xx and always answers as documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import ApiToken, User
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
EXAMPLES = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


# Loaded at collection: serving the schema needs no database. (`schemathesis.pytest.from_fixture`
# would load it per test, but it does not work with pytest 9 yet.)
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


@pytest.fixture(autouse=True)
def _no_alias_creation_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fuzzer creates far more aliases than anyone would in an hour.
    monkeypatch.setenv("MAILCLOAK_ALIAS_CREATIONS_PER_USER", "")
    mailcloak_settings.reset()


@pytest.fixture(autouse=True)
def _keep_test_transaction(db: None) -> Iterator[None]:
    # A real WSGI request closes the database connection when it ends, which would end the
    # test's transaction; Django's own test client keeps it open the same way.
    cache.clear()
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def auth_header(user: User) -> dict[str, str]:
    create_alias(user, title="existing")
    _, token = ApiToken.issue(user, "schemathesis")
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@EXAMPLES
def test_every_operation_conforms(case: Any, auth_header: dict[str, str]) -> None:
    cache.clear()  # so that token requests reach the password check, not the rate limit
    call(case, auth_header)


@schema.include(path_regex=r"\{alias_id\}").parametrize()
@EXAMPLES
def test_operations_on_an_existing_alias_conform(case: Any, auth_header: dict[str, str],
                                                 user: User) -> None:
    # Generated ids almost never exist; point these at a real alias so that the update and
    # delete paths run with generated bodies too.
    alias = Alias.objects.filter(user=user).first() or create_alias(user)
    case.path_parameters = {**(case.path_parameters or {}), "alias_id": alias.pk}
    call(case, auth_header)


def call(case: Any, headers: dict[str, str]) -> None:
    case.call_and_validate(headers=headers, checks=CHECKS,
                           environ_base={"REMOTE_ADDR": "192.0.2.10"})
