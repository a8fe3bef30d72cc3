"""`mailcloak check`: each check's passing and failing case, the output and the exit status."""

from __future__ import annotations

import datetime
import errno
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from mailcloak import doctor
from mailcloak import settings as mailcloak_settings
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.dkimkeys import create_keys
from tests.support.daemons import canned_server
from tests.support.dns_server import DnsServer
from tests.support.processes import free_port

MAILCLOAK = str(Path(sys.executable).with_name("mailcloak"))
NOW = datetime.datetime.now(datetime.UTC)


def config_for(tmp_path: Path, **settings: str) -> mailcloak_settings.Config:
    env = {"MAILCLOAK_DATA_DIR": str(tmp_path), "MAILCLOAK_DOMAINS": "alias.test"}
    env |= {f"MAILCLOAK_{key.upper()}": value for key, value in settings.items()}
    return mailcloak_settings.load(env)


def production_settings(tmp_path: Path, ca: trustme.CA,
                        hostname: str = "mail.alias.example.org",
                        not_after: datetime.datetime | None = None) -> dict[str, str]:
    """What a production environment file holds, with a certificate from a test CA."""
    leaf = ca.issue_cert(hostname, not_after=not_after or NOW + datetime.timedelta(days=90))
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return {"mode": "production", "domains": "alias.example.org",
            "public_url": "https://alias.example.org", "secret_key": "s" * 50,
            "tls_cert": str(cert), "tls_key": str(key)}


def statuses(results: list[doctor.Result]) -> dict[str, str]:
    return {result.check: result.status for result in results}


# --- settings --------------------------------------------------------------------------------


def test_settings_in_production_are_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in production_settings(tmp_path, trustme.CA()).items():
        monkeypatch.setenv(f"MAILCLOAK_{key.upper()}", value)
    result, config = doctor.check_settings()
    assert result.status == "ok" and config is not None
    assert "production mode, domains alias.example.org" in result.message


def test_local_mode_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_MODE", "local")
    result, config = doctor.check_settings()
    assert result.status == "warn" and config is not None
    assert "MAILCLOAK_MODE=production" in result.fix


def test_a_bad_setting_fails_and_stops_the_other_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_MAX_RECIPIENTS", "many")
    results = doctor.run_checks()
    assert [r.status for r in results] == ["FAIL"]
    assert "MAILCLOAK_MAX_RECIPIENTS='many'" in results[0].message


# --- database --------------------------------------------------------------------------------


def test_a_migrated_database_is_ok(db: None) -> None:
    assert statuses(list(doctor.check_database())) == {"database": "ok", "migrations": "ok"}


def test_an_unapplied_migration_fails(db: None) -> None:
    recorder = MigrationRecorder(connection)
    latest = recorder.migration_qs.filter(app="mail").order_by("-id").first()
    assert latest is not None
    recorder.record_unapplied("mail", latest.name)  # rolled back with the test's transaction
    results = list(doctor.check_database())
    assert statuses(results) == {"database": "ok", "migrations": "FAIL"}
    assert results[1].message == f"1 not applied (first: mail.{latest.name})"
    assert results[1].fix == "run `mailcloak migrate`"


def run_check(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCLOAK_")}
    env |= {"MAILCLOAK_DATA_DIR": str(tmp_path / "data"), "MAILCLOAK_DOMAINS": "alias.test",
            "MAILCLOAK_SMTP_LISTEN": f"127.0.0.1:{free_port()}",
            "MAILCLOAK_WEB_LISTEN": f"127.0.0.1:{free_port()}",
            "DJANGO_SETTINGS_MODULE": "mailcloak.project.settings"}
    env |= {f"MAILCLOAK_{key.upper()}": value for key, value in settings.items()}
    return subprocess.run([MAILCLOAK, "check", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_unreachable_database_fails_with_the_fix(tmp_path: Path) -> None:
    done = run_check(tmp_path, database_url=f"postgresql://mailcloak@127.0.0.1:{free_port()}/x")
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if "database:" in line)
    assert line.startswith("FAIL  database: cannot connect to postgresql database 'x'")
    assert line.endswith("fix: check MAILCLOAK_DATABASE_URL and that the database server "
                         "is running")
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines()[-1].startswith("1 failed, ")


def test_unwritable_data_directory_fails_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    done = run_check(tmp_path, data_dir=str(tmp_path / "file" / "data"))
    assert done.returncode == 1 and done.stderr == ""
    assert done.stdout.splitlines()[1].startswith("FAIL  data directory: MAILCLOAK_DATA_DIR=")
    assert "fix: create MAILCLOAK_DATA_DIR, writable by this user" in done.stdout


def test_missing_sqlite_database_fails_without_creating_it(tmp_path: Path) -> None:
    done = run_check(tmp_path)
    assert done.returncode == 1
    assert "FAIL  database: no database yet (SQLite at " in done.stdout
    assert "fix: run `mailcloak migrate`" in done.stdout
    assert not (tmp_path / "data" / "mailcloak.sqlite3").exists()


# --- DKIM keys -------------------------------------------------------------------------------


def test_dkim_keys_present(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    create_keys(tmp_path / "dkim")
    result = doctor.check_dkim(config)
    assert result.status == "ok" and "mcr1 (rsa), mce1 (ed25519)" in result.message


def test_dkim_keys_missing_fail_in_production(tmp_path: Path) -> None:
    config = config_for(tmp_path, **production_settings(tmp_path, trustme.CA()))
    result = doctor.check_dkim(config)
    assert result.status == "FAIL" and "mcr1.pem is missing" in result.message
    assert result.fix.startswith("run `mailcloak dkim init`")


def test_dkim_keys_missing_in_local_mode_is_a_warning(tmp_path: Path) -> None:
    assert doctor.check_dkim(config_for(tmp_path)).status == "warn"


def test_unreadable_dkim_key_fails(tmp_path: Path) -> None:
    config = config_for(tmp_path, **production_settings(tmp_path, trustme.CA()))
    create_keys(tmp_path / "dkim")
    (tmp_path / "dkim" / "mce1.pem").write_text("not a key")
    result = doctor.check_dkim(config)
    assert result.status == "FAIL" and "mce1.pem is unreadable" in result.message


# --- TLS certificate -------------------------------------------------------------------------


def test_valid_certificate_is_ok(tmp_path: Path) -> None:
    result = doctor.check_tls(config_for(tmp_path, **production_settings(tmp_path, trustme.CA())))
    assert result.status == "ok" and result.message.startswith(
        "certificate for mail.alias.example.org valid until ")


def test_wildcard_certificate_covers_the_mail_name(tmp_path: Path) -> None:
    settings = production_settings(tmp_path, trustme.CA(), hostname="*.alias.example.org")
    assert doctor.check_tls(config_for(tmp_path, **settings)).status == "ok"


def test_certificate_expiring_within_14_days_is_a_warning(tmp_path: Path) -> None:
    settings = production_settings(tmp_path, trustme.CA(),
                                   not_after=NOW + datetime.timedelta(days=10, hours=1))
    result = doctor.check_tls(config_for(tmp_path, **settings))
    assert result.status == "warn" and "expires in 10 days" in result.message
    assert "restart mailcloak-smtpd" in result.fix


def test_expired_certificate_fails(tmp_path: Path) -> None:
    settings = production_settings(tmp_path, trustme.CA(),
                                   not_after=NOW - datetime.timedelta(days=1))
    result = doctor.check_tls(config_for(tmp_path, **settings))
    assert result.status == "FAIL" and "expired on" in result.message


def test_certificate_for_another_name_is_a_warning(tmp_path: Path) -> None:
    settings = production_settings(tmp_path, trustme.CA(), hostname="www.example.org")
    result = doctor.check_tls(config_for(tmp_path, **settings))
    assert result.status == "warn" and "does not name mail.alias.example.org" in result.message


def test_key_that_does_not_match_the_certificate_fails(tmp_path: Path) -> None:
    settings = production_settings(tmp_path, trustme.CA())
    other = tmp_path / "other"
    other.mkdir()
    settings["tls_key"] = production_settings(other, trustme.CA())["tls_key"]
    result = doctor.check_tls(config_for(tmp_path, **settings))
    assert result.status == "FAIL" and "cannot load the certificate and key" in result.message
    assert "MAILCLOAK_TLS_CERT" in result.fix


def test_missing_certificate_file_fails(tmp_path: Path) -> None:
    settings = production_settings(tmp_path, trustme.CA())
    Path(settings["tls_cert"]).unlink()
    assert doctor.check_tls(config_for(tmp_path, **settings)).status == "FAIL"


# --- ports -----------------------------------------------------------------------------------


def test_free_port_is_ok() -> None:
    listen = mailcloak_settings.HostPort("127.0.0.1", free_port())
    result = doctor.check_port("smtp port", listen, "MAILCLOAK_SMTP_LISTEN")
    assert result.status == "ok" and result.message == f"{listen} is free to listen on"


def test_port_taken_by_another_program_fails_and_names_it() -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:
        listen = mailcloak_settings.HostPort("127.0.0.1", other.getsockname()[1])
        result = doctor.check_port("web port", listen, "MAILCLOAK_WEB_LISTEN")
    assert result.status == "FAIL"
    assert f"already in use by `{sys.executable}" in result.message
    assert f"(pid {os.getpid()})" in result.message
    assert result.fix == "stop that service or set MAILCLOAK_WEB_LISTEN to another address"


def test_port_served_by_our_own_service_is_ok() -> None:
    # A process whose command line is `.../mailcloak web`, listening as the web app does.
    script = ("import socket, sys, time; s = socket.create_server(('127.0.0.1', 0)); "
              "print(s.getsockname()[1], flush=True); time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", script, "mailcloak", "web"],
                          stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            owner = doctor.listening_owner(port)
            assert owner is not None and owner.pid == server.pid
        finally:
            server.kill()
    assert doctor.PortOwner(7, "/srv/venv/bin/python /srv/venv/bin/mailcloak web"
                            ).mailcloak_command == "mailcloak web"
    assert doctor.PortOwner(7, "python -m mailcloak smtpd").mailcloak_command == "mailcloak smtpd"
    assert doctor.PortOwner(7, "nginx: master process").mailcloak_command is None


@pytest.mark.parametrize(("greeting", "status"), [
    (b"220 mail.alias.test ESMTP\r\n", "ok"),
    (b"220 mx.elsewhere.test ESMTP Postfix\r\n", "FAIL"),
])
def test_port_held_by_an_invisible_process_is_ours_if_it_greets_with_our_name(
        monkeypatch: pytest.MonkeyPatch, greeting: bytes, status: str) -> None:
    monkeypatch.setattr(doctor, "listening_owner", lambda port: None)  # another user's process
    with canned_server(greeting) as port:
        listen = mailcloak_settings.HostPort("127.0.0.1", port)
        result = doctor.check_port("smtp port", listen, "MAILCLOAK_SMTP_LISTEN",
                                   greeting="220 mail.alias.test ESMTP")
    assert result.status == status
    if status == "FAIL":
        assert "another process (not visible to this user)" in result.message


def test_privileged_port_without_the_capability_warns_how_to_grant_it() -> None:
    # The command may lack the capability its service is given: a warning, not a failure.
    listen = mailcloak_settings.HostPort("0.0.0.0", 25)
    result = doctor._port_refused("smtp port", listen, "MAILCLOAK_SMTP_LISTEN",
                                  PermissionError(errno.EACCES, "Permission denied"))
    assert result.status == "warn" and "CAP_NET_BIND_SERVICE" in result.fix


def test_address_of_another_machine_fails() -> None:
    listen = mailcloak_settings.HostPort("192.0.2.1", 25)  # bind() only; nothing is sent
    result = doctor.check_port("smtp port", listen, "MAILCLOAK_SMTP_LISTEN")
    assert result.status == "FAIL" and "MAILCLOAK_SMTP_LISTEN" in result.fix


# --- spam engine -----------------------------------------------------------------------------


@pytest.fixture
def pong_server() -> Iterator[int]:
    """An HTTP server answering /ping with `pong`, as Rspamd's workers do."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"pong\r\n" if self.path == "/ping" else b"not found"
            self.send_response(200 if self.path == "/ping" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_builtin_engine_is_ok(tmp_path: Path) -> None:
    assert doctor.check_spam_engine(config_for(tmp_path)).status == "ok"


def test_builtin_engine_with_a_missing_model_fails(tmp_path: Path) -> None:
    result = doctor.check_spam_engine(config_for(tmp_path, spam_model=str(tmp_path / "no.bin")))
    assert result.status == "FAIL" and "mailcloak spam train" in result.fix


def test_rspamd_answering_ping_is_ok(tmp_path: Path, pong_server: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")  # never used for Rspamd
    url = f"http://127.0.0.1:{pong_server}"
    config = config_for(tmp_path, spam_engine="rspamd", rspamd_url=url,
                        rspamd_controller_url=url)
    result = doctor.check_spam_engine(config)
    assert result.status == "ok" and result.message.startswith(f"rspamd answers at {url}")


def test_rspamd_down_fails_naming_the_setting(tmp_path: Path, pong_server: int) -> None:
    controller = f"http://127.0.0.1:{free_port()}"
    config = config_for(tmp_path, spam_engine="rspamd",
                        rspamd_url=f"http://127.0.0.1:{pong_server}",
                        rspamd_controller_url=controller)
    result = doctor.check_spam_engine(config)
    assert result.status == "FAIL"
    assert f"rspamd at {controller} (MAILCLOAK_RSPAMD_CONTROLLER_URL) is unreachable" in (
        result.message)
    assert "MAILCLOAK_RSPAMD_CONTROLLER_URL" in result.fix


def test_spamd_answering_pong_is_ok(tmp_path: Path) -> None:
    with canned_server(b"SPAMD/1.5 0 PONG\r\n") as port:
        config = config_for(tmp_path, spam_engine="spamassassin",
                            spamd_address=f"127.0.0.1:{port}")
        result = doctor.check_spam_engine(config)
    assert result.status == "ok" and result.message == f"spamd answers at 127.0.0.1:{port}"


def test_something_else_on_the_spamd_port_fails(tmp_path: Path) -> None:
    with canned_server(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        config = config_for(tmp_path, spam_engine="spamassassin",
                            spamd_address=f"127.0.0.1:{port}")
        result = doctor.check_spam_engine(config)
    assert result.status == "FAIL" and "did not answer like spamd" in result.message


def test_spamd_down_fails(tmp_path: Path) -> None:
    config = config_for(tmp_path, spam_engine="spamassassin",
                        spamd_address=f"127.0.0.1:{free_port()}")
    result = doctor.check_spam_engine(config)
    assert result.status == "FAIL" and "is unreachable" in result.message
    assert "MAILCLOAK_SPAMD_ADDRESS" in result.fix


# --- the command -----------------------------------------------------------------------------


def test_command_prints_one_line_per_check_and_exits_0_when_nothing_failed(
        db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from mailcloak import cli

    monkeypatch.setenv("MAILCLOAK_SMTP_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("MAILCLOAK_WEB_LISTEN", f"127.0.0.1:{free_port()}")
    create_keys(mailcloak_settings.get().data_path / "dkim")
    assert cli.main(["check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    checks = [line.split(":")[0].split(None, 1) for line in lines[:-1]]
    assert [check for _, check in checks] == ["settings", "database", "migrations", "dkim", "tls",
                                              "smtp port", "web port", "spam"]
    assert all(status in {"ok", "warn"} for status, _ in checks)
    assert lines[-1] == "0 failed, 1 warnings, 7 ok"


def test_dns_records_are_checked_with_the_fix_for_each_missing_one(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    create_keys(tmp_path / "dkim")
    with DnsServer() as server, mail_dns.use_resolver(server.resolver()):
        server.add("alias.test", "MX", "10 mail.alias.test.")
        results = list(doctor.check_dns(config, ["127.0.0.1"]))
    by_check = {result.check: result for result in results}
    assert by_check["dns MX alias.test"].status == "ok"
    dkim = by_check["dns DKIM mcr1._domainkey.alias.test"]
    assert dkim.status == "FAIL" and dkim.message.startswith("missing")
    assert "mcr1._domainkey.alias.test" in dkim.fix
    assert any(check.startswith("dns PTR") for check in by_check)  # the host's records too


def test_dns_check_without_dkim_keys_fails_once(tmp_path: Path) -> None:
    config = config_for(tmp_path, **production_settings(tmp_path, trustme.CA()))
    results = list(doctor.check_dns(config, ()))
    assert [(r.check, r.status) for r in results] == [("dns", "FAIL")]
    assert results[0].fix == "run `mailcloak dkim init`"
