import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.settings import ConfigError, load


def test_defaults(tmp_path):
    config = load({"MAILCLOAK_DATA_DIR": str(tmp_path)})
    assert config.mode == "local"
    assert config.domains == ("alias.localhost",)
    assert config.smtp_listen.port == 2525
    assert config.database_url == f"sqlite:///{tmp_path / 'mailcloak.sqlite3'}"
    assert config.max_message_size == 25_000_000
    assert config.hostname == "mail.alias.localhost"


def test_secret_key_generated_once_and_private(tmp_path):
    first = load({"MAILCLOAK_DATA_DIR": str(tmp_path)}).secret_key
    second = load({"MAILCLOAK_DATA_DIR": str(tmp_path)}).secret_key
    assert first == second and len(first) >= 48
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MODE", "staging", "expected local or production"),
        ("MAX_MESSAGE_SIZE", "lots", "MAILCLOAK_MAX_MESSAGE_SIZE='lots'"),
        ("SMTP_LISTEN", "127.0.0.1:99999", "port must be 0-65535"),
        ("DOMAINS", "bad domain", "is not a domain name"),
        ("DATABASE_URL", "mysql://x", "expected sqlite"),
        ("SIGNUPS", "maybe", "expected true or false"),
        ("TRANSPORTS", "example.test", "is not DOMAIN=HOST:PORT"),
        ("DNS_SERVERS", "not-an-ip", "MAILCLOAK_DNS_SERVERS"),
    ],
)
def test_bad_values_name_the_setting(tmp_path, name, value, fragment):
    with pytest.raises(ConfigError) as info:
        load({"MAILCLOAK_DATA_DIR": str(tmp_path), f"MAILCLOAK_{name}": value})
    message = str(info.value)
    assert f"MAILCLOAK_{name}" in message and fragment in message and "\n" not in message


def test_unknown_setting_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="MAILCLOAK_SMTP_LISTNE: unknown setting"):
        load({"MAILCLOAK_DATA_DIR": str(tmp_path), "MAILCLOAK_SMTP_LISTNE": "x"})


def test_production_refuses_insecure_settings(tmp_path):
    base = {"MAILCLOAK_DATA_DIR": str(tmp_path), "MAILCLOAK_MODE": "production"}
    with pytest.raises(ConfigError, match="MAILCLOAK_DOMAINS"):
        load(base)
    base["MAILCLOAK_DOMAINS"] = "alias.example.com"
    with pytest.raises(ConfigError, match="MAILCLOAK_PUBLIC_URL"):
        load(base)
    base["MAILCLOAK_PUBLIC_URL"] = "https://mailcloak.example.com"
    with pytest.raises(ConfigError, match="MAILCLOAK_TLS_CERT"):
        load(base)
    base |= {"MAILCLOAK_TLS_CERT": "/etc/cert.pem", "MAILCLOAK_TLS_KEY": "/etc/key.pem"}
    assert load(base).is_production


def test_transports_parse(tmp_path):
    config = load({"MAILCLOAK_DATA_DIR": str(tmp_path),
                   "MAILCLOAK_TRANSPORTS": "example.test=[127.0.0.3]:25,Other.test=127.0.0.4:2526"})
    assert str(config.transports["example.test"]) == "127.0.0.3:25"
    assert config.transports["other.test"].port == 2526


def test_readme_documents_every_setting():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for setting in mailcloak_settings.SETTINGS:
        assert f"`{setting.env}`" in readme, f"{setting.env} missing from README"
