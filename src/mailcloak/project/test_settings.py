"""Settings for the test suite: the normal settings with a throwaway data directory.

Tests run in local mode against SQLite unless MAILCLOAK_DATABASE_URL points elsewhere
(`make test` runs the suite a second time against a real PostgreSQL).
"""

import os
import tempfile

os.environ.setdefault("MAILCLOAK_DATA_DIR", tempfile.mkdtemp(prefix="mailcloak-test-"))
os.environ.setdefault("MAILCLOAK_MODE", "local")
os.environ.setdefault("MAILCLOAK_DOMAINS", "alias.test,second.test")
# Tests never ask the machine's resolver: tests/conftest.py starts a DNS server on loopback.
os.environ.setdefault("MAILCLOAK_DNS_SERVERS", "127.0.0.1:9")

from mailcloak.project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
