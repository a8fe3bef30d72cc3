"""docs/production.md followed on this machine: PostgreSQL, Rspamd from Debian, and Mailcloak's
three services as separate supervised processes, configured from deploy/mailcloak.env.example.

The guide's commands in its order: `mailcloak migrate`, `mailcloak dkim init`, `mailcloak check`,
then `mailcloak smtpd`, `mailcloak worker` and `mailcloak web`. A message sent to an alias over
STARTTLS (verified against the configured certificate) reaches a sink MX on 127.0.0.3, DKIM-signed,
and the web app serves its login page to a reverse proxy's request. Everything stays on loopback.
"""

from __future__ import annotations

import http.client
import os
import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme

from mailcloak.doctor import first_line_from
from mailcloak.mail.replies import GREETING_IDENT
from mailcloak.settings import HostPort
from tests.support import daemons
from tests.support.postgres import on_postgres, shared_database, skip_without_postgres
from tests.support.processes import MAILCLOAK, Deployment, free_port, wait_for_port
from tests.support.sink import SmtpSink

pytestmark = pytest.mark.slow

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "mailcloak.env.example"
PUBLIC_HOST = "mailcloak.example.org"

MESSAGE = daemons.message("Minutes of Tuesday's meeting", (
    "Hi all,\n\nthanks for coming on Tuesday. As agreed, Grace will look at the build failures\n"
    "on the older compilers, and I will write up the notes on the release schedule.\n\nAda\n"))


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile= and compose's env_file read them."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def require_postgres_and_rspamd() -> None:
    """Skip (fail in CI, MAILCLOAK_TEST_REQUIRE_POSTGRES=1) without PostgreSQL or Rspamd."""
    if not on_postgres():
        skip_without_postgres()
    reason = daemons.missing("rspamd")
    if reason:
        if os.environ.get("MAILCLOAK_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def production_settings(tmp_path: Path, ca: trustme.CA, rspamd: daemons.RspamdDaemon,
                        sink: SmtpSink) -> dict[str, str]:
    """The example environment file, with this machine's addresses, certificate and services
    (Deployment sets the data directory, the database and a loopback SMTP address)."""
    leaf = ca.issue_cert("mail.example.org", "127.0.0.1")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    settings = {name.removeprefix("MAILCLOAK_"): value
                for name, value in env_file(ENV_EXAMPLE).items()}
    for name in ("DATA_DIR", "DATABASE_URL", "SMTP_LISTEN"):
        del settings[name]
    settings |= {
        "WEB_LISTEN": f"127.0.0.1:{free_port()}",
        "TLS_CERT": str(cert), "TLS_KEY": str(key),
        "RSPAMD_URL": rspamd.url, "RSPAMD_CONTROLLER_URL": rspamd.controller_url,
        "RSPAMD_PASSWORD": rspamd.password,
        # The recipient's mailbox provider: the sink, instead of an MX found in DNS.
        "TRANSPORTS": f"mailbox.test=[127.0.0.3]:{sink.port}",
        "LOG_LEVEL": "warning",
    }
    return {key.lower(): value for key, value in settings.items()}


def check(deployment: Deployment) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILCLOAK, "check"], env=deployment.env, capture_output=True,
                          text=True, timeout=120, check=False)


def send_over_starttls(port: int, ca: trustme.CA, alias: str) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=context)  # verifies the configured certificate
        client.sendmail("ada@sender.test", [alias], MESSAGE.replace(b"k3v9@alias.test",
                                                                     alias.encode()))


def fetch_login_page(port: int) -> tuple[int, str]:
    """As the TLS reverse proxy of the guide asks: the public Host, X-Forwarded-Proto https."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/accounts/login/", headers={
            "Host": PUBLIC_HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"})
        reply = connection.getresponse()
        return reply.status, reply.read().decode(errors="replace")
    finally:
        connection.close()


def test_the_guide_on_this_machine(tmp_path: Path) -> None:
    require_postgres_and_rspamd()
    ca = trustme.CA()
    with (shared_database(tmp_path) as database_url, daemons.running_rspamd() as rspamd,
          SmtpSink("127.0.0.3") as sink):
        (tmp_path / "data").mkdir()
        deployment = Deployment(tmp_path / "data", database_url,
                                **production_settings(tmp_path, ca, rspamd, sink))
        web_port = int(deployment.env["MAILCLOAK_WEB_LISTEN"].rsplit(":", 1)[1])

        deployment.cli("migrate")
        assert "created DKIM key mcr1" in deployment.cli("dkim", "init")
        before = check(deployment)
        assert before.returncode == 0, before.stdout + before.stderr
        assert "FAIL" not in before.stdout and "ok    spam: rspamd answers at" in before.stdout
        deployment.cli("user", "add", "owner@mailbox.test")
        alias = deployment.cli("alias", "add", "owner@mailbox.test").strip().splitlines()[-1]
        assert alias.endswith("@alias.example.org")
        try:
            deployment.start("smtpd", "smtpd")
            deployment.start("worker", "worker")
            deployment.start("web", "web")
            wait_for_port("127.0.0.1", web_port)

            running = check(deployment)
            assert running.returncode == 0, running.stdout + running.stderr
            assert "is served by our own `mailcloak smtpd`" in running.stdout
            assert "is served by our own `mailcloak web`" in running.stdout
            # What `mailcloak check` expects of our SMTP server when it cannot see its process.
            smtp = HostPort("127.0.0.1", deployment.smtp_port)
            assert first_line_from(smtp) == f"220 mail.example.org {GREETING_IDENT}"

            send_over_starttls(deployment.smtp_port, ca, alias)
            assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=60), (
                deployment.log("smtpd") + deployment.log("worker"))
            delivered = sink.messages[0]
            assert delivered.rcpt_tos == ["owner@mailbox.test"]
            assert b"Minutes of Tuesday's meeting" in delivered.content
            assert b"d=alias.example.org" in delivered.content  # DKIM-signed for the alias

            status, page = fetch_login_page(web_port)
            assert status == 200, page[:500]
            assert 'type="password"' in page
        finally:
            deployment.stop_all()
        for name in ("smtpd", "worker", "web"):
            assert "Traceback" not in deployment.log(name), deployment.log(name)
