"""`mailcloak smtpd` as the operator runs it: several processes sharing the port."""

import os
import signal
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.processes import MAILCLOAK, free_port, mailcloak, started


@pytest.fixture
def env(tmp_path):
    # The started servers keep their metrics in their own data directory, not in this run's.
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MAILCLOAK_")
             and k not in ("DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR")}
    clean.update(MAILCLOAK_DATA_DIR=str(tmp_path), MAILCLOAK_DOMAINS="alias.test",
                 MAILCLOAK_SMTP_LISTEN=f"127.0.0.1:{free_port()}", MAILCLOAK_SMTP_PROCESSES="2")
    return clean


def wait_for_greeting(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                client.noop()
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer")


@pytest.mark.slow
def test_processes_share_the_port_and_stop_on_sigterm(env):
    mailcloak(env, "migrate")
    mailcloak(env, "user", "add", "owner@mailbox.test")
    alias = mailcloak(env, "alias", "add", "owner@mailbox.test")
    port = int(env["MAILCLOAK_SMTP_LISTEN"].rsplit(":", 1)[1])
    with started(env, "smtpd") as server:
        wait_for_greeting(port, server)
        for n in range(4):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.ehlo("client.test")
                client.mail("walrus@sender.test")
                assert client.rcpt(alias)[0] == 250
                code, text = client.data(
                    f"From: walrus@sender.test\r\nSubject: {n}\r\n\r\nsecret-body\r\n")
                assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
        server.send_signal(signal.SIGTERM)
        _, log = server.communicate(timeout=60)
    assert server.returncode == 0, log
    listening = [line for line in log.splitlines() if "SMTP server on" in line
                 and "stopped" not in line]
    assert len(listening) == 2 and len({line.rsplit(" ", 1)[1] for line in listening}) == 2
    assert log.count("stopped") == 2
    assert log.count(" reply=250 status=2.0.0 ") == 4
    assert "secret-body" not in log and "walrus" not in log


@pytest.mark.slow
def test_a_dead_process_stops_the_others(env):
    mailcloak(env, "migrate")
    port = int(env["MAILCLOAK_SMTP_LISTEN"].rsplit(":", 1)[1])
    with started(env, "smtpd") as server:
        wait_for_greeting(port, server)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(children) == 2
        os.kill(int(children[0]), signal.SIGKILL)
        _, log = server.communicate(timeout=60)
    assert server.returncode == 1
    assert "exited with status -9; stopping" in log
    assert not Path(f"/proc/{children[1]}").exists() or "zombie" in Path(
        f"/proc/{children[1]}/status").read_text()


@pytest.mark.slow
def test_port_taken_by_another_program(env):
    mailcloak(env, "migrate")
    port = int(env["MAILCLOAK_SMTP_LISTEN"].rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        done = subprocess.run([MAILCLOAK, "smtpd"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"mailcloak: cannot listen on 127.0.0.1:{port}: "
                                   "Address already in use")


@pytest.mark.slow
def test_database_not_ready_is_one_line(env):
    done = subprocess.run([MAILCLOAK, "smtpd"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("mailcloak: database not ready: ")
    assert len(done.stderr.strip().splitlines()) == 1
